"""Validating public wrappers of the kernels.

Each wrapper checks its arguments (``TypeError`` for non-numeric input, ``ValueError``
naming the argument for a wrong shape or axis), converts to float64 (a copy for other
dtypes; float64 input is read in place and never written), lays the data out as C-contiguous
rows and calls the Numba kernel in :mod:`lvmref.kernels._jit`. When Numba's JIT is disabled
(``NUMBA_DISABLE_JIT=1``) the same wrappers call the plain-NumPy twins in
:mod:`lvmref.kernels._twins` instead; both paths implement the same equations and the tests
check that they agree.

Which path runs with the JIT enabled was decided by measurement (``validation/
bench_kernels.py --options``, float64, one thread; milliseconds, machine shared and noisy):

    function (size)                          Numba kernel   NumPy twin   used
    logsumexp rows (1e6, 10)                 see _jit section 3          Numba
    normal_log_prob_diag rows (2000, 784)    18-26          52-53        Numba
    elbo_iwae (1e4, 100)                     11-16          12-16        Numba
    softplus, log_sigmoid (1e6,)             23-32          8-12         NumPy
    bernoulli_log_prob rows (2000, 784)      40-52          30-40        NumPy
    kl_normal_std rows (2000, 784)           42-54          19-28        NumPy

NumPy 2.4 evaluates exp/log1p/expm1 with SIMD code on this CPU while Numba 0.68 calls
scalar libm (``math.log1p`` ~24 ns per call), so the elementwise functions built on
log1p/expm1 are faster as NumPy block code. Their jitted forms in ``_jit`` (tested against
the twins) are building blocks for other Numba kernels.

NaN in the input propagates to the affected outputs (the semantics of
``scipy.special.logsumexp``); it is never produced from finite input.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _jit as J
from . import _twins as T
from .fpenv import benign_underflow


def _jit_enabled() -> bool:
    return not numba.config.DISABLE_JIT


def _arr(x, name):
    """``x`` as a float64 ndarray (copied unless it already is float64)."""
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}")
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise TypeError(f"{name} must be a numeric array: {exc}") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {a.dtype}")
    return np.asarray(a, dtype=np.float64)


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _axis(axis, ndim, name="axis"):
    """Normalise ``axis`` (int or None) for an array of ``ndim`` dimensions."""
    if axis is None:
        return None
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of bounds for an array of ndim {ndim}")
    return int(axis) % ndim


def _as_rows(a, axis):
    """C-contiguous 2-D view/copy with ``axis`` last: (prod(other dims), a.shape[axis])."""
    if axis is None:
        return np.ascontiguousarray(a.reshape(1, -1))
    moved = np.moveaxis(a, axis, -1)
    return np.ascontiguousarray(moved.reshape(int(np.prod(moved.shape[:-1])), moved.shape[-1]))


def _lse_parts(rows):
    """(mx, l) per row of ``rows`` (n, m), eq. (2.1) of ``_jit``; lse = mx + l.

    The kernel (or twin) returns mx and S; l = log1p(S) is taken here with NumPy's
    vectorized ``np.log1p`` (the same function SciPy uses).
    """
    if not _jit_enabled():
        mx, s = T.lse_parts_np(rows)
    elif rows.size >= J.PARALLEL_MIN_SIZE and rows.shape[0] > 1 and numba.get_num_threads() > 1:
        mx, s = J.lse_parts_parallel(rows)
    else:
        mx, s = J.lse_parts(rows)
    return mx, np.log1p(s)


def _reduced_shape(shape, axis, keepdims):
    if axis is None:
        return (1,) * len(shape) if keepdims else ()
    if keepdims:
        return shape[:axis] + (1,) + shape[axis + 1 :]
    return shape[:axis] + shape[axis + 1 :]


@benign_underflow
def logsumexp(a, axis=None, keepdims=False):
    """log(sum(exp(a))) along ``axis``, with the semantics of ``scipy.special.logsumexp``.

    Computed as m + log1p(sum_{i != argmax} exp(a_i - m)) (eq. (2.1) of
    :mod:`lvmref.kernels._jit`). Special values: any NaN -> NaN; otherwise any +inf ->
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
    a = _arr(a, "a")
    keepdims = _flag(keepdims, "keepdims")
    ax = _axis(axis, a.ndim)
    mx, lg = _lse_parts(_as_rows(a, ax))
    return (mx + lg).reshape(_reduced_shape(a.shape, ax, keepdims))


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
    a = _arr(a, "a")
    keepdims = _flag(keepdims, "keepdims")
    ax = _axis(axis, a.ndim)
    n = a.size if ax is None else a.shape[ax]
    if n == 0:
        raise ValueError(f"a must have at least one element along the reduced axis, got {a.shape}")
    mx, lg = _lse_parts(_as_rows(a, ax))
    return ((mx + lg) - np.log(n)).reshape(_reduced_shape(a.shape, ax, keepdims))


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
    a = _arr(a, "a")
    if a.ndim == 0:
        raise ValueError("a must have at least 1 dimension for log_softmax, got a 0-d array")
    if axis is None:
        raise TypeError("axis must be an int for log_softmax, got NoneType")
    ax = _axis(axis, a.ndim)
    if not _jit_enabled():
        return T.log_softmax_np(a, ax)
    rows = _as_rows(a, ax)
    mx, lg = _lse_parts(rows)
    out = J.log_softmax_rows(rows, mx, lg)
    moved_shape = a.shape[:ax] + a.shape[ax + 1 :] + (a.shape[ax],)
    return np.moveaxis(out.reshape(moved_shape), -1, ax)


@benign_underflow
def softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), elementwise; no overflow.

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    ndarray, same shape as ``x``
    """
    # NumPy path in both modes: its SIMD exp/log1p beat Numba's scalar libm calls ~3x
    # (module docstring); the jitted J.softplus serves other Numba kernels.
    return T.softplus_np(_arr(x, "x"))


@benign_underflow
def log_sigmoid(x):
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), elementwise; no overflow.

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    ndarray, same shape as ``x``
    """
    # NumPy path in both modes (faster, see the module docstring)
    return T.log_sigmoid_np(_arr(x, "x"))


def _same_shape(a, b, na, nb):
    if a.shape != b.shape:
        raise ValueError(f"{na} and {nb} must have the same shape, got {a.shape} and {b.shape}")


def _need_last_axis(a, name):
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension (..., d), got a 0-d array")


def _rows2(a):
    return np.ascontiguousarray(a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1]))


@benign_underflow
def bernoulli_log_prob(x, logits, reduce=True):
    """log Bern(x | sigmoid(logits)) = x*logits - softplus(logits).

    Evaluated as (x*l - max(l, 0)) - log1p(exp(-|l|)), exact in the bracket for binary
    ``x`` and overflow-free for any finite logits.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Observations in [0, 1] (binary data, or grey levels for the usual relaxation).
    logits : array_like, shape (..., d)
        Logits of the Bernoulli means, same shape as ``x``.
    reduce : bool
        Sum over the last axis (per-row log-likelihood, shape (...,)) or return the
        elementwise terms (shape (..., d)).

    Returns
    -------
    ndarray, shape (...,) if ``reduce`` else (..., d)
    """
    x, logits = _arr(x, "x"), _arr(logits, "logits")
    reduce = _flag(reduce, "reduce")
    _need_last_axis(x, "x")
    _same_shape(x, logits, "x", "logits")
    if np.any((x < 0.0) | (x > 1.0)):
        raise ValueError("x must lie in [0, 1] (Bernoulli observations)")
    # NumPy path in both modes (faster, see the module docstring)
    return T.bernoulli_log_prob_np(x, logits, reduce)


@benign_underflow
def bernoulli_logit_grad(x, logits):
    """d/dlogits log Bern(x | sigmoid(logits)) = x - sigmoid(logits), without cancellation.

    Formed as ``x sigmoid(-l) - (1 - x) sigmoid(l)``: for binary x exactly
    ``sigmoid(-l)`` (x = 1) or ``-sigmoid(l)`` (x = 0). The literal difference loses all
    digits for a confident unit (x = 1, l = 40: 0 instead of 4.2e-18).

    Parameters
    ----------
    x : array_like, any shape
        Observations in [0, 1].
    logits : array_like, same shape as ``x``

    Returns
    -------
    ndarray, same shape as ``x``
    """
    x, logits = _arr(x, "x"), _arr(logits, "logits")
    _same_shape(x, logits, "x", "logits")
    if np.any((x < 0.0) | (x > 1.0)):
        raise ValueError("x must lie in [0, 1] (Bernoulli observations)")
    # NumPy path in both modes (SIMD exp, as bernoulli_log_prob)
    return T.bernoulli_logit_grad_np(x, logits)


@benign_underflow
def normal_log_prob_diag(x, mean, log_var, reduce=True):
    """log N(x | mean, diag(exp(log_var))) = -1/2 [log 2pi + lv + (x - mean)^2 exp(-lv)].

    Parameters
    ----------
    x : array_like, shape (..., d)
    mean : array_like, shape (..., d)
    log_var : array_like, shape (..., d)
        Log-variances (log sigma^2), same shape as ``x``.
    reduce : bool
        Sum over the last axis (shape (...,)) or return elementwise terms (shape (..., d)).

    Returns
    -------
    ndarray, shape (...,) if ``reduce`` else (..., d)
    """
    x, mean, log_var = _arr(x, "x"), _arr(mean, "mean"), _arr(log_var, "log_var")
    reduce = _flag(reduce, "reduce")
    _need_last_axis(x, "x")
    _same_shape(x, mean, "x", "mean")
    _same_shape(x, log_var, "x", "log_var")
    if not _jit_enabled():
        return T.normal_log_prob_diag_np(x, mean, log_var, reduce)
    xr, mr, vr = _rows2(x), _rows2(mean), _rows2(log_var)
    if reduce:
        return J.normal_log_prob_diag_rows(xr, mr, vr).reshape(x.shape[:-1])
    return J.normal_log_prob_diag_elem(xr, mr, vr).reshape(x.shape)


@benign_underflow
def kl_normal_std(mean, log_var):
    """KL(N(mean, diag exp(log_var)) || N(0, I)) per row.

    KL = 1/2 sum_j [exp(lv_j) + mean_j^2 - 1 - lv_j], each term formed as
    (expm1(lv) - lv) + mean^2 so that it is >= 0 in floating point.

    Parameters
    ----------
    mean : array_like, shape (..., d)
    log_var : array_like, shape (..., d)
        Log-variances (log sigma^2), same shape as ``mean``.

    Returns
    -------
    ndarray, shape (...,)
    """
    mean, log_var = _arr(mean, "mean"), _arr(log_var, "log_var")
    _need_last_axis(mean, "mean")
    _same_shape(mean, log_var, "mean", "log_var")
    # NumPy path in both modes: np.expm1 is vectorized, Numba's math.expm1 is a scalar call
    return T.kl_normal_std_np(mean, log_var)


@benign_underflow
def elbo_iwae(log_px_z, log_pz, log_qz):
    """Per-row ELBO estimate and importance-weighted bound L_K from K samples.

    With log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x):
    ELBO = (1/K) sum_k log w_k and L_K = logsumexp_k(log w_k) - log K
    (Burda, Grosse & Salakhutdinov 2016, eq. 8). On the same samples ELBO <= L_K.

    Parameters
    ----------
    log_px_z, log_pz, log_qz : array_like, shape (n, K)
        Per-sample log-densities, K >= 1 samples per row.

    Returns
    -------
    elbo, iwae : ndarray, shape (n,)
    """
    a, b, c = _arr(log_px_z, "log_px_z"), _arr(log_pz, "log_pz"), _arr(log_qz, "log_qz")
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"log_px_z must be 2-D (n, K) with K >= 1, got shape {a.shape}")
    _same_shape(a, b, "log_px_z", "log_pz")
    _same_shape(a, c, "log_px_z", "log_qz")
    if not _jit_enabled():
        return T.elbo_iwae_np(a, b, c)
    log_w, elbo = J.elbo_iwae_rows(
        np.ascontiguousarray(a), np.ascontiguousarray(b), np.ascontiguousarray(c)
    )
    mx, lg = _lse_parts(log_w)
    return elbo, (mx + lg) - np.log(a.shape[1])
