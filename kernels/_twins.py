"""Plain-NumPy twins of the lvmref kernels.

Each function here is the readable reference for the jitted kernel of the same
name (without the ``_np`` suffix). The twins are what runs when
``NUMBA_DISABLE_JIT=1`` and what the kernel tests compare against. They assume
validated float64 input; validation lives in the public wrappers.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "logsumexp_np",
    "lse_parts_np",
    "log_softmax_np",
    "softplus_np",
    "log_sigmoid_np",
    "bernoulli_log_prob_np",
    "normal_log_prob_diag_np",
    "kl_normal_std_np",
    "elbo_iwae_np",
]

LOG_2PI = float(np.log(2.0 * np.pi))


def logsumexp_np(a: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
    """log(sum(exp(a))) along ``axis`` with scipy.special.logsumexp's special values.

    Max-split form, eq. (2.1) of :mod:`lvmref.kernels._jit`: with m = max(a),
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


def softplus_np(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)); exact for |x| up to 1e308."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def log_sigmoid_np(x: np.ndarray) -> np.ndarray:
    """log sigma(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|))."""
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def bernoulli_log_prob_np(x: np.ndarray, logits: np.ndarray, reduce: bool = True) -> np.ndarray:
    """log Bern(x | sigma(l)) = x*l - softplus(l); summed over the last axis if ``reduce``.

    Evaluated as (x*l - max(l, 0)) - log1p(exp(-|l|)): for binary x the bracket is exact,
    so e.g. x = 1, l = 40 gives -4.2e-18 rather than 0.
    """
    with np.errstate(invalid="ignore"):
        lp = (x * logits - np.maximum(logits, 0.0)) - np.log1p(np.exp(-np.abs(logits)))
    return lp.sum(axis=-1) if reduce else lp


def normal_log_prob_diag_np(
    x: np.ndarray, mean: np.ndarray, log_var: np.ndarray, reduce: bool = True
) -> np.ndarray:
    """log N(x | mean, diag(exp(lv))) = -1/2 [log 2pi + lv + (x - mean)^2 / exp(lv)].

    The quadratic term is formed as z^2 with z = (x - mean) exp(-lv/2), and set to 0 where
    x == mean, so extreme log-variances (|lv| up to 1e4) give no 0 * inf.
    """
    dx = x - mean
    with np.errstate(invalid="ignore", over="ignore"):
        z = dx * np.exp(-0.5 * log_var)
        quad = np.where(dx == 0.0, 0.0, z * z)
    lp = -0.5 * ((LOG_2PI + log_var) + quad)
    return lp.sum(axis=-1) if reduce else lp


def kl_normal_std_np(mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """KL(N(mean, diag exp(log_var)) || N(0, I)) per row: 1/2 sum(exp(lv) + mean^2 - 1 - lv).

    Each term is formed as (expm1(lv) - lv) + mean^2, which is >= 0 in floating point
    (expm1 is faithfully rounded and expm1(lv) >= lv exactly).
    """
    return 0.5 * np.sum((np.expm1(log_var) - log_var) + mean * mean, axis=-1)


def elbo_iwae_np(log_px_z: np.ndarray, log_pz: np.ndarray, log_qz: np.ndarray):
    """Per-row ELBO and importance-weighted bound from K samples per row.

    With log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), each of shape (n, K):
    ELBO estimate = mean_k log w_k and L_K = logsumexp_k(log w_k) - log K
    (Burda et al. 2015, eq. 8). Returns ``(elbo, iwae)``, each of shape (n,).
    """
    log_w = (log_px_z + log_pz) - log_qz
    k = log_w.shape[-1]
    return log_w.mean(axis=-1), logsumexp_np(log_w, axis=-1) - np.log(k)
