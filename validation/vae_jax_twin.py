"""A JAX twin of the VAE training step (used by ``bench_vae.py``; needs ``jax[cpu]``).

Written the way a JAX user would write it: the ELBO of :mod:`lvmref.vae` (eq. 7a,
Bernoulli or Gaussian likelihood, analytic KL, one noise sample per row) as a pure
function of a parameter dict in *our* layout (``W`` of shape ``(n_in, n_out)``),
``jax.value_and_grad`` for the gradient, and Adam written out in ``jax.numpy`` with the
arithmetic of :mod:`lvmref.kernels.optim` (``torch.optim.Adam``'s rule), the whole step
compiled by ``jax.jit``. The caller must enable float64 (``jax_enable_x64``) and pin
XLA's threads before importing jax.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

LOG_2PI = math.log(2.0 * math.pi)
_ACT = {"tanh": jnp.tanh, "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid,
        "softplus": jax.nn.softplus, "identity": lambda a: a}


def _mlp(params, net, h):
    for i, act in enumerate(net.activations):
        h = _ACT[act](h @ params[f"{net.prefix}W{i}"] + params[f"{net.prefix}b{i}"])
    return h


def make_step(arch, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """A jitted ``step(params, m, v, t, x, noise) -> (params, m, v, elbo)`` (dicts of arrays,
    ``t`` the 1-based step number as a float64 scalar)."""
    K, d = arch.n_latent, arch.n_features
    b1, b2 = betas

    def elbo(params, x, noise):
        out = _mlp(params, arch.encoder, x)
        mean, log_var = out[:, :K], out[:, K:]
        z = mean + jnp.exp(0.5 * log_var) * noise  # eq. (6)
        dec = _mlp(params, arch.decoder, z)
        if arch.likelihood == "bernoulli":  # eq. (2a)
            ll = jnp.sum(x * dec - jax.nn.softplus(dec), axis=1)
        else:  # eq. (2b)
            m, v = dec[:, :d], dec[:, d:]
            ll = -0.5 * jnp.sum(LOG_2PI + v + (x - m) ** 2 * jnp.exp(-v), axis=1)
        kl = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=1)  # eq. (5)
        return jnp.mean(ll - kl)

    def step(params, m, v, t, x, noise):
        value, g = jax.value_and_grad(elbo)(params, x, noise)
        bc1 = 1.0 - b1**t
        inv_bc2 = 1.0 / jnp.sqrt(1.0 - b2**t)
        m = {k: b1 * m[k] + (1.0 - b1) * (-g[k]) for k in params}
        v = {k: b2 * v[k] + (1.0 - b2) * (g[k] * g[k]) for k in params}
        params = {k: params[k] - (lr / bc1) * (m[k] / (jnp.sqrt(v[k]) * inv_bc2 + eps))
                  for k in params}
        return params, m, v, value

    return jax.jit(step)
