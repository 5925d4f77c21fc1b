"""Training machinery of the Helmholtz machine: the noise protocol (a run is replayed from
its documented order of draws), the engine choice, the data sampler, the kernel engine."""

import numpy as np
import pytest

from lvmref import helmholtz_training as HT
from lvmref.datasets import bars
from lvmref.helmholtz import Architecture, HelmholtzMachine, NVILBaseline, sgd_update


def test_noise_blocks_sizes_and_records():
    got = list(HT.noise_blocks(25, 10, block=4))
    assert got == [(4, False), (4, False), (2, True), (4, False), (4, False), (2, True),
                   (4, False), (1, True)]
    # the default block is NOISE_BLOCK, shrunk to record_every
    assert HT.NOISE_BLOCK == 10_000
    assert list(HT.noise_blocks(25_000, 25_000)) == [(10_000, False), (10_000, False),
                                                     (5_000, True)]
    assert list(HT.noise_blocks(7, 3)) == [(3, True), (3, True), (1, True)]
    assert sum(m for m, _ in HT.noise_blocks(123_457, 40_000)) == 123_457


def test_draw_noise_order_and_shapes():
    draw = HT.data_sampler(lambda m, rng: (rng.random((m, 3)) < 0.5), 3)
    x, uq, us = HT.draw_noise(draw, np.random.default_rng(0), 4, 2, 3, 5, 3)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(x, (rng.random((8, 3)) < 0.5).reshape(4, 2, 3))
    np.testing.assert_array_equal(uq, rng.random((4, 2, 3, 5)))
    np.testing.assert_array_equal(us, rng.random((4, 2, 8)))


def test_data_sampler_rows_and_errors():
    X = np.array([[0, 1], [1, 1], [1, 0]])
    rows = HT.data_sampler(X, 2)(6, np.random.default_rng(1))
    idx = np.random.default_rng(1).integers(0, 3, size=6)
    np.testing.assert_array_equal(rows, X[idx].astype(float))
    assert rows.dtype == np.float64
    with pytest.raises(ValueError, match="X must be binary"):
        HT.data_sampler(X * 0.5, 2)
    with pytest.raises(ValueError, match="X must have shape"):
        HT.data_sampler(X, 3)
    with pytest.raises(ValueError, match=r"X\(m, rng\) must have shape"):
        HT.data_sampler(lambda m, rng: np.zeros((m + 1, 2)), 2)(3, None)
    with pytest.raises(ValueError, match=r"X\(m, rng\) must be binary"):
        HT.data_sampler(lambda m, rng: np.full((m, 2), 0.5), 2)(3, None)


def test_engine_choice(monkeypatch):
    sbn, mlp = Architecture((2, 3)), Architecture((2, 3), hidden=(2,))
    assert HT.kernel_supported(sbn, 1, False)
    assert not HT.kernel_supported(sbn, 2, False)
    assert not HT.kernel_supported(mlp, 1, False)
    assert not HT.kernel_supported(sbn, 1, True)
    assert HT.use_kernel("numba", True) and not HT.use_kernel("numpy", True)
    assert not HT.use_kernel("auto", False)
    with pytest.raises(ValueError, match="engine='numba' needs batch_size=1"):
        HT.use_kernel("numba", False)
    assert HT.use_kernel("auto", True) == HT.jit_enabled()
    monkeypatch.setattr(HT, "jit_enabled", lambda: False)   # as under NUMBA_DISABLE_JIT=1
    assert not HT.use_kernel("auto", True)


def test_auto_engine_without_jit_is_the_numpy_engine(monkeypatch):
    kw = dict(n_updates=300, learning_rate=0.05, record_every=100, rng=4)
    want = HelmholtzMachine((1, 3, 6), rng=0).fit(bars_6, "wake-sleep", engine="numpy", **kw)
    monkeypatch.setattr(HT, "jit_enabled", lambda: False)
    got = HelmholtzMachine((1, 3, 6), rng=0).fit(bars_6, "wake-sleep", engine="auto", **kw)
    for k in want.params:
        np.testing.assert_array_equal(got.params[k], want.params[k])
    assert got.history_["objective"] == want.history_["objective"]


def test_vimco_has_no_kernel_and_auto_runs_the_numpy_engine():
    """A sigmoid belief net with batch size 1 would take the Numba kernels under "auto";
    VIMCO has none, so "auto" runs sgd_update (same result as engine="numpy")."""
    kw = dict(n_updates=50, learning_rate=0.05, k=3, record_every=25, rng=6)
    want = HelmholtzMachine((1, 3, 6), rng=0).fit(bars_6, "vimco", engine="numpy", **kw)
    got = HelmholtzMachine((1, 3, 6), rng=0).fit(bars_6, "vimco", engine="auto", **kw)
    for k in want.params:
        np.testing.assert_array_equal(got.params[k], want.params[k])
    with pytest.raises(ValueError, match="engine='numba' has no VIMCO kernel"):
        HelmholtzMachine((1, 3, 6), rng=0).fit(bars_6, "vimco", engine="numba", **kw)


def bars_6(m, rng):
    """A 6-pixel stream: 2 x 3 bars."""
    return bars(m, rng, size=3)[:, :6]


@pytest.mark.parametrize("method, kw", [
    ("reweighted", {"k": 3, "sleep": True, "batch_size": 2}),
    ("vimco", {"k": 3, "batch_size": 2}),
    ("reinforce", {"baseline": NVILBaseline("input-dependent", hidden=(2,)),
                   "batch_size": 3}),
])
def test_fit_is_replayed_from_the_documented_noise_protocol(method, kw):
    """fit(engine='numpy') equals sgd_update driven by noise drawn in the documented
    order: baseline weights first, then per block data, q uniforms, dream uniforms."""
    n_updates, record_every, D = 20, 7, 6
    m = HelmholtzMachine((1, 3, D), rng=0)
    p0 = {k: v.copy() for k, v in m.params.items()}
    m.fit(bars_6, method, n_updates=n_updates, learning_rate=0.05, record_every=record_every,
          rng=8, engine="numpy", **kw)

    rng = np.random.default_rng(8)
    B, k = kw["batch_size"], kw.get("k", 1)
    base = kw.get("baseline")
    state = base.init_state(m.arch, rng) if base is not None else None
    params, objs, acc = p0, [], []
    for size in (7, 7, 6):
        x = bars_6(size * B, rng).reshape(size, B, D)
        uq = rng.random((size, B, k, m.n_latent))
        us = rng.random((size, B, m.n_latent + D))
        for t in range(size):
            params, state, obj = sgd_update(params, x[t], uq[t], us[t], m.arch, method, 0.05,
                                            sleep=kw.get("sleep", False), baseline=base,
                                            state=state)
            acc.append(obj)
        objs.append(sum(acc) / len(acc))
        acc = []
    for name in params:
        np.testing.assert_array_equal(m.params[name], params[name])
    assert m.history_["update"] == [7, 14, 20]
    np.testing.assert_array_equal(m.history_["objective"], objs)
    if base is not None:
        for name in state.psi:
            np.testing.assert_array_equal(m.baseline_params_[name], state.psi[name])


def test_kernel_engine_runs_blocks_and_copies_out():
    arch = Architecture((2, 6))
    m = HelmholtzMachine(arch.layer_sizes, rng=1)
    eng = HT.KernelEngine(m.params, arch.layer_sizes, "wake-sleep", 0.1, 0.1)
    draw = HT.data_sampler(bars_6, 6)
    rng = np.random.default_rng(2)
    objs = eng.run(*HT.draw_noise(draw, rng, 50, 1, 1, 2, 6))
    assert objs.shape == (50,) and np.all(np.isfinite(objs))
    views, copies = eng.params(), eng.params(copy=True)
    assert all(np.shares_memory(views[k], eng.flat) for k in views)
    assert not any(np.shares_memory(copies[k], eng.flat) for k in copies)
    assert any(not np.array_equal(copies[k], m.params[k]) for k in copies)
