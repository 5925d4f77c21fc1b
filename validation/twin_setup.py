"""Set-up shared by the PyTorch-twin scripts ``vae_vs_torch.py`` and
``vae_estimators_vs_torch.py``: the torch guard, the models, weights, data and noise they
feed to both implementations, and their error measure.

Weights come from :func:`lvmref.conformance.vae_params` (the hard regimes of the golden
vectors), the error measure is that of :func:`lvmref.conformance.compare`, so the twin
scripts and ``lvmref conformance check`` measure agreement the same way.
"""

from __future__ import annotations

import sys

from lvmref.conformance import compare, vae_params
from lvmref.vae import VAE

#: normwise relative tolerance of the twin comparisons
RTOL = 1e-10
#: features and latent units of every twin model
D, K = 64, 10


def torch_or_exit():
    """The ``torch`` module; exits 0 with a message when it is not installed."""
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping (pip install torch==2.13.0)")
        sys.exit(0)
    return torch


def rel(ours, ref):
    """Normwise relative difference ``max|ours - ref| / max|ref|`` (:func:`compare`);
    ``inf`` when ``ours`` is not finite where ``ref`` is, or the shapes differ."""
    return compare(ours, ref, RTOL)[0]


def data(rng, n, likelihood):
    """``x`` (n, D): binary with P(1) = 0.3 (Bernoulli) or standard normal (Gaussian)."""
    if likelihood == "bernoulli":
        return (rng.random((n, D)) < 0.3).astype(float)
    return rng.normal(size=(n, D))


def twin_case(rng, n, k, likelihood, hidden=(200,), activation="tanh", hard=None):
    """``(vae, params, x, eps)`` drawn from ``rng`` in this order: a D -> K VAE's weights
    (initialisation + N(0, 0.05^2), optionally a hard regime), data (n, D), noise
    eps (n, k, K)."""
    vae = VAE(D, K, hidden=hidden, likelihood=likelihood, activation=activation)
    params = vae_params(vae, rng, hard=hard, scale=0.05)
    x = data(rng, n, likelihood)
    eps = rng.normal(size=(n, k, K))
    return vae, params, x, eps
