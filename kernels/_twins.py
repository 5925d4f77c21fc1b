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

    Max-split form: with m = max(a), lse = m + log1p(sum_{i != argmax} exp(a_i - m)),
    so ``logsumexp([0, -40])`` keeps its 4e-18 contribution. Empty or all -inf -> -inf;
    any +inf (and no NaN) -> +inf; any NaN -> NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    if axis is None:
        flat = a.reshape(-1)
        out = np.asarray(_lse_rows(flat[None, :])[0])
        if keepdims:
            out = out.reshape((1,) * a.ndim)
        return out
    axis = axis % a.ndim if a.ndim else 0
    moved = np.moveaxis(a, axis, -1)
    lead = moved.shape[:-1]
    res = _lse_rows(moved.reshape(int(np.prod(lead)), moved.shape[-1])).reshape(lead)
    if keepdims:
        res = np.expand_dims(res, axis)
    return res


def _lse_rows(a2: np.ndarray) -> np.ndarray:
    """Row-wise max-split log-sum-exp of a 2-D array (n, m) -> (n,)."""
    n, m = a2.shape
    if m == 0:
        return np.full(n, -np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        idx = np.argmax(a2, axis=1)
        mx = a2[np.arange(n), idx]
        finite_max = np.isfinite(mx)
        shift = np.where(finite_max, mx, 0.0)
        e = np.exp(a2 - shift[:, None])
        e[np.arange(n), idx] = 0.0
        rest = e.sum(axis=1)
        out = shift + np.log1p(rest)
    out = np.where(finite_max, out, mx)  # -inf (all -inf) or +inf stays as is
    out = np.where(np.isnan(a2).any(axis=1), np.nan, out)
    return out


def log_softmax_np(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """a - logsumexp(a, axis, keepdims=True)."""
    return a - logsumexp_np(a, axis=axis, keepdims=True)


def softplus_np(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)); exact for |x| up to 1e308."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def log_sigmoid_np(x: np.ndarray) -> np.ndarray:
    """log sigma(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|))."""
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def bernoulli_log_prob_np(x: np.ndarray, logits: np.ndarray, reduce: bool = True) -> np.ndarray:
    """log Bern(x | sigma(l)) = x*l - softplus(l); summed over the last axis if ``reduce``."""
    lp = x * logits - softplus_np(logits)
    return lp.sum(axis=-1) if reduce else lp


def normal_log_prob_diag_np(
    x: np.ndarray, mean: np.ndarray, log_var: np.ndarray, reduce: bool = True
) -> np.ndarray:
    """log N(x | mean, diag(exp(lv))) = -1/2 [log 2pi + lv + (x - mean)^2 / exp(lv)]."""
    lp = -0.5 * (LOG_2PI + log_var + (x - mean) ** 2 * np.exp(-log_var))
    return lp.sum(axis=-1) if reduce else lp


def kl_normal_std_np(mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """KL(N(mean, diag exp(log_var)) || N(0, I)) per row: 1/2 sum(exp(lv) + mean^2 - 1 - lv)."""
    return 0.5 * np.sum(np.expm1(log_var) + mean**2 - log_var, axis=-1)


def elbo_iwae_np(log_px_z: np.ndarray, log_pz: np.ndarray, log_qz: np.ndarray):
    """Per-row ELBO and importance-weighted bound from K samples per row.

    With log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), each of shape (n, K):
    ELBO estimate = mean_k log w_k and L_K = logsumexp_k(log w_k) - log K
    (Burda et al. 2015, eq. 8). Returns ``(elbo, iwae)``, each of shape (n,).
    """
    log_w = log_px_z + log_pz - log_qz
    k = log_w.shape[-1]
    return log_w.mean(axis=-1), logsumexp_np(log_w, axis=-1) - np.log(k)
