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
"""

from __future__ import annotations

import numpy as np
from numba import config as _numba_config
from numba import njit

__all__ = [
    "lse_stream_init",
    "lse_stream_update",
    "lse_stream_update_np",
    "lse_stream_update_auto",
    "lse_stream_finalize",
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


def lse_stream_update_auto(m, r, a):
    """The Numba kernel, or its NumPy twin when ``NUMBA_DISABLE_JIT=1``."""
    if _numba_config.DISABLE_JIT:
        return lse_stream_update_np(m, r, a)
    return lse_stream_update(
        np.ascontiguousarray(m, dtype=np.float64),
        np.ascontiguousarray(r, dtype=np.float64),
        np.ascontiguousarray(a, dtype=np.float64),
    )


def lse_stream_finalize(m, r):
    """Log-sum-exp from the state: ``m + log1p(r)``, and ``-inf`` where ``m = -inf``. (n,)."""
    m = np.asarray(m, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    finite = np.isfinite(m)
    return np.where(finite, np.where(finite, m, 0.0) + np.log1p(r), m)
