"""Numba kernels for the VAE training loop, with their plain-NumPy twins.

Each kernel (suffix ``_nb``) fuses several array passes of the training step into one;
the twins (suffix ``_np``) are the readable references, what runs under
``NUMBA_DISABLE_JIT=1``, and what the tests compare the kernels with; ``foo`` dispatches.
All work in place on the caller's (workspace) buffers, float64, C-contiguous.

* ``tanh_backward(delta, h)``: ``delta *= 1 - h**2`` (tanh' written with the forward
  output h, eq. 2 of :mod:`lvmref.nn`), one pass.
* ``tanh_inplace(a)``: ``a = tanh(a)`` with the vectorizable
  :func:`lvmref.kernels.fastexp.tanh_nb` (relative error <= 8.0 u, derived there; NumPy's
  float64 ``tanh`` is a scalar libm call on AVX2 CPUs, 15-45 ns per element, which was
  the largest single cost of the 64-200-10 training step).
* ``bernoulli_grad(x, logits, scale, g_out, g_out_t)``: with ``e = exp(-|logits|)``
  (:func:`lvmref.kernels.fastexp.exp_nonpos_nb`), ``g_out = scale * (x -
  sigmoid(logits))`` (eq. 8 of :mod:`lvmref.vae`) in the form ``x sigmoid(-l) - (1 - x)
  sigmoid(l)`` (exact for binary x, see :func:`lvmref.kernels.bernoulli_logit_grad`),
  its transpose ``g_out_t`` (the batch-major copy the weight-gradient product uses), and
  the return value, the Bernoulli log-likelihood (2a) ``sum(x * logits - max(logits, 0) -
  log1p(e))`` (log1p by :func:`lvmref.kernels.fastexp.log1p_nonneg_nb`). sigmoid(l) is
  ``1 / (1 + e)`` for l >= 0 and ``e / (1 + e)`` otherwise (no overflow for any l). One
  vectorized pass per row (the per-entry log-likelihood terms go to a row buffer, summed
  with four interleaved partial sums), then the transpose; this replaced the NumPy
  ``exp`` and ``log1p`` passes (scalar libm on AVX2) and a separate ``-|l|`` kernel.

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

* ``latent_sample(mean, log_var, eps, std, em1, z)``: ``std = exp(log_var / 2)``,
  ``em1 = expm1(log_var)`` (for the KL kernel above) and ``z = mean + std * eps``
  (eq. 6 of :mod:`lvmref.vae`) in one pass with :func:`lvmref.kernels.fastexp.exp_nb`
  (<= 2.4 u) and :func:`lvmref.kernels.fastexp.expm1_nb` (<= 5.9 u); replaced two
  NumPy ufunc calls on scalar libm, a multiplication and a separate reparameterization
  kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .densities import EXPM1_SERIES_MAX, expm1_minus_x_np, expm1_minus_x_small_nb
from .dispatch import pick
from .fastexp import exp_nb, exp_nonpos_nb, expm1_nb, log1p_nonneg_nb, tanh_nb
from .fpenv import benign_underflow

__all__ = [
    "tanh_inplace",
    "tanh_inplace_nb",
    "tanh_inplace_np",
    "tanh_backward",
    "tanh_backward_nb",
    "tanh_backward_np",
    "bernoulli_grad",
    "bernoulli_grad_nb",
    "bernoulli_grad_np",
    "kl_grad_analytic",
    "kl_grad_analytic_nb",
    "kl_grad_analytic_np",
    "latent_sample",
    "latent_sample_nb",
    "latent_sample_np",
]


@njit(cache=True, error_model="numpy")  # no zero-division branch: the loop vectorizes
def tanh_inplace_nb(a):
    """In place: a = tanh(a) (:func:`lvmref.kernels.fastexp.tanh_nb`). a (n,): pass a
    flat view of a contiguous 2-D buffer (one long loop vectorizes best)."""
    for i in range(a.shape[0]):
        a[i] = tanh_nb(a[i])


@benign_underflow
def tanh_inplace_np(a):
    """NumPy twin of :func:`tanh_inplace_nb`."""
    np.tanh(a, out=a)


def tanh_inplace(a):
    """:func:`tanh_inplace_nb`, or its twin :func:`tanh_inplace_np` without JIT."""
    pick(tanh_inplace_nb, tanh_inplace_np)(a)


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


@njit(cache=True, inline="always")
def _sum4_nb(buf, m):
    """buf[:m] summed with four interleaved partial sums (fixed order)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    k = 0
    while k + 4 <= m:
        s0 += buf[k]
        s1 += buf[k + 1]
        s2 += buf[k + 2]
        s3 += buf[k + 3]
        k += 4
    while k < m:
        s0 += buf[k]
        k += 1
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, error_model="numpy")  # no zero-division branch: the loop vectorizes
def bernoulli_grad_nb(x, logits, scale, g_out, g_out_t):
    """g_out = scale * (x - sigmoid(logits)) and its transpose g_out_t; returns
    sum(x*logits - softplus(logits)), the Bernoulli log-likelihood (2a).

    x, logits, g_out: (n, d); g_out_t: (d, n).
    """
    n, d = x.shape
    terms = np.empty(d)
    total = 0.0
    for i in range(n):
        for j in range(d):
            # selects, not branches: the signs of the logits are unpredictable
            lij = logits[i, j]
            xij = x[i, j]
            eij = exp_nonpos_nb(-abs(lij))
            r = 1.0 / (1.0 + eij)
            er = eij * r
            s = er if lij < 0.0 else r  # sigmoid(l)
            s_neg = r if lij < 0.0 else er  # sigmoid(-l)
            terms[j] = (xij * lij - max(lij, 0.0)) - log1p_nonneg_nb(eij)
            g_out[i, j] = scale * (xij * s_neg - (1.0 - xij) * s)  # exact form
        total += _sum4_nb(terms, d)
    # the transposed copy walks g_out_t row by row (contiguous stores): walking it column
    # by column put every store of a column into 8 of L1's 64 sets when d = 64 (a row
    # stride of 512 B) and took 11 us instead of 3.6 at (64, 100)
    for j in range(d):
        for i in range(n):
            g_out_t[j, i] = g_out[i, j]
    return total


@benign_underflow
def bernoulli_grad_np(x, logits, scale, g_out, g_out_t):
    """NumPy twin of :func:`bernoulli_grad_nb`."""
    e = np.exp(-np.abs(logits))
    r = 1.0 / (1.0 + e)
    s = np.where(logits < 0.0, e * r, r)  # sigmoid(l)
    s_neg = np.where(logits < 0.0, r, e * r)  # sigmoid(-l)
    np.multiply(x * s_neg - (1.0 - x) * s, scale, out=g_out)
    g_out_t[...] = g_out.T
    return float(np.sum((x * logits - np.maximum(logits, 0.0)) - np.log1p(e)))


def bernoulli_grad(x, logits, scale, g_out, g_out_t):
    """:func:`bernoulli_grad_nb`, or its twin :func:`bernoulli_grad_np` without JIT."""
    return pick(bernoulli_grad_nb, bernoulli_grad_np)(x, logits, scale, g_out, g_out_t)


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


@njit(cache=True, error_model="numpy")
def latent_sample_nb(mean, log_var, eps, std, em1, z):
    """std = exp(log_var / 2), em1 = expm1(log_var), z = mean + std * eps; all (n, m)."""
    n, m = mean.shape
    for i in range(n):
        for j in range(m):
            lv = log_var[i, j]
            s = exp_nb(0.5 * lv)
            std[i, j] = s
            em1[i, j] = expm1_nb(lv)
            z[i, j] = mean[i, j] + s * eps[i, j]


@benign_underflow
def latent_sample_np(mean, log_var, eps, std, em1, z):
    """NumPy twin of :func:`latent_sample_nb`."""
    np.exp(0.5 * log_var, out=std)
    np.expm1(log_var, out=em1)
    np.add(mean, std * eps, out=z)


def latent_sample(mean, log_var, eps, std, em1, z):
    """:func:`latent_sample_nb`, or its twin :func:`latent_sample_np` without JIT."""
    pick(latent_sample_nb, latent_sample_np)(mean, log_var, eps, std, em1, z)
