r"""Kernels for :mod:`lvmref.estimators`: streaming (chunked) log-sum-exp.

Exact enumeration of :math:`\log p(x) = \log \sum_z p(x, z)` over :math:`2^K` binary
configurations cannot hold an ``(n, 2**K)`` matrix for K ~ 20, so the configurations
are visited in chunks and each row keeps a running *max-split* state

.. math:: (m, r): \quad \sum_j e^{a_j} = e^{m} (1 + r), \qquad
          m = \max_j a_j, \quad r = \sum_{j \ne \arg\max} e^{a_j - m} ,

i.e. exactly the quantities of the one-shot max-split log-sum-exp used by
:func:`lvmref.kernels.logsumexp` (``lse = m + log1p(r)``), so the streamed result
equals the one-shot one up to summation order. Merging a chunk ``a`` (its max ``c``):

* ``c <= m``: :math:`r \leftarrow r + \sum_j e^{a_j - m}` (ties with ``m`` add 1);
* ``c > m``: the old max joins the rest,
  :math:`r \leftarrow (1 + r) e^{m - c} + \sum_{j \ne \arg\max a} e^{a_j - c}`,
  :math:`m \leftarrow c`.

``m = -inf`` (nothing seen yet, or only zero-probability terms) keeps ``r = 0``; entries
equal to ``-inf`` contribute nothing. Inputs must not contain NaN or ``+inf``
(the callers in :mod:`lvmref.estimators` refuse those first).

:func:`lse_stream_update` is the Numba kernel (one pass over the chunk, no
temporaries); :func:`lse_stream_update_np` is its plain-NumPy twin (what runs under
``NUMBA_DISABLE_JIT=1``). :func:`lse_stream_update_auto` picks the kernel unless JIT is
disabled. Both return new arrays and never modify their arguments.

Fused enumeration for the single-layer sigmoid belief net
---------------------------------------------------------
For :math:`p(z) = \prod_k \mathrm{Bern}(z_k \mid \sigma(a_k))` and
:math:`p(x \mid z) = \prod_d \mathrm{Bern}(x_d \mid \sigma(\ell_d))`,
:math:`\ell = z W + b`,

.. math:: \log p(x, z) = \underbrace{z \cdot a - \textstyle\sum_k \mathrm{softplus}(a_k)
          - \sum_d \mathrm{softplus}(\ell_d(z))}_{c(z)} + x \cdot \ell(z) ,

so everything but :math:`x \cdot \ell(z)` is shared by all rows of x.
:func:`sbn_log_marginal` (Numba) visits the :math:`2^K` configurations in blocks of
:math:`2^B` (B = min(K, 4) lowest bits): at the start of each block :math:`\ell` is
computed afresh from the high bits, and inside the block a Gray-code walk changes one
bit per step, so :math:`\ell` is updated by :math:`\pm W_k` (D additions instead of KD
multiply-adds; at most 15 updates accumulate round-off before the next fresh start).
Each configuration costs D softplus evaluations plus n dot products of length D and one
streaming-merge step per row. :func:`sbn_log_marginal_np` (twin) evaluates the same sum
in chunks of the :func:`lvmref.estimators.enumerate_binary` order with BLAS
(``x @ L.T``), which is faster when many rows share the enumeration.
"""

from __future__ import annotations

import numpy as np
from numba import config as _numba_config
from numba import njit

from ._twins import softplus_np
from .fpenv import benign_underflow

__all__ = [
    "lse_stream_init",
    "lse_stream_update",
    "lse_stream_update_np",
    "lse_stream_update_auto",
    "lse_stream_finalize",
    "sbn_log_marginal",
    "sbn_log_marginal_np",
]


def lse_stream_init(n: int):
    """Empty streaming state for ``n`` rows: ``m = -inf`` and ``r = 0``, each shape (n,)."""
    return np.full(n, -np.inf), np.zeros(n)


@njit(cache=True)
def lse_stream_update(m, r, a):  # pragma: no cover - compiled; twin tested alongside
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
    """NumPy twin of :func:`lse_stream_update`: same state update, vectorised per chunk."""
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


@benign_underflow
def lse_stream_update_auto(m, r, a):
    """The Numba kernel, or its NumPy twin when ``NUMBA_DISABLE_JIT=1``."""
    if _numba_config.DISABLE_JIT:
        return lse_stream_update_np(m, r, a)
    return lse_stream_update(
        np.ascontiguousarray(m, dtype=np.float64),
        np.ascontiguousarray(r, dtype=np.float64),
        np.ascontiguousarray(a, dtype=np.float64),
    )


@benign_underflow
def lse_stream_finalize(m, r):
    """Log-sum-exp from the state: ``m + log1p(r)``, and ``-inf`` where ``m = -inf``. (n,)."""
    m = np.asarray(m, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    finite = np.isfinite(m)
    return np.where(finite, np.where(finite, m, 0.0) + np.log1p(r), m)


@njit(cache=True)
def sbn_log_marginal(x, prior_logits, W, b):  # pragma: no cover - compiled; twin tested
    """log p(x) of a sigmoid belief net by fused Gray-code enumeration. x (n, D) -> (n,)."""
    n, D = x.shape
    K = prior_logits.shape[0]
    B = min(K, 4)
    H = K - B
    sp_a = 0.0
    for k in range(K):
        v = prior_logits[k]
        sp_a += max(v, 0.0) + np.log1p(np.exp(-abs(v)))
    m = np.full(n, -np.inf)
    r = np.zeros(n)
    lg = np.empty(D)
    for hi in range(1 << H):
        # fresh start of the block: high bits (columns 0..H-1, MSB first), low bits zero
        lp = -sp_a
        for d in range(D):
            lg[d] = b[d]
        for k in range(H):
            if (hi >> (H - 1 - k)) & 1:
                lp += prior_logits[k]
                for d in range(D):
                    lg[d] += W[k, d]
        zlow = 0
        for t in range(1 << B):
            if t > 0:  # Gray code: flip low bit j = number of trailing zeros of t
                j = 0
                while not (t >> j) & 1:
                    j += 1
                col = K - 1 - j
                if (zlow >> j) & 1:
                    zlow ^= 1 << j
                    lp -= prior_logits[col]
                    for d in range(D):
                        lg[d] -= W[col, d]
                else:
                    zlow |= 1 << j
                    lp += prior_logits[col]
                    for d in range(D):
                        lg[d] += W[col, d]
            c = lp
            for d in range(D):
                v = lg[d]
                c -= max(v, 0.0) + np.log1p(np.exp(-abs(v)))
            for i in range(n):
                s = c
                for d in range(D):
                    s += x[i, d] * lg[d]
                if s > m[i]:
                    if m[i] == -np.inf:
                        r[i] = 0.0
                    else:
                        r[i] = (1.0 + r[i]) * np.exp(m[i] - s)
                    m[i] = s
                elif s != -np.inf:
                    r[i] += np.exp(s - m[i])
    out = np.empty(n)
    for i in range(n):
        out[i] = m[i] + np.log1p(r[i]) if m[i] > -np.inf else m[i]
    return out


@benign_underflow
def sbn_log_marginal_np(x, prior_logits, W, b, chunk_size=None):
    """NumPy twin of :func:`sbn_log_marginal`: chunked BLAS evaluation of the same sum.

    ``chunk_size`` configurations per block (default keeps ``c * max(n, D)`` near 2**22).
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.asarray(prior_logits, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, D = x.shape
    K = a.shape[0]
    total = 1 << K
    c = chunk_size or max(1, min(total, 2**22 // max(n, D, K)))
    shifts = np.arange(K - 1, -1, -1, dtype=np.int64)
    sp_a = softplus_np(a).sum()
    m, r = lse_stream_init(n)
    for start in range(0, total, c):
        j = np.arange(start, min(start + c, total), dtype=np.int64)
        Z = ((j[:, None] >> shifts[None, :]) & 1).astype(np.float64)  # (c, K)
        L = Z @ W + b  # (c, D)
        cz = Z @ a - sp_a - softplus_np(L).sum(axis=1)  # (c,)
        m, r = lse_stream_update_np(m, r, x @ L.T + cz[None, :])
    return lse_stream_finalize(m, r)
