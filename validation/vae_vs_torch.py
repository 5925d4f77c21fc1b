"""Cross-check lvmref.vae against a PyTorch twin: same weights, same noise, float64.

For each configuration (likelihood x KL estimator x samples per row, plus a two-layer
ReLU/softplus net and the REINFORCE estimators) the twin (``vae_torch_twin.py``, autograd)
computes the ELBO and every parameter gradient; ours must agree to a relative error
<= 1e-10 (normwise per parameter: max|ours - torch| / max|torch|). Prints a table and
exits 1 on a mismatch; exits 0 with a message when torch is not installed.

    python validation/vae_vs_torch.py
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twin_setup import RTOL, D, K, data, rel, torch_or_exit, twin_case  # noqa: E402

torch = torch_or_exit()
from vae_torch_twin import TorchVAE, torch_grads  # noqa: E402

from lvmref.vae import VAE  # noqa: E402
from lvmref.vae_training import TrainingWorkspace  # noqa: E402


def main() -> int:
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(0)
    rows, worst = [], 0.0
    configs = []
    for lik in ("bernoulli", "gaussian"):
        for kl in ("analytic", "mc"):
            for s in (1, 5):
                configs.append((lik, kl, s, (200,), "tanh", "reparam", None))
    configs += [("gaussian", "analytic", 2, (30, 20), "relu", "reparam", None),
                ("bernoulli", "mc", 3, (30, 20), "softplus", "reparam", None)]
    for lik in ("bernoulli", "gaussian"):
        for kl in ("analytic", "mc"):
            configs.append((lik, kl, 4, (200,), "tanh", "reinforce", "loo"))
    configs.append(("bernoulli", "analytic", 1, (200,), "tanh", "reinforce", None))
    for lik, kl, s, hidden, act, est, baseline in configs:
        vae, params, x, eps = twin_case(rng, 50, s, lik, hidden, act)
        twin = TorchVAE(vae, params)
        tx, te = torch.from_numpy(x), torch.from_numpy(eps)
        if est == "reparam":
            ours_v, ours_g = vae.elbo_grad_reparam(params, x, eps, kl)
            t_v, t_g = torch_grads(twin, twin.elbo(tx, te, kl).mean())
            e_rows = rel(vae.elbo(params, x, eps, kl), twin.elbo(tx, te, kl).detach().numpy())
        else:
            z = vae.as_model(params).sample_q(x, s, rng)
            ours_v, ours_g = vae.elbo_grad_reinforce(params, x, z=z, baseline=baseline, kl=kl)
            t_g = torch_grads(twin, twin.reinforce_surrogate(
                tx, torch.from_numpy(z), baseline, kl))[1]
            mu, lv = twin.encode(tx)
            with torch.no_grad():
                zt = torch.from_numpy(z)
                ll = twin.log_lik(tx, zt)
                if kl == "analytic":
                    t_rows = ll.mean(1) - 0.5 * (torch.exp(lv) + mu**2 - 1 - lv).sum(1)
                else:
                    diff = zt - mu[:, None]
                    lq = -0.5 * (np.log(2 * np.pi) + lv[:, None] + diff**2
                                 * torch.exp(-lv)[:, None]).sum(2)
                    lp = -0.5 * (np.log(2 * np.pi) + zt**2).sum(2)
                    t_rows = (ll + lp - lq).mean(1)
            t_v = float(t_rows.mean())
            e_rows = float("nan")  # ours returns only the batch mean here
        e_val = abs(ours_v - t_v) / abs(t_v)
        e_grad = {k: rel(ours_g[k], t_g[k]) for k in ours_g}
        kmax = max(e_grad, key=e_grad.get)
        worst_here = max(e_val, np.nan_to_num(e_rows), e_grad[kmax])
        worst = max(worst, worst_here)
        rows.append((lik, kl, s, f"{act}{list(hidden)}", est + (f"/{baseline}" if baseline
                     else ""), e_val, e_rows, kmax, e_grad[kmax]))
    # the allocation-free training step that fit() runs (lvmref.vae_training)
    for lik in ("bernoulli", "gaussian"):
        vae = VAE(D, K, hidden=(200,), likelihood=lik)
        params = vae.init_params(rng)
        x = data(rng, 100, lik)
        eps = rng.normal(size=(100, K))
        ws = TrainingWorkspace(vae.arch, params, 100, "analytic", 1e-3)
        ours_v = ws.gradient(x, eps)
        twin = TorchVAE(vae, params)
        t_v, t_g = torch_grads(twin, twin.elbo(torch.from_numpy(x),
                                               torch.from_numpy(eps[:, None, :])).mean())
        e_val = abs(ours_v - t_v) / abs(t_v)
        e_grad = {k: rel(ws.grads[k], t_g[k]) for k in t_g}
        kmax = max(e_grad, key=e_grad.get)
        worst = max(worst, e_val, e_grad[kmax])
        rows.append((lik, "analytic", 1, "tanh[200]", "fit workspace", e_val, float("nan"),
                     kmax, e_grad[kmax]))
    print(f"lvmref.vae vs PyTorch {torch.__version__} twin: same weights, same noise, float64 "
          f"(n=50 rows, D=64, K=10)")
    print(f"{'likelihood':<10} {'kl':<9}{'k':>2} {'net':<18}{'estimator':<17}{'ELBO rel':>10}"
          f"{'rows rel':>10}  {'worst grad':<8}{'rel':>10}")
    for r in rows:
        print(f"{r[0]:<10} {r[1]:<9}{r[2]:>2} {r[3]:<18}{r[4]:<17}{r[5]:>10.1e}{r[6]:>10.1e}  "
              f"{r[7]:<8}{r[8]:>10.1e}")
    ok = worst <= RTOL
    print(f"worst relative difference {worst:.2e} (tolerance {RTOL:g}): "
          f"{'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
