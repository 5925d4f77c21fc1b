"""The public API of lvmref.kernels as a whole: dtypes, no mutation, errors naming the
argument, special values per row, and the NUMBA_DISABLE_JIT=1 path (the twins)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from support import (
    assert_lse_close,
)

import lvmref.kernels as K
from lvmref.kernels import densities as D
from lvmref.kernels import lse as L

pytestmark = pytest.mark.skipif(
    numba.config.DISABLE_JIT,
    reason="tests the jitted kernels; the NUMBA_DISABLE_JIT=1 path is tested in a subprocess",
)


def test_dtype_conversion():
    ints = np.array([[1, 2, 3], [0, -1, 5]])
    f32 = ints.astype(np.float32)
    f64 = ints.astype(np.float64)
    for a in (ints, f32, ints.tolist()):
        np.testing.assert_array_equal(K.logsumexp(a, axis=1), K.logsumexp(f64, axis=1))
        np.testing.assert_array_equal(K.log_softmax(a), K.log_softmax(f64))
        np.testing.assert_array_equal(K.softplus(a), K.softplus(f64))
        np.testing.assert_array_equal(K.kl_normal_std(a, a), K.kl_normal_std(f64, f64))
    bools = np.array([[True, False, True]])
    np.testing.assert_array_equal(
        K.bernoulli_log_prob(bools, f64[:1]), K.bernoulli_log_prob(bools.astype(float), f64[:1])
    )
    assert K.logsumexp(f32).dtype == np.float64


def test_inputs_not_mutated_and_readonly_ok():
    rng = np.random.default_rng(12)
    a = rng.normal(size=(5, 4))
    x = (rng.random((5, 4)) < 0.5).astype(float)
    args = {
        "logsumexp": (a,),
        "log_mean_exp": (a,),
        "log_softmax": (a,),
        "softplus": (a,),
        "log_sigmoid": (a,),
        "bernoulli_log_prob": (x, a),
        "normal_log_prob_diag": (a, a, a),
        "kl_normal_std": (a, a),
        "elbo_iwae": (a, a, a),
    }
    copies = (a.copy(), x.copy())
    for name, fargs in args.items():
        getattr(K, name)(*fargs)
    np.testing.assert_array_equal(a, copies[0])
    np.testing.assert_array_equal(x, copies[1])
    ro = a.copy()
    ro.setflags(write=False)  # e.g. memory-mapped data: must work and stay untouched
    np.testing.assert_array_equal(K.logsumexp(ro, axis=1), K.logsumexp(a, axis=1))
    np.testing.assert_array_equal(K.softplus(ro), K.softplus(a))


BAD_TYPES = ["abc", np.array(["x", "y"]), np.array([1 + 2j]), [[1.0, 2.0], [3.0]], None]


@pytest.mark.parametrize("bad", BAD_TYPES, ids=["str", "strarr", "complex", "ragged", "none"])
def test_non_numeric_input_raises_type_error(bad):
    ok = np.zeros((2, 2))
    cases = [
        (K.logsumexp, (bad,), "a"),
        (K.log_mean_exp, (bad,), "a"),
        (K.log_softmax, (bad,), "a"),
        (K.softplus, (bad,), "x"),
        (K.log_sigmoid, (bad,), "x"),
        (K.bernoulli_log_prob, (bad, ok), "x"),
        (K.bernoulli_log_prob, (ok, bad), "logits"),
        (K.normal_log_prob_diag, (ok, bad, ok), "mean"),
        (K.normal_log_prob_diag, (ok, ok, bad), "log_var"),
        (K.kl_normal_std, (bad, ok), "mean"),
        (K.kl_normal_std, (ok, bad), "log_var"),
        (K.elbo_iwae, (ok, ok, bad), "log_qz"),
        (K.elbo_iwae, (bad, ok, ok), "log_px_z"),
    ]
    for f, args, name in cases:
        with pytest.raises(TypeError, match=name):
            f(*args)


def test_shape_and_axis_errors():
    a = np.zeros((2, 3))
    with pytest.raises(ValueError, match="axis=2"):
        K.logsumexp(a, axis=2)
    with pytest.raises(ValueError, match="axis=-3"):
        K.log_softmax(a, axis=-3)
    with pytest.raises(ValueError, match="axis"):
        K.log_mean_exp(np.float64(1.0), axis=0)
    with pytest.raises(TypeError, match="axis"):
        K.logsumexp(a, axis=1.0)
    with pytest.raises(TypeError, match="axis"):
        K.log_softmax(a, axis=None)
    with pytest.raises(TypeError, match="keepdims"):
        K.logsumexp(a, keepdims="yes")
    with pytest.raises(TypeError, match="reduce"):
        K.bernoulli_log_prob(a, a, reduce=1)
    with pytest.raises(ValueError, match="a must have at least 1 dimension"):
        K.log_softmax(3.0)
    with pytest.raises(ValueError, match="x and logits"):
        K.bernoulli_log_prob(a, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="x and mean"):
        K.normal_log_prob_diag(a, np.zeros(3), a)
    with pytest.raises(ValueError, match="x and log_var"):
        K.normal_log_prob_diag(a, a, np.zeros((2, 1)))
    with pytest.raises(ValueError, match="mean and log_var"):
        K.kl_normal_std(a, a.T)
    with pytest.raises(ValueError, match="x must have at least 1 dimension"):
        K.bernoulli_log_prob(1.0, 0.0)
    with pytest.raises(ValueError, match="mean must have at least 1 dimension"):
        K.kl_normal_std(0.0, 0.0)
    with pytest.raises(ValueError, match="log_px_z must be 2-D"):
        K.elbo_iwae(np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="log_px_z must be 2-D"):
        K.elbo_iwae(np.zeros((3, 0)), np.zeros((3, 0)), np.zeros((3, 0)))
    with pytest.raises(ValueError, match="log_px_z and log_pz"):
        K.elbo_iwae(a, a.T, a)
    with pytest.raises(ValueError, match="log_px_z and log_qz"):
        K.elbo_iwae(a, a, np.zeros((2, 4)))


def test_nan_and_empty_inputs_propagate_per_row():
    """NaN in a row gives NaN in that row's output only (scipy's semantics); empty batches
    give empty outputs."""
    a = np.array([[0.0, 1.0], [np.nan, 1.0]])
    for out in (
        K.logsumexp(a, axis=1),
        K.log_mean_exp(a, axis=1),
        K.bernoulli_log_prob(np.array([[0.0, 1.0], [np.nan, 1.0]]), np.ones((2, 2))),
        K.normal_log_prob_diag(a, np.zeros((2, 2)), np.zeros((2, 2))),
        K.kl_normal_std(a, np.zeros((2, 2))),
        K.elbo_iwae(a, np.zeros((2, 2)), np.zeros((2, 2)))[1],
    ):
        assert np.isfinite(out[0]) and np.isnan(out[1])
    assert np.isnan(K.log_softmax(a)[1]).all() and np.isfinite(K.log_softmax(a)[0]).all()
    assert np.isnan(K.softplus(a)[1, 0]) and np.isfinite(K.softplus(a)[1, 1])
    empty = np.zeros((0, 3))
    assert K.logsumexp(empty, axis=1).shape == (0,)
    assert K.log_softmax(empty).shape == (0, 3)
    assert K.softplus(empty).shape == (0, 3)
    assert K.bernoulli_log_prob(empty, empty).shape == (0,)
    assert K.kl_normal_std(empty, empty).shape == (0,)
    assert K.elbo_iwae(empty, empty, empty)[0].shape == (0,)


_SUBPROCESS_SCRIPT = r"""
import json, numba, numpy as np
import lvmref.kernels as K
assert numba.config.DISABLE_JIT
rng = np.random.default_rng(13)
a = rng.normal(scale=5.0, size=(4, 6)); a[0, 1] = -np.inf
x = (rng.random((4, 6)) < 0.5).astype(float)
out = {
    "lse": K.logsumexp(a, axis=1), "lse_all": K.logsumexp(a), "lme": K.log_mean_exp(a, axis=0),
    "lsm": K.log_softmax(a), "sp": K.softplus(a), "ls": K.log_sigmoid(a),
    "bern": K.bernoulli_log_prob(x, a), "norm": K.normal_log_prob_diag(a, x, x - 1.0),
    "kl": K.kl_normal_std(a, x - 1.0), "elbo": K.elbo_iwae(a, x, x - 1.0)[0],
    "iwae": K.elbo_iwae(a, x, x - 1.0)[1],
}
print(json.dumps({k: np.asarray(v).tolist() for k, v in out.items()}))
"""


def test_jit_disabled_path_runs_the_twins():
    """Under NUMBA_DISABLE_JIT=1 the public functions return exactly the twins' results
    (bitwise); the twins agree with the kernels within the bounds tested above."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    rng = np.random.default_rng(13)
    a = rng.normal(scale=5.0, size=(4, 6))
    a[0, 1] = -np.inf
    x = (rng.random((4, 6)) < 0.5).astype(float)
    elbo, iwae = D.elbo_iwae_np(a, x, x - 1.0)
    expected = {
        "lse": L.logsumexp_np(a, 1),
        "lse_all": L.logsumexp_np(a, None),
        "lme": L.logsumexp_np(a, 0) - np.log(4),
        "lsm": L.log_softmax_np(a, 1),
        "sp": D.softplus_np(a),
        "ls": D.log_sigmoid_np(a),
        "bern": D.bernoulli_log_prob_np(x, a, True),
        "norm": D.normal_log_prob_diag_np(a, x, x - 1.0, True),
        "kl": D.kl_normal_std_np(a, x - 1.0),
        "elbo": elbo,
        "iwae": iwae,
    }
    for key, want in expected.items():
        np.testing.assert_array_equal(np.array(res[key], dtype=float), want, err_msg=key)
    # and the jitted path in this process agrees with them within the derived bound
    assert_lse_close(K.logsumexp(a, axis=1), expected["lse"], a, 1)
