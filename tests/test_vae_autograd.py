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
import torch

from lvmref.vae import VAE

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


# ---------------------------------------------------------------- the nn.Module twin
# validation/vae_torch_twin.py (nn.Linear layers, autograd), run here in the default test
# run: the reparameterised ELBO gradients (eqs. 8-9) for both likelihoods and KL
# estimators, the REINFORCE estimator (eq. 10) with every baseline, and the
# allocation-free training step of lvmref.vae_training.


def _load_twin():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "validation" / "vae_torch_twin.py"
    spec = importlib.util.spec_from_file_location("vae_torch_twin", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TWIN = _load_twin()


def _twin_case(likelihood, hidden, activation, seed, n=6, d=12, K=3):
    rng = np.random.default_rng(seed)
    vae = VAE(d, K, hidden=hidden, likelihood=likelihood, activation=activation)
    p = {key: v + 0.2 * rng.normal(size=v.shape) for key, v in vae.init_params(rng).items()}
    x = ((rng.random((n, d)) < 0.3).astype(float) if likelihood == "bernoulli"
         else rng.normal(size=(n, d)))
    return vae, p, x, rng


TWIN_CASES = [("bernoulli", (8,), "tanh", 0), ("gaussian", (8,), "tanh", 1),
              ("gaussian", (7, 5), "relu", 2), ("bernoulli", (6, 4), "softplus", 3)]


@pytest.mark.parametrize("kl", ["analytic", "mc"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize(("likelihood", "hidden", "activation", "seed"), TWIN_CASES)
def test_reparam_elbo_and_gradients_equal_the_torch_twin(likelihood, hidden, activation,
                                                         seed, k, kl):
    vae, p, x, rng = _twin_case(likelihood, hidden, activation, seed)
    eps = rng.normal(size=(x.shape[0], k, vae.n_latent))
    twin = TWIN.TorchVAE(vae, p)
    xt, et = torch.from_numpy(x), torch.from_numpy(eps)
    want_value, want = TWIN.torch_grads(twin, twin.elbo(xt, et, kl).mean())
    value, got = vae.elbo_grad_reparam(p, x, eps, kl)
    assert abs(value - want_value) <= 1e-13 * abs(want_value)
    rows = twin.elbo(xt, et, kl).detach().numpy()
    np.testing.assert_allclose(vae.elbo(p, x, eps, kl), rows, rtol=1e-13)
    assert_normwise_close(got, want)


@pytest.mark.parametrize("kl", ["analytic", "mc"])
@pytest.mark.parametrize("baseline", [None, "loo", 0.7, "rows"])
@pytest.mark.parametrize(("likelihood", "hidden", "activation", "seed"), TWIN_CASES[:2])
def test_reinforce_gradients_equal_the_torch_twin(likelihood, hidden, activation, seed,
                                                  baseline, kl):
    """Eq. (10) at fixed z: every gradient, the log-variance one included, equals the
    autograd gradient of the twin's surrogate (a 1e-8 relative error is 100x the bar)."""
    vae, p, x, rng = _twin_case(likelihood, hidden, activation, seed)
    z = vae.as_model(p).sample_q(x, 4, rng)
    if baseline == "rows":
        baseline = np.linspace(-30.0, -5.0, x.shape[0])
    twin = TWIN.TorchVAE(vae, p)
    xt, zt = torch.from_numpy(x), torch.from_numpy(z)
    # (the twin compares its baseline with "loo" first, ambiguous for an ndarray: a list)
    tb = baseline.tolist() if isinstance(baseline, np.ndarray) else baseline
    _, want = TWIN.torch_grads(twin, twin.reinforce_surrogate(xt, zt, tb, kl))
    _, got = vae.elbo_grad_reinforce(p, x, z=z, baseline=baseline, kl=kl)
    assert_normwise_close(got, want)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_training_workspace_gradient_equals_the_torch_twin(likelihood):
    from lvmref.vae_training import TrainingWorkspace

    vae, p, x, rng = _twin_case(likelihood, (8,), "tanh", 5, n=10)
    eps = rng.normal(size=(x.shape[0], vae.n_latent))
    ws = TrainingWorkspace(vae.arch, p, x.shape[0], "analytic", 1e-3)
    value = ws.gradient(x, eps)
    twin = TWIN.TorchVAE(vae, p)
    want_value, want = TWIN.torch_grads(twin, twin.elbo(torch.from_numpy(x), torch.from_numpy(
        eps[:, None, :])).mean())
    assert abs(value - want_value) <= 1e-13 * abs(want_value)
    assert_normwise_close(ws.grads, want)
