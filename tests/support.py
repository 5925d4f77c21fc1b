"""Shared helpers of the numerics tests: derived error bounds and Hypothesis strategies.

Tolerances are error bounds derived from the algorithms (u = 2**-53, the unit roundoff
of float64; gamma_n = n u / (1 - n u), Higham's bound for summing n terms); each bound is
derived in the docstring of the helper that computes it. A factor 1.001 covers the
second-order terms (relative size O(n u) < 1e-9 for the sizes used here).

Imported by the test modules as ``support`` (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

import numpy as np
import scipy.special as sps
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

U = 2.0**-53
LD_EPS = float(np.finfo(np.longdouble).eps)
HAVE_LONGDOUBLE = LD_EPS <= 2.0**-63  # x87 80-bit or quad; not where long double == double
# Accuracy constants in units of u (relative error bounds):
C_EXP_OURS = 2.4  # exp_nonpos_nb, derived in the docstring of lvmref.kernels.fastexp
C_EXP_LIBM = 2.0  # np.exp / libm exp: <= 1 ulp (measured 0.71 ulp for NumPy's SIMD exp)
C_LOG1P = 2.0  # libm log1p: <= 1 ulp (glibc's documented x86_64 maximum)
# the vectorizable functions of lvmref.kernels.fastexp, derived in its docstring
C_EXPM1_OURS = 3.5  # expm1_nonpos_nb, section 2
C_EXPM1_ANY_OURS = 5.9  # expm1_nb, eq. (2.4)
C_TANH_OURS = 8.0  # tanh_nb, eq. (2.2)
C_LOG1P_OURS = 2.8  # log1p_nonneg_nb, section 3
SLACK = 1.001  # second-order terms


def gamma(n):
    return n * U / (1.0 - n * U)


@np.errstate(under="ignore")  # reference-side arithmetic
def lse_tol(ref, a, axis):
    """Bound on |lse_1 - lse_2| for two max-split evaluations of eq. (2.1) on ``a``.

    Both evaluations form the same shifts t_i = fl(a_i - m) (m is the exact row maximum),
    so they differ only through: the exponentials (ours <= C_EXP_OURS u, NumPy's <=
    C_EXP_LIBM u, relative), the summation of n nonnegative terms (<= gamma_n each), log1p
    (ours <= C_LOG1P_OURS u, libm's <= C_LOG1P u, and its condition number
    S/((1+S) log1p S) <= 1 so relative errors of S pass to L = log1p(S) undamplified at
    worst), and the final rounding of m + L (<= u |r| each). Hence
        |r_1 - r_2| <= 2 u |r| + L [(C_EXP_OURS + C_EXP_LIBM + C_LOG1P_OURS + C_LOG1P) u
                                    + 2 gamma_n],
    with L <= |ref - m| + u |ref|. (Relative to |r| this is ~1 ulp whenever L << |r|.)
    """
    n = a.size if axis is None else a.shape[axis]
    with np.errstate(invalid="ignore"):
        if a.size:
            m = np.max(a, axis=axis, keepdims=True).reshape(np.shape(ref))
        else:
            m = np.full(np.shape(ref), -np.inf)
        big_l = np.abs(ref - m) + U * np.abs(ref)
    coef = (C_EXP_OURS + C_EXP_LIBM + C_LOG1P_OURS + C_LOG1P) * U + 2 * gamma(n)
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
    L [(C_EXP_OURS + C_LOG1P_OURS) u + gamma_n]. Each final subtraction rounds (<= u |ls|).
    L = log(1 + S) <= log n.
    """
    big_l = np.log(max(n, 1))
    return SLACK * (
        2 * U * np.abs(ls)
        + C_EXP_LIBM * U
        + gamma(n)
        + big_l * ((C_EXP_OURS + C_LOG1P_OURS + C_LOG1P) * U + gamma(n))
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


finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
elements = st.one_of(finite, finite, finite, st.just(-np.inf))


@st.composite
def array_and_axis(draw, min_side=0, max_dims=3, elems=elements):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=min_side, max_side=6))
    a = draw(hnp.arrays(np.float64, shape, elements=elems))
    ndim = len(shape)
    axis = draw(st.sampled_from([None, *range(ndim), -1]))
    return a, axis


@np.errstate(under="ignore")  # reference-side arithmetic
def scipy_lse(a, axis):
    """scipy.special.logsumexp; for axis=None on the flattened array (SciPy 1.17 raises
    IndexError for an empty array of ndim >= 2 with axis=None; its 1-D result is -inf)."""
    return sps.logsumexp(a.ravel()) if axis is None else sps.logsumexp(a, axis=axis)


def kl_tol(mean, log_var, ref_eps=LD_EPS):
    """Ours per term: expm1 (<= 2 u |E|), E - lv and + mu^2 round (<= u term each, since
    0 <= E - lv <= term), mu^2 (u mu^2); the sum adds gamma_d sum(terms). The long double
    reference exp(lv) - 1 - lv + mu^2 is within 4 LD_EPS (e^lv + 1 + |lv| + mu^2)."""
    d = mean.shape[-1]
    e = np.abs(np.expm1(log_var))
    terms = (np.expm1(log_var) - log_var) + mean * mean
    ours = 2 * U * e + 2 * U * terms + U * mean * mean
    ref_err = 4 * ref_eps * (np.exp(log_var) + 1 + np.abs(log_var) + mean * mean)
    return 0.5 * SLACK * ((ours + ref_err).sum(-1) + gamma(d) * terms.sum(-1))


# --------------------------------------------------------------------------- extended precision
# Reference values more precise than float64, from long double where it is wider than
# double (x87 80-bit: LD_EPS = 2**-63) and from mpmath (113 bits) everywhere, so the accuracy
# proofs run on every platform: the mpmath oracle is always run (on a subsample, it is
# ~1e4 times slower), the long double one where it exists.

MP_PREC = 113
MP_EPS = 2.0**-110  # relative error of the mpmath references (a few roundings at 113 bits)


def oracles():
    """Pytest parameters for the reference oracle: "longdouble" (skipped where long double
    is double) and "mpmath" (always)."""
    import pytest

    return [pytest.param("longdouble", marks=pytest.mark.skipif(
        not HAVE_LONGDOUBLE, reason="long double is double here; the mpmath oracle runs")),
        "mpmath"]


def oracle_eps(oracle):
    return LD_EPS if oracle == "longdouble" else MP_EPS


class _MpNamespace:
    """The few NumPy functions the references use, elementwise on object arrays of mpf."""

    def __init__(self):
        import mpmath

        self.mp = mpmath
        for name in ("exp", "expm1", "log", "log1p", "tanh"):
            setattr(self, name, np.frompyfunc(getattr(mpmath, name), 1, 1))
        self.pi = mpmath.pi

    def asarray(self, a):
        return np.frompyfunc(self.mp.mpf, 1, 1)(np.asarray(a, dtype=np.float64))

    def sum(self, a, axis=None):
        return np.sum(a, axis=axis)


class _LdNamespace:
    exp, expm1, log, log1p, tanh, sum = np.exp, np.expm1, np.log, np.log1p, np.tanh, np.sum
    pi = np.pi * np.longdouble(1)  # pi rounded to double (error 1.2e-16 relative)

    @staticmethod
    def asarray(a):
        return np.asarray(a, dtype=np.longdouble)


def extended(fn, *arrays, oracle):
    """fn(ns, *arrays) evaluated in extended precision, returned as a double-double pair
    (hi, lo) of float64 arrays with hi + lo = the reference to oracle_eps(oracle) relative.

    ``ns`` offers exp, expm1, log, log1p, tanh, sum, pi and asarray (already applied to
    ``arrays``). Compare ``got`` with ``dd_error(got, hi, lo)``.
    """
    if oracle == "longdouble":
        with np.errstate(under="ignore"):  # reference-side arithmetic
            ref = np.asarray(fn(_LdNamespace, *(_LdNamespace.asarray(a) for a in arrays)))
            hi = ref.astype(np.float64)
            return hi, (ref - hi).astype(np.float64)
    import mpmath

    with mpmath.workprec(MP_PREC), np.errstate(under="ignore"):  # reference side
        ns = _MpNamespace()
        ref = np.asarray(fn(ns, *(ns.asarray(a) for a in arrays)), dtype=object)
        hi = np.frompyfunc(float, 1, 1)(ref).astype(np.float64)
        lo = np.frompyfunc(lambda r, h: float(r - mpmath.mpf(h)), 2, 1)(ref, hi)
    return hi, lo.astype(np.float64)


def dd_error(got, hi, lo):
    """|got - (hi + lo)| for a double-double reference: got - hi is exact when got is
    within a factor 2 of hi (Sterbenz), and the final subtraction adds <= u |got - ref|."""
    with np.errstate(invalid="ignore"):
        return np.abs((np.asarray(got, dtype=np.float64) - hi) - lo)


def subsample(pieces, oracle, n_max=2000):
    """Concatenate arrays of test points; for the (slow) mpmath oracle keep the first
    ``n_max`` points of each piece (pieces are random draws or short structured lists)."""
    if oracle == "mpmath":
        pieces = [np.asarray(p)[:n_max] for p in pieces]
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in pieces])
