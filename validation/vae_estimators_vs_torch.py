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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twin_setup import RTOL, rel, torch_or_exit, twin_case  # noqa: E402

torch = torch_or_exit()
from vae_torch_twin import TorchVAE  # noqa: E402


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
        vae, p, x, eps = twin_case(rng, 20, k, lik, hidden, act, hard)
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
