"""Encoder-gradient variance: REINFORCE (with and without baselines) vs reparameterization.

On the 64-200-10 digits VAE (Glorot init, and after 20 epochs of training), for one
minibatch of 20 test rows, draws M independent gradient estimates of each kind on the
*same* noise (z = mean + exp(log_var/2) * eps), and prints

* the total variance of the encoder gradient (sum over encoder parameters of the
  per-coordinate variance across draws), as a ratio to the reparameterization
  gradient with k = 1 sample per row;
* an unbiasedness check: max over encoder coordinates of |mean(REINFORCE - reparam)| /
  its standard error (paired draws), against the Bonferroni z-bound for that many
  coordinates at family level 1e-3. Exit 1 if any estimator fails it.

Baselines: none; a constant per row (the mean of f over 64 *independent* draws, so it
does not depend on the samples it is used with); leave-one-out over k = 2 and k = 8
samples per row. Costs differ: a k-sample estimate evaluates the decoder k times.

    python validation/vae_gradient_variance.py [--draws 400]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy import stats

from lvmref.datasets import load_digits_binarized
from lvmref.vae import VAE


def flat(g, keys):
    return np.concatenate([g[k].ravel() for k in keys])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=400)
    args = ap.parse_args()
    train, test = load_digits_binarized()
    vae = VAE(64, 10, hidden=(200,))
    x = test[:20]
    ok = True
    print(f"encoder-gradient variance ratio to reparam (k=1); {args.draws} draws, "
          f"batch of 20 test rows")
    print(f"{'model':<16}{'estimator':<28}{'k':>3}{'var ratio':>12}{'max |z|':>9}{'bound':>7}")
    for label, epochs in (("init", 0), ("trained 20 ep", 20)):
        if epochs:
            params = vae.fit(train, n_epochs=epochs, rng=0).params_
        else:
            params = vae.init_params(0)
        keys = [k for k in params if k.startswith("enc.")]
        rng = np.random.default_rng(1)
        mean, log_var = vae.encode(x, params)
        model = vae.as_model(params)
        # constant baseline per row from independent samples: E_q[log p(x|z)] estimate
        z_b = model.sample_q(x, 64, rng)
        b_const = model.log_likelihood(x, z_b).mean(axis=1)
        configs = [("reparam", 1, None, "reparam"), ("REINFORCE, no baseline", 1, None, "rf"),
                   ("REINFORCE, constant b", 1, b_const, "rf"),
                   ("REINFORCE, no baseline", 2, None, "rf"),
                   ("REINFORCE, leave-one-out", 2, "loo", "rf"),
                   ("REINFORCE, leave-one-out", 8, "loo", "rf"), ("reparam", 8, None, "reparam")]
        ref_var = None
        for name, s, baseline, kind in configs:
            g, d = [], []
            for _ in range(args.draws):
                eps = rng.standard_normal((20, s, 10))
                gp = flat(vae.elbo_grad_reparam(params, x, eps)[1], keys)
                if kind == "reparam":
                    g.append(gp)
                    continue
                gr = flat(vae.elbo_grad_reinforce(params, x, eps, baseline=baseline)[1], keys)
                g.append(gr)
                d.append(gr - gp)
            g = np.array(g)
            var = g.var(axis=0, ddof=1).sum()
            if ref_var is None:
                ref_var = var
            zmax, bound = float("nan"), float("nan")
            if d:
                d = np.array(d)
                se = d.std(axis=0, ddof=1) / np.sqrt(len(d))
                zmax = float(np.max(np.abs(d.mean(0)) / np.where(se > 0, se, np.inf)))
                bound = float(stats.norm.isf(1e-3 / (2 * d.shape[1])))
                ok = ok and zmax < bound
            print(f"{label:<16}{name:<28}{s:>3}{var / ref_var:>12.1f}{zmax:>9.2f}{bound:>7.2f}")
    print("unbiasedness (paired z vs Bonferroni bound):", "OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
