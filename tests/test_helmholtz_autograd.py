"""Helmholtz gradients against float64 PyTorch autograd, including confident units.

The twin below writes log p(x, z) (eq. 3) and log q(z | x) (eq. 5) with
``log Bern(h | sigmoid(a)) = h logsigmoid(a) + (1 - h) logsigmoid(-a)``; PyTorch
differentiates logsigmoid as ``sigmoid(-a)`` / ``-sigmoid(a)`` branches, so its gradient of
a confident unit (|a| up to 40) is exact to a few ulp. (``F.softplus`` would not do: its
default threshold makes it linear above 20, so its gradient there is exactly 1.) The
literal delta ``h - sigmoid(a)`` of eqs. (7)-(8) is off by ~1e-16 e^|a| relative (0 instead
of 4e-18 at a = 40), which these tests see: finite differences cannot.

Target (issue "CI green ... oracle precision at the edges"): every wake, sleep, RWS and
REINFORCE gradient equals autograd to <= 1e-12 relative, normwise per parameter, for logits
up to +-40; one online update likewise, by both training engines: the Numba kernels and the
NumPy engine ``sgd_update``.
"""

import numpy as np
import pytest
import torch

from lvmref import helmholtz as H
from lvmref.helmholtz import Architecture, NVILBaseline, init_params
from lvmref.kernels import helmholtz as KH

RTOL = 1e-12
U = 2.0**-53


# ---------------------------------------------------------------- the autograd twin

_ACT = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
        "softplus": torch.nn.functional.softplus, "identity": lambda a: a}


def _mlp(tp, prefix, n_layers, act, h):
    for i in range(n_layers):
        h = h @ tp[f"{prefix}W{i}"] + tp[f"{prefix}b{i}"]
        if i < n_layers - 1:
            h = _ACT[act](h)
    return h


def _log_bern(h, a):
    ls = torch.nn.functional.logsigmoid
    return (h * ls(a) + (1.0 - h) * ls(-a)).sum(dim=-1)


def _layers(arch, v):
    off = np.concatenate([[0], np.cumsum(arch.layer_sizes)])
    return [v[:, off[i]:off[i + 1]] for i in range(len(off) - 1)]


def torch_log_joint(tp, arch, x, z):
    hs = _layers(arch, torch.cat([z, x], dim=1))
    out = _log_bern(hs[0], tp["prior"].expand_as(hs[0]))
    for l in range(arch.n_layers):
        a = _mlp(tp, f"gen{l}.", len(arch.hidden) + 1, arch.activation, hs[l])
        out = out + _log_bern(hs[l + 1], a)
    return out


def torch_log_q(tp, arch, x, z):
    hs = _layers(arch, torch.cat([z, x], dim=1))
    out = torch.zeros(x.shape[0], dtype=torch.float64)
    for l in range(arch.n_layers):
        c = _mlp(tp, f"rec{l}.", len(arch.recognition_hidden) + 1, arch.activation, hs[l + 1])
        out = out + _log_bern(hs[l], c)
    return out


def _t(params):
    return {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
            for k, v in params.items()}


def _grads(tp, value, keys):
    value.backward()
    return {k: tp[k].grad.numpy().copy() for k in keys}


def assert_normwise_close(got, want, keys, rtol=RTOL):
    for k in keys:
        g, w = np.asarray(got[k]), np.asarray(want[k])
        assert g.shape == w.shape, k
        scale = np.max(np.abs(w))
        if scale == 0.0:  # e.g. the weights out of an all-off layer: exactly zero both ways
            np.testing.assert_array_equal(g, 0.0)
            continue
        err = np.max(np.abs(g - w))
        assert err <= rtol * scale, (k, err / scale)


# ---------------------------------------------------------------- confident models

ARCHS = [
    Architecture((2, 3, 5)),
    Architecture((2, 3, 4), hidden=(4,), recognition_hidden=(3,), activation="tanh"),
]


def _confident(arch, seed, magnitude=35.0):
    """Parameters and one binary (x, z) such that every logit has the sign of the unit it
    predicts and |logit| in [magnitude * 0.9, magnitude * 1.15] (~31..40): all deltas are
    sigmoid(-|a|) ~ 1e-14..4e-18, the regime where h - sigmoid(a) cancels."""
    rng = np.random.default_rng(seed)
    p = init_params(arch, rng)
    p = {k: 0.5 * v for k, v in p.items()}
    K, D = arch.n_latent, arch.n_features
    z = (rng.random((1, K)) < 0.5).astype(float)
    x = (rng.random((1, D)) < 0.5).astype(float)
    hs = _layers(arch, np.concatenate([z, x], axis=1))

    def target(h):
        return magnitude * rng.uniform(0.9, 1.15, h.shape[1]) * (2.0 * h[0] - 1.0)

    p["prior"] = target(hs[0])
    out_g, out_r = len(arch.hidden), len(arch.recognition_hidden)
    for l in range(arch.n_layers):
        p[f"gen{l}.b{out_g}"] = np.zeros_like(p[f"gen{l}.b{out_g}"])
        a0, _ = arch.gen(l).forward(p, hs[l])
        p[f"gen{l}.b{out_g}"] = target(hs[l + 1]) - a0[0]
        p[f"rec{l}.b{out_r}"] = np.zeros_like(p[f"rec{l}.b{out_r}"])
        c0, _ = arch.rec(l).forward(p, hs[l + 1])
        p[f"rec{l}.b{out_r}"] = target(hs[l]) - c0[0]
    return p, x, z


def _random(arch, seed, n=4):
    """Ordinary parameters and random (x, z): deltas of order 1, non-trivial weights."""
    rng = np.random.default_rng(seed)
    p = {k: v + 0.7 * rng.standard_normal(v.shape) for k, v in init_params(arch, rng).items()}
    x = (rng.random((n, arch.n_features)) < 0.5).astype(float)
    z = (rng.random((n, arch.n_latent)) < 0.5).astype(float)
    return p, x, z


CASES = [(a, kind, s) for a in range(len(ARCHS)) for kind in ("confident", "random")
         for s in (0, 1)]


def _case(i, kind, seed):
    arch = ARCHS[i]
    p, x, z = (_confident if kind == "confident" else _random)(arch, seed)
    return arch, p, x, z


def _gen_keys(arch):
    return [k for k in arch.keys() if not k.startswith("rec")]


def _rec_keys(arch):
    return [k for k in arch.keys() if k.startswith("rec")]


def test_confident_case_is_in_the_cancelling_regime():
    """The literal h - sigmoid(a) is off by >= 1e-3 relative for some unit of the
    confident case (exactly 0 for h = 1, a >= 37.5), so the tests below can fail."""
    from scipy.special import expit

    arch, p, x, z = _case(0, "confident", 0)
    h1, x_ = _layers(arch, np.concatenate([z, x], 1))[1:]
    a, _ = arch.gen(1).forward(p, h1)
    assert np.all(np.abs(a) >= 30.0) and np.all(np.abs(a) <= 41.0)
    exact = np.where(x_ == 1.0, expit(-a), -expit(a))
    literal = x_ - 1.0 / (1.0 + np.exp(-a))
    assert np.max(np.abs(literal - exact) / np.abs(exact)) > 1e-3
    g = H.wake_grad(p, x, z, arch)[f"gen1.b{len(arch.hidden)}"]
    np.testing.assert_allclose(g, exact[0], rtol=4 * U, atol=0)


@pytest.mark.parametrize(("i", "kind", "seed"), CASES)
def test_wake_and_sleep_gradients_equal_autograd(i, kind, seed):
    arch, p, x, z = _case(i, kind, seed)
    w = np.linspace(0.5, 1.5, x.shape[0])
    tp = _t(p)
    xt, zt, wt = (torch.tensor(v) for v in (x, z, w))
    want = _grads(tp, (wt * torch_log_joint(tp, arch, xt, zt)).sum(), _gen_keys(arch))
    assert_normwise_close(H.wake_grad(p, x, z, arch, w), want, _gen_keys(arch))
    tp = _t(p)
    want = _grads(tp, (wt * torch_log_q(tp, arch, xt, zt)).sum(), _rec_keys(arch))
    assert_normwise_close(H.sleep_grad(p, x, z, arch, w), want, _rec_keys(arch))


@pytest.mark.parametrize(("i", "kind", "seed"), CASES)
def test_rws_gradients_equal_autograd(i, kind, seed):
    arch, p, x, z = _case(i, kind, seed)
    rng = np.random.default_rng(seed + 10)
    S = 3
    zs = np.repeat(z[:, None, :], S, axis=1)
    if kind == "random":  # distinct samples, so the weights omega are not uniform
        zs = (rng.random(zs.shape) < 0.5).astype(float)
    n = x.shape[0]
    tp = _t(p)
    xr = torch.tensor(np.repeat(x, S, axis=0))
    zr = torch.tensor(zs.reshape(n * S, -1))
    lp, lq = torch_log_joint(tp, arch, xr, zr), torch_log_q(tp, arch, xr, zr)
    omega = torch.softmax((lp - lq).detach().reshape(n, S), dim=1).reshape(-1)
    want = _grads(tp, (omega * (lp + lq)).sum(), arch.keys())
    got, log_px = H.rws_grads(p, x, zs, arch)
    assert_normwise_close(got, want, arch.keys())
    ref = torch.logsumexp((lp - lq).detach().reshape(n, S), dim=1) - np.log(S)
    np.testing.assert_allclose(log_px, ref.numpy(), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(("i", "kind", "seed"), CASES)
def test_reinforce_gradients_equal_autograd(i, kind, seed):
    arch, p, x, z = _case(i, kind, seed)
    n = x.shape[0]
    baseline = np.linspace(-3.0, 2.0, n)
    scale = 1.7
    tp = _t(p)
    xt, zt = torch.tensor(x), torch.tensor(z)
    lp, lq = torch_log_joint(tp, arch, xt, zt), torch_log_q(tp, arch, xt, zt)
    signal = (lp - lq).detach()
    coef = (signal - torch.tensor(baseline)) / scale
    want = _grads(tp, lp.sum() + (coef * lq).sum(), arch.keys())
    got, sig = H.reinforce_grads(p, x, z, arch, baseline, scale)
    assert_normwise_close(got, want, arch.keys())
    np.testing.assert_allclose(sig, signal.numpy(), rtol=1e-14, atol=1e-13)


# ---------------------------------------------------------------- online updates (both engines)


def _torch_update(tp, grads_keys, value, lr):
    """p <- p + lr * grad(value) for the given keys (no graph kept)."""
    value.backward()
    with torch.no_grad():
        for k in grads_keys:
            tp[k] += lr * tp[k].grad
            tp[k].grad = None
    for k in tp:
        tp[k].grad = None


def _torch_dream(tp, arch, u):
    """Ancestral sample (z, x) from uniforms u (1, K + D), h = 1[u < sigmoid(a)]."""
    with torch.no_grad():
        off = np.concatenate([[0], np.cumsum(arch.layer_sizes)])
        h = (u[:, :off[1]] < torch.sigmoid(tp["prior"])).double()
        out = [h]
        for l in range(arch.n_layers):
            a = _mlp(tp, f"gen{l}.", 1, arch.activation, h)
            h = (u[:, off[l + 1]:off[l + 2]] < torch.sigmoid(a)).double()
            out.append(h)
        v = torch.cat(out, dim=1)
    K = arch.n_latent
    return v[:, :K], v[:, K:]


def _online_reference(method, arch, p, x, uq, us, lr, lr_q):
    """One online update (T = 1) of ws / rws (with sleep) / reinforce, in torch."""
    tp = _t(p)
    xt = torch.tensor(x)
    S = uq.shape[0]
    # samples from q: the model is confident, so every u gives the same z (checked)
    with torch.no_grad():
        zs = []
        for s in range(S):
            h = xt
            z = [None] * arch.n_layers
            for l in range(arch.n_layers - 1, -1, -1):
                c = _mlp(tp, f"rec{l}.", 1, arch.activation, h)
                off = np.concatenate([[0], np.cumsum(arch.layer_sizes)])
                h = (torch.tensor(uq[s:s + 1, off[l]:off[l + 1]]) < torch.sigmoid(c)).double()
                z[l] = h
            zs.append(torch.cat(z, dim=1))
    gen, rec = _gen_keys(arch), _rec_keys(arch)
    if method == "ws":
        _torch_update(tp, gen, torch_log_joint(tp, arch, xt, zs[0]).sum(), lr)
        zd, xd = _torch_dream(tp, arch, torch.tensor(us))
        _torch_update(tp, rec, torch_log_q(tp, arch, xd, zd).sum(), lr_q)
    elif method == "rws":
        xr = xt.repeat(S, 1)
        zr = torch.cat(zs, dim=0)
        lp, lq = torch_log_joint(tp, arch, xr, zr), torch_log_q(tp, arch, xr, zr)
        omega = torch.softmax((lp - lq).detach(), dim=0)
        (omega * lp).sum().backward(retain_graph=True)
        (omega * lq).sum().backward()
        with torch.no_grad():
            for k in gen:
                tp[k] += lr * tp[k].grad
            for k in rec:
                tp[k] += lr_q * tp[k].grad
        for k in tp:
            tp[k].grad = None
        zd, xd = _torch_dream(tp, arch, torch.tensor(us))
        _torch_update(tp, rec, torch_log_q(tp, arch, xd, zd).sum(), lr_q)
    else:  # reinforce, moving-average baseline starting at c = 0, no normalisation
        lp, lq = torch_log_joint(tp, arch, xt, zs[0]), torch_log_q(tp, arch, xt, zs[0])
        signal = (lp - lq).detach()
        lp.sum().backward(retain_graph=True)
        (signal * lq).sum().backward()
        with torch.no_grad():
            for k in gen:
                tp[k] += lr * tp[k].grad
            for k in rec:
                tp[k] += lr_q * tp[k].grad
    return {k: v.detach().numpy() for k, v in tp.items()}, zs


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("method", ["ws", "rws", "reinforce"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_online_update_equals_autograd_for_confident_units(method, engine, seed):
    """One update with lr = 1e17: the deltas (~1e-14..4e-18) move parameters of size ~40
    by O(0.1..1e3), so the computed update (after - before) carries the delta's relative
    accuracy to within ulp(40) / 0.1 ~ 7e-14, and a cancelled delta is off by >= 1e-2."""
    arch = ARCHS[0]
    p, x, z = _confident(arch, seed)
    rng = np.random.default_rng(seed + 100)
    K, D = arch.n_latent, arch.n_features
    S = 3 if method == "rws" else 1
    uq = rng.random((S, K))
    us = rng.random(K + D)
    lr = lr_q = 1e17
    want, zs = _online_reference(method, arch, p, x, uq, us[None], lr, lr_q)
    for zq in zs:  # the regime of the test: q reproduces z exactly
        np.testing.assert_array_equal(zq.numpy(), z)
    before = {k: v.copy() for k, v in p.items()}
    if engine == "numba":
        flat, layout = KH.pack_params(p, arch.layer_sizes)
        X = x.copy()
        run = {"ws": lambda: KH.ws_online(flat, layout, X, uq[None, 0], us[None], lr, lr_q),
               "rws": lambda: KH.rws_online(flat, layout, X, uq[None], us[None], lr, lr_q,
                                            True),
               "reinforce": lambda: KH.reinforce_online(flat, layout, X, uq[None, 0], lr, lr_q,
                                                        True, False, 0.9,
                                                        np.array([0.0, 1.0]))}
        run[method]()
        after = KH.unpack_params(flat, layout)
    else:  # the NumPy engine: one sgd_update on a minibatch of one row
        name = {"ws": "wake-sleep", "rws": "reweighted", "reinforce": "reinforce"}[method]
        after, _, _ = H.sgd_update(p, x, uq[None], us[None], arch, name, lr, lr_q, sleep=True,
                                   baseline=NVILBaseline(decay=0.9))
    for k in arch.keys():
        d_got = after[k] - before[k]
        d_want = want[k] - before[k]
        scale = np.max(np.abs(d_want))
        if scale == 0.0:  # e.g. weights from an all-off layer: no update either way
            np.testing.assert_array_equal(d_got, 0.0)
            continue
        # rounding of the stored parameters: <= 2 ulp of the largest |after| in the block
        tol = RTOL * scale + 4 * U * np.max(np.abs(want[k]))
        assert np.max(np.abs(d_got - d_want)) <= tol, (k, np.max(np.abs(d_got - d_want)), tol)


@pytest.mark.parametrize(("i", "kind", "seed"), CASES)
def test_vimco_gradients_equal_autograd(i, kind, seed):
    """Eqs. (14)-(15) against the autograd gradient of the VIMCO surrogate
    L + sum_j stop(L - L_{-j}) log q(z_j | x), with L = logmeanexp(log p - log q) at fixed
    samples and L_{-j} formed in torch from the geometric mean of the other weights."""
    arch, p, x, z = _case(i, kind, seed)
    rng = np.random.default_rng(seed + 20)
    S = 3
    zs = np.repeat(z[:, None, :], S, axis=1)
    if kind == "random":
        zs = (rng.random(zs.shape) < 0.5).astype(float)
    n = x.shape[0]
    tp = _t(p)
    xr = torch.tensor(np.repeat(x, S, axis=0))
    zr = torch.tensor(zs.reshape(n * S, -1))
    lq = torch_log_q(tp, arch, xr, zr).reshape(n, S)
    lw = torch_log_joint(tp, arch, xr, zr).reshape(n, S) - lq
    L = torch.logsumexp(lw, dim=1) - np.log(S)
    lwd = lw.detach()
    L_minus = []
    for j in range(S):
        others = torch.cat([lwd[:, :j], lwd[:, j + 1:]], dim=1)
        swapped = torch.cat([others, others.mean(dim=1, keepdim=True)], dim=1)
        L_minus.append(torch.logsumexp(swapped, dim=1) - np.log(S))
    signal = L.detach()[:, None] - torch.stack(L_minus, dim=1)
    want = _grads(tp, (L + (signal * lq).sum(dim=1)).sum(), arch.keys())
    got, log_px = H.vimco_grads(p, x, zs, arch)
    assert_normwise_close(got, want, arch.keys())
    np.testing.assert_allclose(log_px, L.detach().numpy(), rtol=1e-14, atol=1e-14)


# ---------------------------------------------------------------- exact ELBO by enumeration


def _all_binary(n):
    return np.array(np.meshgrid(*[[0.0, 1.0]] * n, indexing="ij")).reshape(n, -1).T


@pytest.mark.parametrize("i", range(len(ARCHS)))
@pytest.mark.parametrize("seed", [0, 1])
def test_reinforce_is_unbiased_exactly_enumerated_against_autograd(i, seed):
    """E_q[REINFORCE gradient] (eqs. 11-12, enumerated over all 2^K latents with the
    exact q(z | x) of the twin) = the autograd gradient of the exact ELBO
    sum_z q(z | x) (log p(x, z) - log q(z | x)), differentiated through q itself: the
    score-function identity, checked exactly for any baseline (it only adds
    b sum_z grad q = 0). The exact ELBO value (lvmref's enumeration) matches too."""
    arch = ARCHS[i]
    p, x, _ = _random(arch, seed, n=2)
    zs = _all_binary(arch.n_latent)
    n, m = x.shape[0], len(zs)
    tp = _t(p)
    xr = torch.tensor(np.repeat(x, m, axis=0))
    zr = torch.tensor(np.tile(zs, (n, 1)))
    lp, lq = torch_log_joint(tp, arch, xr, zr), torch_log_q(tp, arch, xr, zr)
    elbo_rows = (torch.exp(lq) * (lp - lq)).reshape(n, m).sum(1)
    want = _grads(tp, elbo_rows.sum(), arch.keys())
    np.testing.assert_allclose(H.exact_elbo(p, x, arch), elbo_rows.detach().numpy(),
                               rtol=1e-13)
    q = torch.exp(lq).detach().numpy().reshape(n, m)
    for baseline in (0.0, np.array([-2.0, 1.5])):
        got = {k: np.zeros_like(v) for k, v in p.items()}
        for j in range(m):  # sum_z q(z | x) g(z), each row's own q
            zj = np.repeat(zs[j:j + 1], n, axis=0)
            for r in range(n):
                b = baseline if np.ndim(baseline) == 0 else baseline[r:r + 1]
                g, _ = H.reinforce_grads(p, x[r:r + 1], zj[r:r + 1], arch, b)
                for k in got:
                    got[k] += q[r, j] * g[k]
        assert_normwise_close(got, want, arch.keys())
