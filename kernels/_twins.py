"""Plain-NumPy twins of the lvmref kernels.

Each function here is the readable reference for the jitted kernel of the same
name (without the ``_np`` suffix). The twins are what runs when
``NUMBA_DISABLE_JIT=1`` and what the kernel tests compare against. They assume
validated float64 input; validation lives in the public wrappers.
"""

from __future__ import annotations

import math

import numpy as np

from .fpenv import benign_underflow

__all__ = [
    "logsumexp_np",
    "lse_parts_np",
    "log_softmax_np",
    "softplus_np",
    "sigmoid_np",
    "log_sigmoid_np",
    "bernoulli_log_prob_np",
    "bernoulli_logit_grad_np",
    "normal_log_prob_diag_np",
    "kl_normal_std_np",
    "expm1_minus_x_np",
    "elbo_iwae_np",
]

LOG_2PI = float(np.log(2.0 * np.pi))


@benign_underflow
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


@benign_underflow
def softplus_np(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)); exact for |x| up to 1e308."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


@benign_underflow
def sigmoid_np(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) from e = exp(-|x|): 1/(1 + e) for x >= 0, e/(1 + e) otherwise.

    No overflow for any x, and full relative accuracy on both tails (sigma(-40) = 4.2e-18).
    """
    e = np.exp(-np.abs(x))
    return np.where(x >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


@benign_underflow
def log_sigmoid_np(x: np.ndarray) -> np.ndarray:
    """log sigma(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|))."""
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


@benign_underflow
def bernoulli_log_prob_np(x: np.ndarray, logits: np.ndarray, reduce: bool = True) -> np.ndarray:
    """log Bern(x | sigma(l)) = x*l - softplus(l); summed over the last axis if ``reduce``.

    Evaluated as (x*l - max(l, 0)) - log1p(exp(-|l|)): for binary x the bracket is exact,
    so e.g. x = 1, l = 40 gives -4.2e-18 rather than 0.
    """
    with np.errstate(invalid="ignore"):
        lp = (x * logits - np.maximum(logits, 0.0)) - np.log1p(np.exp(-np.abs(logits)))
    return lp.sum(axis=-1) if reduce else lp


@benign_underflow
def bernoulli_logit_grad_np(x: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """d/dl log Bern(x | sigma(l)) = x - sigma(l), formed as x sigma(-l) - (1 - x) sigma(l).

    Both sigmoids come from one e = exp(-|l|): sigma(|l|) = 1/(1 + e), sigma(-|l|) =
    e/(1 + e). For binary x this is exactly sigma(-l) (x = 1) or -sigma(l) (x = 0): the
    literal x - sigma(l) cancels for a confident unit (x = 1, l = 40 gives 0 instead of
    4.2e-18; relative error ~1e-16 e^l in general).
    """
    e = np.exp(-np.abs(logits))
    r = 1.0 / (1.0 + e)
    pos = logits >= 0.0
    sig = np.where(pos, r, e * r)  # sigma(l)
    sig_neg = np.where(pos, e * r, r)  # sigma(-l)
    return x * sig_neg - (1.0 - x) * sig


@benign_underflow
def normal_log_prob_diag_np(
    x: np.ndarray, mean: np.ndarray, log_var: np.ndarray, reduce: bool = True
) -> np.ndarray:
    """log N(x | mean, diag(exp(lv))) = -1/2 [log 2pi + lv + (x - mean)^2 / exp(lv)].

    The quadratic term is formed as z^2 with z = (x - mean) exp(-lv/2), and set to 0 where
    x == mean, so extreme log-variances (|lv| up to 1e4) give no 0 * inf. Where
    ``x - mean`` or ``exp(-lv/2)`` overflows for finite input, z is formed with two factors
    ``exp(-lv/4)`` (and halves of x and mean; see ``_normal1`` in
    :mod:`lvmref.kernels._jit`); a z^2 beyond the float64 range is +inf and the
    log-density -inf, its correctly rounded value.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # handled just below
        dx = x - mean
        s = np.exp(-0.5 * log_var)
        z = dx * s
        quad = np.where(dx == 0.0, 0.0, z * z)
        redo = ((np.abs(dx) == np.inf) | (s == np.inf)) & np.isfinite(x) & np.isfinite(mean) \
            & ~np.isnan(log_var) & (dx != 0.0)
    if redo.any():
        xr, mr, lr = x[redo], mean[redo], log_var[redo]
        over = np.abs(dx[redo]) == np.inf
        h = np.where(over, 0.5 * xr - 0.5 * mr, dx[redo])
        with np.errstate(over="ignore"):  # z^2 beyond float64: +inf is the rounded value
            s4 = np.exp(-0.25 * lr)
            z = ((h * s4) * s4) * np.where(over, 2.0, 1.0)
            quad[redo] = z * z
    lp = -0.5 * ((LOG_2PI + log_var) + quad)
    return lp.sum(axis=-1) if reduce else lp


@benign_underflow
def expm1_minus_x_np(s: np.ndarray) -> np.ndarray:
    """e^s - 1 - s without cancellation: Taylor series for |s| <= 1/2, else expm1(s) - s.

    Twin of :func:`lvmref.kernels._jit.expm1_minus_x` (same coefficients, same branch).
    """
    s = np.asarray(s, dtype=np.float64)
    small = np.abs(s) <= 0.5
    q = np.full(s.shape, _INV_FACT[-1])
    for c in _INV_FACT[-2::-1]:
        q = q * s + c
    with np.errstate(over="ignore"):  # e^s beyond float64 for s > 709.78: the KL is +inf
        big = np.expm1(s) - s
    return np.where(small, (s * s) * q, big)


# 1/k!, k = 2..16 (the series of e^s - 1 - s divided by s^2)
_INV_FACT = tuple(1.0 / math.factorial(k) for k in range(2, 17))


@benign_underflow
def kl_normal_std_np(mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """KL(N(mean, diag exp(log_var)) || N(0, I)) per row: 1/2 sum(exp(lv) + mean^2 - 1 - lv).

    Each term is formed as (e^lv - 1 - lv) + mean^2, both parts >= 0, with e^lv - 1 - lv
    from :func:`expm1_minus_x_np` (a series near lv = 0, where expm1(lv) - lv cancels:
    relative error 5e-5 at lv = 1e-12 before, ~1e-16 now).
    """
    with np.errstate(over="ignore"):  # mean^2 or e^lv beyond float64: the KL is +inf
        return 0.5 * np.sum(expm1_minus_x_np(log_var) + mean * mean, axis=-1)


@benign_underflow
def elbo_iwae_np(log_px_z: np.ndarray, log_pz: np.ndarray, log_qz: np.ndarray):
    """Per-row ELBO and importance-weighted bound from K samples per row.

    With log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), each of shape (n, K):
    ELBO estimate = mean_k log w_k and L_K = logsumexp_k(log w_k) - log K
    (Burda et al. 2015, eq. 8). Returns ``(elbo, iwae)``, each of shape (n,).
    Intermediates that overflow although the result is finite (entries near the float64
    limit) are recomputed at half scale, as in ``elbo_iwae_rows`` of ``_jit``.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # handled just below
        log_w = (log_px_z + log_pz) - log_qz
        inputs_finite = np.isfinite(log_px_z) & np.isfinite(log_pz) & np.isfinite(log_qz)
        redo = ~np.isfinite(log_w) & inputs_finite
        log_w[redo] = 2.0 * ((0.5 * log_px_z[redo] + 0.5 * log_pz[redo]) - 0.5 * log_qz[redo])
        k = log_w.shape[-1]
        mean = log_w.sum(axis=-1) / k
        redo_mean = ~np.isfinite(mean) & np.isfinite(log_w).all(axis=-1)
    if redo_mean.any():
        mean[redo_mean] = (log_w[redo_mean] / k).sum(axis=-1)
    return mean, logsumexp_np(log_w, axis=-1) - np.log(k)
