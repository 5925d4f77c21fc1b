"""The vectorizable exponential used by the log-sum-exp and GMM E-step kernels.

Numba 0.68 has no SVML, so ``math.exp`` in a loop is a scalar libm call that LLVM cannot
vectorize (about 3.5x slower than NumPy's SIMD ``np.exp`` pass on this machine). The
log-sum-exp kernels therefore use :func:`exp_nonpos`, an exponential for arguments
``t <= 0`` written with operations LLVM vectorizes (fused multiply-adds, an integer
bit-cast, selects):

(1.1)  k = round(t / ln 2),   r = t - k ln 2,   |r| <= ln(2)/2 + 2^-43 ~ 0.3466
(1.2)  exp(t) = 2^k exp(r),   exp(r) ~ p(r) = 1 + r + r^2 q(r),
       q(r) = sum_{i=2}^{13} r^(i-2) / i!        (Taylor polynomial of degree 13)
(1.3)  2^k applied as two exact power-of-two factors 2^(k1) 2^(k2), k1 = floor(k/2),
       k2 = k - k1, so results in the subnormal range are rounded once, like libm.

Range reduction (Cody & Waite 1980): ``k`` is the nearest integer to ``t log2(e)``
(one FMA with the shift constant 1.5 * 2^52 rounds to an integer), and
``ln 2 = LN2_HI + LN2_LO`` with ``LN2_HI`` having 21 trailing zero bits, so
``t - k LN2_HI`` is exact for ``|k| <= 1077``; the second FMA adds one rounding.
``t < -746`` is clamped to -746 (``exp(-746)`` rounds to 0); NaN propagates.

Error bound (u = 2^-53; relative error of ``exp_nonpos`` against exp for normal results):

* truncation of the Taylor series: |r|^14/14! e^|r| / e^-|r| <= 5.8e-18 = 0.053 u;
* coefficients 1/i! rounded to float64 and Horner with FMAs (one rounding per step, the
  step ratios |r|/(i+1) <= 0.12 damp earlier errors): |q^/q - 1| <= 2.5 u;
  |r^2 q| <= 0.068, so ``fma(r*r, q, r)`` is off by <= 0.068 * 3.5 u + 0.414 u = 0.652 u
  (absolute), and the rounding of ``1 + v`` adds u relative;
* the rounding of ``r`` (<= u |r|) changes exp(r) by <= 0.347 u relative;
* divided by min p = exp(-0.3466) = 0.7071: total <= (0.652 + 0.053) / 0.7071 u + u +
  0.347 u = 2.35 u, i.e. below 1.2 ulp. Measured over 3e6 points in [-708.3, 0] against
  ``np.longdouble`` exp: at most 1.38 u (0.98 ulp);
  ``tests/test_kernels.py::test_exp_nonpos_accuracy`` asserts the 2.35 u bound. In the
  subnormal range the extra error is the single final rounding (<= 2^-1075 absolute), as
  for libm.

Its error enters log-sum-exp only through the sum of the non-maximal terms, which is then
damped by log1p (condition number <= 1); see the error budget in the tests.

Twin: :func:`exp_nonpos_np` (``np.exp`` on the same clamped argument).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .fpenv import benign_underflow

__all__ = ["exp_nonpos_nb", "exp_nonpos_array_nb", "exp_nonpos_np"]

_LOG2E = 1.4426950408889634  # log2(e)
_SHIFT = 6755399441055744.0  # 1.5 * 2**52: x + _SHIFT - _SHIFT rounds x to an integer
_LN2_HI = 6.93147180369123816490e-01  # high part of ln 2, 21 trailing zero bits
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_T_MIN = -746.0  # exp(t) rounds to 0 below this
# Taylor coefficients 1/i!, i = 2..13, eq. (1.2)
_C2 = 1.0 / 2.0
_C3 = 1.0 / 6.0
_C4 = 1.0 / 24.0
_C5 = 1.0 / 120.0
_C6 = 1.0 / 720.0
_C7 = 1.0 / 5040.0
_C8 = 1.0 / 40320.0
_C9 = 1.0 / 362880.0
_C10 = 1.0 / 3628800.0
_C11 = 1.0 / 39916800.0
_C12 = 1.0 / 479001600.0
_C13 = 1.0 / 6227020800.0


@intrinsic
def _fma(typingctx, a, b, c):
    """a*b + c with one rounding (llvm.fma; exact IEEE semantics, not a fastmath flag)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


@intrinsic
def _bits_to_f64(typingctx, i):
    """Reinterpret the bits of an int64 as a float64 (used to build 2**k)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@njit(cache=True, inline="always")
def exp_nonpos_nb(t):
    """exp(t) for t <= 0 (or NaN), vectorizable; eqs. (1.1)-(1.3), error <= 2.35 u."""
    tc = _T_MIN if t < _T_MIN else t  # NaN passes through
    kf = _fma(tc, _LOG2E, _SHIFT) - _SHIFT  # nearest integer to t / ln 2
    r = _fma(kf, -_LN2_LO, _fma(kf, -_LN2_HI, tc))  # eq. (1.1)
    q = _fma(_C13, r, _C12)
    q = _fma(q, r, _C11)
    q = _fma(q, r, _C10)
    q = _fma(q, r, _C9)
    q = _fma(q, r, _C8)
    q = _fma(q, r, _C7)
    q = _fma(q, r, _C6)
    q = _fma(q, r, _C5)
    q = _fma(q, r, _C4)
    q = _fma(q, r, _C3)
    q = _fma(q, r, _C2)
    p = 1.0 + _fma(r * r, q, r)  # eq. (1.2)
    k = np.int64(kf)
    k1 = k >> 1
    k2 = k - k1
    # eq. (1.3): both factors are normal powers of two (k1, k2 >= -539)
    return (p * _bits_to_f64((k1 + 1023) << 52)) * _bits_to_f64((k2 + 1023) << 52)


@njit(cache=True)
def exp_nonpos_array_nb(t):
    """Elementwise :func:`exp_nonpos_nb` of a 1-D array ``t`` (n,) -> (n,); for testing."""
    out = np.empty_like(t)
    for i in range(t.shape[0]):
        out[i] = exp_nonpos_nb(t[i])
    return out


@benign_underflow
def exp_nonpos_np(t):
    """NumPy twin of :func:`exp_nonpos_nb`: ``np.exp(max(t, -746))`` (NaN propagates)."""
    t = np.asarray(t, dtype=np.float64)
    return np.exp(np.where(t < _T_MIN, _T_MIN, t))
