"""lvmref.kernels.fastexp: exp_nonpos_nb, expm1_nonpos_nb, tanh_nb and log1p_nonneg_nb against
long double and mpmath, their derived bounds, special values and the NumPy twins."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from support import (
    C_EXP_OURS,
    C_EXPM1_ANY_OURS,
    C_EXPM1_OURS,
    C_LOG1P_OURS,
    C_TANH_OURS,
    U,
    dd_error,
    extended,
    oracle_eps,
    oracles,
    subsample,
)

from lvmref.kernels import fastexp as F

pytestmark = pytest.mark.skipif(
    numba.config.DISABLE_JIT,
    reason="tests the jitted kernels; the NUMBA_DISABLE_JIT=1 path is tested in a subprocess",
)


@pytest.mark.parametrize("oracle", oracles())
def test_exp_nonpos_accuracy(oracle):
    """Relative error <= C_EXP_OURS u (bound derived in lvmref.kernels.fastexp section 1)
    against an extended-precision reference (long double or mpmath, tests/support.py).

    The reference itself is within oracle_eps relative, so the check allows C_EXP_OURS u +
    2 oracle_eps. Points: uniform on [-708, 0], dense near 0, and at the range-reduction
    boundaries (k + 1/2) ln 2 where |r| is largest. Subnormal results get the one final
    rounding (<= 2**-1075 absolute) on top.
    """
    rng = np.random.default_rng(0)
    k = np.arange(0, 1021)
    edges = ((k + 0.5) * np.log(2.0))[:, None] + np.array([-1e-12, 0.0, 1e-12])[None, :]
    t = subsample([-rng.uniform(0, 708.3, 400_000), -rng.uniform(0, 1, 100_000),
                   -rng.uniform(0, 1e-8, 10_000), -edges.ravel(),
                   [-0.0, 0.0, -5e-324, -1e-300]], oracle, n_max=3100)
    t = t[t >= -708.3]  # results stay normal
    hi, lo = extended(lambda m, a: m.exp(a), t, oracle=oracle)
    rel = dd_error(F.exp_nonpos_array_nb(t), hi, lo) / hi
    assert float(rel.max()) <= C_EXP_OURS * U + 2 * oracle_eps(oracle)
    # subnormal range: relative bound plus one rounding at 2**-1075, and the double-double
    # reference is itself only within 2**-1075 there (its low part underflows)
    ts = subsample([-rng.uniform(708.4, 745.1, 50_000)], oracle)
    hi, lo = extended(lambda m, a: m.exp(a), ts, oracle=oracle)
    err = dd_error(F.exp_nonpos_array_nb(ts), hi, lo)
    with np.errstate(under="ignore"):  # the bound itself is subnormal here
        assert bool(np.all(err <= C_EXP_OURS * U * hi + 2.0**-1074))


def test_exp_nonpos_special_values():
    t = np.array([0.0, -0.0, -np.inf, np.nan, -746.0, -800.0, -1e4, -1e308, -745.0])
    got = F.exp_nonpos_array_nb(t)
    assert got[0] == 1.0 and got[1] == 1.0
    assert got[2] == 0.0
    assert np.isnan(got[3])
    assert np.all(got[4:8] == 0.0)
    with np.errstate(under="ignore"):
        ref = np.exp(-745.0)
    assert got[8] == ref == 5e-324  # smallest subnormal, rounded like libm


_MP_FUNCS = {np.exp: "exp", np.expm1: "expm1", np.tanh: "tanh", np.log1p: "log1p"}


def _max_rel_err(got, t, fn, oracle):
    """max |got - ref| / |ref| with ref = fn(t) in extended precision (``fn`` one of
    np.exp, np.expm1, np.tanh, np.log1p); where ref is 0, got must be 0."""
    name = _MP_FUNCS[fn]
    hi, lo = extended(lambda m, a: getattr(m, name)(a), t, oracle=oracle)
    nz = hi != 0
    assert np.all(np.asarray(got)[~nz] == 0)
    return float(np.max(dd_error(np.asarray(got)[nz], hi[nz], lo[nz]) / np.abs(hi[nz])))


@pytest.mark.parametrize("oracle", oracles())
def test_expm1_nonpos_accuracy(oracle):
    """Relative error <= C_EXPM1_OURS u (fastexp section 2) on [-40, 0]: uniform, dense near
    0 and at the reduction boundaries (k + 1/2) ln 2 (k = 0 and k = -1 are the worst)."""
    rng = np.random.default_rng(1)
    k = np.arange(0, 58)
    edges = ((k + 0.5) * np.log(2.0))[:, None] + np.array([-1e-12, 0.0, 1e-12])[None, :]
    t = subsample([-rng.uniform(0, 40, 300_000), -rng.uniform(0, 1, 300_000),
                   -rng.uniform(0, 1e-6, 10_000), -edges.ravel(), [-5e-324, -1e-300]], oracle)
    err = _max_rel_err(F.expm1_nonpos_array_nb(t), t, np.expm1, oracle)
    assert err <= C_EXPM1_OURS * U + 2 * oracle_eps(oracle)


@pytest.mark.parametrize("oracle", oracles())
def test_exp_and_expm1_any_sign_accuracy(oracle):
    """exp_nb <= C_EXP_OURS u (eq. 2.3) for normal results, expm1_nb <= C_EXPM1_ANY_OURS u
    (eq. 2.4) on [-50, 50], around the reduction boundaries and up to the overflow edge."""
    rng = np.random.default_rng(5)
    k = np.arange(-60, 60)
    edges = ((k + 0.5) * np.log(2.0))[:, None] + np.array([-1e-12, 0.0, 1e-12])[None, :]
    t = subsample([rng.uniform(-50, 50, 300_000), rng.uniform(-1, 1, 300_000),
                   rng.uniform(-1e-6, 1e-6, 10_000), edges.ravel(),
                   rng.uniform(-708, 709.7, 100_000), [5e-324, -5e-324, 40.0, 40.5]], oracle)
    e, em = F.exp_expm1_array_nb(t)
    assert _max_rel_err(e, t, np.exp, oracle) <= C_EXP_OURS * U + 2 * oracle_eps(oracle)
    assert (_max_rel_err(em, t, np.expm1, oracle)
            <= C_EXPM1_ANY_OURS * U + 2 * oracle_eps(oracle))
    e, em = F.exp_expm1_array_nb(np.array([709.9, 1e300, np.inf, -np.inf, np.nan, 0.0]))
    np.testing.assert_array_equal(e, [np.inf, np.inf, np.inf, 0.0, np.nan, 1.0])
    np.testing.assert_array_equal(em, [np.inf, np.inf, np.inf, -1.0, np.nan, 0.0])


@pytest.mark.parametrize("oracle", oracles())
def test_tanh_accuracy(oracle):
    """Relative error <= C_TANH_OURS u (eq. 2.2), both signs, tiny to saturated."""
    rng = np.random.default_rng(2)
    x = subsample([rng.normal(size=300_000) * 3, rng.uniform(-0.5, 0.5, 300_000),
                   rng.uniform(-1e-6, 1e-6, 10_000), rng.uniform(-25, 25, 100_000),
                   [5e-324, -5e-324, 1e-300, 20.0, -20.0, 19.0]], oracle)
    err = _max_rel_err(F.tanh_array_nb(x), x, np.tanh, oracle)
    assert err <= C_TANH_OURS * U + 2 * oracle_eps(oracle)


@pytest.mark.parametrize("oracle", oracles())
def test_log1p_nonneg_accuracy(oracle):
    """Relative error <= C_LOG1P_OURS u (section 3) for s in [0, 1e308]: tiny s (the
    rounding error c of 1 + s carries the whole result), around sqrt(2) - 1 (where k
    changes), on [0, 1] (the softplus range) and log-uniform up to 1e308."""
    rng = np.random.default_rng(3)
    s = subsample([rng.uniform(0, 1, 300_000), np.exp(rng.uniform(-700, 709, 300_000)),
                   rng.uniform(0, 1e-8, 10_000),
                   np.sqrt(2.0) - 1 + rng.uniform(-1e-3, 1e-3, 10_000),
                   2.0 ** np.arange(-60, 60),
                   [0.0, 5e-324, 1e-310, 1.0, 2.0**53, 2.0**53 + 2, 1e308]], oracle)
    err = _max_rel_err(F.log1p_nonneg_array_nb(s), s, np.log1p, oracle)
    assert err <= C_LOG1P_OURS * U + 2 * oracle_eps(oracle)


def test_new_functions_special_values():
    e = F.expm1_nonpos_array_nb(np.array([0.0, -0.0, -np.inf, np.nan, -40.0, -1e300]))
    assert e[0] == 0.0 and e[1] == 0.0 and np.isnan(e[3])
    assert np.all(e[[2, 4, 5]] == -1.0)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 20.5, -30.0, 5e-324, -5e-324])
    t = F.tanh_array_nb(x)
    np.testing.assert_array_equal(t, [0.0, -0.0, 1.0, -1.0, np.nan, 1.0, -1.0, 5e-324, -5e-324])
    np.testing.assert_array_equal(np.signbit(t[:2]), [False, True])
    g = F.log1p_nonneg_array_nb(np.array([0.0, np.inf, np.nan, 5e-324, 1e-300]))
    np.testing.assert_array_equal(g, [0.0, np.inf, np.nan, 5e-324, 1e-300])


def test_twins_are_numpy_on_the_clamped_argument():
    """The twins are NumPy's ufuncs; kernels and twins agree within the sum of the bounds
    (libm: <= 1 ulp = 2 u)."""
    rng = np.random.default_rng(4)
    t = -np.abs(rng.normal(size=1000)) * 10
    np.testing.assert_array_equal(F.expm1_nonpos_np(np.array([-50.0, -1.0])),
                                  [-1.0, np.expm1(-1.0)])
    np.testing.assert_allclose(F.expm1_nonpos_array_nb(t), F.expm1_nonpos_np(t),
                               rtol=(C_EXPM1_OURS + 2) * U, atol=0)
    x = rng.normal(size=1000) * 3
    np.testing.assert_allclose(F.tanh_array_nb(x), F.tanh_np(x), rtol=(C_TANH_OURS + 2) * U,
                               atol=0)
    s = np.exp(rng.normal(size=1000) * 5)
    np.testing.assert_allclose(F.log1p_nonneg_array_nb(s), F.log1p_nonneg_np(s),
                               rtol=(C_LOG1P_OURS + 2) * U, atol=0)
