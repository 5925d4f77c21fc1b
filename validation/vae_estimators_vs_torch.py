"""IWAE (reparameterised), DReG and STL gradients of lvmref.vae against PyTorch autograd.

For each configuration (likelihood x samples k x architecture, plus decoder logits of
+-40 and a latent unit collapsed to the prior) the twin (``vae_torch_twin.py``:
``nn.Linear`` layers loaded with our weights, autograd of the surrogates written in its
``estimator_grads``) computes the value and every parameter gradient; ours
(:meth:`lvmref.vae.VAE.iwae_grad`, :meth:`lvmref.vae.VAE.elbo_grad_stl`) must agree to
<= 1e-10, normwise per parameter (max|ours - torch| / max|torch|). Prints a table and exits
1 on a mismatch; exits 0 with a message when torch is not installed. The default test run
has a fast subset (tests/test_vae_autograd.py).

    python validation/vae_estimators_vs_torch.py
"""

from __future__ import annotations

import os
import sys

import numpy as np

try:
    import torch
except ImportError:
    print("torch is not installed: skipping (pip install torch==2.13.0)")
    sys.exit(0)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vae_torch_twin import TorchVAE  # noqa: E402

from lvmref.vae import VAE  # noqa: E402

RTOL = 1e-10


def rel(a, b):
    scale = max(np.max(np.abs(b)), 1e-300)
    return float(np.max(np.abs(a - b)) / scale)


def _params(vae, rng, hard):
    p = {k: v + 0.05 * rng.normal(size=v.shape) for k, v in vae.init_params(rng).items()}
    L = len(vae.hidden)
    if hard == "logits40":
        p = {k: (0.01 * v if k.startswith("dec.W") else v) for k, v in p.items()}
        p[f"dec.b{L}"] = np.where(rng.random(vae.n_features) < 0.5, -1.0, 1.0) \
            * rng.uniform(38.0, 40.0, vae.n_features)
    elif hard == "collapsed":
        K = vae.n_latent
        p[f"enc.W{L}"][:, [0, K]] = 0.0
        p[f"enc.b{L}"][[0, K]] = 0.0
        p["dec.W0"][0] = 0.0
    return p


def main() -> int:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _main()
    finally:
        torch.set_default_dtype(old)


def _main() -> int:
    rng = np.random.default_rng(0)
    configs = []
    for lik in ("bernoulli", "gaussian"):
        for k in (1, 5, 50):
            configs.append((lik, k, (200,), "tanh", None))
    configs += [("gaussian", 5, (30, 20), "relu", None), ("bernoulli", 5, (30, 20),
                                                          "softplus", None),
                ("gaussian", 5, (), "tanh", None), ("bernoulli", 5, (200,), "tanh", "logits40"),
                ("bernoulli", 5, (200,), "tanh", "collapsed")]
    print(f"{'likelihood':<10} {'k':>3} {'hidden':<9} {'act':<8} {'case':<9} {'estimator':<7} "
          f"{'value rel':>10} {'max grad rel':>13}")
    worst = 0.0
    for lik, k, hidden, act, hard in configs:
        vae = VAE(64, 10, hidden=hidden, likelihood=lik, activation=act)
        p = _params(vae, rng, hard)
        n = 20
        x = ((rng.random((n, 64)) < 0.3).astype(float) if lik == "bernoulli"
             else rng.normal(size=(n, 64)))
        eps = rng.normal(size=(n, k, 10))
        twin = TorchVAE(vae, p)
        xt, et = torch.from_numpy(x), torch.from_numpy(eps)
        for est in ("iwae", "dreg", "stl"):
            want_v, want = twin.estimator_grads(xt, et, est)
            if est == "stl":
                v, g = vae.elbo_grad_stl(p, x, eps)
            else:
                v, g = vae.iwae_grad(p, x, eps, "reparam" if est == "iwae" else "dreg")
            rv = abs(v - want_v) / abs(want_v)
            rg = max(rel(g[key], want[key]) for key in want)
            worst = max(worst, rv, rg)
            print(f"{lik:<10} {k:>3} {str(hidden):<9} {act:<8} {hard or '-':<9} {est:<7} "
                  f"{rv:>10.2e} {rg:>13.2e}")
    ok = worst <= RTOL
    print(f"worst relative error {worst:.2e} (target <= {RTOL:g}): {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
