"""Gaussian-mixture EM kernels (Numba) with their plain-NumPy twins side by side.

Equation numbers refer to the derivation in the docstring of :mod:`lvmref.gmm`.
Inputs are assumed validated (C-contiguous float64, finite); the public, validating
functions live in :mod:`lvmref.gmm`.

Shapes: ``X (n, d)``, ``means (k, d)``, ``resp (n, k)``,
``prec_chol (k, d, d)`` upper-triangular factors ``U_k`` with ``Lambda_k = U_k U_k^T``
(full; tied uses the same kernel with ``k`` copies of one factor),
``prec_diag (k, d)`` = ``1 / sigma_kj`` (diag; spherical is broadcast to ``(k, d)``),
``const (k,)`` = ``log pi_k + log|U_k| - d/2 log 2 pi`` (eq. 14; ``log pi_k = 0`` for
plain densities).

Memory layout
-------------
The fused E-step kernels return ``resp`` column-major (a Fortran-ordered ``(n, k)``
array, the transpose of a C-contiguous ``(k, n)`` one): they compute a block's
responsibilities component by component across its rows, so that the stores are
contiguous SIMD stores, and the M-step kernels then read each component's column
contiguously. The values are those of the row-major layout; every kernel accepts
either layout.

Parallelism and determinism
---------------------------
E-step kernels run over fixed blocks of ``EBLOCK`` rows with ``prange``; each row is
independent, so the result does not depend on the thread count. M-step kernels
(sufficient statistics, eqs. 16-19) split the rows into fixed blocks of ``BLOCK`` rows,
accumulate each block serially, and add the block partials serially in block order: the
sums are therefore identical for any number of threads (but not bit-identical to the
NumPy twins, which use BLAS; the tests compare them to round-off).

The M-step's sums over the rows of a block are reassociated SIMD dot products
(:func:`_dot_ra`, ``fastmath={'reassoc', 'contract'}`` on those loops only): their
order is fixed when the kernel is compiled, so it is the same for every block and every
thread count (it may differ between CPUs of different vector width, by rounding).

Speed (issue 19; N = 1e5, D = 10, K = 16, 1 thread, 2-core AMD EPYC with AVX2 + FMA,
machine shared with other jobs, ``validation/bench_gmm.py``). What was tried, in the
order of the gains, measured against the previous kernels in one process:

* M-step sums as reassociated SIMD dots instead of four scalar partial sums (which ran
  at about one multiply-add per cycle): ``scatter_full`` 3x, ``scatter_diag`` 2x
  (together with computing the weighted squared deviation inside the dot).
* The full E-step's distances unrolled for d <= ``MAX_UNROLL`` features (generated
  code, :func:`_maha_full_source`): the d(d+1)/2 factors and the row's deviations stay
  in registers instead of one load-load-store per multiply-add: 1.6x for the E-step,
  bitwise the same results.
* The M-step in one pass over X and resp instead of two (block-centred partials
  combined exactly, (M1)-(M3) below): 1.4x for the diagonal M-step, ~1.1x for the
  full one (whose 55 sums per row dominate either way).
* The E-step's normalisation across the rows of a block (``exp_nonpos_nb``,
  ``log1p_nonneg_nb``; a scalar ``math.log1p`` per row was as costly as the
  exponentials) and ``resp`` written column-major (contiguous stores; the M-step then
  reads columns contiguously): 0.75-0.9x the E-step time.
* Not better: GEMM-based variants. Centred per-component products through BLAS
  (``(X_block - mu_k) @ U_k``, 512 x 10 x 10) cost more in call overhead than the
  whole unrolled E-step, and BLAS's rate for the M-step's shapes (10 x 1e5 x 10) was
  3-4 GMAC/s against 6-8 for the SIMD dots; the uncentred ``X @ U_k - mu_k U_k`` that
  scikit-learn uses loses digits for data far from the origin, which the centred-form
  rule of this library excludes. Block sizes of 32-1024 rows measured the same within
  the noise.
* Issue-19 follow-up, each measured against the code before it in one process:
  the M-step's transposed blocks padded to a stride of ``BLOCK_STRIDE`` (3x faster
  transposes, see there); E-step outputs allocated by NumPy, not by Numba (fresh
  Numba arrays are first touched at ~3 us per 4 KiB page on the development VM); the
  weighted and centred rows of the full scatter formed inside the sums (no stored
  copies; bitwise the same); and one pass over X per EM iteration,
  :func:`em_partials` (E-step of each block, then the M-step partials of its
  responsibilities while they are in cache; ``resp`` is never stored; bitwise what the
  two separate kernels give): diag 0.89x, full 0.96-0.99x. Tried and dropped: 2 x 4
  tiles of the scatter sums (no gain once the rest was fixed), 256-row M-step blocks
  (1.1-1.2x slower), reading resp columns in place instead of copying them (within
  noise, and strided for row-major input).
* Result: see ``validation/bench_gmm.py`` and the README (medians of 5, the two
  implementations interleaved, final lower bounds equal to all printed digits). What
  limits it: the 55 weighted sums per row and component of the full scatter, the N K
  exponentials (vectorized, but ~2 ns each on this CPU) and the transposes of X into
  row blocks; the Python/NumPy glue of an iteration is now ~1-2 ms.

Each hot kernel has a parallel and a serial build of the same body (``foo_nb`` and
``foo_nb_serial``, bit-identical results) and a NumPy twin ``foo_np``; the dispatcher
``foo`` picks one (:func:`lvmref.kernels.dispatch.pick`: the serial build for small
problems or a single Numba thread, the twin under ``NUMBA_DISABLE_JIT=1``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .dispatch import parallel_and_serial, pick
from .fastexp import exp_nonpos_nb, log1p_nonneg_nb
from .fpenv import benign_underflow

__all__ = [
    "BLOCK",
    "EBLOCK",
    "weighted_log_prob_full",
    "weighted_log_prob_full_nb",
    "weighted_log_prob_full_np",
    "weighted_log_prob_diag",
    "weighted_log_prob_diag_nb",
    "weighted_log_prob_diag_np",
    "estep_buffers",
    "estep_full",
    "estep_full_nb",
    "estep_full_nb_serial",
    "estep_full_np",
    "estep_full_unrolled_nb",
    "estep_full_unrolled_nb_serial",
    "MAX_UNROLL",
    "estep_diag",
    "estep_diag_nb",
    "estep_diag_nb_serial",
    "estep_diag_np",
    "first_moments",
    "first_moments_nb",
    "first_moments_nb_serial",
    "first_moments_np",
    "scatter_full",
    "scatter_full_nb",
    "scatter_full_nb_serial",
    "scatter_full_np",
    "scatter_diag",
    "scatter_diag_nb",
    "scatter_diag_nb_serial",
    "scatter_diag_np",
    "moment_partials_diag",
    "moment_partials_diag_nb",
    "moment_partials_diag_nb_serial",
    "moment_partials_diag_np",
    "moment_partials_full",
    "moment_partials_full_nb",
    "moment_partials_full_nb_serial",
    "moment_partials_full_np",
    "combine_moments",
    "em_partials",
    "em_partials_diag_nb",
    "em_partials_diag_nb_serial",
    "em_partials_full_nb",
    "em_partials_full_nb_serial",
]

#: Rows per block in the M-step reductions (fixed, so sums do not depend on threads).
BLOCK = 1024
#: Row stride (elements) of the M-step's transposed blocks ``(d, BLOCK_STRIDE)``: BLOCK plus
#: one cache line. With a stride of exactly BLOCK (8 KiB) all d rows of a block start in
#: the same L1 cache set, and the row-by-row transpose (a store to each of the d rows per
#: input row) ran 3x slower (2.2 vs 0.74 ms per 1e6 elements, measured in one process,
#: AVX2 machine): the M-step partials took 16.6 instead of 22.8 ms (full) and 5.6 instead
#: of 6.8 ms (diag) at N = 1e5, D = 10, K = 16.
BLOCK_STRIDE = BLOCK + 8


# ---------------------------------------------------------------------------
# Per-component log densities, eq. (14):  log pi_k + log N(x_i | mu_k, Sigma_k)
#   = const_k - 1/2 || (x_i - mu_k) U_k ||^2


@njit(cache=True, inline="always")
def _maha_full_row(x, means, prec_chol, k, y):
    """|| (x - mu_k) U_k ||^2 for upper-triangular U_k; ``y`` is (d,) scratch."""
    d = x.shape[0]
    for j in range(d):
        y[j] = 0.0
    for l in range(d):
        dl = x[l] - means[k, l]
        for j in range(l, d):
            y[j] += dl * prec_chol[k, l, j]
    s = 0.0
    for j in range(d):
        s += y[j] * y[j]
    return s


@njit(cache=True, inline="always")
def _maha_diag_row(x, means, prec_diag, k):
    """sum_j ((x_j - mu_kj) / sigma_kj)^2."""
    s = 0.0
    for j in range(x.shape[0]):
        t = (x[j] - means[k, j]) * prec_diag[k, j]
        s += t * t
    return s


def _weighted_log_prob_full(X, means, prec_chol, const):
    """(n, k) matrix of ``const_k - 1/2 ||(x_i - mu_k) U_k||^2`` (eq. 14), full factors."""
    n, d = X.shape
    kk = means.shape[0]
    out = np.empty((n, kk))
    for i in prange(n):
        y = np.empty(d)
        for k in range(kk):
            out[i, k] = const[k] - 0.5 * _maha_full_row(X[i], means, prec_chol, k, y)
    return out


@benign_underflow
def weighted_log_prob_full_np(X, means, prec_chol, const):
    """NumPy twin of :func:`weighted_log_prob_full_nb`."""
    diff = X[:, None, :] - means[None, :, :]  # (n, k, d)
    y = np.einsum("nkl,klj->nkj", diff, prec_chol)
    return const[None, :] - 0.5 * np.einsum("nkj,nkj->nk", y, y)


def _weighted_log_prob_diag(X, means, prec_diag, const):
    """(n, k) matrix of ``const_k - 1/2 sum_j ((x_ij - mu_kj)/sigma_kj)^2`` (eq. 14)."""
    n = X.shape[0]
    kk = means.shape[0]
    out = np.empty((n, kk))
    for i in prange(n):
        for k in range(kk):
            out[i, k] = const[k] - 0.5 * _maha_diag_row(X[i], means, prec_diag, k)
    return out


@benign_underflow
def weighted_log_prob_diag_np(X, means, prec_diag, const):
    """NumPy twin of :func:`weighted_log_prob_diag_nb`."""
    z = (X[:, None, :] - means[None, :, :]) * prec_diag[None, :, :]
    return const[None, :] - 0.5 * np.einsum("nkj,nkj->nk", z, z)


# ---------------------------------------------------------------------------
# Fused E-step, eqs. (10)-(12): per row, log-densities -> max-split log-sum-exp ->
# responsibilities r_ik = exp(a_ik - lse_i), log p(x_i) = lse_i.


@njit(cache=True, error_model="numpy")  # no zero-division branch: the loops vectorize
def _normalize_block(at, m, resp, lo, log_norm, mx, am, s):
    """Max-split log-sum-exp and softmax of the rows of a block, eqs. (11)-(12).

    ``at`` (k, EBLOCK) holds a_ik transposed (component-major), so that every step runs
    as a loop over the block's ``m`` rows (contiguous, SIMD): the first maximal component
    ``am`` and its value ``mx`` per row, ``exp(a_ik - mx)`` for the others (the
    vectorizable :func:`lvmref.kernels.fastexp.exp_nonpos_nb`, relative error <= 2.4 u;
    Numba 0.68 has no SVML and a scalar ``math.exp`` loop was the largest cost of the
    diagonal E-step), their sum S in the order k = 0..K-1, ``log p(x_i) = mx +
    log1p(S)`` (:func:`lvmref.kernels.fastexp.log1p_nonneg_nb`, <= 2.8 u; a scalar
    ``math.log1p`` per row cost about as much as the exponentials) and
    ``r_ik = exp(a_ik - mx) / (1 + S)`` with ``r_i,am = 1 / (1 + S)``. The maximal term
    is set aside (its term is exactly 1) so that S keeps full relative accuracy in
    ``log1p(S)``. ``mx``, ``am``, ``s`` are (EBLOCK,) scratch; ``am`` is a float index.
    Rows with a NaN or all -inf entries give a non-finite ``log_norm`` (handled by the
    caller).
    """
    kk = at.shape[0]
    for i in range(m):
        mx[i] = at[0, i]
        am[i] = 0.0
        s[i] = 0.0
    for k in range(1, kk):
        kf = float(k)
        for i in range(m):
            v = at[k, i]
            big = v > mx[i]
            mx[i] = v if big else mx[i]
            am[i] = kf if big else am[i]
    for k in range(kk):
        kf = float(k)
        for i in range(m):
            e = exp_nonpos_nb(at[k, i] - mx[i])
            e = 0.0 if am[i] == kf else e
            at[k, i] = e
            s[i] += e
    for i in range(m):
        log_norm[lo + i] = mx[i] + log1p_nonneg_nb(s[i])
        s[i] = 1.0 / (1.0 + s[i])
    for k in range(kk):  # contiguous stores into the column-major resp
        for i in range(m):
            resp[lo + i, k] = at[k, i] * s[i]
    for i in range(m):
        resp[lo + i, int(am[i])] = s[i]


#: Rows per block in the E-step kernels (the block is transposed so that the inner loops
#: run over rows, contiguous in memory, and vectorise).
EBLOCK = 128


@njit(cache=True, inline="always")
def _transpose_block(X, lo, m, xt):
    """xt[j, i] = X[lo + i, j] for i < m."""
    d = X.shape[1]
    for i in range(m):
        for j in range(d):
            xt[j, i] = X[lo + i, j]


#: Largest number of features with an unrolled full-covariance E-step (below).
MAX_UNROLL = 16


def _maha_full_source(d):
    """Python source of the unrolled block kernel for ``d`` features (see
    :func:`_maha_block_full`): for component k and the rows i < m of a transposed block
    ``xt`` (d, >= m), ``at[k, i] = const_k - 1/2 ||(x_i - mu_k) U_k||^2`` (eq. 14) with
    ``mu_k`` and the upper triangle of ``U_k`` held in scalars and every (l, j) term
    written out, so that the loop over rows is one straight-line SIMD body.

    The operations and their order are those of the generic loops of
    :func:`_estep_full`: d_l = x_l - mu_l; y_j = d_0 U_0j + d_1 U_1j + ... + d_j U_jj
    (left to right); q = y_0^2 + ... + y_{d-1}^2; a = c - 0.5 q -- so the results are
    bitwise equal (a test asserts it).
    """
    lines = ["def impl(xt, m, means, U, const, k, at, dtup):"]
    lines += [f"    mu{j} = means[k, {j}]" for j in range(d)]
    lines += [f"    u{i}_{j} = U[k, {i}, {j}]" for j in range(d) for i in range(j + 1)]
    lines += ["    c = const[k]", "    for r in range(m):"]
    lines += [f"        d{j} = xt[{j}, r] - mu{j}" for j in range(d)]
    for j in range(d):
        lines.append(f"        y = d0 * u0_{j}")
        lines += [f"        y += d{i} * u{i}_{j}" for i in range(1, j + 1)]
        lines.append("        q = y * y" if j == 0 else "        q += y * y")
    lines.append("        at[k, r] = c - 0.5 * q")
    return "\n".join(lines)


def _maha_block_full(xt, m, means, U, const, k, at, dtup):
    """Unrolled eq. (14) for one component and block (jitted only; see the overload)."""
    raise NotImplementedError("only callable from jitted code")


@overload(_maha_block_full)
def _maha_block_full_overload(xt, m, means, U, const, k, at, dtup):
    """Generate the unrolled kernel for d = len(dtup) features (a tuple type carries d,
    so each d is its own cached specialization of the caller)."""
    if not isinstance(dtup, types.UniTuple):
        return None
    namespace = {}
    exec(_maha_full_source(dtup.count), namespace)  # noqa: S102 -- our own generated code
    return namespace["impl"]


def _estep_full_unrolled(X, means, prec_chol, const, dtup, resp_t=None, log_norm=None):
    """:func:`_estep_full` with the distance loops unrolled for d = len(dtup) features.

    The generic kernel keeps each y_j of a block in memory and updates it once per (l, j)
    pair (two loads and a store per multiply-add); written out for a known d, all
    d(d+1)/2 factors and the row's d deviations stay in registers and the loop over the
    block's rows runs as one SIMD body. Measured in one process (N = 1e5, d = 10, K = 16,
    1 thread, AVX2): 26 ms instead of 87 ms for the distances. Bitwise equal results.
    Output buffers ``resp_t``, ``log_norm``: as in :func:`_estep_diag`.
    """
    n, d = X.shape
    kk = means.shape[0]
    nb = (n + EBLOCK - 1) // EBLOCK
    if resp_t is None:
        resp_t = np.empty((kk, n))
    if log_norm is None:
        log_norm = np.empty(n)
    resp = resp_t.T  # column-major (n, k): see "Memory layout" above
    for b in prange(nb):
        lo = b * EBLOCK
        m = min(n, lo + EBLOCK) - lo
        xt = np.empty((d, EBLOCK))
        at = np.empty((kk, EBLOCK))
        mx = np.empty(EBLOCK)
        am = np.empty(EBLOCK)
        ssum = np.empty(EBLOCK)
        _transpose_block(X, lo, m, xt)
        for k in range(kk):
            _maha_block_full(xt, m, means, prec_chol, const, k, at, dtup)
        _normalize_block(at, m, resp, lo, log_norm, mx, am, ssum)
    return resp, log_norm


def _estep_full(X, means, prec_chol, const, resp_t=None, log_norm=None):
    """Fused E-step (full factors): returns ``resp (n, k)`` and ``log_norm (n,)``.

    Per block of ``EBLOCK`` rows: ``y = (x_i - mu_k) U_k`` (eq. 14) with the rows in the
    vectorised inner loop, then the max-split log-sum-exp of eq. (11) per row. The sums
    run in the same order as the row-wise formula (no reassociation). Output buffers
    ``resp_t``, ``log_norm``: as in :func:`_estep_diag`.
    """
    n, d = X.shape
    kk = means.shape[0]
    nb = (n + EBLOCK - 1) // EBLOCK
    if resp_t is None:
        resp_t = np.empty((kk, n))
    if log_norm is None:
        log_norm = np.empty(n)
    resp = resp_t.T  # column-major (n, k): see "Memory layout" above
    for b in prange(nb):
        lo = b * EBLOCK
        m = min(n, lo + EBLOCK) - lo
        xt = np.empty((d, EBLOCK))
        dt = np.empty((d, EBLOCK))
        y = np.empty((d, EBLOCK))
        q = np.empty(EBLOCK)
        at = np.empty((kk, EBLOCK))
        mx = np.empty(EBLOCK)
        am = np.empty(EBLOCK)
        ssum = np.empty(EBLOCK)
        _transpose_block(X, lo, m, xt)
        for k in range(kk):
            for l in range(d):
                mu = means[k, l]
                for i in range(m):
                    dt[l, i] = xt[l, i] - mu
                    y[l, i] = 0.0
            for l in range(d):
                for j in range(l, d):
                    u = prec_chol[k, l, j]
                    for i in range(m):
                        y[j, i] += dt[l, i] * u
            for i in range(m):
                q[i] = 0.0
            for j in range(d):
                for i in range(m):
                    q[i] += y[j, i] * y[j, i]
            c = const[k]
            for i in range(m):
                at[k, i] = c - 0.5 * q[i]
        _normalize_block(at, m, resp, lo, log_norm, mx, am, ssum)
    return resp, log_norm


@njit(cache=True, inline="always")
def _dist_block_diag(xt, m, means, prec_diag, const, at, q):
    """``at[k, i] = const_k - 1/2 sum_j ((x_ij - mu_kj) / sigma_kj)^2`` (eq. 14) for every
    component k and the rows i < m of a transposed block ``xt`` (d, >= m); ``q`` is
    (>= m,) scratch."""
    d = xt.shape[0]
    for k in range(means.shape[0]):
        for i in range(m):
            q[i] = 0.0
        for j in range(d):
            mu = means[k, j]
            p = prec_diag[k, j]
            for i in range(m):
                t = (xt[j, i] - mu) * p
                q[i] += t * t
        c = const[k]
        for i in range(m):
            at[k, i] = c - 0.5 * q[i]


def _estep_diag(X, means, prec_diag, const, resp_t=None, log_norm=None):
    """Fused E-step (diagonal factors): returns ``resp (n, k)`` and ``log_norm (n,)``.

    ``resp_t (k, n)`` and ``log_norm (n,)``, if given, are the output buffers (``resp`` is
    ``resp_t.T``): the weighted EM loop passes the same ones every iteration instead of a
    fresh 12.8 MB at N = 1e5, K = 16, whose first-touch page faults cost about 1 ms.
    """
    n, d = X.shape
    kk = means.shape[0]
    nb = (n + EBLOCK - 1) // EBLOCK
    if resp_t is None:
        resp_t = np.empty((kk, n))
    if log_norm is None:
        log_norm = np.empty(n)
    resp = resp_t.T  # column-major (n, k): see "Memory layout" above
    for b in prange(nb):
        lo = b * EBLOCK
        m = min(n, lo + EBLOCK) - lo
        xt = np.empty((d, EBLOCK))
        q = np.empty(EBLOCK)
        at = np.empty((kk, EBLOCK))
        mx = np.empty(EBLOCK)
        am = np.empty(EBLOCK)
        ssum = np.empty(EBLOCK)
        _transpose_block(X, lo, m, xt)
        _dist_block_diag(xt, m, means, prec_diag, const, at, q)
        _normalize_block(at, m, resp, lo, log_norm, mx, am, ssum)
    return resp, log_norm


def _normalize_np(a):
    """NumPy twin of the row normalisation: max-split log-sum-exp and softmax."""
    n = a.shape[0]
    am = np.argmax(a, axis=1)
    m = a[np.arange(n), am]
    e = np.exp(a - m[:, None])
    e[np.arange(n), am] = 0.0
    s = e.sum(axis=1)
    e[np.arange(n), am] = 1.0
    return e / (1.0 + s)[:, None], m + np.log1p(s)


@benign_underflow
def estep_full_np(X, means, prec_chol, const):
    """NumPy twin of :func:`estep_full_nb`."""
    return _normalize_np(weighted_log_prob_full_np(X, means, prec_chol, const))


@benign_underflow
def estep_diag_np(X, means, prec_diag, const):
    """NumPy twin of :func:`estep_diag_nb`."""
    return _normalize_np(weighted_log_prob_diag_np(X, means, prec_diag, const))


# ---------------------------------------------------------------------------
# M-step sufficient statistics, eqs. (16)-(19).


def _first_moments(X, resp):
    """``N_k = sum_i r_ik`` (k,) and ``S_k = sum_i r_ik x_i`` (k, d), blocked (eq. 16).

    Each block of ``BLOCK`` rows of X is transposed (and each column of resp copied, a
    contiguous copy for the column-major resp of the E-step) so that the sums over rows
    are SIMD dot products (:func:`_dot_ra`) on contiguous memory.
    """
    n, d = X.shape
    kk = resp.shape[1]
    nb = (n + BLOCK - 1) // BLOCK
    pn = np.zeros((nb, kk))
    ps = np.zeros((nb, kk, d))
    for b in prange(nb):
        lo = b * BLOCK
        m = min(n, lo + BLOCK) - lo
        xt = np.empty((d, BLOCK_STRIDE))
        w = np.empty(BLOCK)
        _transpose_block(X, lo, m, xt)
        for k in range(kk):
            for i in range(m):  # contiguous for the column-major resp of the E-step
                w[i] = resp[lo + i, k]
            pn[b, k] = _sum_ra(w, m)
            for j in range(d):
                ps[b, k, j] = _dot_ra(w, xt[j], m)
    nk = np.zeros(kk)
    sk = np.zeros((kk, d))
    for b in range(nb):
        nk += pn[b]
        sk += ps[b]
    return nk, sk


@benign_underflow
def first_moments_np(X, resp):
    """NumPy twin of :func:`first_moments_nb`."""
    return resp.sum(axis=0), resp.T @ X


@njit(cache=True, fastmath={"reassoc", "contract"})
def _dot_ra(a, b, m):
    """sum_{i<m} a[i] * b[i] (1-D arrays), reassociated so that LLVM vectorizes it.

    ``fastmath={'reassoc', 'contract'}`` (no ``nnan``/``ninf``; the M-step inputs are
    finite) lets the loop run as several SIMD partial sums with FMAs, in an order fixed
    at compile time: the same for every call, block and thread count (results differ from
    a sequential sum by rounding only, and between CPUs of different vector width).
    Not inlined at the Numba level, so the flags stay on this loop alone. Replaced
    four scalar partial sums (``_dot4``), which ran at about one multiply-add per cycle.
    """
    s = 0.0
    for i in range(m):
        s += a[i] * b[i]
    return s


@njit(cache=True, fastmath={"reassoc", "contract"})
def _dot4_ra(a, rows, j, m):
    """The four sums sum_{i<m} a[i] * rows[j + t, i], t = 0..3, in one pass (``a`` is
    loaded once for four products: 1.3x faster than four :func:`_dot_ra`); each sum is
    reassociated like :func:`_dot_ra`."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    b0 = rows[j]
    b1 = rows[j + 1]
    b2 = rows[j + 2]
    b3 = rows[j + 3]
    for i in range(m):
        ai = a[i]
        s0 += ai * b0[i]
        s1 += ai * b1[i]
        s2 += ai * b2[i]
        s3 += ai * b3[i]
    return s0, s1, s2, s3


@njit(cache=True, fastmath={"reassoc", "contract"})
def _wcdot4_ra(w, a, ca, rows, j, c0, c1, c2, c3, m):
    """The four sums sum_{i<m} (w[i] (a[i] - ca)) * (rows[j + t, i] - c_t), t = 0..3, in
    one pass, each reassociated like :func:`_dot_ra`. The weighted, centred row and the
    centred rows are formed on the fly instead of being stored first (same roundings, so
    the same sums; the four-accumulator loop waits on FMA latency, so the extra
    subtractions and multiply are nearly free)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    b0 = rows[j]
    b1 = rows[j + 1]
    b2 = rows[j + 2]
    b3 = rows[j + 3]
    for i in range(m):
        ai = w[i] * (a[i] - ca)
        s0 += ai * (b0[i] - c0)
        s1 += ai * (b1[i] - c1)
        s2 += ai * (b2[i] - c2)
        s3 += ai * (b3[i] - c3)
    return s0, s1, s2, s3


@njit(cache=True, fastmath={"reassoc", "contract"})
def _wcdot_ra(w, a, ca, b, cb, m):
    """sum_{i<m} (w[i] (a[i] - ca)) * (b[i] - cb), reassociated like :func:`_dot_ra`."""
    s = 0.0
    for i in range(m):
        s += (w[i] * (a[i] - ca)) * (b[i] - cb)
    return s


@njit(cache=True, fastmath={"reassoc", "contract"})
def _wc_ra(w, a, ca, m):
    """sum_{i<m} w[i] * (a[i] - ca), reassociated like :func:`_dot_ra`."""
    s = 0.0
    for i in range(m):
        s += w[i] * (a[i] - ca)
    return s


@njit(cache=True, fastmath={"reassoc", "contract"})
def _wsqdev_ra(w, x, mu, m):
    """sum_{i<m} w[i] * (x[i] - mu)^2 in one pass (the deviation is formed first, as in
    the centred eq. (18)); the sum is reassociated like :func:`_dot_ra`."""
    s = 0.0
    for i in range(m):
        t = x[i] - mu
        s += w[i] * (t * t)
    return s


@njit(cache=True, fastmath={"reassoc", "contract"})
def _wdev_ra(w, x, c, m):
    """(sum_{i<m} w[i] (x[i] - c), sum_{i<m} w[i] (x[i] - c)^2) in one pass, reassociated
    like :func:`_dot_ra`."""
    e = 0.0
    q = 0.0
    for i in range(m):
        t = x[i] - c
        wt = w[i] * t
        e += wt
        q += wt * t
    return e, q


@njit(cache=True, fastmath={"reassoc", "contract"})
def _sum_ra(a, m):
    """sum_{i<m} a[i], reassociated like :func:`_dot_ra`."""
    s = 0.0
    for i in range(m):
        s += a[i]
    return s


def _scatter_full(X, resp, means):
    """Centred weighted scatter ``sum_i r_ik (x_i - m_k)(x_i - m_k)^T`` (k, d, d), eq. (17).

    Each block of ``BLOCK`` rows is transposed so that the sums over rows run on
    contiguous memory; only the upper triangle is accumulated and then mirrored.
    """
    n, d = X.shape
    kk = resp.shape[1]
    nb = (n + BLOCK - 1) // BLOCK
    part = np.zeros((nb, kk, d, d))
    for b in prange(nb):
        lo = b * BLOCK
        m = min(n, lo + BLOCK) - lo
        xt = np.empty((d, BLOCK_STRIDE))
        dt = np.empty((d, BLOCK_STRIDE))
        wd = np.empty(BLOCK)
        w = np.empty(BLOCK)
        _transpose_block(X, lo, m, xt)
        for k in range(kk):
            for i in range(m):
                w[i] = resp[lo + i, k]
            for l in range(d):
                mu = means[k, l]
                for i in range(m):
                    dt[l, i] = xt[l, i] - mu
            for l in range(d):
                for i in range(m):
                    wd[i] = w[i] * dt[l, i]
                j = l
                while j + 4 <= d:
                    s0, s1, s2, s3 = _dot4_ra(wd, dt, j, m)
                    part[b, k, l, j] = s0
                    part[b, k, l, j + 1] = s1
                    part[b, k, l, j + 2] = s2
                    part[b, k, l, j + 3] = s3
                    j += 4
                while j < d:
                    part[b, k, l, j] = _dot_ra(wd, dt[j], m)
                    j += 1
    out = np.zeros((kk, d, d))
    for b in range(nb):
        out += part[b]
    for k in range(kk):
        for l in range(d):
            for j in range(l + 1, d):
                out[k, j, l] = out[k, l, j]
    return out


@benign_underflow
def scatter_full_np(X, resp, means):
    """NumPy twin of :func:`scatter_full_nb` (one weighted ``diff.T @ diff`` per component)."""
    kk, d = means.shape
    out = np.empty((kk, d, d))
    for k in range(kk):
        diff = X - means[k]
        out[k] = (resp[:, k, None] * diff).T @ diff
    return out


def _scatter_diag(X, resp, means):
    """Centred weighted squares ``sum_i r_ik (x_ij - m_kj)^2`` (k, d), eq. (18)."""
    n, d = X.shape
    kk = resp.shape[1]
    nb = (n + BLOCK - 1) // BLOCK
    part = np.zeros((nb, kk, d))
    for b in prange(nb):
        lo = b * BLOCK
        m = min(n, lo + BLOCK) - lo
        xt = np.empty((d, BLOCK_STRIDE))
        w = np.empty(BLOCK)
        _transpose_block(X, lo, m, xt)
        for k in range(kk):
            for i in range(m):
                w[i] = resp[lo + i, k]
            for j in range(d):
                part[b, k, j] = _wsqdev_ra(w, xt[j], means[k, j], m)
    out = np.zeros((kk, d))
    for b in range(nb):
        out += part[b]
    return out


@benign_underflow
def scatter_diag_np(X, resp, means):
    """NumPy twin of :func:`scatter_diag_nb`."""
    diff = X[:, None, :] - means[None, :, :]
    return np.einsum("nk,nkj->kj", resp, diff * diff)


# ---------------------------------------------------------------------------
# One-pass M-step statistics: block-centred partials combined exactly (Chan, Golub &
# LeVeque 1979, "Updating formulae and a pairwise algorithm for computing sample
# variances"). For the rows of block b with weights w_i = r_ik:
#
# (M1)  n_b = sum_i w_i,   s_b = sum_i w_i x_i,   m_b = s_b / n_b   (0 if n_b = 0)
# (M2)  Q_b = sum_i w_i (x_i - m_b)(x_i - m_b)^T            (centred on the block mean)
# (M3)  for any mu and any centre c_b (the computed block mean m_b):
#         sum_b sum_i w_i (x_i - mu)(x_i - mu)^T
#           = sum_b [Q_b + e_b (c_b - mu)^T + (c_b - mu) e_b^T + n_b (c_b - mu)(c_b - mu)^T]
#       with e_b = sum_i w_i (x_i - c_b) (expand x_i - mu = (x_i - c_b) + (c_b - mu)).
#       e_b is 0 for the exact block mean; it is kept (computed from centred terms) so
#       that the rounding of c_b enters only to second order, as the rounding of mu_k
#       does in the two-pass scatter (without it the first-order term 2 n_b
#       (c_b - m_b)(c_b - mu) grows with |x| / spread).
#
# With mu = mu_k of eq. (16) (N_k with its 10 eps guard), (M3) is the centred scatter of
# eq. (17)/(18) in one pass over X and resp instead of two (first moments, then the
# scatter about mu_k). Every quantity is still formed from centred data -- each block's
# rows about their own mean, then the block means about mu_k -- never as E[x x^T] - mu
# mu^T (the rule of :mod:`lvmref.gmm`); the blocks are fixed, so the result does not
# depend on the thread count. It differs from the two-pass kernels by rounding (tests
# bound the difference).


@njit(cache=True, inline="always")
def _partials_diag_bk(xt, w, m, b, k, pn, ps, pe, pq):
    """(M1)-(M2), diagonal: n_b, s_b, e_b and diag Q_b of block b for component k, from
    the block's transposed rows ``xt`` (d, >= m) and weights ``w`` (>= m,) = r_ik."""
    nbk = _sum_ra(w, m)
    pn[b, k] = nbk
    for j in range(xt.shape[0]):
        sj = _dot_ra(w, xt[j], m)
        ps[b, k, j] = sj
        e, q = _wdev_ra(w, xt[j], sj / nbk if nbk > 0.0 else 0.0, m)
        pe[b, k, j] = e
        pq[b, k, j] = q


@njit(cache=True, inline="always")
def _partials_full_bk(xt, cb, w, m, b, k, pn, ps, pe, pq):
    """(M1)-(M2), full: n_b, s_b, e_b and the upper triangle of Q_b of block b for
    component k (``cb`` (d,) is scratch for the block centre; the centred rows are formed
    inside the sums)."""
    d = xt.shape[0]
    nbk = _sum_ra(w, m)
    pn[b, k] = nbk
    for l in range(d):
        sl = _dot_ra(w, xt[l], m)
        ps[b, k, l] = sl
        cb[l] = sl / nbk if nbk > 0.0 else 0.0
    for l in range(d):
        pe[b, k, l] = _wc_ra(w, xt[l], cb[l], m)
        j = l
        while j + 4 <= d:
            s0, s1, s2, s3 = _wcdot4_ra(w, xt[l], cb[l], xt, j, cb[j], cb[j + 1], cb[j + 2],
                                        cb[j + 3], m)
            pq[b, k, l, j] = s0
            pq[b, k, l, j + 1] = s1
            pq[b, k, l, j + 2] = s2
            pq[b, k, l, j + 3] = s3
            j += 4
        while j < d:
            pq[b, k, l, j] = _wcdot_ra(w, xt[l], cb[l], xt[j], cb[j], m)
            j += 1


def _moment_partials_diag(X, resp):
    """Per-block n_b (nb, k), s_b, e_b and the diagonal of Q_b (each (nb, k, d)), about
    c_b = s_b / n_b, (M1)-(M3)."""
    n, d = X.shape
    kk = resp.shape[1]
    nb = (n + BLOCK - 1) // BLOCK
    pn = np.zeros((nb, kk))
    ps = np.zeros((nb, kk, d))
    pe = np.zeros((nb, kk, d))
    pq = np.zeros((nb, kk, d))
    for b in prange(nb):
        lo = b * BLOCK
        m = min(n, lo + BLOCK) - lo
        xt = np.empty((d, BLOCK_STRIDE))
        w = np.empty(BLOCK)
        _transpose_block(X, lo, m, xt)
        for k in range(kk):
            for i in range(m):
                w[i] = resp[lo + i, k]
            _partials_diag_bk(xt, w, m, b, k, pn, ps, pe, pq)
    return pn, ps, pe, pq


def _moment_partials_full(X, resp):
    """Per-block n_b (nb, k), s_b, e_b (nb, k, d) and Q_b (nb, k, d, d) (upper triangle;
    the lower one is left 0) about c_b = s_b / n_b, (M1)-(M3)."""
    n, d = X.shape
    kk = resp.shape[1]
    nb = (n + BLOCK - 1) // BLOCK
    pn = np.zeros((nb, kk))
    ps = np.zeros((nb, kk, d))
    pe = np.zeros((nb, kk, d))
    pq = np.zeros((nb, kk, d, d))
    for b in prange(nb):
        lo = b * BLOCK
        m = min(n, lo + BLOCK) - lo
        xt = np.empty((d, BLOCK_STRIDE))
        cb = np.empty(d)
        w = np.empty(BLOCK)
        _transpose_block(X, lo, m, xt)
        for k in range(kk):
            for i in range(m):
                w[i] = resp[lo + i, k]
            _partials_full_bk(xt, cb, w, m, b, k, pn, ps, pe, pq)
    return pn, ps, pe, pq


# ---------------------------------------------------------------------------
# One pass per EM iteration: the E-step of a block of rows, then the M-step partials of
# its responsibilities while they are in cache.


@njit(cache=True, inline="always")
def _copy_columns(xt, o, m, xs):
    """xs[:, :m] = xt[:, o:o + m]: a sub-block into its own buffer, so that the distance
    loops index from 0 (indexing the block at an offset made the diagonal distances 1.5x
    slower: the index is no longer provably non-negative, so Numba's wraparound check
    stays in the loop)."""
    for j in range(xt.shape[0]):
        for i in range(m):
            xs[j, i] = xt[j, o + i]


def _em_partials_diag(X, means, prec_diag, const, log_norm):
    """E-step (10)-(12) and the partials (M1)-(M2) of its responsibilities, diagonal
    factors, in one pass over X: returns (pn, ps, pe, pq) as :func:`_moment_partials_diag`
    and writes log p(x_i) into ``log_norm`` (n,).

    Each ``BLOCK`` of rows is transposed once; its responsibilities are computed in
    ``EBLOCK`` sub-blocks (the rows of :func:`_estep_diag`'s blocks) into a component-major
    block buffer, from which the partials read each component's weights contiguously.
    The operations are those of :func:`_estep_diag` followed by
    :func:`_moment_partials_diag` on the same blocks, so the results are bitwise the
    same; ``resp`` (12.8 MB at N = 1e5, K = 16) is never written to memory and X is read
    once instead of twice.
    """
    n, d = X.shape
    kk = means.shape[0]
    nb = (n + BLOCK - 1) // BLOCK
    pn = np.zeros((nb, kk))
    ps = np.zeros((nb, kk, d))
    pe = np.zeros((nb, kk, d))
    pq = np.zeros((nb, kk, d))
    for b in prange(nb):
        lo = b * BLOCK
        m = min(n, lo + BLOCK) - lo
        xt = np.empty((d, BLOCK_STRIDE))
        rb = np.empty((kk, BLOCK_STRIDE))  # the block's r_ik, component-major
        q = np.empty(EBLOCK)
        at = np.empty((kk, EBLOCK))
        mx = np.empty(EBLOCK)
        am = np.empty(EBLOCK)
        ssum = np.empty(EBLOCK)
        xs = np.empty((d, EBLOCK))
        _transpose_block(X, lo, m, xt)
        ln = log_norm[lo:lo + m]
        for s0 in range(0, m, EBLOCK):
            ms = min(m, s0 + EBLOCK) - s0
            _copy_columns(xt, s0, ms, xs)
            _dist_block_diag(xs, ms, means, prec_diag, const, at, q)
            _normalize_block(at, ms, rb.T, s0, ln, mx, am, ssum)
        for k in range(kk):
            _partials_diag_bk(xt, rb[k], m, b, k, pn, ps, pe, pq)
    return pn, ps, pe, pq


def _em_partials_full(X, means, prec_chol, const, dtup, log_norm):
    """:func:`_em_partials_diag` for full factors (the unrolled distances of
    :func:`_estep_full_unrolled`, d = len(dtup) <= ``MAX_UNROLL``, then
    :func:`_moment_partials_full`'s partials): bitwise the same results."""
    n, d = X.shape
    kk = means.shape[0]
    nb = (n + BLOCK - 1) // BLOCK
    pn = np.zeros((nb, kk))
    ps = np.zeros((nb, kk, d))
    pe = np.zeros((nb, kk, d))
    pq = np.zeros((nb, kk, d, d))
    for b in prange(nb):
        lo = b * BLOCK
        m = min(n, lo + BLOCK) - lo
        xt = np.empty((d, BLOCK_STRIDE))
        cb = np.empty(d)
        rb = np.empty((kk, BLOCK_STRIDE))
        at = np.empty((kk, EBLOCK))
        mx = np.empty(EBLOCK)
        am = np.empty(EBLOCK)
        ssum = np.empty(EBLOCK)
        xs = np.empty((d, EBLOCK))
        _transpose_block(X, lo, m, xt)
        ln = log_norm[lo:lo + m]
        for s0 in range(0, m, EBLOCK):
            ms = min(m, s0 + EBLOCK) - s0
            _copy_columns(xt, s0, ms, xs)
            for k in range(kk):
                _maha_block_full(xs, ms, means, prec_chol, const, k, at, dtup)
            _normalize_block(at, ms, rb.T, s0, ln, mx, am, ssum)
        for k in range(kk):
            _partials_full_bk(xt, cb, rb[k], m, b, k, pn, ps, pe, pq)
    return pn, ps, pe, pq


def _partials_np(X, resp, full):
    """NumPy twin of the two partials kernels (same blocks)."""
    n, d = X.shape
    kk = resp.shape[1]
    nb = (n + BLOCK - 1) // BLOCK
    pn = np.zeros((nb, kk))
    ps = np.zeros((nb, kk, d))
    pe = np.zeros((nb, kk, d))
    pq = np.zeros((nb, kk, d, d) if full else (nb, kk, d))
    for b in range(nb):
        xb, rb = X[b * BLOCK:(b + 1) * BLOCK], resp[b * BLOCK:(b + 1) * BLOCK]
        pn[b] = rb.sum(axis=0)
        ps[b] = rb.T @ xb
        mb = ps[b] / np.where(pn[b] > 0.0, pn[b], 1.0)[:, None]
        for k in range(kk):
            diff = xb - mb[k]
            pe[b, k] = rb[:, k] @ diff
            if full:
                pq[b, k] = np.triu((rb[:, k, None] * diff).T @ diff)
            else:
                pq[b, k] = rb[:, k] @ (diff * diff)
    return pn, ps, pe, pq


@benign_underflow
def moment_partials_diag_np(X, resp):
    """NumPy twin of :func:`moment_partials_diag_nb`."""
    return _partials_np(X, resp, False)


@benign_underflow
def moment_partials_full_np(X, resp):
    """NumPy twin of :func:`moment_partials_full_nb`."""
    return _partials_np(X, resp, True)


@benign_underflow
def combine_moments(pn, ps, pe, pq, guard):
    """N_k, mu_k and the centred scatter from the block partials, eqs. (16)-(18), (M3).

    Parameters
    ----------
    pn, ps, pe, pq : ndarray
        Partials (nb, k), (nb, k, d), (nb, k, d) and (nb, k, d) (diag) or (nb, k, d, d)
        (full, upper triangle) of :func:`moment_partials_diag` / :func:`moment_partials_full`.
    guard : float
        Added to each N_k (the 10 eps of eq. 15).

    Returns
    -------
    nk (k,), means (k, d), scatter (k, d) or (k, d, d) (symmetric)
    """
    nk = pn.sum(axis=0) + guard
    means = ps.sum(axis=0) / nk[:, None]
    mb = ps / np.where(pn > 0.0, pn, 1.0)[:, :, None]
    dev = mb - means[None]  # (nb, k, d): block centres about mu_k
    if pq.ndim == 3:
        scatter = pq.sum(axis=0) + np.einsum("bkj,bkj->kj", 2.0 * pe + pn[:, :, None] * dev,
                                             dev)
        return nk, means, scatter
    cross = np.einsum("bkl,bkj->klj", pe, dev)  # sum_b e_b (c_b - mu)^T
    outer = np.einsum("bk,bkl,bkj->klj", pn, dev, dev)
    scatter = pq.sum(axis=0) + (cross + np.swapaxes(cross, 1, 2)) + outer
    lower = np.tril_indices(pq.shape[2], -1)
    scatter[:, lower[0], lower[1]] = scatter[:, lower[1], lower[0]]  # exactly symmetric
    return nk, means, scatter


# Parallel and serial builds of every hot kernel, and the dispatchers (greppable names).
# The unfused log densities are not on the EM hot path (the fused E-step is): serial
# build only, to keep compile time down.
weighted_log_prob_full_nb = njit(cache=True)(_weighted_log_prob_full)
weighted_log_prob_diag_nb = njit(cache=True)(_weighted_log_prob_diag)
estep_full_nb, estep_full_nb_serial = parallel_and_serial(_estep_full)
estep_full_unrolled_nb, estep_full_unrolled_nb_serial = parallel_and_serial(_estep_full_unrolled)
estep_diag_nb, estep_diag_nb_serial = parallel_and_serial(_estep_diag)
first_moments_nb, first_moments_nb_serial = parallel_and_serial(_first_moments)
scatter_full_nb, scatter_full_nb_serial = parallel_and_serial(_scatter_full)
scatter_diag_nb, scatter_diag_nb_serial = parallel_and_serial(_scatter_diag)
moment_partials_diag_nb, moment_partials_diag_nb_serial = parallel_and_serial(
    _moment_partials_diag)
moment_partials_full_nb, moment_partials_full_nb_serial = parallel_and_serial(
    _moment_partials_full)
em_partials_diag_nb, em_partials_diag_nb_serial = parallel_and_serial(_em_partials_diag)
em_partials_full_nb, em_partials_full_nb_serial = parallel_and_serial(_em_partials_full)


def _work(X, k):
    return X.shape[0] * X.shape[1] * k


def weighted_log_prob_full(X, means, prec_chol, const):
    """(n, k) log densities (eq. 14), full factors: kernel or twin."""
    return pick(weighted_log_prob_full_nb, weighted_log_prob_full_np)(X, means, prec_chol,
                                                                        const)


def weighted_log_prob_diag(X, means, prec_diag, const):
    """(n, k) log densities (eq. 14), diagonal factors: kernel or twin."""
    return pick(weighted_log_prob_diag_nb, weighted_log_prob_diag_np)(X, means, prec_diag,
                                                                        const)


#: ``(0,) * d``: the tuple whose type tells the unrolled kernel the number of features.
_DTUPS = tuple((0,) * d for d in range(MAX_UNROLL + 1))


def estep_buffers(n, k):
    """Output buffers ``(resp_t (k, n), log_norm (n,))`` for ``out=`` of :func:`estep_full`
    and :func:`estep_diag` (reused across EM iterations)."""
    return np.empty((k, n)), np.empty(n)


def _twin_into(twin, out, *args):
    """The NumPy twin's result, written into ``out`` if given."""
    resp, log_norm = twin(*args)
    if out is None:
        return resp, log_norm
    out[0][...] = resp.T
    out[1][...] = log_norm
    return out[0].T, out[1]


def estep_full(X, means, prec_chol, const, out=None):
    """Fused E-step (eqs. 10-12), full factors: ``(resp (n, k), log_norm (n,))``.

    Up to ``MAX_UNROLL`` features the unrolled kernel runs (bitwise the same results).
    ``out``: buffers from :func:`estep_buffers`; the results are then views of them.
    """
    work = _work(X, means.shape[0])
    d = X.shape[1]
    # allocated by NumPy even without ``out``: see estep_diag
    bufs = estep_buffers(X.shape[0], means.shape[0]) if out is None else out
    if 1 <= d <= MAX_UNROLL:
        f = pick(estep_full_unrolled_nb, None, serial_nb=estep_full_unrolled_nb_serial,
                 work=work)
        if f is not None:
            return f(X, means, prec_chol, const, _DTUPS[d], *bufs)
    f = pick(estep_full_nb, estep_full_np, serial_nb=estep_full_nb_serial, work=work)
    if f is estep_full_np:
        return _twin_into(f, out, X, means, prec_chol, const)
    return f(X, means, prec_chol, const, *bufs)


def estep_diag(X, means, prec_diag, const, out=None):
    """Fused E-step (eqs. 10-12), diagonal factors: ``(resp (n, k), log_norm (n,))``.

    ``out``: buffers from :func:`estep_buffers`; the results are then views of them.
    """
    f = pick(estep_diag_nb, estep_diag_np, serial_nb=estep_diag_nb_serial,
             work=_work(X, means.shape[0]))
    if f is estep_diag_np:
        return _twin_into(f, out, X, means, prec_diag, const)
    # Allocated by NumPy even without ``out``: a fresh resp from Numba's allocator is
    # first touched at ~3 us per 4 KiB page on the development VM (see kernels.lse).
    bufs = estep_buffers(X.shape[0], means.shape[0]) if out is None else out
    return f(X, means, prec_diag, const, *bufs)


def first_moments(X, resp):
    """``(N_k (k,), S_k (k, d))`` of eq. (16)."""
    f = pick(first_moments_nb, first_moments_np, serial_nb=first_moments_nb_serial,
             work=_work(X, resp.shape[1]))
    return f(X, resp)


def scatter_full(X, resp, means):
    """Centred weighted scatter matrices (k, d, d) of eq. (17)."""
    f = pick(scatter_full_nb, scatter_full_np, serial_nb=scatter_full_nb_serial,
             work=_work(X, resp.shape[1]))
    return f(X, resp, means)


def scatter_diag(X, resp, means):
    """Centred weighted squares (k, d) of eq. (18)."""
    f = pick(scatter_diag_nb, scatter_diag_np, serial_nb=scatter_diag_nb_serial,
             work=_work(X, resp.shape[1]))
    return f(X, resp, means)


def moment_partials_diag(X, resp):
    """Block partials (M1)-(M2) for diagonal covariances: ``(n_b, s_b, diag Q_b)``."""
    f = pick(moment_partials_diag_nb, moment_partials_diag_np,
             serial_nb=moment_partials_diag_nb_serial, work=_work(X, resp.shape[1]))
    return f(X, resp)


def moment_partials_full(X, resp):
    """Block partials (M1)-(M2) for full covariances: ``(n_b, s_b, Q_b)`` (upper)."""
    f = pick(moment_partials_full_nb, moment_partials_full_np,
             serial_nb=moment_partials_full_nb_serial, work=_work(X, resp.shape[1]))
    return f(X, resp)


def em_partials(X, means, fac, const, full):
    """E-step (10)-(12) and the M-step partials (M1)-(M2) in one pass over ``X``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    means : ndarray, shape (k, d)
    fac : ndarray
        ``prec_chol`` (k, d, d) if ``full`` else ``prec_diag`` (k, d).
    const : ndarray, shape (k,)
    full : bool

    Returns
    -------
    log_norm : ndarray, shape (n,)
        log p(x_i) (non-finite for rows too far from every component; see
        :func:`lvmref.gmm.e_step`, whose caller then takes the separate path).
    parts : tuple
        ``(pn, ps, pe, pq)`` of :func:`moment_partials_full` / :func:`moment_partials_diag`
        on the responsibilities: bitwise what :func:`estep_full` / :func:`estep_diag`
        followed by those functions give. Without JIT, or for d > ``MAX_UNROLL`` with full
        factors, that is what runs.
    """
    n, d = X.shape
    work = _work(X, means.shape[0])
    if full and 1 <= d <= MAX_UNROLL:
        f = pick(em_partials_full_nb, None, serial_nb=em_partials_full_nb_serial, work=work)
        if f is not None:
            log_norm = np.empty(n)
            return log_norm, f(X, means, fac, const, _DTUPS[d], log_norm)
    elif not full:
        f = pick(em_partials_diag_nb, None, serial_nb=em_partials_diag_nb_serial, work=work)
        if f is not None:
            log_norm = np.empty(n)
            return log_norm, f(X, means, fac, const, log_norm)
    resp, log_norm = (estep_full if full else estep_diag)(X, means, fac, const)
    return log_norm, (moment_partials_full if full else moment_partials_diag)(X, resp)
