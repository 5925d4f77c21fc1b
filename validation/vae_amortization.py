"""Amortization gap (eq. 12 of lvmref.vae) per test digit for a trained 64-200-10 VAE.

Trains the VAE of ``vae_digits.py`` (torch-style init, seed 0, 100 epochs), then for the
first ``--rows`` test digits runs per-data-point VI (``VAE.fit_local``: Adam on the
reparameterized ELBO (7a) with k = 8, lr 1e-2 -> 1e-4 over 1000 steps, started at the
encoder output) and reports, per row, the ELBO at the encoder output, at the local
optimum, and their difference (the amortization gap, Cremer et al. 2018) with its
standard error (both ELBOs use the same 4000 noise draws). The IWAE bound L_5000 is
printed as a reference from below for log p(x) (L_k <= log p(x)).

A negative gap beyond 3 standard errors would mean local VI failed to improve on the
encoder: the script exits 1 in that case.

    python validation/vae_amortization.py [--rows 20]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from lvmref.datasets import load_digits_binarized
from lvmref.vae import VAE


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=100)
    args = ap.parse_args()
    train, test = load_digits_binarized()
    vae = VAE(64, 10, hidden=(200,)).fit(train, n_epochs=args.epochs, rng=0, init="torch")
    x = test[: args.rows]
    res = vae.amortization_gap(vae.params_, x, k_eval=4000, rng=1, n_steps=1000,
                               lr=1e-2, lr_final=1e-4, k=8)
    iw = vae.iwae_bound(vae.params_, x, 5000, 2).value
    print(f"amortization gap per test row (VAE 64-200-10, {args.epochs} epochs, seed 0)")
    print(f"{'row':>4}{'ELBO enc':>10}{'ELBO local':>12}{'gap':>8}{'se':>7}{'IWAE 5000':>11}")
    for i in range(x.shape[0]):
        print(f"{i:>4}{res.elbo_encoder[i]:>10.3f}{res.elbo_local[i]:>12.3f}{res.gap[i]:>8.3f}"
              f"{res.gap_stderr[i]:>7.3f}{iw[i]:>11.3f}")
    print(f"mean{res.elbo_encoder.mean():>10.3f}{res.elbo_local.mean():>12.3f}"
          f"{res.gap.mean():>8.3f}{'':>7}{iw.mean():>11.3f}")
    print(f"mean IWAE - local ELBO (estimates a lower bound on the approximation gap "
          f"log p(x) - max ELBO, since L_k <= log p(x)): "
          f"{(iw - res.elbo_local).mean():.3f} nats")
    bad = res.gap < -3 * res.gap_stderr
    print("local VI improved on the encoder for every row" if not bad.any()
          else f"local VI worse than the encoder on rows {np.flatnonzero(bad)}")
    return 1 if bad.any() else 0


if __name__ == "__main__":
    sys.exit(main())
