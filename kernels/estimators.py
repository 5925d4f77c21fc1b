r"""Exact log p(x) of a one-layer sigmoid belief net by enumeration (lvmref.estimators).

For :math:`p(z) = \prod_k \mathrm{Bern}(z_k \mid \sigma(a_k))` and
:math:`p(x \mid z) = \prod_d \mathrm{Bern}(x_d \mid \sigma(\ell_d))`,
:math:`\ell = z W + b`,

.. math:: \log p(x, z) = \underbrace{z \cdot a - \textstyle\sum_k \mathrm{softplus}(a_k)
          - \sum_d \mathrm{softplus}(\ell_d(z))}_{c(z)} + x \cdot \ell(z) ,

so everything but :math:`x \cdot \ell(z)` is shared by all rows of x.
:func:`sbn_log_marginal_nb` (Numba) visits the :math:`2^K` configurations in blocks of
:math:`2^B` (B = min(K, 4) lowest bits): at the start of each block :math:`\ell` is
computed afresh from the high bits, and inside the block a Gray-code walk changes one
bit per step, so :math:`\ell` is updated by :math:`\pm W_k` (D additions instead of KD
multiply-adds; at most 15 updates accumulate round-off before the next fresh start).
Each configuration costs D softplus evaluations plus n dot products of length D and one
streaming-merge step per row. :func:`sbn_log_marginal_np` (twin) evaluates the same sum
in chunks of the :func:`lvmref.estimators.enumerate_binary` order with BLAS
(``x @ L.T``), which is faster when many rows share the enumeration.

Both merge the per-configuration log-joints into the streaming max-split state of
:mod:`lvmref.kernels.lse`. They are two algorithms for the same sum (the twin is
faster for many rows, the kernel for a few), so the caller chooses
(:func:`lvmref.estimators.sbn_exact_log_marginal`, ``method``); :func:`sbn_log_marginal`
runs the kernel, or the twin under ``NUMBA_DISABLE_JIT=1``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .densities import softplus_np
from .dispatch import pick
from .fpenv import benign_underflow
from .lse import lse_stream_finalize, lse_stream_init, lse_stream_update_np

__all__ = ["sbn_log_marginal", "sbn_log_marginal_nb", "sbn_log_marginal_np"]


@njit(cache=True)
def sbn_log_marginal_nb(x, prior_logits, W, b):
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
    """NumPy twin of :func:`sbn_log_marginal_nb`: chunked BLAS evaluation of the same sum.

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


def sbn_log_marginal(x, prior_logits, W, b):
    """The fused Gray-code kernel, or the chunked twin without JIT; x (n, D) -> (n,)."""
    return pick(sbn_log_marginal_nb, sbn_log_marginal_np)(x, prior_logits, W, b)
