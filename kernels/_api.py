"""Validating public wrappers of the kernels (float64 copies in, fresh arrays out).

NOTE: provisional — these currently dispatch to the NumPy twins; the Numba kernels
replace them behind the same signatures.
"""

from __future__ import annotations

import numpy as np

from . import _twins as T


def _arr(x, name, allow_nan=True):
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}")
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {a.dtype}")
    return np.array(a, dtype=np.float64)


def _axis(axis, ndim, name="axis"):
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(axis).__name__}")
    if not -max(ndim, 1) <= axis < max(ndim, 1):
        raise ValueError(f"{name}={axis} is out of bounds for an array of ndim {ndim}")
    return int(axis) % max(ndim, 1)


def logsumexp(a, axis=None, keepdims=False):
    """log(sum(exp(a))) along ``axis``; semantics of ``scipy.special.logsumexp``.

    Parameters
    ----------
    a : array_like, any shape
    axis : int or None
    keepdims : bool

    Returns
    -------
    ndarray (0-d for ``axis=None`` without keepdims)
    """
    a = _arr(a, "a")
    return T.logsumexp_np(a, _axis(axis, a.ndim), keepdims)


def log_mean_exp(a, axis=None, keepdims=False):
    """log(mean(exp(a))) = logsumexp(a) - log n along ``axis``."""
    a = _arr(a, "a")
    ax = _axis(axis, a.ndim)
    n = a.size if ax is None else a.shape[ax]
    with np.errstate(divide="ignore"):
        return T.logsumexp_np(a, ax, keepdims) - np.log(n)


def log_softmax(a, axis=-1):
    """a - logsumexp(a, axis, keepdims=True)."""
    a = _arr(a, "a")
    return T.log_softmax_np(a, _axis(axis, a.ndim))


def softplus(x):
    """log(1 + exp(x)), elementwise, overflow-free."""
    return T.softplus_np(_arr(x, "x"))


def log_sigmoid(x):
    """log(sigmoid(x)), elementwise, overflow-free."""
    return T.log_sigmoid_np(_arr(x, "x"))


def _same_shape(a, b, na, nb):
    if a.shape != b.shape:
        raise ValueError(f"{na} and {nb} must have the same shape, got {a.shape} and {b.shape}")


def bernoulli_log_prob(x, logits, reduce=True):
    """log Bern(x | sigmoid(logits)) = x*logits - softplus(logits).

    Parameters
    ----------
    x, logits : array_like, same shape (..., d)
    reduce : bool
        Sum over the last axis (per-row log-likelihood, shape (...,)) or return
        elementwise terms (shape (..., d)).
    """
    x, logits = _arr(x, "x"), _arr(logits, "logits")
    _same_shape(x, logits, "x", "logits")
    return T.bernoulli_log_prob_np(x, logits, reduce)


def normal_log_prob_diag(x, mean, log_var, reduce=True):
    """log N(x | mean, diag(exp(log_var))), summed over the last axis if ``reduce``.

    Parameters
    ----------
    x, mean, log_var : array_like, same shape (..., d)
    """
    x, mean, log_var = _arr(x, "x"), _arr(mean, "mean"), _arr(log_var, "log_var")
    _same_shape(x, mean, "x", "mean")
    _same_shape(x, log_var, "x", "log_var")
    return T.normal_log_prob_diag_np(x, mean, log_var, reduce)


def kl_normal_std(mean, log_var):
    """KL(N(mean, diag exp(log_var)) || N(0, I)) per row; shapes (..., d) -> (...,)."""
    mean, log_var = _arr(mean, "mean"), _arr(log_var, "log_var")
    _same_shape(mean, log_var, "mean", "log_var")
    return T.kl_normal_std_np(mean, log_var)


def elbo_iwae(log_px_z, log_pz, log_qz):
    """Per-row ELBO estimate and importance-weighted bound L_K from K samples.

    Parameters
    ----------
    log_px_z, log_pz, log_qz : array_like, shape (n, K)

    Returns
    -------
    elbo, iwae : ndarray, shape (n,)
    """
    a, b, c = _arr(log_px_z, "log_px_z"), _arr(log_pz, "log_pz"), _arr(log_qz, "log_qz")
    _same_shape(a, b, "log_px_z", "log_pz")
    _same_shape(a, c, "log_px_z", "log_qz")
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"log_px_z must be 2-D (n, K) with K >= 1, got shape {a.shape}")
    return T.elbo_iwae_np(a, b, c)
