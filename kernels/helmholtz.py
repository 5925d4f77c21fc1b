r"""Batch-size-1 wake-sleep for sigmoid belief nets: Numba kernel and its NumPy twin.

Implements eq. (9) of :mod:`lvmref.helmholtz` (wake: delta rule (7) on a sample of q;
sleep: delta rule (8) on a dream) for networks without deterministic hidden layers,
one data vector per update. All noise comes in as arrays (eq. (6): a unit with logit
a is on iff u < sigmoid(a)), so both implementations consume the same uniforms and
agree to rounding.

Flat parameter buffer
---------------------
:func:`pack_params` concatenates ``prior`` (n_0,), then ``gen{l}.W0`` (n_l, n_{l+1})
and ``gen{l}.b0`` (n_{l+1},) for l = 0..L-1, then ``rec{l}.W0`` (n_{l+1}, n_l) and
``rec{l}.b0`` (n_l,) — the canonical key order of ``Architecture.keys()`` — each
C-ordered. :func:`unpack_params` returns views into that buffer.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit

__all__ = ["pack_params", "unpack_params", "ws_online", "ws_online_np"]


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


def unpack_params(flat: np.ndarray, layout, sizes=None) -> dict:
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
# NumPy twin
# ----------------------------------------------------------------------------------------

def _sig(a):
    e = np.exp(-np.abs(a))
    return np.where(a >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sp(a):
    return np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a)))


def ws_online_np(flat, layout, X, UQ, US, lr, lr_q):
    """NumPy twin of :func:`ws_online` (same arguments, same in-place update)."""
    p = unpack_params(flat, layout)
    sizes = layout[0]
    L = len(sizes) - 1
    off = np.concatenate([[0], np.cumsum(sizes)])
    K = int(off[L])
    T = X.shape[0]
    logw = np.empty(T)
    h = np.empty(int(off[L + 1]))
    for t in range(T):
        # wake: z ~ q(z | x) bottom-up, eqs. (5), (6)
        h[K:] = X[t]
        lq = 0.0
        for l in range(L - 1, -1, -1):
            c = h[off[l + 1]:off[l + 2]] @ p[f"rec{l}.W0"] + p[f"rec{l}.b0"]
            hl = (UQ[t, off[l]:off[l + 1]] < _sig(c)).astype(np.float64)
            h[off[l]:off[l + 1]] = hl
            lq += float(np.sum(hl * c - _sp(c)))
        # log p(x, z) (eq. 3) and the generative delta rule (7)
        beta = p["prior"]
        h0 = h[: off[1]]
        lp = float(np.sum(h0 * beta - _sp(beta)))
        dprior = h0 - _sig(beta)
        deltas = []
        for l in range(L):
            a = h[off[l]:off[l + 1]] @ p[f"gen{l}.W0"] + p[f"gen{l}.b0"]
            hn = h[off[l + 1]:off[l + 2]]
            lp += float(np.sum(hn * a - _sp(a)))
            deltas.append(hn - _sig(a))
        beta += lr * dprior
        for l in range(L):
            p[f"gen{l}.W0"] += lr * np.outer(h[off[l]:off[l + 1]], deltas[l])
            p[f"gen{l}.b0"] += lr * deltas[l]
        logw[t] = lp - lq
        # sleep: a dream (z, x) ~ p top-down (eqs. 1, 2, 6), recognition delta rule (8)
        h[: off[1]] = (US[t, : off[1]] < _sig(beta)).astype(np.float64)
        for l in range(L):
            a = h[off[l]:off[l + 1]] @ p[f"gen{l}.W0"] + p[f"gen{l}.b0"]
            h[off[l + 1]:off[l + 2]] = (US[t, off[l + 1]:off[l + 2]] < _sig(a)).astype(
                np.float64)
        deltas = []
        for l in range(L):
            c = h[off[l + 1]:off[l + 2]] @ p[f"rec{l}.W0"] + p[f"rec{l}.b0"]
            deltas.append(h[off[l]:off[l + 1]] - _sig(c))
        for l in range(L):
            p[f"rec{l}.W0"] += lr_q * np.outer(h[off[l + 1]:off[l + 2]], deltas[l])
            p[f"rec{l}.b0"] += lr_q * deltas[l]
    return logw


# ----------------------------------------------------------------------------------------
# Numba kernel
# ----------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _sig_s(a):
    if a >= 0.0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


@njit(cache=True, inline="always")
def _sp_s(a):
    return max(a, 0.0) + math.log1p(math.exp(-abs(a)))


@njit(cache=True)
def _ws_online_nb(flat, sizes, gW, gb, rW, rb, X, UQ, US, lr, lr_q):
    L = sizes.shape[0] - 1
    off = np.zeros(L + 2, np.int64)
    for l in range(L + 1):
        off[l + 1] = off[l] + sizes[l]
    K = off[L]
    T = X.shape[0]
    h = np.empty(off[L + 1])
    act = np.empty(off[L + 1])      # logits / then deltas, per unit
    logw = np.empty(T)
    for t in range(T):
        # ---- wake: bottom-up sample from q, eqs. (5), (6)
        for j in range(off[L + 1] - K):
            h[K + j] = X[t, j]
        lq = 0.0
        for l in range(L - 1, -1, -1):
            nin, nout = sizes[l + 1], sizes[l]
            for j in range(nout):
                c = flat[rb[l] + j]
                for i in range(nin):
                    c += h[off[l + 1] + i] * flat[rW[l] + i * nout + j]
                hv = 1.0 if UQ[t, off[l] + j] < _sig_s(c) else 0.0
                h[off[l] + j] = hv
                lq += hv * c - _sp_s(c)
        # ---- log p(x, z), eq. (3); deltas of eq. (7) with the pre-update weights
        lp = 0.0
        for k in range(sizes[0]):
            b = flat[k]
            lp += h[k] * b - _sp_s(b)
            act[k] = h[k] - _sig_s(b)
        for l in range(L):
            nin, nout = sizes[l], sizes[l + 1]
            for j in range(nout):
                a = flat[gb[l] + j]
                for i in range(nin):
                    a += h[off[l] + i] * flat[gW[l] + i * nout + j]
                hv = h[off[l + 1] + j]
                lp += hv * a - _sp_s(a)
                act[off[l + 1] + j] = hv - _sig_s(a)
        logw[t] = lp - lq
        for k in range(sizes[0]):
            flat[k] += lr * act[k]
        for l in range(L):
            nin, nout = sizes[l], sizes[l + 1]
            for i in range(nin):
                hi = h[off[l] + i]
                for j in range(nout):
                    flat[gW[l] + i * nout + j] += lr * (hi * act[off[l + 1] + j])
            for j in range(nout):
                flat[gb[l] + j] += lr * act[off[l + 1] + j]
        # ---- sleep: dream top-down (eqs. 1, 2, 6), then recognition delta rule (8)
        for k in range(sizes[0]):
            h[k] = 1.0 if US[t, k] < _sig_s(flat[k]) else 0.0
        for l in range(L):
            nin, nout = sizes[l], sizes[l + 1]
            for j in range(nout):
                a = flat[gb[l] + j]
                for i in range(nin):
                    a += h[off[l] + i] * flat[gW[l] + i * nout + j]
                h[off[l + 1] + j] = 1.0 if US[t, off[l + 1] + j] < _sig_s(a) else 0.0
        for l in range(L):
            nin, nout = sizes[l + 1], sizes[l]
            for j in range(nout):
                c = flat[rb[l] + j]
                for i in range(nin):
                    c += h[off[l + 1] + i] * flat[rW[l] + i * nout + j]
                act[off[l] + j] = h[off[l] + j] - _sig_s(c)
        for l in range(L):
            nin, nout = sizes[l + 1], sizes[l]
            for i in range(nin):
                hi = h[off[l + 1] + i]
                for j in range(nout):
                    flat[rW[l] + i * nout + j] += lr_q * (hi * act[off[l] + j])
            for j in range(nout):
                flat[rb[l] + j] += lr_q * act[off[l] + j]
    return logw


def ws_online(flat, layout, X, UQ, US, lr, lr_q):
    """Run ``T`` online wake-sleep updates in place on the flat buffer ``flat``.

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
    if numba.config.DISABLE_JIT:
        return ws_online_np(flat, layout, X, UQ, US, lr, lr_q)
    sizes, gW, gb, rW, rb = layout
    return _ws_online_nb(flat, sizes, gW, gb, rW, rb, np.ascontiguousarray(X),
                         np.ascontiguousarray(UQ), np.ascontiguousarray(US),
                         float(lr), float(lr_q))
