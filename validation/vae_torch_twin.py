"""A PyTorch twin of :class:`lvmref.vae.VAE` (used by the validation scripts; needs torch).

Written the way a PyTorch user would write it — ``nn.Linear`` layers, autograd,
``torch.optim.Adam`` — and loaded with *our* weights (``linear.weight = W.T``,
``linear.bias = b``, see the layout in the ``lvmref.vae`` docstring), so the same weights
and the same noise give comparable numbers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

_ACT = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus,
        "identity": nn.Identity}
LOG_2PI = math.log(2.0 * math.pi)


def _mlp(net, params):
    layers = []
    for i, act in enumerate(net.activations):
        lin = nn.Linear(net.sizes[i], net.sizes[i + 1], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(params[f"{net.prefix}W{i}"].T.copy()))
            lin.bias.copy_(torch.from_numpy(params[f"{net.prefix}b{i}"].copy()))
        layers += [lin, _ACT[act]()]
    return nn.Sequential(*layers)


class TorchVAE(nn.Module):
    """Twin of ``vae`` (a lvmref VAE) initialised from ``params`` (our dict layout)."""

    def __init__(self, vae, params):
        super().__init__()
        self.spec = vae
        self.enc = _mlp(vae.arch.encoder, params)
        self.dec = _mlp(vae.arch.decoder, params)

    def named_grads(self):
        """Gradients in our layout: dict name -> ndarray (W as (n_in, n_out))."""
        out = {}
        for prefix, seq in (("enc.", self.enc), ("dec.", self.dec)):
            lins = [m for m in seq if isinstance(m, nn.Linear)]
            for i, lin in enumerate(lins):
                out[f"{prefix}W{i}"] = lin.weight.grad.detach().numpy().T.copy()
                out[f"{prefix}b{i}"] = lin.bias.grad.detach().numpy().copy()
        return out

    def state_as_params(self):
        out = {}
        for prefix, seq in (("enc.", self.enc), ("dec.", self.dec)):
            lins = [m for m in seq if isinstance(m, nn.Linear)]
            for i, lin in enumerate(lins):
                out[f"{prefix}W{i}"] = lin.weight.detach().numpy().T.copy()
                out[f"{prefix}b{i}"] = lin.bias.detach().numpy().copy()
        return out

    def encode(self, x):
        h = self.enc(x)
        k = self.spec.n_latent
        return h[:, :k], h[:, k:]

    def log_lik(self, x, z):
        """log p(x | z) for x (n, D) and z (n, k, K) -> (n, k)."""
        n, s, k = z.shape
        out = self.dec(z.reshape(n * s, k))
        xr = x.repeat_interleave(s, dim=0)
        if self.spec.likelihood == "bernoulli":
            ll = -nn.functional.binary_cross_entropy_with_logits(out, xr, reduction="none")
        else:
            d = x.shape[1]
            m, v = out[:, :d], out[:, d:]
            ll = -0.5 * (LOG_2PI + v + (xr - m) ** 2 * torch.exp(-v))
        return ll.sum(1).reshape(n, s)

    def elbo(self, x, eps, kl="analytic"):
        """Per-row ELBO estimate for eps (n, k, K), eq. (7a)/(7b) of lvmref.vae."""
        mu, lv = self.encode(x)
        z = mu[:, None, :] + torch.exp(0.5 * lv)[:, None, :] * eps
        ll = self.log_lik(x, z)
        if kl == "analytic":
            kl_rows = 0.5 * (torch.exp(lv) + mu**2 - 1.0 - lv).sum(1)
            return ll.mean(1) - kl_rows
        log_pz = -0.5 * (LOG_2PI + z**2).sum(2)
        log_qz = -0.5 * (LOG_2PI + lv[:, None, :] + eps**2).sum(2)
        return (ll + log_pz - log_qz).mean(1)

    def reinforce_surrogate(self, x, z, baseline=None, kl="analytic"):
        """A scalar whose autograd gradient is the REINFORCE estimate (eq. 10) at fixed z.

        Decoder: pathwise at fixed z. Encoder: mean_t (f_t - b_t) * log q(z_t | x), with
        f and b detached, minus the analytic KL (``kl="analytic"``).
        """
        z = z.detach()
        n, s, _ = z.shape
        mu, lv = self.encode(x)
        diff = z - mu[:, None, :]
        log_q = -0.5 * (LOG_2PI + lv[:, None, :] + diff**2 * torch.exp(-lv)[:, None, :]).sum(2)
        ll = self.log_lik(x, z)
        if kl == "analytic":
            f = ll.detach()
            kl_rows = 0.5 * (torch.exp(lv) + mu**2 - 1.0 - lv).sum(1)
            extra = -kl_rows
        else:
            log_pz = -0.5 * (LOG_2PI + z**2).sum(2)
            f = (ll + log_pz - log_q).detach()
            extra = torch.zeros(n, dtype=torch.float64)
        if baseline is None:
            b = 0.0
        elif isinstance(baseline, str) and baseline == "loo":
            b = (f.sum(1, keepdim=True) - f) / (s - 1)
        else:
            b = torch.as_tensor(np.asarray(baseline, dtype=np.float64)).reshape(-1, 1)
        sur = ll.mean(1) + ((f - b) * log_q).mean(1) + extra
        return sur.mean()

    # -- multi-sample estimators (lvmref.vae eqs. 15-19), as an autodiff user writes them

    def log_weights(self, x, eps, detach_q=False):
        """log w (n, k) of eq. (15) at z = mean + exp(log_var / 2) eps; with ``detach_q``
        the density of q at z uses detached (mean, log_var) -- only the path through z is
        differentiated (the "stop gradient" of STL and DReG)."""
        mu, lv = self.encode(x)
        z = mu[:, None, :] + torch.exp(0.5 * lv)[:, None, :] * eps
        mq, lq = (mu.detach(), lv.detach()) if detach_q else (mu, lv)
        log_q = -0.5 * (LOG_2PI + lq[:, None, :]
                        + (z - mq[:, None, :]) ** 2 * torch.exp(-lq)[:, None, :]).sum(2)
        log_pz = -0.5 * (LOG_2PI + z**2).sum(2)
        return self.log_lik(x, z) + log_pz - log_q

    def estimator_grads(self, x, eps, estimator):
        """(value, grads in our layout) for "iwae" (autograd of logmeanexp log w), "dreg"
        (encoder: autograd of sum stop(omega)^2 log w with q detached; decoder: IWAE) or
        "stl" (autograd of mean log w with q detached; value mean log w)."""
        k = eps.shape[1]
        if estimator == "stl":
            value = self.log_weights(x, eps).mean().detach()
            _, grads = torch_grads(self, self.log_weights(x, eps, detach_q=True).mean())
            return float(value), grads
        lw = self.log_weights(x, eps)
        value = (torch.logsumexp(lw, dim=1) - math.log(k)).mean()
        v, grads = torch_grads(self, value)
        if estimator == "dreg":
            omega = torch.softmax(lw.detach(), dim=1)
            sur = (omega**2 * self.log_weights(x, eps, detach_q=True)).sum(1).mean()
            _, g2 = torch_grads(self, sur)
            grads.update({key: g for key, g in g2.items() if key.startswith("enc.")})
        return v, grads


def torch_grads(twin, value):
    """Zero the grads, backprop the scalar tensor ``value``; return (float, grads dict)."""
    twin.zero_grad(set_to_none=False)
    value.backward()
    return float(value.detach()), twin.named_grads()

