"""Helmholtz online kernels (lvmref.kernels.helmholtz) against their twin, the NumPy
engine lvmref.helmholtz.sgd_update, on the same noise; the flat parameter buffer."""

import numpy as np
import pytest

from lvmref import helmholtz as H
from lvmref.helmholtz import Architecture, NVILBaseline, NVILState
from lvmref.kernels import helmholtz as KH
from lvmref.kernels.helmholtz import pack_params, unpack_params


def _params(arch, seed, scale=0.7):
    rng = np.random.default_rng(seed)
    # non-zero biases/priors so that every term of the updates is exercised
    return {k: v + scale * rng.standard_normal(v.shape)
            for k, v in H.init_params(arch, rng).items()}


def _sgd_run(params, arch, method, X, UQ, US, lr, lr_q, **kw):
    """T updates of the NumPy engine, one data row each (the kernels' setting)."""
    out, state = [], kw.pop("state", None)
    for t in range(X.shape[0]):
        params, state, obj = H.sgd_update(params, X[t:t + 1], UQ[t][None], US[t:t + 1],
                                          arch, method, lr, lr_q, state=state, **kw)
        out.append(obj)
    return params, state, np.array(out)


@pytest.mark.parametrize("kind", ["ws", "rws", "rws-sleep", "reinforce", "reinforce-none"])
def test_kernels_match_the_numpy_engine(kind):
    """Each kernel equals sgd_update (eqs. 9-12) to 1e-12 over 300 updates (horizon kept
    short: the maps are stochastic, so one flipped comparison u < sigmoid(a) after many
    updates would make the two trajectories part)."""
    sizes = (2, 3, 5)
    arch = Architecture(sizes)
    p0 = _params(arch, 11)
    flat, layout = pack_params(p0, sizes)
    rng = np.random.default_rng(12)
    T = 300
    X = (rng.random((T, 5)) < 0.4).astype(float)
    UQ, US = rng.random((T, 5)), rng.random((T, 10))
    if kind == "ws":
        w_nb = KH.ws_online(flat, layout, X, UQ, US, 0.05, 0.07)
        p_np, _, w_np = _sgd_run(p0, arch, "wake-sleep", X, UQ[:, None], US, 0.05, 0.07)
    elif kind.startswith("rws"):
        UQ3 = rng.random((T, 4, 5))
        sleep = kind == "rws-sleep"
        w_nb = KH.rws_online(flat, layout, X, UQ3, US, 0.05, 0.07, sleep)
        p_np, _, w_np = _sgd_run(p0, arch, "reweighted", X, UQ3, US, 0.05, 0.07, sleep=sleep)
    else:
        use = kind == "reinforce"
        s_nb = np.array([0.0, 1.0])
        w_nb = KH.reinforce_online(flat, layout, X, UQ, 0.02, 0.01, use, use, 0.9, s_nb)
        base = NVILBaseline(decay=0.9, normalize_variance=True) if use else None
        p_np, s_np, w_np = _sgd_run(p0, arch, "reinforce", X, UQ[:, None], US, 0.02, 0.01,
                                    baseline=base)
        want = (s_np.c, s_np.v) if use else (0.0, 1.0)
        assert np.max(np.abs(s_nb - np.array(want))) <= 1e-12
        if use:
            assert s_np != NVILState()
    got = unpack_params(flat, layout)
    for k in arch.keys():
        assert np.max(np.abs(got[k] - p_np[k])) <= 1e-12, k
    assert np.max(np.abs(w_nb - w_np)) <= 1e-12
    assert np.max(np.abs(flat - pack_params(p0, sizes)[0])) > 1e-3  # it did learn


def test_pack_unpack_roundtrip_layout():
    arch = Architecture((1, 8, 16))
    p = _params(arch, 0)
    flat, layout = pack_params(p, arch.layer_sizes)
    assert flat.shape == (sum(int(np.prod(s)) for s in arch.shapes().values()),)
    back = unpack_params(flat, layout)
    assert list(back) == arch.keys()
    for k in arch.keys():
        np.testing.assert_array_equal(back[k], p[k])
    # views: an update of the buffer is seen through the dict, and the input is a copy
    flat[:] += 1.0
    np.testing.assert_array_equal(back["gen1.W0"], p["gen1.W0"] + 1.0)
    assert not np.shares_memory(flat, p["prior"])


def test_entry_points_accept_non_contiguous_noise():
    """The public functions hand C-contiguous float64 arrays to the kernels."""
    arch = Architecture((2, 3))
    p = _params(arch, 1)
    rng = np.random.default_rng(2)
    X = (rng.random((40, 3)) < 0.5)                     # bool
    UQ, US = rng.random((2, 40)).T, rng.random((5, 40)).T  # Fortran-ordered
    a, la = pack_params(p, arch.layer_sizes)
    b, lb = pack_params(p, arch.layer_sizes)
    wa = KH.ws_online(a, la, X, UQ, US, 0.1, 0.1)
    wb = KH.ws_online(b, lb, X.astype(float), np.ascontiguousarray(UQ),
                      np.ascontiguousarray(US), 0.1, 0.1)
    np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a, b)
