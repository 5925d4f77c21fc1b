r"""Batch-size-1 training kernels of the Helmholtz machine (sigmoid belief nets).

Numba kernels for eqs. (9)-(12) of :mod:`lvmref.helmholtz`, one data vector per update,
for networks without deterministic hidden layers:

- :func:`ws_online`: wake-sleep (9): wake delta rule (7) on a sample of q, sleep delta
  rule (8) on a dream;
- :func:`rws_online`: reweighted wake-sleep (10), optionally with the sleep phase;
- :func:`reinforce_online`: REINFORCE on the ELBO (11) with the NVIL moving-average
  baseline and variance normalisation (12).

All noise comes in as arrays (eq. (6): a unit with logit a is on iff u < sigmoid(a)), in
the layout of :func:`lvmref.helmholtz.sgd_update`, and every Bernoulli delta is formed as
in eq. (8a) (:func:`lvmref.kernels.densities.bernoulli_logit_grad1_nb`).

Why there is no ``_np`` twin here
---------------------------------
The readable NumPy implementation of these updates is the model's own:
:func:`lvmref.helmholtz.sgd_update` (any batch size and architecture) is the twin of
every kernel in this module, and ``tests/kernels/test_helmholtz.py`` asserts that the
kernels and it agree to 1e-12 on the same noise. A third, kernel-shaped NumPy copy of
the algorithm would only be one more thing to keep equal. Under ``NUMBA_DISABLE_JIT=1``
``HelmholtzMachine.fit(engine="auto")`` runs ``sgd_update``; calling these functions
directly then runs the kernel bodies as (slow) plain Python.

Flat parameter buffer
---------------------
:func:`pack_params` concatenates ``prior`` (n_0,), then ``gen{l}.W0`` (n_l, n_{l+1})
and ``gen{l}.b0`` (n_{l+1},) for l = 0..L-1, then ``rec{l}.W0`` (n_{l+1}, n_l) and
``rec{l}.b0`` (n_l,) -- the canonical key order of ``Architecture.keys()`` -- each
C-ordered. :func:`unpack_params` returns views into that buffer.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .densities import bernoulli_log_prob1_nb, bernoulli_logit_grad1_nb
from .fpenv import benign_underflow

__all__ = [
    "pack_params",
    "unpack_params",
    "ws_online",
    "ws_online_nb",
    "rws_online",
    "rws_online_nb",
    "reinforce_online",
    "reinforce_online_nb",
]


def _layout(sizes):
    sizes = np.asarray(sizes, dtype=np.int64)
    L = len(sizes) - 1
    off = int(sizes[0])
    gW, gb, rW, rb = (np.empty(L, np.int64) for _ in range(4))
    for l in range(L):
        gW[l] = off
        off += int(sizes[l] * sizes[l + 1])
        gb[l] = off
        off += int(sizes[l + 1])
    for l in range(L):
        rW[l] = off
        off += int(sizes[l + 1] * sizes[l])
        rb[l] = off
        off += int(sizes[l])
    return sizes, gW, gb, rW, rb, off


def pack_params(params: dict, sizes):
    """Copy ``params`` into one flat float64 buffer; returns ``(flat, layout)``."""
    sizes, gW, gb, rW, rb, total = _layout(sizes)
    flat = np.empty(total)
    n0 = int(sizes[0])
    flat[:n0] = params["prior"]
    for l in range(len(sizes) - 1):
        a, b = int(sizes[l]), int(sizes[l + 1])
        flat[gW[l]:gW[l] + a * b] = params[f"gen{l}.W0"].reshape(-1)
        flat[gb[l]:gb[l] + b] = params[f"gen{l}.b0"]
        flat[rW[l]:rW[l] + a * b] = params[f"rec{l}.W0"].reshape(-1)
        flat[rb[l]:rb[l] + a] = params[f"rec{l}.b0"]
    return flat, (sizes, gW, gb, rW, rb)


def unpack_params(flat: np.ndarray, layout) -> dict:
    """Dict of views into ``flat`` in the layout of :mod:`lvmref.helmholtz`."""
    sizes, gW, gb, rW, rb = layout
    L = len(sizes) - 1
    out = {"prior": flat[: int(sizes[0])]}
    for l in range(L):
        a, b = int(sizes[l]), int(sizes[l + 1])
        out[f"gen{l}.W0"] = flat[gW[l]:gW[l] + a * b].reshape(a, b)
        out[f"gen{l}.b0"] = flat[gb[l]:gb[l] + b]
    for l in range(L):
        a, b = int(sizes[l]), int(sizes[l + 1])
        out[f"rec{l}.W0"] = flat[rW[l]:rW[l] + a * b].reshape(b, a)
        out[f"rec{l}.b0"] = flat[rb[l]:rb[l] + a]
    return out


# ----------------------------------------------------------------------------------------
# Numba kernels (the steps of lvmref.helmholtz.sgd_update as scalar loops over the buffer)
# ----------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _sig_s(a):
    if a >= 0.0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


@njit(cache=True)
def _q_sample_nb(flat, sizes, off, rW, rb, h, u, drec):
    L = sizes.shape[0] - 1
    lq = 0.0
    for l in range(L - 1, -1, -1):
        nin, nout = sizes[l + 1], sizes[l]
        for j in range(nout):
            c = flat[rb[l] + j]
            for i in range(nin):
                c += h[off[l + 1] + i] * flat[rW[l] + i * nout + j]
            hv = 1.0 if u[off[l] + j] < _sig_s(c) else 0.0
            h[off[l] + j] = hv
            drec[off[l] + j] = bernoulli_logit_grad1_nb(hv, c)
            lq += bernoulli_log_prob1_nb(hv, c)
    return lq


@njit(cache=True)
def _log_joint_nb(flat, sizes, off, gW, gb, h, dgen):
    L = sizes.shape[0] - 1
    lp = 0.0
    for k in range(sizes[0]):
        b = flat[k]
        lp += bernoulli_log_prob1_nb(h[k], b)
        dgen[k] = bernoulli_logit_grad1_nb(h[k], b)
    for l in range(L):
        nin, nout = sizes[l], sizes[l + 1]
        for j in range(nout):
            a = flat[gb[l] + j]
            for i in range(nin):
                a += h[off[l] + i] * flat[gW[l] + i * nout + j]
            hv = h[off[l + 1] + j]
            lp += bernoulli_log_prob1_nb(hv, a)
            dgen[off[l + 1] + j] = bernoulli_logit_grad1_nb(hv, a)
    return lp


@njit(cache=True)
def _apply_gen_nb(flat, sizes, off, gW, gb, h, dgen, step):
    L = sizes.shape[0] - 1
    for k in range(sizes[0]):
        flat[k] += step * dgen[k]
    for l in range(L):
        nin, nout = sizes[l], sizes[l + 1]
        for i in range(nin):
            hi = h[off[l] + i]
            for j in range(nout):
                flat[gW[l] + i * nout + j] += step * (hi * dgen[off[l + 1] + j])
        for j in range(nout):
            flat[gb[l] + j] += step * dgen[off[l + 1] + j]


@njit(cache=True)
def _apply_rec_nb(flat, sizes, off, rW, rb, h, drec, step):
    L = sizes.shape[0] - 1
    for l in range(L):
        nin, nout = sizes[l + 1], sizes[l]
        for i in range(nin):
            hi = h[off[l + 1] + i]
            for j in range(nout):
                flat[rW[l] + i * nout + j] += step * (hi * drec[off[l] + j])
        for j in range(nout):
            flat[rb[l] + j] += step * drec[off[l] + j]


@njit(cache=True)
def _sleep_nb(flat, sizes, off, gW, gb, rW, rb, h, u, drec, lr_q):
    L = sizes.shape[0] - 1
    for k in range(sizes[0]):
        h[k] = 1.0 if u[k] < _sig_s(flat[k]) else 0.0
    for l in range(L):
        nin, nout = sizes[l], sizes[l + 1]
        for j in range(nout):
            a = flat[gb[l] + j]
            for i in range(nin):
                a += h[off[l] + i] * flat[gW[l] + i * nout + j]
            h[off[l + 1] + j] = 1.0 if u[off[l + 1] + j] < _sig_s(a) else 0.0
    for l in range(L):
        nin, nout = sizes[l + 1], sizes[l]
        for j in range(nout):
            c = flat[rb[l] + j]
            for i in range(nin):
                c += h[off[l + 1] + i] * flat[rW[l] + i * nout + j]
            drec[off[l] + j] = bernoulli_logit_grad1_nb(h[off[l] + j], c)
    _apply_rec_nb(flat, sizes, off, rW, rb, h, drec, lr_q)


@njit(cache=True)
def ws_online_nb(flat, sizes, gW, gb, rW, rb, X, UQ, US, lr, lr_q):
    L = sizes.shape[0] - 1
    off = np.zeros(L + 2, np.int64)
    for l in range(L + 1):
        off[l + 1] = off[l] + sizes[l]
    K = off[L]
    h, dgen, drec = np.empty(off[L + 1]), np.empty(off[L + 1]), np.empty(off[L + 1])
    logw = np.empty(X.shape[0])
    for t in range(X.shape[0]):
        for j in range(off[L + 1] - K):
            h[K + j] = X[t, j]
        lq = _q_sample_nb(flat, sizes, off, rW, rb, h, UQ[t], drec)
        logw[t] = _log_joint_nb(flat, sizes, off, gW, gb, h, dgen) - lq
        _apply_gen_nb(flat, sizes, off, gW, gb, h, dgen, lr)
        _sleep_nb(flat, sizes, off, gW, gb, rW, rb, h, US[t], drec, lr_q)
    return logw


@njit(cache=True)
def rws_online_nb(flat, sizes, gW, gb, rW, rb, X, UQ, US, lr, lr_q, sleep):
    L = sizes.shape[0] - 1
    off = np.zeros(L + 2, np.int64)
    for l in range(L + 1):
        off[l + 1] = off[l] + sizes[l]
    K = off[L]
    T, S = UQ.shape[0], UQ.shape[1]
    hs, dgen, drec = (np.empty((S, off[L + 1])), np.empty((S, off[L + 1])),
                      np.empty((S, off[L + 1])))
    lw = np.empty(S)
    out = np.empty(T)
    for t in range(T):
        for s in range(S):
            for j in range(off[L + 1] - K):
                hs[s, K + j] = X[t, j]
            lq = _q_sample_nb(flat, sizes, off, rW, rb, hs[s], UQ[t, s], drec[s])
            lw[s] = _log_joint_nb(flat, sizes, off, gW, gb, hs[s], dgen[s]) - lq
        mx = lw[0]
        for s in range(1, S):
            mx = max(mx, lw[s])
        tot = 0.0
        for s in range(S):
            tot += math.exp(lw[s] - mx)
        out[t] = mx + math.log(tot) - math.log(S)
        for s in range(S):
            om = math.exp(lw[s] - mx) / tot
            _apply_gen_nb(flat, sizes, off, gW, gb, hs[s], dgen[s], lr * om)
            _apply_rec_nb(flat, sizes, off, rW, rb, hs[s], drec[s], lr_q * om)
        if sleep:
            _sleep_nb(flat, sizes, off, gW, gb, rW, rb, hs[0], US[t], drec[0], lr_q)
    return out


@njit(cache=True)
def reinforce_online_nb(flat, sizes, gW, gb, rW, rb, X, UQ, lr, lr_q, use_baseline,
                         normalize, alpha, state):
    L = sizes.shape[0] - 1
    off = np.zeros(L + 2, np.int64)
    for l in range(L + 1):
        off[l + 1] = off[l] + sizes[l]
    K = off[L]
    h, dgen, drec = np.empty(off[L + 1]), np.empty(off[L + 1]), np.empty(off[L + 1])
    out = np.empty(X.shape[0])
    for t in range(X.shape[0]):
        for j in range(off[L + 1] - K):
            h[K + j] = X[t, j]
        lq = _q_sample_nb(flat, sizes, off, rW, rb, h, UQ[t], drec)
        sig = _log_joint_nb(flat, sizes, off, gW, gb, h, dgen) - lq
        out[t] = sig
        b = state[0] if use_baseline else 0.0
        scale = max(1.0, math.sqrt(state[1])) if normalize else 1.0
        _apply_gen_nb(flat, sizes, off, gW, gb, h, dgen, lr)
        _apply_rec_nb(flat, sizes, off, rW, rb, h, drec, lr_q * (sig - b) / scale)
        if use_baseline:
            state[0] = alpha * state[0] + (1.0 - alpha) * sig
            state[1] = alpha * state[1] + (1.0 - alpha) * (sig - b) ** 2
    return out


# ----------------------------------------------------------------------------------------
# public entry points (contiguous float64 arguments for the kernels; no twin to pick)
# ----------------------------------------------------------------------------------------

def _c(a):
    return np.ascontiguousarray(a, dtype=np.float64)


@benign_underflow
def ws_online(flat, layout, X, UQ, US, lr, lr_q):
    """Run ``T`` online wake-sleep updates (eq. 9) in place on the flat buffer ``flat``.

    Parameters
    ----------
    flat : ndarray (P,)
        Parameters packed by :func:`pack_params`; updated in place.
    layout : tuple
        From :func:`pack_params`.
    X : ndarray (T, D)
        One data vector per update.
    UQ : ndarray (T, K)
        Uniforms for the wake sample from q (z column order).
    US : ndarray (T, K + D)
        Uniforms for the dream, (z, x) column order.
    lr, lr_q : float
        Generative and recognition learning rates.

    Returns
    -------
    logw : ndarray (T,)
        log p(x_t, z_t) - log q(z_t | x_t) at each wake sample, before its update.
    """
    return ws_online_nb(flat, *layout, _c(X), _c(UQ), _c(US), float(lr), float(lr_q))


@benign_underflow
def rws_online(flat, layout, X, UQ, US, lr, lr_q, sleep):
    """Online reweighted wake-sleep (eq. 10, plus the sleep phase (9) if ``sleep``).

    ``UQ`` has shape (T, k, K): k samples from q per update. Returns (T,) IWAE
    estimates log mean_s w_s before each update. Other arguments as :func:`ws_online`.
    """
    return rws_online_nb(flat, *layout, _c(X), _c(UQ), _c(US), float(lr), float(lr_q),
                          bool(sleep))


@benign_underflow
def reinforce_online(flat, layout, X, UQ, lr, lr_q, use_baseline, normalize, alpha, state):
    """Online REINFORCE on the ELBO with the NVIL moving-average baseline (eqs. 11, 12).

    ``state`` (2,) float64 = [c, v] (moving mean and variance) is updated in place.
    Returns the (T,) learning signals. Other arguments as :func:`ws_online`.
    """
    return reinforce_online_nb(flat, *layout, _c(X), _c(UQ), float(lr), float(lr_q),
                                bool(use_baseline), bool(normalize), float(alpha), state)
