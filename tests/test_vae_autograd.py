"""IWAE, DReG and STL gradients of lvmref.vae against a float64 PyTorch-autograd twin.

The twin writes the log weights (15) of :mod:`lvmref.vae` in torch and lets autograd
differentiate the surrogates an autodiff user would write (the way TFP and the DReG
authors' code do it):

* IWAE-reparam: ``logmeanexp_i log w_i`` itself;
* DReG: decoder from the IWAE estimate; encoder from ``sum_i stop(omega_i)^2 log w_i``
  with the parameters of q *detached* inside ``log q(z_i | x)`` (only the path through
  ``z_i`` is differentiated);
* STL: ``mean_i log w_i`` with q's parameters detached inside ``log q``.

Bernoulli log-likelihoods use ``x logsigmoid(l) + (1 - x) logsigmoid(-l)``, exact for
logits of +-40 (the hard case below). Target (issue 18): agreement to <= 1e-10 relative,
normwise per parameter. A fuller table: ``python validation/vae_estimators_vs_torch.py``.
"""

import math

import numpy as np
import pytest

from lvmref.vae import VAE

torch = pytest.importorskip("torch")

RTOL = 1e-10
LOG_2PI = math.log(2.0 * math.pi)
_ACT = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda a: a}


def _mlp(tp, prefix, n_layers, act, h):
    for i in range(n_layers):
        h = h @ tp[f"{prefix}W{i}"] + tp[f"{prefix}b{i}"]
        if i < n_layers - 1:
            h = _ACT[act](h)
    return h


def torch_log_weights(tp, vae, x, eps, detach_q=False):
    """log w (n, k) of eq. (15); with ``detach_q`` the density of q at z uses detached
    (mean, log_var) while z = mean + exp(log_var / 2) eps keeps its graph."""
    n, k, K = eps.shape
    L = len(vae.hidden) + 1
    out = _mlp(tp, "enc.", L, vae.activation, x)
    mu, lv = out[:, :K], out[:, K:]
    z = mu[:, None, :] + torch.exp(0.5 * lv)[:, None, :] * eps
    dec = _mlp(tp, "dec.", L, vae.activation, z.reshape(n * k, K))
    xr = x.repeat_interleave(k, dim=0)
    if vae.likelihood == "bernoulli":
        ls = torch.nn.functional.logsigmoid
        ll = (xr * ls(dec) + (1.0 - xr) * ls(-dec)).sum(1)
    else:
        d = x.shape[1]
        m, v = dec[:, :d], dec[:, d:]
        ll = -0.5 * (LOG_2PI + v + (xr - m) ** 2 * torch.exp(-v)).sum(1)
    log_pz = -0.5 * (LOG_2PI + z**2).sum(2)
    mq, lvq = (mu.detach(), lv.detach()) if detach_q else (mu, lv)
    log_qz = -0.5 * (LOG_2PI + lvq[:, None, :]
                     + (z - mq[:, None, :]) ** 2 * torch.exp(-lvq)[:, None, :]).sum(2)
    return ll.reshape(n, k) + log_pz - log_qz


def torch_gradients(vae, params, x, eps, estimator):
    """(value, grads) of the twin for "reparam" (IWAE), "dreg" or "stl"."""
    tp = {key: torch.tensor(v, requires_grad=True) for key, v in params.items()}
    xt, et = torch.tensor(x), torch.tensor(eps)
    n, k = eps.shape[:2]
    keys = list(params)
    if estimator == "stl":
        sur = torch_log_weights(tp, vae, xt, et, detach_q=True).mean()
        value = torch_log_weights(tp, vae, xt, et).mean()
        grads = torch.autograd.grad(sur, [tp[key] for key in keys])
        return float(value.detach()), {key: g.numpy() for key, g in zip(keys, grads)}
    lw = torch_log_weights(tp, vae, xt, et)
    value = (torch.logsumexp(lw, dim=1) - math.log(k)).mean()
    grads = dict(zip(keys, torch.autograd.grad(value, [tp[key] for key in keys],
                                               retain_graph=True)))
    if estimator == "dreg":
        omega = torch.softmax(lw.detach(), dim=1)
        sur = (omega**2 * torch_log_weights(tp, vae, xt, et, detach_q=True)).sum(1).mean()
        enc = [key for key in keys if key.startswith("enc.")]
        grads.update(zip(enc, torch.autograd.grad(sur, [tp[key] for key in enc])))
    return float(value.detach()), {key: g.numpy() for key, g in grads.items()}


def assert_normwise_close(got, want, rtol=RTOL):
    for key in want:
        scale = np.max(np.abs(want[key]))
        err = np.max(np.abs(got[key] - want[key]))
        assert err <= rtol * scale, (key, err / scale)


def _case(likelihood, hidden, seed, hard=False):
    rng = np.random.default_rng(seed)
    vae = VAE(5, 3, hidden=hidden, likelihood=likelihood)
    p = {key: v + 0.3 * rng.normal(size=v.shape) for key, v in vae.init_params(rng).items()}
    n = 4
    x = ((rng.random((n, 5)) < 0.4).astype(float) if likelihood == "bernoulli"
         else rng.normal(size=(n, 5)))
    if hard:  # decoder logits of +-(38..40): the output bias sets them, weights are small
        out = f"dec.b{len(hidden)}"
        p = {key: (0.01 * v if key.startswith("dec.W") else v) for key, v in p.items()}
        p[out] = np.where(rng.random(5) < 0.5, -1.0, 1.0) * rng.uniform(38.0, 40.0, 5)
    return vae, p, x, rng


CASES = [("bernoulli", (4,), 0, False), ("gaussian", (4,), 1, False),
         ("gaussian", (), 2, False), ("bernoulli", (4,), 3, True)]


@pytest.mark.parametrize("estimator", ["reparam", "dreg", "stl"])
@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize(("likelihood", "hidden", "seed", "hard"), CASES)
def test_estimators_equal_autograd(likelihood, hidden, seed, hard, k, estimator):
    vae, p, x, rng = _case(likelihood, hidden, seed, hard)
    eps = rng.normal(size=(x.shape[0], k, 3))
    want_value, want = torch_gradients(vae, p, x, eps, estimator)
    if estimator == "stl":
        value, got = vae.elbo_grad_stl(p, x, eps)
    else:
        value, got = vae.iwae_grad(p, x, eps, estimator=estimator)
    assert abs(value - want_value) <= 1e-13 * abs(want_value)
    assert_normwise_close(got, want)
