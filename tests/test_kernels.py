"""Tests of lvmref.kernels: Numba kernels against their NumPy twins, SciPy and exact math.

Tolerances are error bounds derived from the algorithms (u = 2**-53, the unit roundoff
of float64; gamma_n = n u / (1 - n u), Higham's bound for summing n terms); each bound is
derived in the docstring of the helper that computes it. A factor 1.001 covers the
second-order terms (relative size O(n u) < 1e-9 for the sizes used here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mpmath
import numba
import numpy as np
import pytest
import scipy.special as sps
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lvmref.kernels as K
from lvmref.kernels import densities as D
from lvmref.kernels import fastexp as F
from lvmref.kernels import lse as L
from lvmref.kernels.dispatch import PARALLEL_MIN_WORK

pytestmark = pytest.mark.skipif(
    numba.config.DISABLE_JIT,
    reason="tests the jitted kernels; the NUMBA_DISABLE_JIT=1 path is tested in a subprocess",
)

U = 2.0**-53
LD_EPS = float(np.finfo(np.longdouble).eps)
HAVE_LONGDOUBLE = LD_EPS <= 2.0**-63  # x87 80-bit or quad; not where long double == double
# Accuracy constants in units of u (relative error bounds):
C_EXP_OURS = 2.35  # exp_nonpos, derived in kernels/_jit.py section 1
C_EXP_LIBM = 2.0  # np.exp / libm exp: <= 1 ulp (measured 0.71 ulp for NumPy's SIMD exp)
C_LOG1P = 2.0  # libm log1p: <= 1 ulp (glibc's documented x86_64 maximum)
SLACK = 1.001  # second-order terms


def gamma(n):
    return n * U / (1.0 - n * U)


@pytest.fixture(scope="session", autouse=True)
def _warm_kernels():
    """Compile (or load from cache) every kernel once before the timed-by-nobody tests."""
    a = np.arange(12.0).reshape(3, 4)
    K.logsumexp(a, axis=1)
    K.log_mean_exp(a)
    K.log_softmax(a)
    K.softplus(a)
    K.log_sigmoid(a)
    K.bernoulli_log_prob(a / 11, a)
    K.bernoulli_log_prob(a / 11, a, reduce=False)
    K.bernoulli_logit_grad(a / 11, a)
    K.normal_log_prob_diag(a, a, a)
    K.normal_log_prob_diag(a, a, a, reduce=False)
    K.kl_normal_std(a, a)
    K.elbo_iwae(a, a, a)
    F.exp_nonpos_array_nb(-a.ravel())
    L.lse_parts_nb(a)
    # jitted building blocks not used by the public wrappers (see _api docstring)
    D.softplus_nb(a.ravel())
    D.log_sigmoid_nb(a.ravel())
    D.bernoulli_log_prob_rows_nb(a / 11, a)
    D.bernoulli_log_prob_elem_nb(a / 11, a)
    D.kl_normal_std_rows_nb(a, a)


# --------------------------------------------------------------------------- tolerances


@np.errstate(under="ignore")  # reference-side arithmetic
def lse_tol(ref, a, axis):
    """Bound on |lse_1 - lse_2| for two max-split evaluations of eq. (2.1) on ``a``.

    Both evaluations form the same shifts t_i = fl(a_i - m) (m is the exact row maximum),
    so they differ only through: the exponentials (ours <= C_EXP_OURS u, NumPy's <=
    C_EXP_LIBM u, relative), the summation of n nonnegative terms (<= gamma_n each), log1p
    (<= C_LOG1P u each, and its condition number S/((1+S) log1p S) <= 1 so relative errors
    of S pass to L = log1p(S) undamplified at worst), and the final rounding of m + L
    (<= u |r| each). Hence
        |r_1 - r_2| <= 2 u |r| + L [(C_EXP_OURS + C_EXP_LIBM + 2 C_LOG1P) u + 2 gamma_n],
    with L <= |ref - m| + u |ref|. (Relative to |r| this is ~1 ulp whenever L << |r|.)
    """
    n = a.size if axis is None else a.shape[axis]
    with np.errstate(invalid="ignore"):
        if a.size:
            m = np.max(a, axis=axis, keepdims=True).reshape(np.shape(ref))
        else:
            m = np.full(np.shape(ref), -np.inf)
        big_l = np.abs(ref - m) + U * np.abs(ref)
    coef = (C_EXP_OURS + C_EXP_LIBM + 2 * C_LOG1P) * U + 2 * gamma(n)
    return SLACK * (2 * U * np.abs(ref) + big_l * coef)


@np.errstate(under="ignore")  # reference-side arithmetic
def assert_lse_close(got, ref, a, axis):
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape
    special = ~np.isfinite(ref)
    # special values (NaN, +-inf) must match exactly
    np.testing.assert_array_equal(got[special], ref[special])
    tol = lse_tol(ref, a, axis)
    with np.errstate(invalid="ignore"):
        err = np.abs(got - ref)
    bad = ~special & ~(err <= tol)
    assert not bad.any(), (got[bad], ref[bad], tol[bad])


@np.errstate(under="ignore")  # reference-side arithmetic
def lsm_tol_vs_scipy(ls, n):
    """Bound on |ours - scipy| for log_softmax entries ``ls`` of rows of length n.

    Both compute t_i = fl(a_i - m) identically. SciPy subtracts log(fl(sum_i exp t_i))
    (the maximal term included): error <= (C_EXP_LIBM u + gamma_n) [exp and sum, relative
    to 1 + S, so absolute after log] + C_LOG1P u L. Ours subtracts log1p(S): error <=
    L [(C_EXP_OURS + C_LOG1P) u + gamma_n]. Each final subtraction rounds (<= u |ls|).
    L = log(1 + S) <= log n.
    """
    big_l = np.log(max(n, 1))
    return SLACK * (
        2 * U * np.abs(ls)
        + C_EXP_LIBM * U
        + gamma(n)
        + big_l * ((C_EXP_OURS + 2 * C_LOG1P) * U + gamma(n))
    )


@np.errstate(under="ignore")  # reference-side arithmetic
def softplus_tol(x, res):
    """Bound on |ours - ref| for two evaluations of max(x,0) + log1p(exp(-|x|)) (or the
    log-sigmoid form): the log1p term l has relative error <= (C_EXP + C_LOG1P) u (exp's
    error passes through log1p with condition number <= 1), the final add/subtract rounds
    (u |res|). Two such evaluations: 2 [(C_EXP_LIBM + C_LOG1P) u l + u |res|]."""
    with np.errstate(under="ignore"):
        ell = np.log1p(np.exp(-np.abs(x)))
    return SLACK * 2 * ((C_EXP_LIBM + C_LOG1P) * U * ell + U * np.abs(res))


# --------------------------------------------------------------------------- strategies

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
elements = st.one_of(finite, finite, finite, st.just(-np.inf))


@st.composite
def array_and_axis(draw, min_side=0, max_dims=3, elems=elements):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=min_side, max_side=6))
    a = draw(hnp.arrays(np.float64, shape, elements=elems))
    ndim = len(shape)
    axis = draw(st.sampled_from([None, *range(ndim), -1]))
    return a, axis


# --------------------------------------------------------------------------- exp_nonpos


@pytest.mark.skipif(not HAVE_LONGDOUBLE, reason="needs an extended-precision long double")
def test_exp_nonpos_accuracy():
    """Relative error <= 2.35 u (bound derived in _jit.py section 1) against long double.

    The reference itself is within LD_EPS relative, so the check allows 2.35 u + 2 LD_EPS.
    Points: uniform on [-708, 0], dense near 0, and at the range-reduction boundaries
    (k + 1/2) ln 2 where |r| is largest. Subnormal results get the one final rounding
    (<= 2**-1075 absolute) on top.
    """
    rng = np.random.default_rng(0)
    k = np.arange(0, 1021)
    edges = ((k + 0.5) * np.log(2.0))[:, None] + np.array([-1e-12, 0.0, 1e-12])[None, :]
    t = np.concatenate(
        [
            -rng.uniform(0, 708.3, 400_000),
            -rng.uniform(0, 1, 100_000),
            -rng.uniform(0, 1e-8, 10_000),
            -edges.ravel(),
            [-0.0, 0.0, -5e-324, -1e-300],
        ]
    )
    t = t[t >= -708.3]  # results stay normal
    got = F.exp_nonpos_array_nb(t).astype(np.longdouble)
    ref = np.exp(t.astype(np.longdouble))
    rel = np.abs(got - ref) / ref
    assert float(rel.max()) <= C_EXP_OURS * U + 2 * LD_EPS
    # subnormal range: relative bound plus one rounding at 2**-1075
    ts = -rng.uniform(708.4, 745.1, 50_000)
    got = F.exp_nonpos_array_nb(ts).astype(np.longdouble)
    ref = np.exp(ts.astype(np.longdouble))
    err = np.abs(got - ref)
    assert bool(np.all(err <= C_EXP_OURS * U * ref + np.longdouble(2.0) ** -1075))


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


# --------------------------------------------------------------------------- logsumexp


@np.errstate(under="ignore")  # reference-side arithmetic
def scipy_lse(a, axis):
    """scipy.special.logsumexp; for axis=None on the flattened array (SciPy 1.17 raises
    IndexError for an empty array of ndim >= 2 with axis=None; its 1-D result is -inf)."""
    return sps.logsumexp(a.ravel()) if axis is None else sps.logsumexp(a, axis=axis)


@given(array_and_axis())
def test_logsumexp_matches_scipy(aa):
    a, axis = aa
    ref = scipy_lse(a, axis)
    got = K.logsumexp(a, axis=axis)
    assert_lse_close(got, ref, a, axis)


@given(array_and_axis())
def test_logsumexp_jit_matches_twin(aa):
    a, axis = aa
    ax = None if axis is None else axis % a.ndim
    assert_lse_close(K.logsumexp(a, axis=axis), L.logsumexp_np(a, ax), a, axis)


@pytest.mark.parametrize("shape", [(7,), (4, 9), (3, 4, 5), (2, 3000), (1, 5000), (3000, 3)])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_shapes_axes_keepdims(shape, axis, keepdims):
    if axis == 1 and len(shape) == 1:
        axis = -1
    rng = np.random.default_rng(len(shape) + (0 if axis is None else axis + 7))
    a = rng.normal(scale=30.0, size=shape)
    ref = sps.logsumexp(a, axis=axis, keepdims=keepdims)
    got = K.logsumexp(a, axis=axis, keepdims=keepdims)
    assert got.shape == np.shape(ref)
    assert_lse_close(got, ref, a, axis)


def test_logsumexp_long_rows_and_ties():
    """Rows longer than the block buffer (chunked path) and exact ties of the maximum."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(7, 2 * 2048 + 37))
    a[0, :] = 1.5  # all tied: lse = 1.5 + log(n)
    a[1, ::3] = a[1].max() + 1.0  # many ties at the max
    a[2, ::2] = -np.inf
    a[3, 4000] = np.nan
    a[4, 17] = np.inf
    a[5, :] = -np.inf
    a[6, 100:] = -800.0  # terms that underflow to 0
    with np.errstate(under="ignore"):
        ref = sps.logsumexp(a, axis=1)
    assert_lse_close(K.logsumexp(a, axis=1), ref, a, 1)
    assert_lse_close(K.logsumexp(a[2]), sps.logsumexp(a[2]), a[2], None)
    b = np.full((4, 5), -2.0)
    assert_lse_close(K.logsumexp(b, axis=1), sps.logsumexp(b, axis=1), b, 1)


SPECIAL_CASES = [
    ([], -np.inf),
    ([-np.inf], -np.inf),
    ([-np.inf, -np.inf], -np.inf),
    ([np.inf, 1.0], np.inf),
    ([np.inf, -np.inf], np.inf),
    ([np.inf, np.inf], np.inf),
    ([1.0, np.inf, np.nan], np.nan),
    ([-np.inf, np.nan], np.nan),
    ([np.nan], np.nan),
    ([np.nan, np.nan, 1.0], np.nan),
    ([0.0, -40.0], np.log1p(np.exp(-40.0))),
    ([0.0, -720.0], np.exp(-720.0)),  # subnormal result kept
    ([0.0, -800.0], 0.0),
    ([1e308, 1e308], 1e308),  # no overflow in the shift
    ([-1e4, 1e4], 1e4),
    ([1e4, 1e4 - 30.0], 1e4 + np.log1p(np.exp(-30.0))),
]


@pytest.mark.parametrize(("values", "expected"), SPECIAL_CASES)
def test_logsumexp_special_values(values, expected):
    a = np.array(values, dtype=np.float64)
    with np.errstate(under="ignore"):
        ref = sps.logsumexp(a)
    np.testing.assert_array_equal(ref, expected)  # the cases state SciPy's semantics
    got = K.logsumexp(a)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(L.logsumexp_np(a), expected)
    # the same rows inside a 2-D batch (other rows unaffected)
    if a.size:
        b = np.vstack([a, np.zeros_like(a)])
        got2 = K.logsumexp(b, axis=1)
        np.testing.assert_array_equal(got2[0], expected)
        assert_lse_close(got2[1:], sps.logsumexp(b[1:], axis=1), b[1:], 1)


def test_logsumexp_small_term_not_rounded_away():
    """max-split + log1p: lse([0, -40]) = log1p(e^-40) = 4.248e-18, not 0."""
    got = float(K.logsumexp([0.0, -40.0]))
    exact = 4.248354255291589e-18  # log1p(exp(-40)) to 16 digits (exp(-40) - exp(-80)/2)
    assert abs(got - exact) <= 4 * U * exact


@given(
    st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=20),
    st.integers(-(2**20), 2**20),
)
def test_logsumexp_shift_invariance(ints, c):
    """lse(x + c) = lse(x) + c. x are multiples of 2**-10 and c an integer, so x + c, the
    shifts t_i and hence S and L are bitwise identical in both evaluations; only the final
    roundings differ: |fl((m + c) + L) - fl(fl(m + L) + c)| <= u (2 |r| + |r - c|)."""
    x = np.array(ints, dtype=np.float64) / 1024.0
    c = float(c)
    r1 = float(K.logsumexp(x + c))
    r0 = float(K.logsumexp(x))
    assert abs(r1 - (r0 + c)) <= SLACK * U * (2 * abs(r1) + abs(r0))
    np.testing.assert_array_equal(K.log_softmax(x + c), K.log_softmax(x))  # exact


@given(array_and_axis(min_side=1, elems=finite))
def test_logsumexp_between_max_and_max_plus_log_n(aa):
    """max <= lse (exact: fl(m + L) >= m since L >= 0) and
    lse <= m + log n + L_err + roundings, L_err <= log n ((C_EXP_OURS + C_LOG1P) u + gamma_n)."""
    a, axis = aa
    n = a.size if axis is None else a.shape[axis]
    m = np.max(a, axis=axis)
    r = K.logsumexp(a, axis=axis)
    assert np.all(m <= r)
    ln = np.log(n)
    with np.errstate(under="ignore"):
        upper = m + ln + SLACK * (ln * ((C_EXP_OURS + C_LOG1P) * U + gamma(n))
                                  + 2 * U * np.abs(r))
    assert np.all(r <= upper)


def test_logsumexp_parallel_equals_serial():
    """Parallel blocks reduce each row with the same serial code: bitwise equal results,
    whatever the thread count."""
    rng = np.random.default_rng(5)
    a = rng.normal(scale=5.0, size=(4001, 37))
    a[::97, 3] = -np.inf
    a[5, 7] = np.nan
    ref_mx, ref_l = L.lse_parts_nb_serial(a)
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            mx, lg = L.lse_parts_nb(a)
            np.testing.assert_array_equal(mx, ref_mx)
            np.testing.assert_array_equal(lg, ref_l)
    finally:
        numba.set_num_threads(before)
    big = rng.normal(size=(PARALLEL_MIN_WORK // 8 + 3, 8))  # goes through the parallel path
    assert_lse_close(K.logsumexp(big, axis=1), sps.logsumexp(big, axis=1), big, 1)


def test_logsumexp_stable_for_large_logits():
    rng = np.random.default_rng(6)
    a = rng.uniform(-1e4, 1e4, size=(50, 20))
    a[:, 0] = 1e4
    a[:, 1] = -1e4
    with np.errstate(all="raise"):
        got = K.logsumexp(a, axis=1)
    assert np.all(np.isfinite(got))
    with np.errstate(under="ignore"):
        ref = sps.logsumexp(a, axis=1)
    assert_lse_close(got, ref, a, 1)


# --------------------------------------------------------------------------- log_mean_exp


@given(array_and_axis(min_side=1))
def test_log_mean_exp_is_lse_minus_log_n(aa):
    a, axis = aa
    n = a.size if axis is None else a.shape[axis]
    ref = scipy_lse(a, axis) - np.log(n)
    got = K.log_mean_exp(a, axis=axis)
    special = ~np.isfinite(ref)
    np.testing.assert_array_equal(got[special], ref[special])
    # lse bound plus one extra rounding of each subtraction of log n
    with np.errstate(invalid="ignore"):
        tol = lse_tol(ref + np.log(n), a, axis) + 2 * U * (np.abs(ref) + np.log(n))
    assert np.all(np.abs(got[~special] - ref[~special]) <= tol[~special])


def test_log_mean_exp_keepdims_and_empty():
    a = np.arange(6.0).reshape(2, 3)
    assert K.log_mean_exp(a, axis=1, keepdims=True).shape == (2, 1)
    assert K.log_mean_exp(np.zeros((0, 3)), axis=1).shape == (0,)
    with pytest.raises(ValueError, match="a must have at least one element"):
        K.log_mean_exp(np.zeros((3, 0)), axis=1)
    with pytest.raises(ValueError, match="a must have at least one element"):
        K.log_mean_exp([])


# --------------------------------------------------------------------------- log_softmax


@given(array_and_axis(min_side=1))
def test_log_softmax_matches_scipy_and_twin(aa):
    a, axis = aa
    ax = -1 if axis is None else axis
    with np.errstate(invalid="ignore", under="ignore"):
        ref = sps.log_softmax(a, axis=ax)
    got = K.log_softmax(a, axis=ax)
    assert got.shape == a.shape
    special = ~np.isfinite(ref)
    np.testing.assert_array_equal(got[special], ref[special])
    n = a.shape[ax]
    ok = ~special
    assert np.all(np.abs(got[ok] - ref[ok]) <= lsm_tol_vs_scipy(ref[ok], n))
    twin = L.log_softmax_np(a, ax % a.ndim)
    np.testing.assert_array_equal(np.isfinite(twin), np.isfinite(got))
    np.testing.assert_array_equal(got[special], twin[special])
    # two log1p-based evaluations: L [(C_EXP_OURS + C_EXP_LIBM + 2 C_LOG1P) u + 2 gamma_n]
    tw_tol = SLACK * (
        2 * U * np.abs(twin)
        + np.log(n) * ((C_EXP_OURS + C_EXP_LIBM + 2 * C_LOG1P) * U + 2 * gamma(n))
    )
    assert np.all(np.abs(got[ok] - twin[ok]) <= tw_tol[ok])


@given(array_and_axis(min_side=1, elems=finite))
def test_exp_log_softmax_sums_to_one(aa):
    """|sum exp(ls) - 1| <= u (7.35 log n + 2) + gamma_n (log n + 1): the errors of
    ls_i = fl(fl(t_i) - L) weighted by p_i sum to <= u (H + (L + H)) + L-error, with the
    entropy H <= log n and L <= log n; then np.exp (2 u) and the sum (gamma_n)."""
    a, axis = aa
    ax = -1 if axis is None else axis
    n = a.shape[ax]
    with np.errstate(under="ignore"):
        s = np.exp(K.log_softmax(a, axis=ax)).sum(axis=ax)
    ln = np.log(n)
    tol = SLACK * (U * (7.35 * ln + 2) + gamma(n) * (ln + 1))
    assert np.all(np.abs(s - 1.0) <= tol)


def test_log_softmax_keeps_tiny_probabilities_and_large_offsets():
    got = K.log_softmax(np.array([0.0, -40.0]))
    assert got[0] == -np.log1p(np.exp(-40.0))  # scipy gives 0 here (log(1 + 4e-18))
    big = np.array([[1e4, 1e4 - 1.0, -1e4]])
    got = K.log_softmax(big)
    ref = K.log_softmax(np.array([[0.0, -1.0, -2e4]]))  # exact shift by 1e4
    np.testing.assert_array_equal(got, ref)
    assert np.all(np.isfinite(got))


def test_log_softmax_axis0_3d():
    rng = np.random.default_rng(8)
    a = rng.normal(size=(4, 3, 5))
    for ax in (0, 1, 2, -2):
        got = K.log_softmax(a, axis=ax)
        ref = sps.log_softmax(a, axis=ax)
        assert np.all(np.abs(got - ref) <= lsm_tol_vs_scipy(ref, a.shape[ax]))


# --------------------------------------------------------------------------- softplus etc.

wide = st.floats(-1e300, 1e300, allow_nan=False)


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=8), elements=wide))
def test_softplus_and_log_sigmoid_vs_scipy(x):
    with np.errstate(under="ignore"):
        sp_ref = np.logaddexp(0.0, x)
        ls_ref = sps.log_expit(x)
    sp = K.softplus(x)
    ls = K.log_sigmoid(x)
    assert sp.shape == x.shape and ls.shape == x.shape
    assert np.all(np.abs(sp - sp_ref) <= softplus_tol(x, sp_ref))
    assert np.all(np.abs(ls - ls_ref) <= softplus_tol(x, ls_ref))
    # the jitted kernels (scalar libm exp/log1p) against SciPy and the twins
    sp_j = D.softplus_nb(x.ravel()).reshape(x.shape)
    ls_j = D.log_sigmoid_nb(x.ravel()).reshape(x.shape)
    assert np.all(np.abs(sp_j - sp_ref) <= softplus_tol(x, sp_ref))
    assert np.all(np.abs(ls_j - ls_ref) <= softplus_tol(x, ls_ref))
    assert np.all(np.abs(sp_j - D.softplus_np(x)) <= softplus_tol(x, sp_ref))
    assert np.all(np.abs(ls_j - D.log_sigmoid_np(x)) <= softplus_tol(x, ls_ref))


def test_softplus_log_sigmoid_extremes():
    x = np.array([-np.inf, -1e308, -1e4, -745.0, -40.0, 0.0, 40.0, 1e4, 1e308, np.inf, np.nan])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        sp = K.softplus(x)
        ls = K.log_sigmoid(x)
    np.testing.assert_array_equal(D.softplus_nb(x), sp)
    np.testing.assert_array_equal(D.log_sigmoid_nb(x), ls)
    assert sp[0] == 0.0 and sp[1] == 0.0 and sp[2] == 0.0
    assert sp[5] == np.log(2.0)
    assert sp[7] == 1e4 and sp[8] == 1e308 and sp[9] == np.inf
    assert ls[2] == -1e4 and ls[1] == -1e308 and ls[0] == -np.inf
    assert ls[7] == 0.0 and ls[9] == 0.0
    assert ls[6] == -np.log1p(np.exp(-40.0))  # not rounded to 0
    assert np.isnan(sp[10]) and np.isnan(ls[10])
    # the identity log sigma(x) = -softplus(-x) holds exactly for these formulas
    finite = np.isfinite(x)
    np.testing.assert_array_equal(ls[finite], -K.softplus(-x[finite]))


# --------------------------------------------------------------------------- Bernoulli


@np.errstate(under="ignore")  # reference-side arithmetic
def _bern_ref_binary(x, logits):
    """log Bern(x | sigma(l)) for binary x via scipy: log_expit(l) or log_expit(-l)."""
    return np.where(x == 1.0, sps.log_expit(logits), sps.log_expit(-logits))


@given(
    st.integers(1, 5),
    st.integers(1, 7),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1.0, 30.0, 1e4]),
)
def test_bernoulli_binary_vs_scipy(n, d, seed, scale):
    """Binary x: (x l - max(l, 0)) is exact, so each evaluation's error is that of the
    log1p term plus one rounding (as softplus_tol); row sums add gamma_d sum |terms| each."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, d)) < 0.5).astype(np.float64)
    logits = rng.uniform(-scale, scale, (n, d))
    ref = _bern_ref_binary(x, logits)
    got = K.bernoulli_log_prob(x, logits, reduce=False)
    tol = softplus_tol(logits, ref)
    assert np.all(np.abs(got - ref) <= tol)
    rows = K.bernoulli_log_prob(x, logits)
    assert rows.shape == (n,)
    with np.errstate(under="ignore"):
        row_tol = tol.sum(axis=1) + SLACK * 2 * gamma(d) * np.abs(ref).sum(axis=1)
    assert np.all(np.abs(rows - ref.sum(axis=1)) <= row_tol)
    # the jitted kernels
    assert np.all(np.abs(D.bernoulli_log_prob_elem_nb(x, logits) - ref) <= tol)
    assert np.all(np.abs(D.bernoulli_log_prob_rows_nb(x, logits) - ref.sum(axis=1)) <= row_tol)
    twin = D.bernoulli_log_prob_np(x, logits, True)
    assert np.all(np.abs(D.bernoulli_log_prob_rows_nb(x, logits) - twin) <= 2 * row_tol)


def test_bernoulli_grey_levels_vs_direct_formula():
    """x in [0, 1]: compare with x log sigma(l) + (1 - x) log sigma(-l) (SciPy). Each side
    has <= 8 roundings, each <= 2 u times a magnitude bounded by
    M = |x l| + |l| + |log sigma(l)| + |log sigma(-l)| + 1, so |diff| <= 32 u M."""
    rng = np.random.default_rng(9)
    x = rng.random((40, 6))
    logits = rng.normal(scale=20.0, size=(40, 6))
    a, b = sps.log_expit(logits), sps.log_expit(-logits)
    ref = x * a + (1.0 - x) * b
    got = K.bernoulli_log_prob(x, logits, reduce=False)
    big_m = np.abs(x * logits) + np.abs(logits) + np.abs(a) + np.abs(b) + 1.0
    assert np.all(np.abs(got - ref) <= 32 * U * big_m)
    assert np.all(np.abs(D.bernoulli_log_prob_elem_nb(x, logits) - ref) <= 32 * U * big_m)


def test_bernoulli_extreme_logits():
    x = np.array([[1.0, 0.0, 1.0, 0.0, 1.0]])
    lg = np.array([[1e4, 1e4, -1e4, -1e4, 40.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = K.bernoulli_log_prob(x, lg, reduce=False)
    np.testing.assert_array_equal(D.bernoulli_log_prob_elem_nb(x, lg), got)
    np.testing.assert_array_equal(got[0, :4], [0.0, -1e4, -1e4, 0.0])
    assert got[0, 4] == -np.log1p(np.exp(-40.0))  # x = 1, l = 40: -4.2e-18, not 0
    assert K.bernoulli_log_prob(x, lg)[0] == -2e4 + got[0, 4]


def test_bernoulli_logit_grad_exact_for_confident_units():
    """x - sigmoid(l) in the form x sigmoid(-l) - (1 - x) sigmoid(l): against SciPy's
    expit (an independent sigmoid) to 2 ulp for |l| up to 1e4, including the units where
    the literal difference is 0 (x = 1, l >= 37.5) and grey levels."""
    rng = np.random.default_rng(12)
    logits = np.concatenate([rng.uniform(-50, 50, 400), [-1e4, -745.0, -40.0, 0.0, 40.0,
                                                          745.0, 1e4]])
    x = (rng.random(logits.shape) < 0.5).astype(float)
    got = K.bernoulli_logit_grad(x, logits)
    with np.errstate(under="ignore"):
        want = np.where(x == 1.0, sps.expit(-logits), -sps.expit(logits))
        # atol: sigmoid(-745) = 4.9e-324 is the smallest subnormal (SciPy rounds it to 0)
        np.testing.assert_allclose(got, want, rtol=4 * U, atol=5e-324)
    assert K.bernoulli_logit_grad([1.0], [40.0])[0] == sps.expit(-40.0) > 0.0
    grey = rng.random(50)
    lg = rng.uniform(-5, 5, 50)
    np.testing.assert_allclose(K.bernoulli_logit_grad(grey, lg), grey - sps.expit(lg),
                               rtol=0, atol=4 * U)
    with pytest.raises(ValueError, match="x must lie in"):
        K.bernoulli_logit_grad([2.0], [0.0])
    with pytest.raises(ValueError, match="x and logits must have the same shape"):
        K.bernoulli_logit_grad([1.0, 0.0], [0.0])


def test_bernoulli_x_out_of_range():
    with pytest.raises(ValueError, match="x must lie in"):
        K.bernoulli_log_prob([[2.0]], [[0.0]])
    with pytest.raises(ValueError, match="x must lie in"):
        K.bernoulli_log_prob([[-0.5]], [[0.0]])


# --------------------------------------------------------------------------- Gaussian


def normal_ref_ld(x, mean, log_var):
    """Direct formula -1/2 (log 2 pi + lv + (x - mu)^2 exp(-lv)) in long double."""
    xl, ml, vl = (np.asarray(v, dtype=np.longdouble) for v in (x, mean, log_var))
    log2pi = np.log(2 * np.pi * np.longdouble(1))  # pi rounded to double: error 1e-17 < u
    return -0.5 * (log2pi + vl + (xl - ml) ** 2 * np.exp(-vl))


def normal_tol(q, log_var):
    """Ours: dx (u), z = dx exp(-lv/2) (exp C_EXP_LIBM u, product u), z^2 (doubles the
    relative error, plus u): quad within 9 u; then (log 2pi + lv) and the add round
    (u each, of magnitudes <= 1.84 + |lv| + quad) and log 2pi is within u/2:
    |err| <= u (10 q + |lv| + 2.3) with q = quad / 2; plus the long double reference
    (<= 8 LD_EPS (q + |lv| + 1), and 2 pi rounded to double: <= 2 u / 2)."""
    return SLACK * (U * (10 * q + np.abs(log_var) + 2.3 + 1.0)) + 8 * LD_EPS * (
        q + np.abs(log_var) + 1
    )


@pytest.mark.skipif(not HAVE_LONGDOUBLE, reason="needs an extended-precision long double")
@given(
    st.integers(1, 4),
    st.integers(1, 6),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1.0, 10.0, 300.0]),
)
def test_normal_log_prob_diag_vs_direct_formula(n, d, seed, lv_scale):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(n, d))
    mean = rng.normal(size=(n, d))
    log_var = rng.uniform(-lv_scale, lv_scale, size=(n, d))
    ref = normal_ref_ld(x, mean, log_var)
    q = np.abs(ref.astype(np.float64) * 2 + np.log(2 * np.pi) + log_var) / 2
    got = K.normal_log_prob_diag(x, mean, log_var, reduce=False)
    tol = normal_tol(q, log_var)
    assert np.all(np.abs(got - ref) <= tol)
    rows = K.normal_log_prob_diag(x, mean, log_var)
    row_tol = tol.sum(axis=1) + SLACK * 2 * gamma(d) * np.abs(ref).sum(axis=1).astype(float)
    assert np.all(np.abs(rows - ref.sum(axis=1)) <= row_tol)
    twin = D.normal_log_prob_diag_np(x, mean, log_var, True)
    assert np.all(np.abs(rows - twin) <= 2 * row_tol)


def test_normal_log_prob_diag_vs_scipy_stats():
    from scipy.stats import norm

    rng = np.random.default_rng(10)
    x, mean = rng.normal(size=(2, 50))
    log_var = rng.uniform(-5, 5, 50)
    ref = norm.logpdf(x, loc=mean, scale=np.exp(0.5 * log_var))
    got = K.normal_log_prob_diag(x[None], mean[None], log_var[None], reduce=False)[0]
    q = 0.5 * (x - mean) ** 2 * np.exp(-log_var)
    # scipy: scale (2u), z (4u), z^2 (9u), log(scale) (2u + 2u |lv|/2), 3 roundings:
    # u (11 q + 1.5 |lv| + 4.8); ours u (10 q + |lv| + 2.3)
    assert np.all(np.abs(got - ref) <= SLACK * U * (21 * q + 2.5 * np.abs(log_var) + 7.1))


def test_normal_log_prob_extremes():
    x = np.array([[0.0, 1.0, 1e-200, 0.0]])
    mean = np.array([[0.0, 0.0, 0.0, 0.0]])
    lv = np.array([[-1e4, 1e4, -800.0, 1e4]])
    with np.errstate(all="raise"):
        got = K.normal_log_prob_diag(x, mean, lv, reduce=False)[0]
    log2pi = np.log(2 * np.pi)
    assert got[0] == -0.5 * (log2pi - 1e4)  # x == mean: no 0 * inf
    assert got[1] == -0.5 * (log2pi + 1e4)  # quad underflows to 0 correctly (e^-1e4)
    # 1e-400 * e^800 = 2.7e-53: finite although dx^2 alone would underflow
    assert abs(got[2] - (-0.5 * (log2pi - 800.0))) <= 1e-12
    assert np.isfinite(got).all()
    twin = D.normal_log_prob_diag_np(x, mean, lv, False)[0]
    np.testing.assert_allclose(got, twin, rtol=4 * U, atol=0)


# --------------------------------------------------------------------------- KL


def kl_tol(mean, log_var):
    """Ours per term: expm1 (<= 2 u |E|), E - lv and + mu^2 round (<= u term each, since
    0 <= E - lv <= term), mu^2 (u mu^2); the sum adds gamma_d sum(terms). The long double
    reference exp(lv) - 1 - lv + mu^2 is within 4 LD_EPS (e^lv + 1 + |lv| + mu^2)."""
    d = mean.shape[-1]
    e = np.abs(np.expm1(log_var))
    terms = (np.expm1(log_var) - log_var) + mean * mean
    ours = 2 * U * e + 2 * U * terms + U * mean * mean
    ref_err = 4 * LD_EPS * (np.exp(log_var) + 1 + np.abs(log_var) + mean * mean)
    return 0.5 * SLACK * ((ours + ref_err).sum(-1) + gamma(d) * terms.sum(-1))


@pytest.mark.skipif(not HAVE_LONGDOUBLE, reason="needs an extended-precision long double")
@given(st.integers(1, 5), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_kl_normal_std_vs_direct_formula(n, d, seed):
    rng = np.random.default_rng(seed)
    mean = rng.normal(scale=2.0, size=(n, d))
    log_var = rng.normal(scale=3.0, size=(n, d))
    ml, vl = mean.astype(np.longdouble), log_var.astype(np.longdouble)
    ref = 0.5 * np.sum(np.exp(vl) - 1 - vl + ml * ml, axis=-1)
    got = K.kl_normal_std(mean, log_var)
    assert got.shape == (n,)
    assert np.all(np.abs(got - ref) <= kl_tol(mean, log_var))
    jit = D.kl_normal_std_rows_nb(mean, log_var)
    assert np.all(np.abs(jit - ref) <= kl_tol(mean, log_var))
    assert np.all(np.abs(jit - got) <= 2 * kl_tol(mean, log_var))


@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 5)),
        elements=st.floats(-700, 700),
    ),
    st.data(),
)
def test_kl_nonnegative_and_zero_only_at_standard_normal(mean, data):
    """KL >= 0 exactly (each term (expm1(lv) - lv) + mu^2 >= 0 since a faithful expm1(lv)
    >= lv). KL > 0 whenever some mu^2 is a normal number or |lv| >= 2**-50 (so that
    expm1(lv) - lv ~ lv^2/2 exceeds half an ulp of lv); KL == 0 at mu = 0, lv = 0."""
    log_var = data.draw(hnp.arrays(np.float64, mean.shape, elements=st.floats(-700, 700)))
    informative = (np.abs(mean) >= 1.5e-154) | (np.abs(log_var) >= 2.0**-50)
    for kl in (K.kl_normal_std(mean, log_var), D.kl_normal_std_rows_nb(mean, log_var)):
        assert np.all(kl >= 0.0)
        assert np.all(kl[informative.any(axis=1)] > 0.0)
    zero = K.kl_normal_std(np.zeros_like(mean), np.zeros_like(mean))
    np.testing.assert_array_equal(zero, 0.0)


def test_kl_extremes():
    mean = np.array([[0.0, 0.0], [1e4, 0.0]])
    lv = np.array([[-1e4, 0.0], [0.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        kl = K.kl_normal_std(mean, lv)
    np.testing.assert_array_equal(D.kl_normal_std_rows_nb(mean, lv), kl)
    assert kl[0] == 0.5 * (1e4 - 1.0)  # expm1(-1e4) = -1 exactly
    assert kl[1] == 0.5 * 1e8


def _mp_kl_term(s):
    """(e^s - 1 - s) / 2 to 50 significant digits (mpmath), rounded once to float64.

    For |s| < 1 the Taylor series s^2 sum_k s^(k-2)/k! is summed in mpmath (60 terms,
    remainder < 1e-80 relative): expm1(t) - t would lose the leading digits even there."""
    with mpmath.workdps(50):
        t = mpmath.mpf(float(s))
        if abs(t) < 1:
            v = t * t * mpmath.fsum(t ** (k - 2) / mpmath.factorial(k) for k in range(2, 62))
        else:
            v = mpmath.expm1(t) - t
        return float(v / 2)


def test_kl_collapsed_unit_is_accurate_for_all_log_var():
    """KL of N(0, e^s) to N(0, 1) is (e^s - 1 - s)/2; expm1(s) - s cancels near s = 0
    (relative error 5e-5 at s = 1e-12 before the series). Target <= 1e-14 relative,
    against a 50-digit mpmath evaluation; public function, Numba rows kernel and twin."""
    # |s| >= 1e-150, so that (e^s - 1 - s)/2 ~ s^2/4 is a normal float64
    mags = np.concatenate([10.0 ** np.arange(-150, 3, 0.5), [0.49999999, 0.5, 0.50000001]])
    rng = np.random.default_rng(5)
    s = np.concatenate([mags, -mags, rng.uniform(-3, 3, 200), rng.uniform(-40, 700, 50)])
    s = s[np.abs(s) <= 709.0]
    ref = np.array([_mp_kl_term(v) for v in s])
    mean = np.zeros((s.size, 1))
    for got in (K.kl_normal_std(mean, s[:, None]), D.kl_normal_std_rows_nb(mean, s[:, None]),
                D.kl_normal_std_np(mean, s[:, None])):
        rel = np.abs(got - ref) / ref
        assert rel.max() <= 1e-14, (s[np.argmax(rel)], rel.max())
    with np.errstate(under="ignore"):
        series = D.expm1_minus_x_np(s) / 2
    np.testing.assert_array_equal(series, D.kl_normal_std_np(mean, s[:, None]))
    # beyond float64: e^s - 1 - s overflows, the KL is +inf (no FloatingPointError)
    assert K.kl_normal_std([[0.0]], [[800.0]])[0] == np.inf
    assert D.kl_normal_std_rows_nb(np.zeros((1, 1)), np.array([[800.0]]))[0] == np.inf


def _mp_normal_logpdf(x, mean, lv):
    with mpmath.workdps(60):
        x, m, v = (mpmath.mpf(float(t)) for t in (x, mean, lv))
        q = (x - m) ** 2 * mpmath.exp(-v)
        return float(-(mpmath.log(2 * mpmath.pi) + v + q) / 2)


def test_normal_log_prob_finite_where_an_intermediate_overflows():
    """x - mean or exp(-lv/2) overflowing gave NaN or a wrong inf; the answer is finite
    (or -inf when z^2 itself is beyond float64). 60-digit mpmath reference."""
    x = np.array([[1e308, 1e-300, 1e200, 1e308, -1e308]])
    mean = np.array([[-1e308, 0.0, -1e200, -1e308, 1e308]])
    lv = np.array([[1e4, -1420.0, 800.0, -10.0, 1300.0]])
    ref = np.array([_mp_normal_logpdf(a, b, c) for a, b, c in zip(x[0], mean[0], lv[0])])
    for got in (K.normal_log_prob_diag(x, mean, lv, reduce=False)[0],
                D.normal_log_prob_diag_elem_nb(x, mean, lv)[0],
                D.normal_log_prob_diag_np(x, mean, lv, False)[0]):
        assert got[3] == -np.inf and ref[3] == -np.inf  # z^2 = 4e616 e^10: beyond float64
        fin = np.isfinite(ref)
        np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-14, atol=0)


def test_elbo_iwae_finite_where_sums_overflow():
    """log w = (log p(x|z) + log p(z)) - log q near the float64 limit: exact answers from
    rational arithmetic (every input is an integer-valued float)."""
    from fractions import Fraction

    a = np.array([[1e308, -1e308, 1.5e308], [1.7e308, 1.7e308, -1.0]])
    b = np.array([[1e308, 1e308, 1.0e308], [1.0, 1.0, 1.0]])
    c = np.array([[1e308, -1e308, 1.0e308], [0.0, 0.0, 0.0]])
    for elbo, iwae in (K.elbo_iwae(a, b, c), D.elbo_iwae_np(a, b, c)):
        for i in range(2):
            w = [Fraction(a[i, j]) + Fraction(b[i, j]) - Fraction(c[i, j]) for j in range(3)]
            # the mean as sum(w / 3) (the plain sum overflows): (k + 1) u max|w|, k = 3
            exact = sum(w) / 3
            assert abs(Fraction(elbo[i]) - exact) <= 4 * U * max(abs(t) for t in w)
            with mpmath.workdps(50):
                ws = [mpmath.mpf(float(t)) for t in w]  # each log w is exact in float64
                mx = max(ws)
                ref = mx + mpmath.log(sum(mpmath.exp(t - mx) for t in ws) / 3)
            assert abs(iwae[i] - float(ref)) <= 4 * U * abs(float(ref))


# --------------------------------------------------------------------------- ELBO / IWAE


@given(st.integers(1, 5), st.integers(1, 9), st.integers(0, 2**32 - 1), st.booleans())
def test_elbo_iwae_vs_scipy(n, k, seed, with_neg_inf):
    rng = np.random.default_rng(seed)
    a = rng.normal(scale=50.0, size=(n, k))
    b = rng.normal(scale=5.0, size=(n, k))
    c = rng.normal(scale=5.0, size=(n, k))
    if with_neg_inf:
        a[0, 0] = -np.inf
    log_w = (a + b) - c  # the same operations as the kernel: identical log w
    elbo, iwae = K.elbo_iwae(a, b, c)
    assert elbo.shape == (n,) and iwae.shape == (n,)
    ref_elbo = log_w.mean(axis=1)
    fin = np.isfinite(ref_elbo)
    np.testing.assert_array_equal(elbo[~fin], ref_elbo[~fin])
    # two sums of k terms (gamma_k each) and the division by k (u each)
    tol = SLACK * (2 * gamma(k) * np.abs(log_w).mean(axis=1) + 2 * U * np.abs(ref_elbo))
    assert np.all(np.abs(elbo[fin] - ref_elbo[fin]) <= tol[fin])
    lse = sps.logsumexp(log_w, axis=1)
    ref_iwae = lse - np.log(k)
    ok = np.isfinite(ref_iwae)
    np.testing.assert_array_equal(iwae[~ok], ref_iwae[~ok])  # K = 1 with log w = -inf
    with np.errstate(invalid="ignore"):
        tol = lse_tol(lse, log_w, 1) + 2 * U * (np.abs(ref_iwae) + np.log(k))
    assert np.all(np.abs(iwae[ok] - ref_iwae[ok]) <= tol[ok])
    # Jensen on the same samples: mean log w <= log mean w, up to the roundings above
    slack = SLACK * (gamma(k) * np.abs(log_w).mean(axis=1) + tol + 2 * U * np.abs(iwae))
    assert np.all(elbo[fin] <= iwae[fin] + slack[fin])
    e_tw, i_tw = D.elbo_iwae_np(a, b, c)
    np.testing.assert_array_equal(np.isfinite(e_tw), np.isfinite(elbo))
    np.testing.assert_array_equal(i_tw[~ok], iwae[~ok])
    assert np.all(np.abs(iwae[ok] - i_tw[ok]) <= tol[ok])


def test_elbo_iwae_single_sample_and_gap():
    rng = np.random.default_rng(11)
    a, b, c = rng.normal(size=(3, 6, 1))
    elbo, iwae = K.elbo_iwae(a, b, c)
    np.testing.assert_array_equal(elbo, ((a + b) - c)[:, 0])  # K = 1: both equal log w
    np.testing.assert_array_equal(iwae, ((a + b) - c)[:, 0])
    # spread weights: the Jensen gap is large and strictly positive
    lw = np.array([[0.0, -10.0]])
    elbo, iwae = K.elbo_iwae(lw, np.zeros_like(lw), np.zeros_like(lw))
    assert elbo[0] == -5.0 and iwae[0] > -0.7


# --------------------------------------------------------------------------- API contract


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


# --------------------------------------------------------------------------- JIT disabled

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
