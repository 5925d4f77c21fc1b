r"""Log-sum-exp, log-mean-exp, log-softmax and the streaming log-sum-exp.

All functions reduce rows of C-contiguous float64 arrays; the jitted kernels are compiled
lazily (``cache=True``) without ``fastmath`` (its ``nnan``/``ninf`` flags would break the
NaN/inf handling below) and never write to their inputs.

Log-sum-exp (max-split form)
----------------------------
For a row a_1..a_n with finite maximum m attained at n_0 >= 1 places and t_i = a_i - m:

(1)  lse(a) = m + log1p(S),   S = sum_{t_i < 0} exp(t_i) + (n_0 - 1),

the same decomposition as ``scipy.special.logsumexp`` (one maximal term is split off, so
``lse([0, -40]) = 4.2e-18`` is not rounded to 0). Special values (scipy's semantics): any NaN
-> NaN; otherwise a +inf -> +inf; all -inf or n = 0 -> -inf.

Measured speed and the choice made
----------------------------------
History (0.2.0, on an AVX-512 development machine): a scalar ``math.exp`` loop was 3.5-4x
one ``np.exp`` pass (no SVML in Numba 0.68), the NumPy twin (several full passes) 4-7x;
chosen then: rows in L1-sized blocks, row maxima, the shifts into a buffer, one long
vectorized :func:`lvmref.kernels.fastexp.exp_nonpos_nb` loop, per-row sums with four
interleaved partial sums, and ``np.log1p`` applied by the caller.

Issue 19 (2-core AMD EPYC, AVX2 + FMA, no AVX-512: NumPy's float64 ``exp`` and
``log1p`` are scalar libm calls there, ~15 and ~18 ns per element), measured in one
process with ``validation/bench_kernels.py`` (medians, implementations interleaved):

* ``np.log1p`` on the row sums cost as much as a quarter of the whole kernel at
  m = 10: log1p is now applied inside the kernel, with the vectorizable
  :func:`lvmref.kernels.fastexp.log1p_nonneg_nb` (<= 2.8 u), one loop per block.
* The exp loop was not fully vectorized (AVX2 has no packed double -> int64
  conversion; the scale 2^k is now built from the bits of the shifted float, fastexp
  eq. 1.4) and was latency-bound (Horner's chain of 11 FMAs; Estrin's scheme, eq. 1.5,
  is 25 % faster).
* Short rows (m <= ``_SHORT`` = 32): the block is transposed to (m, rows) so that the
  maxima, exponentials, tie counts and sums run as loops *across rows* (SIMD over rows;
  each row still sums j = 0..m-1 in order): 15 % faster than the per-row code at
  m = 10. Longer rows keep the per-row code.
* Result at 1 thread, (1e6, 10): 88 ms vs SciPy 1200 ms (13.7x faster) and one
  ``a.sum()`` read 11 ms (8.0x); (1e5, 100): 58 ms vs SciPy 556 ms (9.6x), ``a.sum()``
  10 ms (5.7x) -- on the shared machine under load (load average 2-4), so absolute
  times are 1.5-2x those of a quiet moment; the ratios are same-process.
* What limits it: the exponential. 1e7 evaluations of the (vectorized, Estrin) exp
  alone take 3.3x one ``a.sum()`` read on this CPU (20 vs 6 ms), so the target of
  <= 3x ``a.sum()`` for the whole log-sum-exp is out of reach with a ~1 ulp exp of this
  kind. A table-driven exp (Tang 1989: a 2^(j/64) table, |r| <= ln 2 / 128 and a
  degree-5 polynomial, the scale added to the exponent bits) was tried in the issue-19
  follow-up and is slower here: 2.35 vs 1.75 ns per element in the same process (LLVM
  scalarizes the table lookups instead of using AVX2 gathers on this CPU), and 2.9 u
  without a two-part table. With AVX-512 (8 lanes, and NumPy's SIMD exp
  for the twin) the exp stage should be about twice as fast per element; not measured
  here (no such CPU).
* Issue-19 second follow-up (quiet machine; each change timed against the previous
  code in one process, results bitwise equal):

  - short rows: the maxima are taken while the block is transposed (a scalar chain per
    row that hides behind the reads; the separate pass over the transposed block cost
    5 ms of 34 at (1e6, 10));
  - longer rows: one loop per row forms the shifts, counts the ties and stores the
    exponentials (:func:`_exp_sum_nb`), instead of a pass writing all shifts of a block
    before one long exp loop (a row loop of m >= 33 terms vectorizes as well);
  - :func:`logsumexp` and :func:`log_mean_exp` use the kernel's *combined* mode
    (:func:`lse_rows`): mx + log1p(S) goes into one output, where two fresh (n,)
    outputs had cost ~800 page faults (~10 ms) per call, and no addition pass follows.

  ``logsumexp(a, axis=1)``: (1e6, 10) 44.9 -> 31.5 ms (0.70x), (1e5, 100) 28.1 ->
  22.0 ms (0.78x); one ``a.sum()`` read takes 4.6 ms, so 6.8x and 4.8x of it
  (``validation/bench_kernels.py`` gives the ratios to SciPy). What is left at
  (1e6, 10): the exp pass ~18 ms (the exponential alone 13-14 ms, see above), the
  transposing read ~6 ms, log1p and stores ~5 ms.
* Parallel rows (``prange`` over groups of blocks) gave 1.8x on a quiet machine and
  nothing (or a slowdown) with the cores busy; it is used only for inputs of at least
  ``PARALLEL_MIN_WORK`` elements (:mod:`lvmref.kernels.dispatch`) when Numba has more
  than one thread. Each row is still reduced serially by the same code, so results do
  not depend on the thread count.

Streaming log-sum-exp (chunked enumeration)
-------------------------------------------
Exact enumeration of :math:`\log p(x) = \log \sum_z p(x, z)` over :math:`2^K` binary
configurations cannot hold an ``(n, 2**K)`` matrix for K ~ 20, so the configurations
are visited in chunks and each row keeps a running *max-split* state

.. math:: (m, r): \quad \sum_j e^{a_j} = e^{m} (1 + r), \qquad
          m = \max_j a_j, \quad r = \sum_{j \ne \arg\max} e^{a_j - m} ,

i.e. exactly the quantities of the one-shot max-split log-sum-exp used by
:func:`lvmref.kernels.lse` (``lse = m + log1p(r)``), so the streamed result
equals the one-shot one up to summation order. Merging a chunk ``a`` (its max ``c``):

* ``c <= m``: :math:`r \leftarrow r + \sum_j e^{a_j - m}` (ties with ``m`` add 1);
* ``c > m``: the old max joins the rest,
  :math:`r \leftarrow (1 + r) e^{m - c} + \sum_{j \ne \arg\max a} e^{a_j - c}`,
  :math:`m \leftarrow c`.

``m = -inf`` (nothing seen yet, or only zero-probability terms) keeps ``r = 0``; entries
equal to ``-inf`` contribute nothing. Inputs must not contain NaN or ``+inf``
(the callers in :mod:`lvmref.estimators` refuse those first).

:func:`lse_stream_update_nb` is the Numba kernel (one pass over the chunk, no
temporaries), :func:`lse_stream_update_np` its plain-NumPy twin and
:func:`lse_stream_update` the dispatcher. All return new arrays and never modify their
arguments.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import as_float_array, check_axis, check_flag
from .dispatch import jit_enabled, parallel_and_serial, pick
from .fastexp import exp_nonpos_nb, log1p_nonneg_nb
from .fpenv import benign_underflow

__all__ = [
    "logsumexp",
    "log_mean_exp",
    "log_softmax",
    "logsumexp_np",
    "log_softmax_np",
    "lse_parts",
    "lse_parts_nb",
    "lse_parts_nb_serial",
    "lse_parts_np",
    "lse_rows",
    "log_softmax_rows_nb",
    "lse_stream_init",
    "lse_stream_update",
    "lse_stream_update_nb",
    "lse_stream_update_np",
    "lse_stream_finalize",
]

#: Elements per block buffer (16 KiB of float64: stays in L1 with the input rows).
_BLOCK = 2048
#: Blocks of rows per parallel work unit.
_UNIT = 16
#: Rows of at most this length take the transposed (across-rows SIMD) path.
_SHORT = 32


# --------------------------------------------------------------------------- kernels

@njit(cache=True, inline="always")
def _row_max_nb(a, i):
    """Largest non-NaN entry of row ``i`` (-inf if none); four independent chains."""
    m = a.shape[1]
    m0 = -np.inf
    m1 = -np.inf
    m2 = -np.inf
    m3 = -np.inf
    j = 0
    while j + 4 <= m:
        v0 = a[i, j]
        v1 = a[i, j + 1]
        v2 = a[i, j + 2]
        v3 = a[i, j + 3]
        m0 = v0 if v0 > m0 else m0
        m1 = v1 if v1 > m1 else m1
        m2 = v2 if v2 > m2 else m2
        m3 = v3 if v3 > m3 else m3
        j += 4
    while j < m:
        v0 = a[i, j]
        m0 = v0 if v0 > m0 else m0
        j += 1
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    return m2 if m2 > m0 else m0


@njit(cache=True)
def _row_special_nb(a, i, mx):
    """Row result when its maximum ``mx`` is not finite: NaN if any NaN, else ``mx``."""
    for j in range(a.shape[1]):
        if a[i, j] != a[i, j]:
            return np.nan
    return mx


@njit(cache=True, inline="always")
def _sum4_nb(buf, k0, m):
    """buf[k0:k0+m] summed with four interleaved partial sums (fixed order)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    k = k0
    end = k0 + m
    while k + 4 <= end:
        s0 += buf[k]
        s1 += buf[k + 1]
        s2 += buf[k + 2]
        s3 += buf[k + 3]
        k += 4
    while k < end:
        s0 += buf[k]
        k += 1
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, inline="always")
def _store_nb(mx_out, l_out, i, mx, lg, combined):
    """Row ``i``'s result: ``mx_out[i] = mx`` and ``l_out[i] = lg`` (lse = mx + lg), or, if
    ``combined``, ``l_out[i] = mx + lg`` alone (``mx_out`` is not written and may be
    ``l_out``). A row whose maximum is not finite has ``mx`` = its special result and
    ``lg = 0``, so ``mx + lg`` is that result too."""
    if combined:
        l_out[i] = mx + lg
    else:
        mx_out[i] = mx
        l_out[i] = lg


@njit(cache=True, error_model="numpy", inline="always")
def _exp_sum_nb(a, i, c0, c1, mx, buf):
    """Terms j = c0..c1-1 of row ``i`` of eq. (1) for its finite maximum ``mx``: returns
    (sum of exp(a_ij - mx) over the entries below mx, number of entries equal to mx).

    One loop forms each shift, counts it if it is a tie, and stores its exponential into
    ``buf`` (>= c1 - c0) -- vectorized, with no separate pass writing the shifts -- then
    the stored terms are summed in order with four partial sums (:func:`_sum4_nb`).
    """
    n0 = 0
    for j in range(c0, c1):
        t = a[i, j] - mx
        n0 += t == 0.0
        e = exp_nonpos_nb(t)
        buf[j - c0] = 0.0 if t == 0.0 else e  # maximal terms are counted in n0
    return _sum4_nb(buf, 0, c1 - c0), n0


@njit(cache=True, error_model="numpy")
def _lse_block_nb(a, i0, i1, mx_out, l_out, combined, buf, mxb, sb):
    """Eq. (1) for rows i0..i1-1 of ``a`` (n, m) with m <= buf.size.

    Per row: its maximum, then :func:`_exp_sum_nb` (S); then the log1p over the block's
    rows (vectorized) and :func:`_store_nb`. A row whose maximum is not finite stores its
    special result as ``mx`` and ``lg = 0``.
    """
    m = a.shape[1]
    nr = i1 - i0
    for r in range(nr):
        mx = _row_max_nb(a, i0 + r)
        if not (-np.inf < mx < np.inf):
            mxb[r] = _row_special_nb(a, i0 + r, mx)
            sb[r] = 0.0
        else:
            mxb[r] = mx
            s, n0 = _exp_sum_nb(a, i0 + r, 0, m, mx, buf)
            sb[r] = s + (n0 - 1)
    for r in range(nr):  # vectorized log1p over the block's rows (S >= 0)
        sb[r] = log1p_nonneg_nb(sb[r])
    for r in range(nr):
        _store_nb(mx_out, l_out, i0 + r, mxb[r], sb[r], combined)


@njit(cache=True, error_model="numpy")
def _lse_long_row_nb(a, i, mx_out, l_out, combined, buf):
    """Eq. (1) for one row longer than ``buf``, processed in chunks of ``buf.size``."""
    m = a.shape[1]
    mx = _row_max_nb(a, i)
    if not (-np.inf < mx < np.inf):
        _store_nb(mx_out, l_out, i, _row_special_nb(a, i, mx), 0.0, combined)
        return
    nb = buf.shape[0]
    n0 = 0
    s = 0.0
    for c0 in range(0, m, nb):
        sc, nc = _exp_sum_nb(a, i, c0, min(m, c0 + nb), mx, buf)
        s += sc
        n0 += nc
    _store_nb(mx_out, l_out, i, mx, log1p_nonneg_nb(s + (n0 - 1)), combined)


@njit(cache=True, error_model="numpy", inline="always")
def _lse_short_block_nb(a, i0, i1, mx_out, l_out, combined, bt, mxb, sb, n0b):
    """Eq. (1) for rows i0..i1-1 of a short-row ``a`` (n, m), m <= ``_SHORT``, vectorized
    across rows: the block is transposed into ``bt`` (m, R), each row's maximum taken on
    the way (one scalar chain per row, hidden behind the reads of ``a``), so that the
    exponentials, the tie counts and the sums run as loops over rows (contiguous, SIMD).
    Row i's sum runs over j = 0..m-1 in order (no dependence on the block layout).
    Stores like :func:`_lse_block_nb`.
    """
    m = a.shape[1]
    nr = i1 - i0
    for r in range(nr):
        w = -np.inf
        for j in range(m):
            v = a[i0 + r, j]
            bt[j, r] = v
            w = v if v > w else w  # NaN is skipped, as in _row_max_nb
        mxb[r] = w
        sb[r] = 0.0
        n0b[r] = 0.0
    for j in range(m):
        for r in range(nr):
            t = bt[j, r] - mxb[r]
            e = exp_nonpos_nb(t)
            tie = t == 0.0
            sb[r] += 0.0 if tie else e  # maximal terms are counted in n0b
            n0b[r] += 1.0 if tie else 0.0
    for r in range(nr):
        sb[r] = log1p_nonneg_nb(sb[r] + (n0b[r] - 1.0))
    for r in range(nr):  # rows whose maximum is not finite (rare): scipy's special values
        mx = mxb[r]
        if not (-np.inf < mx < np.inf):
            mxb[r] = _row_special_nb(a, i0 + r, mx)
            sb[r] = 0.0
    for r in range(nr):
        _store_nb(mx_out, l_out, i0 + r, mxb[r], sb[r], combined)


@njit(cache=True, error_model="numpy")
def _lse_range_nb(a, b0, b1, rows_per_block, mx_out, l_out, combined):
    """Blocks b0..b1-1 of ``rows_per_block`` rows each (one work unit)."""
    n, m = a.shape
    mxb = np.empty(rows_per_block)
    sb = np.empty(rows_per_block)
    if m <= _SHORT:
        bt = np.empty((m, rows_per_block))
        n0b = np.empty(rows_per_block)
        for b in range(b0, b1):
            i0 = b * rows_per_block
            _lse_short_block_nb(a, i0, min(n, i0 + rows_per_block), mx_out, l_out, combined,
                                bt, mxb, sb, n0b)
        return
    buf = np.empty(_BLOCK)
    for b in range(b0, b1):
        i0 = b * rows_per_block
        i1 = min(n, i0 + rows_per_block)
        if m > _BLOCK:
            for i in range(i0, i1):
                _lse_long_row_nb(a, i, mx_out, l_out, combined, buf)
        else:
            _lse_block_nb(a, i0, i1, mx_out, l_out, combined, buf, mxb, sb)


def _lse_parts(a, mx_out=None, l_out=None, combined=False):
    """Row-wise eq. (1) of ``a`` (n, m): returns (mx, l), each (n,); lse = mx + l with
    l = log1p(S). ``mx_out``, ``l_out`` (n,), if given, receive them (see
    :func:`lse_parts`: arrays allocated by NumPy cost fewer page faults). With
    ``combined``, ``l_out`` receives lse = mx + l itself and ``mx_out`` is not written
    (pass ``l_out`` for it; see :func:`lse_rows`).

    Blocks of rows in work units of ``_UNIT`` blocks (``prange`` in the parallel build);
    each row is reduced serially by the same code, so both builds give identical results.
    log1p is the vectorizable :func:`lvmref.kernels.fastexp.log1p_nonneg_nb`, one loop
    over each block's rows (a scalar ``math.log1p`` per row cost more than the exp pass
    at m = 10, and NumPy's ``np.log1p`` is scalar libm on AVX2 too).
    """
    n, m = a.shape
    if l_out is None:
        l_out = np.empty(n)
    if mx_out is None:
        mx_out = l_out if combined else np.empty(n)
    rpb = max(1, _BLOCK // max(m, 1))
    nblocks = (n + rpb - 1) // rpb
    nunits = (nblocks + _UNIT - 1) // _UNIT
    for u in prange(nunits):
        _lse_range_nb(a, u * _UNIT, min(nblocks, (u + 1) * _UNIT), rpb, mx_out, l_out,
                      combined)
    return mx_out, l_out


lse_parts_nb, lse_parts_nb_serial = parallel_and_serial(_lse_parts)


@benign_underflow
def lse_parts_np(a2: np.ndarray):
    """Row-wise max-split log-sum-exp of a 2-D array (n, m) -> (mx, S), each (n,).

    ``lse = mx + log1p(S)`` with ``S = sum_{i != argmax} exp(a_i - mx)`` for rows with a
    finite maximum; for the other rows ``mx`` is the special result (NaN, +inf, -inf)
    and ``S = 0``.
    """
    n, m = a2.shape
    if m == 0:
        return np.full(n, -np.inf), np.zeros(n)
    with np.errstate(invalid="ignore", over="ignore"):
        idx = np.argmax(a2, axis=1)  # the first NaN, if any, else the first maximum
        mx = a2[np.arange(n), idx]
        finite_max = np.isfinite(mx)
        shift = np.where(finite_max, mx, 0.0)
        e = np.exp(a2 - shift[:, None])
        e[np.arange(n), idx] = 0.0
        s = e.sum(axis=1)
    s = np.where(finite_max, s, 0.0)
    mx = np.where(np.isnan(a2).any(axis=1), np.nan, mx)
    return mx, s


def _pick_parts(rows):
    """:func:`lse_parts_nb` (parallel for at least ``PARALLEL_MIN_WORK`` elements and
    several rows), its serial build, or :func:`lse_parts_np` for ``rows`` (n, m)."""
    work = rows.size if rows.shape[0] > 1 else 0
    return pick(lse_parts_nb, lse_parts_np, serial_nb=lse_parts_nb_serial, work=work)


def lse_parts(rows):
    """(mx, l) per row of ``rows`` (n, m), eq. (1); lse = mx + l, l = log1p(S).

    Dispatches to :func:`lse_parts_nb`, its serial build, or :func:`lse_parts_np`
    (:func:`_pick_parts`).
    """
    f = _pick_parts(rows)
    if f is lse_parts_np:
        mx, s = f(rows)
        return mx, np.log1p(s)
    # The outputs are allocated here, by NumPy, not inside the kernel: a fresh 8 MB array
    # from Numba's allocator was first touched at ~3 us per 4 KiB page on the development
    # VM (two of them: 10 ms, a fifth of the kernel's time at (1e6, 10)), NumPy's reuse of
    # freed blocks and huge pages avoid most of that.
    n = rows.shape[0]
    return f(rows, np.empty(n), np.empty(n))


def lse_rows(rows):
    """log-sum-exp of each row of ``rows`` (n, m) -> (n,), eq. (1): mx + log1p(S).

    The same values as ``mx + l`` from :func:`lse_parts` (bitwise), written by the kernel
    into one array: no second (n,) output, whose first touch (page faults) cost a fifth
    of the time at (1e6, 10) on the development VM, and no separate addition pass.
    """
    f = _pick_parts(rows)
    if f is lse_parts_np:
        mx, s = f(rows)
        return mx + np.log1p(s)
    out = np.empty(rows.shape[0])
    return f(rows, out, out, True)[1]


@njit(cache=True)
def log_softmax_rows_nb(a, mx, lg, out=None):
    """(a - mx) - l per row, with mx from :func:`lse_parts` and l = log1p(S); (n, m) -> (n, m)
    (into ``out`` (n, m) if given)."""
    n, m = a.shape
    if out is None:
        out = np.empty_like(a)
    for i in range(n):
        for j in range(m):
            out[i, j] = (a[i, j] - mx[i]) - lg[i]
    return out


@benign_underflow
def logsumexp_np(a: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
    """log(sum(exp(a))) along ``axis`` with scipy.special.logsumexp's special values.

    Max-split form, eq. (1): with m = max(a),
    lse = m + log1p(sum_{i != argmax} exp(a_i - m)), so ``logsumexp([0, -40])`` keeps its
    4e-18 contribution. Empty or all -inf -> -inf; any +inf (and no NaN) -> +inf; any
    NaN -> NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    if axis is None:
        mx, s = lse_parts_np(a.reshape(1, -1))
        out = np.asarray((mx + np.log1p(s))[0])
        if keepdims:
            out = out.reshape((1,) * a.ndim)
        return out
    axis = axis % a.ndim if a.ndim else 0
    moved = np.moveaxis(a, axis, -1)
    lead = moved.shape[:-1]
    mx, s = lse_parts_np(moved.reshape(int(np.prod(lead)), moved.shape[-1]))
    res = (mx + np.log1p(s)).reshape(lead)
    if keepdims:
        res = np.expand_dims(res, axis)
    return res


@benign_underflow
def log_softmax_np(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """(a - mx) - log1p(S) along ``axis`` of ``a`` (ndim >= 1); see :func:`lse_parts_np`.

    For rows whose maximum is not finite this is a - lse (scipy's special values).

    Subtracting the maximum first keeps the result accurate when |a| is large.
    """
    a = np.asarray(a, dtype=np.float64)
    moved = np.moveaxis(a, axis, -1)
    rows = moved.reshape(int(np.prod(moved.shape[:-1])), moved.shape[-1])
    mx, s = lse_parts_np(rows)
    lg = np.log1p(s)
    with np.errstate(invalid="ignore"):
        out = (rows - mx[:, None]) - lg[:, None]
    return np.moveaxis(out.reshape(moved.shape), -1, axis)


# --------------------------------------------------------------------------- public

def _as_rows(a, axis):
    """C-contiguous 2-D view/copy with ``axis`` last: (prod(other dims), a.shape[axis])."""
    if axis is None:
        return np.ascontiguousarray(a.reshape(1, -1))
    moved = np.moveaxis(a, axis, -1)
    return np.ascontiguousarray(moved.reshape(int(np.prod(moved.shape[:-1])), moved.shape[-1]))


def _reduced_shape(shape, axis, keepdims):
    if axis is None:
        return (1,) * len(shape) if keepdims else ()
    if keepdims:
        return shape[:axis] + (1,) + shape[axis + 1 :]
    return shape[:axis] + shape[axis + 1 :]


@benign_underflow
def logsumexp(a, axis=None, keepdims=False):
    """log(sum(exp(a))) along ``axis``, with the semantics of ``scipy.special.logsumexp``.

    Computed as m + log1p(sum_{i != argmax} exp(a_i - m)) (eq. (1) of the module
    docstring). Special values: any NaN -> NaN; otherwise any +inf ->
    +inf; an empty reduction or all -inf -> -inf.

    Parameters
    ----------
    a : array_like, any shape
        Real values (bool/int/float32 are converted to float64).
    axis : int or None
        Axis to reduce; ``None`` reduces over all elements.
    keepdims : bool
        Keep the reduced axis (axes) with length 1.

    Returns
    -------
    ndarray
        ``a.shape`` without ``axis`` (with length 1 there if ``keepdims``); 0-d for
        ``axis=None`` without ``keepdims``.
    """
    a = as_float_array(a, "a", allow_empty=True, finite=False, copy=False)
    keepdims = check_flag(keepdims, "keepdims")
    ax = check_axis(axis, a.ndim, array="a")
    return lse_rows(_as_rows(a, ax)).reshape(_reduced_shape(a.shape, ax, keepdims))


@benign_underflow
def log_mean_exp(a, axis=None, keepdims=False):
    """log(mean(exp(a))) = logsumexp(a) - log n along ``axis`` (n = number reduced).

    Parameters
    ----------
    a : array_like, any shape
    axis : int or None
    keepdims : bool

    Returns
    -------
    ndarray
        Shape as for :func:`logsumexp`.

    Raises
    ------
    ValueError
        If the reduction is over zero elements (the mean of nothing is undefined).
    """
    a = as_float_array(a, "a", allow_empty=True, finite=False, copy=False)
    keepdims = check_flag(keepdims, "keepdims")
    ax = check_axis(axis, a.ndim, array="a")
    n = a.size if ax is None else a.shape[ax]
    if n == 0:
        raise ValueError(f"a must have at least one element along the reduced axis, got {a.shape}")
    out = lse_rows(_as_rows(a, ax))
    out -= np.log(n)
    return out.reshape(_reduced_shape(a.shape, ax, keepdims))


@benign_underflow
def log_softmax(a, axis=-1):
    """log softmax along ``axis``: (a - m) - log1p(sum_{i != argmax} exp(a_i - m)).

    Equal to a - logsumexp(a, axis, keepdims=True), with the maximum subtracted first so
    that large offsets (|a| ~ 1e4) do not cost accuracy; special values as
    ``scipy.special.log_softmax`` (rows with NaN -> NaN; a row with +inf -> NaN at the
    +inf entries and -inf elsewhere; an all -inf row -> NaN).

    Parameters
    ----------
    a : array_like, ndim >= 1
    axis : int

    Returns
    -------
    ndarray, same shape as ``a``
    """
    a = as_float_array(a, "a", allow_empty=True, finite=False, copy=False)
    if a.ndim == 0:
        raise ValueError("a must have at least 1 dimension for log_softmax, got a 0-d array")
    if axis is None:
        raise TypeError("axis must be an int for log_softmax, got NoneType")
    ax = check_axis(axis, a.ndim, array="a")
    if not jit_enabled():
        return log_softmax_np(a, ax)
    rows = _as_rows(a, ax)
    mx, lg = lse_parts(rows)
    out = log_softmax_rows_nb(rows, mx, lg, np.empty(rows.shape))
    moved_shape = a.shape[:ax] + a.shape[ax + 1 :] + (a.shape[ax],)
    return np.moveaxis(out.reshape(moved_shape), -1, ax)


# --------------------------------------------------------------------------- streaming

def lse_stream_init(n: int):
    """Empty streaming state for ``n`` rows: ``m = -inf`` and ``r = 0``, each shape (n,)."""
    return np.full(n, -np.inf), np.zeros(n)


@njit(cache=True)
def lse_stream_update_nb(m, r, a):
    """Merge chunk ``a`` (n, c) into the state ``(m, r)`` (each (n,)); return new (m, r)."""
    n, c = a.shape
    m_out = m.copy()
    r_out = r.copy()
    for i in range(n):
        mi = m_out[i]
        ri = r_out[i]
        for j in range(c):
            aj = a[i, j]
            if aj > mi:
                if mi == -np.inf:
                    ri = 0.0
                else:
                    ri = (1.0 + ri) * np.exp(mi - aj)
                mi = aj
            elif aj != -np.inf:
                ri += np.exp(aj - mi)
        m_out[i] = mi
        r_out[i] = ri
    return m_out, r_out


@benign_underflow
def lse_stream_update_np(m, r, a):
    """NumPy twin of :func:`lse_stream_update_nb`: same state update, vectorised per chunk."""
    m = np.asarray(m, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    n, c = a.shape
    if c == 0:
        return m.copy(), r.copy()
    rows = np.arange(n)
    idx = np.argmax(a, axis=1)
    cmax = a[rows, idx]
    new_max = cmax > m
    m_new = np.where(new_max, cmax, m)
    shift = np.where(np.isfinite(m_new), m_new, 0.0)
    e = np.exp(a - shift[:, None])  # -inf entries -> 0; rows with m_new=-inf are all 0
    e[rows[new_max], idx[new_max]] = 0.0  # the new max is the "1" of (1 + r)
    with np.errstate(invalid="ignore"):
        carried = np.where(
            new_max & np.isfinite(m), (1.0 + r) * np.exp(m - shift), np.where(new_max, 0.0, r)
        )
    return m_new, carried + e.sum(axis=1)


def lse_stream_update(m, r, a):
    """Merge chunk ``a`` (n, c) into the state ``(m, r)``: :func:`lse_stream_update_nb`, or
    its twin :func:`lse_stream_update_np` without JIT. Returns new (m, r), each (n,)."""
    f = pick(lse_stream_update_nb, lse_stream_update_np)
    return f(np.ascontiguousarray(m, dtype=np.float64), np.ascontiguousarray(r, dtype=np.float64),
             np.ascontiguousarray(a, dtype=np.float64))


@benign_underflow
def lse_stream_finalize(m, r):
    """Log-sum-exp from the state: ``m + log1p(r)``, and ``-inf`` where ``m = -inf``. (n,)."""
    m = np.asarray(m, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    finite = np.isfinite(m)
    return np.where(finite, np.where(finite, m, 0.0) + np.log1p(r), m)
