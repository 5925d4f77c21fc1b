r"""Sufficient statistics of responsibilities that add up over any partition of the rows.

The mathematics is derived in :mod:`lvmref.gmm`, eqs. (23)-(28); this module implements
it once for both mixtures (:mod:`lvmref.gmm`, :mod:`lvmref.vbgmm`), which is what lets
them fit data chunk by chunk (:mod:`lvmref.chunked`), on a Dask cluster, or from a
stream (stepwise EM).

For weighted responsibilities r~_ik = w_i r_ik over a set B of rows, :class:`Moments`
holds (eq. 23)

    N_k = sum_B r~_ik,   S_k = sum_B r~_ik x_i,
    M_k = sum_B r~_ik (x_i - xbar_k)(x_i - xbar_k)^T,   xbar_k = S_k / N_k   (0 if N_k = 0),

(the diagonal of M_k only, for diagonal and spherical covariances), the total weight
W = sum_B w_i of the rows, and one additive scalar a model accumulates alongside (the
Gaussian mixture's sum_B w_i log p(x_i), the Bayesian mixture's sum_B w_i sum_k r_ik
ln r_ik). :func:`moments` computes them for one chunk with the Numba kernels of
:mod:`lvmref.kernels.gmm` (the chunk's own xbar_k, then the centred scatter about it);
:func:`merge_moments` combines two disjoint sets by eq. (24) (Chan, Golub & LeVeque
1979), :func:`scale_moments` multiplies by a constant (the stepwise update (27)), and
:func:`scatter_about` recentres M_k on any point, eq. (25). Nothing here forms
E[x x^T] - mu mu^T: every term added is positive semi-definite.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lvmref.kernels import gmm as kg
from lvmref.kernels.checks import (
    as_float_array,
    check_finite_sum,
    check_flag,
    check_nonnegative_float,
    check_real,
)
from lvmref.kernels.fpenv import benign_underflow

__all__ = ["Moments", "moments", "chunk_moments", "merge_moments", "scale_moments",
           "scatter_about", "check_moments"]


class Moments(NamedTuple):
    """Sufficient statistics of weighted responsibilities over a set of rows, eq. (23)
    of :mod:`lvmref.gmm`."""

    nk: np.ndarray
    """(K,) N_k = sum_i w_i r_ik."""
    sums: np.ndarray
    """(K, D) S_k = sum_i w_i r_ik x_i."""
    scatter: np.ndarray
    """(K, D, D) -- or (K, D), its diagonal -- M_k about xbar_k = S_k / N_k."""
    total: float
    """W = sum_i w_i (the number of rows without weights)."""
    extra: float
    """An additive scalar accumulated with the statistics (the model says which)."""

    @property
    def centres(self):
        """xbar_k = S_k / N_k, 0 where N_k = 0; shape (K, D)."""
        return _centres(self.nk, self.sums)


def _centres(nk, sums):
    out = np.zeros_like(sums)
    np.divide(sums, nk[:, None], out=out, where=nk[:, None] > 0.0)
    return out


@benign_underflow
def chunk_moments(X, resp, full, total, extra):
    """:func:`moments` without input checks: the hot path of chunked EM.

    ``X`` (n, D) and ``resp`` (n, K) must be finite C-contiguous float64 arrays with
    ``resp >= 0`` (as :func:`lvmref.chunked.check_rows` and the E-steps give them);
    ``total`` and ``extra`` floats. Statistics that overflow float64 are a ``ValueError``
    naming X and resp (checked on the (K, D, D) result only, so the hot path stays cheap).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # NumPy twins; refused just below
        nk, sums = kg.first_moments(X, resp)
        centres = _centres(nk, sums)
        scatter = (kg.scatter_full if full else kg.scatter_diag)(X, resp, centres)
    if not (np.all(np.isfinite(nk)) and np.all(np.isfinite(sums))
            and np.all(np.isfinite(scatter))):
        raise ValueError("X or resp values too large: the statistics N_k, S_k, M_k of the "
                         f"rows overflow float64 (max |X| = {np.max(np.abs(X)):.3g}, max "
                         f"resp = {np.max(resp):.3g}); rescale X")
    return Moments(nk, sums, scatter, float(total), float(extra))


@benign_underflow
def moments(X, resp, full=True, total=None, extra=0.0):
    """Statistics (23) of one set of rows: N_k, S_k and the scatter about xbar_k.

    Parameters
    ----------
    X : array_like of shape (n, D)
    resp : array_like of shape (n, K)
        Non-negative weighted responsibilities w_i r_ik.
    full : bool
        Full scatter matrices (K, D, D) -- for "full" and "tied" covariances -- or their
        diagonals (K, D) -- for "diag" and "spherical".
    total : float, optional
        W, the total weight of the rows; default n.
    extra : float
        The model's additive scalar for these rows.

    Returns
    -------
    Moments
    """
    X = as_float_array(X, "X", ndim=2)
    resp = as_float_array(resp, "resp", shape=(X.shape[0], None))
    if np.any(resp < 0.0):
        raise ValueError("resp must be non-negative")
    full = check_flag(full, "full")
    total = float(X.shape[0]) if total is None else check_nonnegative_float(total, "total")
    return chunk_moments(X, resp, full, total, check_real(extra, "extra"))


def _merge(a, b):
    nk = a.nk + b.nk
    frac = np.zeros_like(nk)
    np.divide(b.nk, nk, out=frac, where=nk > 0.0)
    coef = a.nk * frac  # N^a N^b / N without forming N^a N^b (no overflow)
    delta = a.centres - b.centres
    with np.errstate(over="ignore", invalid="ignore"):  # refused by the M-steps
        if a.scatter.ndim == 3:
            cross = coef[:, None, None] * (delta[:, :, None] * delta[:, None, :])
        else:
            cross = coef[:, None] * (delta * delta)
        scatter = a.scatter + b.scatter + cross
    return Moments(nk, a.sums + b.sums, scatter, a.total + b.total, a.extra + b.extra)


@benign_underflow
def merge_moments(a, b):
    """Statistics of the union of two disjoint sets of rows, eq. (24) of :mod:`lvmref.gmm`.

    N = N^a + N^b, S = S^a + S^b, W and the extra scalars add, and
    M = M^a + M^b + (N^a N^b / N) (xbar^a - xbar^b)(xbar^a - xbar^b)^T.
    Associative and commutative up to rounding, so any tree of merges over any
    partition of the rows gives the statistics of all rows.
    """
    a, b = check_moments(a, "a"), check_moments(b, "b")
    if a.scatter.shape != b.scatter.shape:
        raise ValueError(f"a and b must have the same shapes, got scatter {a.scatter.shape} "
                         f"and {b.scatter.shape}")
    return _merge(a, b)


def _scale(a, c):
    return Moments(a.nk * c, a.sums * c, a.scatter * c, a.total * c, a.extra * c)


@benign_underflow
def scale_moments(a, c):
    """The statistics with every weight multiplied by ``c >= 0`` (xbar_k unchanged): N, S,
    M, W and the extra scalar times c; used by the stepwise update (27) of
    :mod:`lvmref.gmm`."""
    return _scale(check_moments(a, "a"), check_nonnegative_float(c, "c"))


def _scatter_about(m, points):
    d = m.centres - points
    if m.scatter.ndim == 3:
        return m.scatter + m.nk[:, None, None] * (d[:, :, None] * d[:, None, :])
    return m.scatter + m.nk[:, None] * (d * d)


@benign_underflow
def scatter_about(m, points):
    """sum_i r~_ik (x_i - c_k)(x_i - c_k)^T = M_k + N_k (xbar_k - c_k)(xbar_k - c_k)^T for
    any points c_k, eq. (25) of :mod:`lvmref.gmm` (the diagonal for diagonal moments).

    Parameters
    ----------
    m : Moments
    points : array_like of shape (K, D)

    Returns
    -------
    ndarray, the shape of ``m.scatter``
    """
    m = check_moments(m, "m")
    points = as_float_array(points, "points", shape=m.sums.shape)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is +inf, correctly
        return _scatter_about(m, points)


@benign_underflow
def check_moments(m, name="stats"):
    """Validate a :class:`Moments` (consistent shapes; N_k, W >= 0; finite); returns it
    with float64 arrays."""
    if not isinstance(m, Moments):
        raise TypeError(f"{name} must be a lvmref.mixture_stats.Moments, got "
                        f"{type(m).__name__}")
    nk = as_float_array(m.nk, f"{name}.nk", ndim=1)
    sums = as_float_array(m.sums, f"{name}.sums", ndim=2)
    if sums.shape[0] != nk.shape[0]:
        raise ValueError(f"{name}.sums must have one row per entry of {name}.nk (shape "
                         f"({nk.shape[0]}, *)), got {sums.shape}")
    k, d = sums.shape
    scatter = as_float_array(m.scatter, f"{name}.scatter", ndim=(2, 3))
    if scatter.shape not in ((k, d, d), (k, d)):
        raise ValueError(f"{name}.scatter must have shape {(k, d, d)} or {(k, d)} (K, D "
                         f"of {name}.sums), got {scatter.shape}")
    if np.any(nk < 0.0):
        raise ValueError(f"{name}.nk must be >= 0")
    check_finite_sum(nk, f"{name}.nk")
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.all(np.isfinite(_centres(nk, sums))):
            raise ValueError(f"{name}.sums too large for {name}.nk: the centres S_k / N_k "
                             "overflow float64")
    total = check_nonnegative_float(m.total, f"{name}.total")
    return Moments(nk, sums, scatter, total, check_real(m.extra, f"{name}.extra"))
