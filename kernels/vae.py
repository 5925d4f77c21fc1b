"""Numba kernels for the VAE training loop, with their plain-NumPy twins.

Each kernel (suffix ``_nb``) fuses several array passes of the training step into one;
the twins (suffix ``_np``) are the readable references, what runs under
``NUMBA_DISABLE_JIT=1``, and what the tests compare the kernels with; ``foo`` dispatches.
All work in place on the caller's (workspace) buffers, float64, C-contiguous.

* ``tanh_backward(delta, h)``: ``delta *= 1 - h**2`` (tanh' written with the forward
  output h, eq. 2 of :mod:`lvmref.nn`), one pass.
* ``bernoulli_grad(x, logits, e, scale, g_out, g_out_t)``: with ``e = exp(-|logits|)``
  computed by the caller (NumPy's vectorized exp is several times faster than a scalar exp
  in a Numba loop), ``g_out = scale * (x - sigmoid(logits))`` (eq. 8 of :mod:`lvmref.vae`)
  in the form ``x sigmoid(-l) - (1 - x) sigmoid(l)`` (exact for binary x, see
  :func:`lvmref.kernels.bernoulli_logit_grad`),
  its transpose ``g_out_t`` (the batch-major copy the weight-gradient product uses), and
  the return value ``sum(x * logits - max(logits, 0))``; the caller adds
  ``-sum(log1p(e))`` to get the Bernoulli log-likelihood (2a). sigmoid(l) is
  ``1 / (1 + e)`` for l >= 0 and ``e / (1 + e)`` otherwise (no overflow for any l).

* ``kl_grad_analytic(mean, log_var, em1, std, eps, g_z, scale, g_mean, g_log_var, g_t)``:
  with ``em1 = expm1(log_var)`` and ``std = exp(log_var / 2)`` computed by the caller
  (vectorized NumPy; scalar exp/expm1 in the loop made the kernel several times slower),
  the encoder-output gradient of the reparameterized ELBO with the analytic KL (eq. 9a of
  :mod:`lvmref.vae`), ``g_mean = g_z - scale * mean`` and ``g_log_var = (g_z * eps) *
  (std / 2) - (scale / 2) * em1``, returning the KL sum (5)
  ``sum((e^lv - 1 - lv) + mean**2) / 2`` (``em1 - lv``, or the series of
  :func:`lvmref.kernels.densities.expm1_minus_x_small_nb` for |lv| <= 1/2, where that
  difference cancels), and writes the transpose of
  ``[g_mean; g_log_var]`` into ``g_t`` (batch-major copy for the weight gradient); one
  pass instead of about ten NumPy calls with temporaries.

* ``neg_abs(a, out)``: ``out = -|a|`` (the argument of ``exp`` for ``e`` above) and
  ``gaussian_reparam(mean, std, eps, z)``: ``z = mean + std * eps`` (eq. 6 of
  :mod:`lvmref.vae`), each one pass and one call instead of two NumPy calls.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .densities import EXPM1_SERIES_MAX, expm1_minus_x_np, expm1_minus_x_small_nb
from .dispatch import pick
from .fpenv import benign_underflow

__all__ = [
    "tanh_backward",
    "tanh_backward_nb",
    "tanh_backward_np",
    "bernoulli_grad",
    "bernoulli_grad_nb",
    "bernoulli_grad_np",
    "kl_grad_analytic",
    "kl_grad_analytic_nb",
    "kl_grad_analytic_np",
    "neg_abs",
    "neg_abs_nb",
    "neg_abs_np",
    "gaussian_reparam",
    "gaussian_reparam_nb",
    "gaussian_reparam_np",
]


@njit(cache=True)
def tanh_backward_nb(delta, h):
    """In place: ``delta *= 1 - h*h``, as ``delta - delta*h*h``. delta, h (n, m)."""
    n, m = delta.shape
    for i in range(n):
        for j in range(m):
            hij = h[i, j]
            delta[i, j] = delta[i, j] - delta[i, j] * (hij * hij)


@benign_underflow
def tanh_backward_np(delta, h):
    """NumPy twin of :func:`tanh_backward_nb`."""
    delta -= delta * (h * h)


def tanh_backward(delta, h):
    """:func:`tanh_backward_nb`, or its twin :func:`tanh_backward_np` without JIT."""
    pick(tanh_backward_nb, tanh_backward_np)(delta, h)


@njit(cache=True)
def bernoulli_grad_nb(x, logits, e, scale, g_out, g_out_t):
    """g_out = scale * (x - sigmoid(logits)) and its transpose g_out_t; returns
    sum(x*logits - max(logits, 0)).

    x, logits, e = exp(-|logits|), g_out: (n, d); g_out_t: (d, n).
    """
    n, d = x.shape
    total = 0.0
    for i in range(n):
        row = 0.0
        for j in range(d):
            # selects, not branches: the signs of the logits are unpredictable, and a
            # mispredicted branch per entry cost about a third of this kernel's time
            lij = logits[i, j]
            eij = e[i, j]
            xij = x[i, j]
            r = 1.0 / (1.0 + eij)
            s = eij * r if lij < 0.0 else r  # sigmoid(l)
            s_neg = r if lij < 0.0 else eij * r  # sigmoid(-l)
            row += xij * lij - max(lij, 0.0)
            gij = scale * (xij * s_neg - (1.0 - xij) * s)  # x - sigmoid(l), exact form
            g_out[i, j] = gij
            g_out_t[j, i] = gij
        total += row
    return total


@benign_underflow
def bernoulli_grad_np(x, logits, e, scale, g_out, g_out_t):
    """NumPy twin of :func:`bernoulli_grad_nb`."""
    r = 1.0 / (1.0 + e)
    s = np.where(logits < 0.0, e * r, r)  # sigmoid(l)
    s_neg = np.where(logits < 0.0, r, e * r)  # sigmoid(-l)
    np.multiply(x * s_neg - (1.0 - x) * s, scale, out=g_out)
    g_out_t[...] = g_out.T
    return float(np.sum(x * logits - np.maximum(logits, 0.0)))


def bernoulli_grad(x, logits, e, scale, g_out, g_out_t):
    """:func:`bernoulli_grad_nb`, or its twin :func:`bernoulli_grad_np` without JIT."""
    return pick(bernoulli_grad_nb, bernoulli_grad_np)(x, logits, e, scale, g_out, g_out_t)


@njit(cache=True)
def kl_grad_analytic_nb(mean, log_var, em1, std, eps, g_z, scale, g_mean, g_log_var, g_t):
    """Encoder-output gradient (9a) and KL sum (5); see the module docstring. All (n, m)
    except g_t (m, 2n), which receives the transpose of [g_mean; g_log_var]."""
    n, m = mean.shape
    half = 0.5 * scale
    total = 0.0
    for i in range(n):
        row = 0.0
        for j in range(m):
            mu, lv, em = mean[i, j], log_var[i, j], em1[i, j]
            d = expm1_minus_x_small_nb(lv) if abs(lv) <= EXPM1_SERIES_MAX else em - lv
            row += d + mu * mu
            gm = g_z[i, j] - scale * mu
            gv = (g_z[i, j] * eps[i, j]) * (0.5 * std[i, j]) - half * em
            g_mean[i, j] = gm
            g_log_var[i, j] = gv
            g_t[j, i] = gm
            g_t[j, n + i] = gv
        total += row
    return 0.5 * total


@benign_underflow
def kl_grad_analytic_np(mean, log_var, em1, std, eps, g_z, scale, g_mean, g_log_var, g_t):
    """NumPy twin of :func:`kl_grad_analytic_nb`."""
    np.subtract(g_z, scale * mean, out=g_mean)
    np.subtract((g_z * eps) * (0.5 * std), (0.5 * scale) * em1, out=g_log_var)
    n = mean.shape[0]
    g_t[:, :n] = g_mean.T
    g_t[:, n:] = g_log_var.T
    d = np.where(np.abs(log_var) <= EXPM1_SERIES_MAX, expm1_minus_x_np(log_var), em1 - log_var)
    return 0.5 * float(np.sum(np.sum(d + mean * mean, axis=1)))


def kl_grad_analytic(mean, log_var, em1, std, eps, g_z, scale, g_mean, g_log_var, g_t):
    """:func:`kl_grad_analytic_nb`, or its twin :func:`kl_grad_analytic_np` without JIT."""
    return pick(kl_grad_analytic_nb, kl_grad_analytic_np)(mean, log_var, em1, std, eps, g_z,
                                                         scale, g_mean, g_log_var, g_t)


@njit(cache=True)
def neg_abs_nb(a, out):
    """out = -|a|, a and out (n, m)."""
    n, m = a.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = -abs(a[i, j])


@benign_underflow
def neg_abs_np(a, out):
    """NumPy twin of :func:`neg_abs_nb`."""
    np.negative(np.abs(a), out=out)


def neg_abs(a, out):
    """:func:`neg_abs_nb`, or its twin :func:`neg_abs_np` without JIT."""
    pick(neg_abs_nb, neg_abs_np)(a, out)


@njit(cache=True)
def gaussian_reparam_nb(mean, std, eps, z):
    """z = mean + std * eps, all (n, m)."""
    n, m = mean.shape
    for i in range(n):
        for j in range(m):
            z[i, j] = mean[i, j] + std[i, j] * eps[i, j]


@benign_underflow
def gaussian_reparam_np(mean, std, eps, z):
    """NumPy twin of :func:`gaussian_reparam_nb`."""
    np.add(mean, std * eps, out=z)


def gaussian_reparam(mean, std, eps, z):
    """:func:`gaussian_reparam_nb`, or its twin :func:`gaussian_reparam_np` without JIT."""
    pick(gaussian_reparam_nb, gaussian_reparam_np)(mean, std, eps, z)
