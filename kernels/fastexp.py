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
* coefficients 1/i! rounded to float64 (<= u/2 each) and q evaluated by Estrin's scheme
  (eq. 1.5): the leading pair a = c2 + c3 r (|a| >= 0.442) carries 1.63 u (its FMA and
  the coefficient roundings), ab = a + b r^2 adds one rounding (|b r^2| <= 0.0054), and
  the higher terms (|r^4 (cd + ef r^4)| <= 1.2e-4) contribute below 0.01 u:
  |q^/q - 1| <= 2.75 u; |r^2 q| <= 0.068, so ``fma(r*r, q, r)`` is off by <= 0.068 *
  3.75 u + 0.414 u = 0.669 u (absolute), and the rounding of ``1 + v`` adds u relative;
* the rounding of ``r`` (<= u |r|) changes exp(r) by <= 0.347 u relative;
* divided by min p = exp(-0.3466) = 0.7071: total <= (0.669 + 0.053) / 0.7071 u + u +
  0.347 u = 2.37 u; bound C_EXP = 2.4 u, i.e. below 1.2 ulp. Measured over 3e6 points in
  [-708.3, 0] against ``np.longdouble`` exp: at most 1.40 u (Horner's scheme: 1.38 u);
  ``tests/kernels/test_fastexp.py::test_exp_nonpos_accuracy`` asserts the 2.4 u bound.
  In the subnormal range the extra error is the single final rounding (<= 2^-1075
  absolute), as for libm.

Its error enters log-sum-exp only through the sum of the non-maximal terms, which is then
damped by log1p (condition number <= 1); see the error budget in the tests.

(1.4)  2^j for an integral float j in [-1022, 1023] without a float-to-integer
       conversion (AVX2 has no packed double -> int64 conversion; with one, LLVM
       scalarised the loop): with B = 1.5 * 2^52 + 1023, the bits of the exactly
       represented j + B are bits(1.5 * 2^52) + j + 1023, whose low 12 bits are
       j + 1023 (bits(1.5 * 2^52) has none set there), so
       2^j = bitcast((bits(j + B) << 52) mod 2^64). k1 = floor(k/2) is ``np.floor``
       (vroundpd). This changed no result (tested bit for bit against the previous
       int64 form over 3e6 points) and made the exp loop fully vectorised.
(1.5)  q by Estrin's scheme: pairs c_i + c_{i+1} r (six independent FMAs), then
       ab + r^4 (cd + ef r^4) with r^2, r^4: a dependency chain of 5 FMAs instead of
       Horner's 11. The vectorised loop was latency-bound (out-of-order execution could
       not overlap enough iterations of the long chain): 25 % faster exp loops
       (1e7 elements: 20-27 ms vs 28-35 ms, same process, AVX2), changing results by
       rounding only (bound 2.35 u -> 2.4 u, derived above).

Twin: :func:`exp_nonpos_np` (``np.exp`` on the same clamped argument).

2. expm1 for t <= 0, and tanh
-----------------------------
NumPy's float64 ``tanh``, ``log1p`` and ``expm1`` are scalar libm calls on CPUs without
AVX-512 (measured 15-45 ns per element on the 2-core AVX2 machine, the largest cost of
the VAE training step). The same range reduction gives a vectorizable expm1:

(2.1)  expm1(t) = 2^k (1 + expm1(r)) - 1 = fma(2^k, p1, 2^k - 1),  p1 = r + r^2 q(r)
       with k, r, q of (1.1)-(1.2); for k = 0, r = t exactly and the result is p1.
       t < -40 is clamped to -40 (expm1(-40) rounds to -1), so 2^k is one normal
       factor (k >= -58); NaN propagates; expm1(-0.0) = +0.0.

Error (relative, |t| <= 40). k = 0: |r^2 q| <= 0.155 |r| and |expm1(r)| >= 0.845 |r| on
[-0.347, 0], so (r*r and q: <= 3.75 u on that term) 3.75 * 0.155 / 0.845 u + u (the
FMA) + 0.06 u (truncation) <= 1.75 u. k <= -1: p1 has <= 1.75 u (as above, |r^2 q| <=
0.195 |r| for r > 0) plus the rounding of r (<= u |r|, amplified by e^r / (expm1(r)/r)
<= 1.67); times 2^k <= 1/2 with |p1| <= 0.414: <= 0.207 * 3.42 u absolute, against
|result| >= 0.293, plus the final rounding: <= 3.42 u. Bound C_EXPM1 = 3.5 u.

(2.3)  exp(t) for any t: the steps (1.1)-(1.3) hold for |k| <= 1077 whatever the sign of
       t (the bound of section 1 used only |r| <= 0.3466), so ``exp_nb`` clamps t above at
       710 (k <= 1025, so both factors of (1.3) stay finite and exp(t > 709.78) overflows
       to +inf in the last multiplication) and is otherwise ``exp_nonpos``: <= 2.4 u.
(2.4)  expm1(t) for any t: (2.1) on [-40, 40], and exp(t) - 1 above 40 (relative
       difference e^-40 < u/2^5, plus the rounding of the subtraction). For k >= 1 the
       final FMA has cancellation at most at k = 1, r < 0 (|2 p1| <= 0.586 with 3.42 u of
       its own against a result >= 0.414): 0.586 * 3.42 / 0.414 u + u = 5.85 u; k >= 2:
       <= 4 u. Bound C_EXPM1_ANY = 5.9 u.
(2.2)  tanh(x) = copysign(E / (2 + E), x),  E = expm1(-2|x|) in [-1, 0]
       (no cancellation: 2 + E >= 1). |x| > 20 gives E = -1, tanh = +-1 exactly;
       +-0 -> +-0, +-inf -> +-1, NaN -> NaN.

Error: T = -E / (2 + E) has d log T / d log E = 2 / (2 + E) in [1, 2]; with the two
roundings (2 + E and the division): k <= -3 (E within 0.18 of -1): E has <= 1.2 u,
T <= 2 * 1.2 u + 2 u = 4.4 u; k = -1, -2 (|E| <= 0.82, E/(2+E) <= 0.70): <= 1.7 * 3.5 u
+ 2 u = 7.95 u; k = 0: <= 1.17 * 1.75 u + 2 u = 4.1 u. Bound C_TANH = 8.0 u (~4 ulp;
measured at most 3.3 u, ``tests/kernels/test_fastexp.py``).

3. log1p for s >= 0
-------------------
The classic reduction of fdlibm's ``log1p`` (Sun Microsystems 1993), written with
selects and bit operations that AVX2 has:

(3.1)  u = fl(1 + s),  c = (s - (u - 1)) / u   (u - 1 and s - (u - 1) are exact for
       u <= 2^53: c is the rounding error of 1 + s, relative to u; log(1 + s) =
       log(u) + c + O(c^2), |c| <= u/2)
(3.2)  u = 2^k m,  m in [sqrt(1/2), sqrt(2)): k = (bits(u) - bits(sqrt(1/2))) >> 52
       (a logical shift: u >= 1), bits(m) = bits(u) - (k << 52); the float k is
       bitcast(k | bits(2^52)) - 2^52 (again no int-to-float conversion)
(3.3)  f = m - 1 (exact, Sterbenz), |f| <= 0.4143;  sd = f / (2 + f), |sd| <= 0.1716,
       z = sd^2 <= 0.02944;  log(1 + f) = 2 atanh(sd) = f - f^2/2 + sd (f^2/2 + R(z)),
       R(z) = sum_{j=1}^{10} 2 z^j / (2j + 1)   (Taylor series of 2 atanh(sd) / sd - 2,
       truncated after j = 10: relative tail <= z^11 / 23 / (1 - z) = 0.006 u)
(3.4)  log1p(s) = k LN2_HI - (((f^2/2) - (sd (f^2/2 + R) + (k LN2_LO + c))) - f)
       (fdlibm's order: the exact leading term f is added last). s = +inf -> +inf;
       NaN -> NaN.

Error: the leading f is exact; f^2/2 (one rounding) is <= 0.261 of |log(1+f)|, the
sd-term <= 0.05 of it with <= 5 u of its own: with the roundings of the two
subtractions, <= (1 + 0.26 + 0.26 + 0.25) u = 1.8 u for k = 0; for k >= 1 the
log(m) part (<= 0.347 in magnitude, error <= 1.8 u of it) is added to k ln 2 >= 0.693
(result >= 0.347) with one more rounding: <= 0.347 * 1.8 / 0.347 u + u = 2.8 u.
Bound C_LOG1P_OURS = 2.8 u (< 1.5 ulp).

Twins: :func:`expm1_nonpos_np`, :func:`tanh_np`, :func:`log1p_nonneg_np` (NumPy's
ufuncs on the same clamped argument).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .fpenv import benign_underflow

__all__ = [
    "exp_nonpos_nb",
    "exp_nonpos_array_nb",
    "exp_nonpos_np",
    "expm1_nonpos_nb",
    "expm1_nonpos_array_nb",
    "expm1_nonpos_np",
    "exp_nb",
    "expm1_nb",
    "exp_expm1_array_nb",
    "tanh_nb",
    "tanh_array_nb",
    "tanh_np",
    "log1p_nonneg_nb",
    "log1p_nonneg_array_nb",
    "log1p_nonneg_np",
]

_LOG2E = 1.4426950408889634  # log2(e)
_SHIFT = 6755399441055744.0  # 1.5 * 2**52: x + _SHIFT - _SHIFT rounds x to an integer
_LN2_HI = 6.93147180369123816490e-01  # high part of ln 2, 21 trailing zero bits
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_T_MIN = -746.0  # exp(t) rounds to 0 below this
_POW2_BIAS = _SHIFT + 1023.0  # eq. (1.4)
_T_MIN_EXPM1 = -40.0  # expm1(t) rounds to -1 below this
_T_MAX = 710.0  # exp(t) overflows above 709.78; clamping keeps 2^k finite in (1.3)
_BITS_SQRT_HALF = 0x3FE6A09E667F3BCD  # bits of sqrt(1/2), eq. (3.2)
_BITS_TWO52 = 0x4330000000000000  # bits of 2**52
_TWO52 = 4503599627370496.0
# R(z) / z = sum_{j=1}^{10} 2 z^(j-1) / (2j + 1), eq. (3.3)
_L1, _L2, _L3, _L4, _L5 = 2.0 / 3.0, 2.0 / 5.0, 2.0 / 7.0, 2.0 / 9.0, 2.0 / 11.0
_L6, _L7, _L8, _L9, _L10 = 2.0 / 13.0, 2.0 / 15.0, 2.0 / 17.0, 2.0 / 19.0, 2.0 / 21.0
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


@intrinsic
def _f64_to_bits(typingctx, x):
    """Reinterpret the bits of a float64 as an int64."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def _lshr(typingctx, i, n):
    """Logical right shift of an int64 (``>>`` on int64 is arithmetic; AVX2 has no packed
    arithmetic 64-bit shift, but has the logical one)."""
    sig = types.int64(types.int64, types.int64)

    def codegen(context, builder, signature, args):
        return builder.lshr(*args)

    return sig, codegen


@njit(cache=True, inline="always")
def _pow2_nb(j):
    """2**j for an integral float64 j in [-1022, 1023], eq. (1.4)."""
    return _bits_to_f64(_f64_to_bits(j + _POW2_BIAS) << 52)


@njit(cache=True, inline="always")
def _poly_exp_nb(r, r2):
    """q(r) of eq. (1.2) by Estrin's scheme (eq. 1.5); ``r2 = r * r``."""
    a = _fma(_C3, r, _C2)
    b = _fma(_C5, r, _C4)
    c = _fma(_C7, r, _C6)
    d = _fma(_C9, r, _C8)
    e = _fma(_C11, r, _C10)
    f = _fma(_C13, r, _C12)
    r4 = r2 * r2
    ab = _fma(b, r2, a)
    cd = _fma(d, r2, c)
    ef = _fma(f, r2, e)
    return _fma(_fma(ef, r4, cd), r4, ab)


@njit(cache=True, inline="always")
def exp_nonpos_nb(t):
    """exp(t) for t <= 0 (or NaN), vectorizable; eqs. (1.1)-(1.5), error <= 2.4 u."""
    tc = _T_MIN if t < _T_MIN else t  # NaN passes through
    kf = _fma(tc, _LOG2E, _SHIFT) - _SHIFT  # nearest integer to t / ln 2
    r = _fma(kf, -_LN2_LO, _fma(kf, -_LN2_HI, tc))  # eq. (1.1)
    r2 = r * r
    p = 1.0 + _fma(r2, _poly_exp_nb(r, r2), r)  # eq. (1.2)
    # eq. (1.3): both factors are normal powers of two (k1, k2 >= -539); eq. (1.4)
    k1 = np.floor(kf * 0.5)
    return (p * _pow2_nb(k1)) * _pow2_nb(kf - k1)


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


@njit(cache=True, inline="always")
def _expm1_core_nb(tc):
    """Eq. (2.1) for tc in [-40, 40] (or NaN)."""
    kf = _fma(tc, _LOG2E, _SHIFT) - _SHIFT
    r = _fma(kf, -_LN2_LO, _fma(kf, -_LN2_HI, tc))
    r2 = r * r
    p1 = _fma(r2, _poly_exp_nb(r, r2), r)
    s = _pow2_nb(kf)
    return _fma(s, p1, s - 1.0)


@njit(cache=True, inline="always")
def expm1_nonpos_nb(t):
    """expm1(t) for t <= 0 (or NaN), vectorizable; eq. (2.1), error <= 3.5 u."""
    return _expm1_core_nb(_T_MIN_EXPM1 if t < _T_MIN_EXPM1 else t)  # NaN passes through


@njit(cache=True, inline="always")
def exp_nb(t):
    """exp(t) for any t, vectorizable; eq. (2.3), error <= 2.4 u (normal results)."""
    return exp_nonpos_nb(_T_MAX if t > _T_MAX else t)


@njit(cache=True, inline="always")
def expm1_nb(t):
    """expm1(t) for any t, vectorizable; eq. (2.4), error <= 5.9 u."""
    core = _expm1_core_nb(_T_MIN_EXPM1 if t < _T_MIN_EXPM1 else min(t, -_T_MIN_EXPM1))
    return exp_nb(t) - 1.0 if t > -_T_MIN_EXPM1 else core


@njit(cache=True, inline="always")
def tanh_nb(x):
    """tanh(x), vectorizable; eq. (2.2), relative error <= 8.0 u."""
    e = expm1_nonpos_nb(-2.0 * abs(x))
    return math.copysign(e / (2.0 + e), x)


@njit(cache=True, inline="always")
def log1p_nonneg_nb(s):
    """log1p(s) for s >= 0 (or +inf, NaN), vectorizable; eqs. (3.1)-(3.4), error <= 2.8 u."""
    u = 1.0 + s
    c = (s - (u - 1.0)) / u  # eq. (3.1)
    ub = _f64_to_bits(u)
    kb = _lshr(ub - _BITS_SQRT_HALF, 52)  # eq. (3.2)
    m = _bits_to_f64(ub - (kb << 52))
    kf = _bits_to_f64(kb | _BITS_TWO52) - _TWO52
    f = m - 1.0  # eq. (3.3)
    hfsq = 0.5 * f * f
    sd = f / (2.0 + f)
    z = sd * sd
    p = _fma(_L10, z, _L9)
    p = _fma(p, z, _L8)
    p = _fma(p, z, _L7)
    p = _fma(p, z, _L6)
    p = _fma(p, z, _L5)
    p = _fma(p, z, _L4)
    p = _fma(p, z, _L3)
    p = _fma(p, z, _L2)
    p = _fma(p, z, _L1)
    big_r = z * p
    res = kf * _LN2_HI - ((hfsq - (sd * (hfsq + big_r) + (kf * _LN2_LO + c))) - f)  # (3.4)
    return res if s < np.inf else s  # +inf -> +inf, NaN -> NaN


@njit(cache=True, error_model="numpy")
def expm1_nonpos_array_nb(t):
    """Elementwise :func:`expm1_nonpos_nb` of a 1-D array (n,) -> (n,); for testing."""
    out = np.empty_like(t)
    for i in range(t.shape[0]):
        out[i] = expm1_nonpos_nb(t[i])
    return out


@njit(cache=True, error_model="numpy")
def exp_expm1_array_nb(t):
    """Elementwise (:func:`exp_nb`, :func:`expm1_nb`) of a 1-D array (n,) -> two (n,); for
    testing."""
    e = np.empty_like(t)
    em = np.empty_like(t)
    for i in range(t.shape[0]):
        e[i] = exp_nb(t[i])
        em[i] = expm1_nb(t[i])
    return e, em


@njit(cache=True, error_model="numpy")
def tanh_array_nb(x):
    """Elementwise :func:`tanh_nb` of a 1-D array (n,) -> (n,); for testing."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = tanh_nb(x[i])
    return out


@njit(cache=True, error_model="numpy")
def log1p_nonneg_array_nb(s):
    """Elementwise :func:`log1p_nonneg_nb` of a 1-D array (n,) -> (n,); for testing."""
    out = np.empty_like(s)
    for i in range(s.shape[0]):
        out[i] = log1p_nonneg_nb(s[i])
    return out


@benign_underflow
def expm1_nonpos_np(t):
    """NumPy twin of :func:`expm1_nonpos_nb`: ``np.expm1(max(t, -40))``."""
    t = np.asarray(t, dtype=np.float64)
    return np.expm1(np.where(t < _T_MIN_EXPM1, _T_MIN_EXPM1, t))


@benign_underflow
def tanh_np(x):
    """NumPy twin of :func:`tanh_nb`: ``np.tanh``."""
    return np.tanh(np.asarray(x, dtype=np.float64))


@benign_underflow
def log1p_nonneg_np(s):
    """NumPy twin of :func:`log1p_nonneg_nb`: ``np.log1p``."""
    return np.log1p(np.asarray(s, dtype=np.float64))
