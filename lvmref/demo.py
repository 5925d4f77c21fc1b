"""``lvmref demo``: train every model on built-in data, write a report with figures.

Stages (each a function returning a plain dict of results, all randomness from one
``seed`` through ``numpy.random.default_rng(seed).spawn``):

1. :func:`run_gmm` — EM for a 3-component full-covariance Gaussian mixture on
   :func:`lvmref.datasets.gmm_demo_data` (600 points in 2-D drawn from a fixed mixture),
   written out as alternating E- and M-steps (:func:`lvmref.gmm.e_step`,
   :func:`lvmref.gmm.m_step`) so that the ELBO can be recorded after each half-step
   (the EM "staircase", eqs. (5)-(9) of :mod:`lvmref.gmm`), cross-checked against
   :class:`lvmref.gmm.GaussianMixture` from the same initial parameters; BIC for
   K = 1..6; and :func:`run_vbgmm` (variational Bayesian GMM with up to 6 components).
2. :func:`run_bars` — a 1-8-16 Helmholtz machine trained online by wake-sleep on
   Hinton et al.'s 4x4 bars, with the exact KL(data || model) in bits along the way
   (:func:`lvmref.estimators.kl_data_model`).
3. :func:`run_vae` — the 64-200-10 VAE on the bundled binarized digits (test ELBO and
   IWAE bound), plus a separate 64-200-2 VAE for the 2-D latent scatter.
4. :func:`run_gradient_variance` — variance of the encoder gradient of the ELBO from
   REINFORCE (:meth:`lvmref.vae.VAE.elbo_grad_reinforce`) against the reparameterization
   gradient (:meth:`lvmref.vae.VAE.elbo_grad_reparam`) at fixed parameters.
5. :func:`run_estimator_snr` — signal-to-noise ratio of the encoder and decoder gradients
   as the number of samples k grows: reparameterisation and STL on the ELBO, IWAE and DReG
   on L_k (:meth:`lvmref.vae.VAE.iwae_grad`, :meth:`lvmref.vae.VAE.elbo_grad_stl`), at
   the trained digits VAE (Rainforth et al. 2018).

:func:`run_demo` runs them, writes ``metrics.json``, the figures (if matplotlib is
installed) and ``report.md``.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .files import jsonable
from .progress import Progress, format_seconds

__all__ = [
    "run_gmm",
    "run_bars",
    "run_vae",
    "run_gradient_variance",
    "run_estimator_snr",
    "run_demo",
    "write_report",
]

# Settings of the two modes (run times: README, "Install and run the demo").
SETTINGS = {
    "default": dict(gmm_max_iter=300, bars_updates=2_000_000, bars_records=40, bars_runs=3,
                    vae_epochs=100, vae2_epochs=100, iwae_k=5000, iwae_rows=297,
                    var_draws=1000, gmm_bic_ks=(1, 2, 3, 4, 5, 6), snr_ks=(1, 10, 100),
                    snr_draws=300),
    "quick": dict(gmm_max_iter=100, bars_updates=50_000, bars_records=10, bars_runs=1,
                  vae_epochs=4, vae2_epochs=4, iwae_k=50, iwae_rows=50,
                  var_draws=30, gmm_bic_ks=(1, 2, 3, 4), snr_ks=(1, 4), snr_draws=20),
}


def _say(quiet, msg):
    """A stage heading on stdout (the demo's own output; nothing when quiet)."""
    if not quiet:
        print(msg, flush=True)


def _progress(label, total, unit, quiet):
    """A :class:`lvmref.progress.Progress` line on stdout, below the stage heading: it
    updates in place on a terminal; in a log only its final line is written."""
    return Progress(f"  {label}:", total, unit, stream=sys.stdout, quiet=quiet)


# ----------------------------------------------------------------------------------------
# 1. Gaussian mixture
# ----------------------------------------------------------------------------------------

def _initial_gmm_params(X, k, rng):
    """A deliberately crude start (so the staircase is visible): k distinct data points as
    means, the data covariance for every component, equal weights."""
    from .mixture import compute_precision_cholesky

    means = X[rng.choice(X.shape[0], size=k, replace=False)].copy()
    cov = np.cov(X, rowvar=False, bias=True)
    covs = np.repeat(cov[None], k, axis=0)
    return {"weights": np.full(k, 1.0 / k), "means": means, "covariances": covs,
            "precisions_cholesky": compute_precision_cholesky(covs, "full")}


def run_gmm(rng, max_iter=300, tol=1e-8, bic_ks=(1, 2, 3, 4, 5, 6), quiet=True):
    """EM on :func:`lvmref.datasets.gmm_demo_data`, ELBO recorded after every E- and M-step.

    For iteration t: the E-step sets q = p(z | x, theta_t), making the ELBO equal to the
    log-likelihood l(theta_t) (eq. 7); the M-step raises the ELBO at fixed q to
    ELBO(q, theta_{t+1}) <= l(theta_{t+1}) (eqs. 8, 9). ``reg_covar = 0`` so that (9)
    holds exactly. All values are per data point (divided by n).

    The BIC over K refits every K with :class:`lvmref.gmm.GaussianMixture` (k-means
    starts, ``n_init=3``, the same ``tol``, the default ``reg_covar = 1e-6``); its K = 3
    row is a second fit of the same model, reported next to the explicit run's BIC.
    """
    from . import gmm as G
    from .datasets import gmm_demo_data

    t0 = time.perf_counter()
    rng_data, rng_init, rng_bic = rng.spawn(3)
    X, labels = gmm_demo_data(600, rng_data)
    n, k = X.shape[0], 3
    params0 = _initial_gmm_params(X, k, rng_init)
    params = params0
    loglik, elbo_e, elbo_m, kl_before_e = [], [], [], []
    resp_prev = None
    bar = _progress("EM", max_iter, "iterations", quiet)
    for it in range(max_iter):
        if resp_prev is not None:  # KL(q_{t-1} || p(z|x, theta_t)) closed by this E-step
            kl_before_e.append(G.kl_to_posterior(params, X, resp_prev) / n)
        resp, log_norm = G.e_step(params, X)
        ll = float(np.mean(log_norm))
        loglik.append(ll)
        elbo_e.append(G.elbo(params, X, resp) / n)
        params = G.m_step(X, resp, reg_covar=0.0)
        elbo_m.append(G.elbo(params, X, resp) / n)
        resp_prev = resp
        bar.update(log_lik_per_point=ll)
        if it > 0 and abs(loglik[-1] - loglik[-2]) < tol:
            break
    final_ll = G.log_likelihood(params, X) / n
    n_par = G.n_parameters(k, 2, "full")
    bic = -2.0 * final_ll * n + n_par * math.log(n)
    seconds = time.perf_counter() - t0

    # the estimator class from the same start reproduces the log-likelihood history
    gm = G.GaussianMixture(k, reg_covar=0.0, tol=tol, max_iter=max_iter,
                           weights_init=params0["weights"], means_init=params0["means"],
                           precisions_init=np.linalg.inv(params0["covariances"]))
    with warnings.catch_warnings():  # may stop at max_iter in quick mode, like the loop
        warnings.simplefilter("ignore")
        gm.fit(X)
    m = min(len(gm.lower_bounds_), len(loglik))
    class_diff = float(np.max(np.abs(np.array(gm.lower_bounds_[:m]) - np.array(loglik[:m]))))

    bar.done(f"BIC {bic:.2f}")

    bic_rows = []
    bar = _progress("BIC over K", len(bic_ks), "fits", quiet)
    for kk in bic_ks:
        g = G.GaussianMixture(kk, n_init=3, tol=tol, max_iter=max_iter, random_state=rng_bic)
        with warnings.catch_warnings():  # recorded in the row instead ("converged")
            warnings.simplefilter("ignore")
            g.fit(X)
        bic_rows.append({"k": int(kk), "bic": float(g.bic(X)),
                         "log_likelihood_per_point": float(g.score(X)),
                         "converged": bool(g.converged_)})
        bar.update(K=int(kk))
    best = min(bic_rows, key=lambda r: r["bic"])["k"]
    bar.done(f"smallest at K = {best}")
    vb = run_vbgmm(X, rng_bic, quiet=quiet)
    return {
        "X": X, "labels": labels, "params": params, "params_init": params0,
        "n_samples": n, "n_components": k, "covariance_type": "full", "reg_covar": 0.0,
        "n_iter": len(loglik), "log_likelihood_history": loglik,
        "elbo_after_e_step": elbo_e, "elbo_after_m_step": elbo_m,
        "kl_closed_by_e_step": kl_before_e,
        "final_log_likelihood_per_point": final_ll, "bic": bic, "n_parameters": n_par,
        "class_vs_functions_max_abs_diff": class_diff, "bic_by_k": bic_rows,
        "vbgmm": vb,
        "seconds": seconds,
    }


def run_vbgmm(X, rng, n_components=6, max_iter=500, tol=1e-8, quiet=True):
    """Variational Bayesian GMM (:mod:`lvmref.vbgmm`) with up to ``n_components`` on the
    same data: the posterior weights of superfluous components shrink towards 0.

    The fit is run one iteration at a time (``max_iter=1``, ``warm_start=True``: each
    ``fit`` continues from the fitted state) to record the posterior mean weights after
    every iteration, until the bound changes by less than ``tol``; a single ``fit`` from
    the same seed is run as well and the largest difference between the two bound
    histories reported (the iterations are the same).

    Returns None when :mod:`lvmref.vbgmm` is not available in this installation.
    """
    try:
        from .vbgmm import BayesianGaussianMixture
    except ImportError:
        return None
    t0 = time.perf_counter()
    seed = int(rng.integers(2**63))
    settings = dict(n_components=n_components, reg_covar=0.0, tol=tol, random_state=seed)
    stepwise = BayesianGaussianMixture(max_iter=1, warm_start=True, **settings)
    weights, bounds = [], []
    bar = _progress("Bayesian GMM", max_iter, "iterations", quiet)
    with warnings.catch_warnings():  # every one-iteration fit warns that it did not converge
        warnings.simplefilter("ignore")
        for _ in range(max_iter):
            stepwise.fit(X)
            weights.append(np.asarray(stepwise.weights_).copy())
            bounds.append(float(stepwise.lower_bound_))
            bar.update(bound=bounds[-1])
            if len(bounds) > 1 and abs(bounds[-1] - bounds[-2]) < tol:
                break
        model = BayesianGaussianMixture(max_iter=max_iter, **settings).fit(X)
    m = min(len(bounds), len(model.lower_bounds_))
    same = float(np.max(np.abs(np.subtract(bounds[:m], model.lower_bounds_[:m]))))
    w = np.asarray(model.weights_)
    bar.done(f"{int(np.sum(w > 0.01))} of {n_components} components keep > 1 % weight")
    return {
        "n_components": int(n_components), "prior": "dirichlet_process (default)",
        "weights": w, "means": model.means_, "covariances": model.covariances_,
        "lower_bounds": [float(v) for v in model.lower_bounds_],
        "n_iter": int(model.n_iter_), "converged": bool(model.converged_),
        "n_components_weight_above_1pct": int(np.sum(w > 0.01)),
        "weights_history": np.asarray(weights),
        "stepwise_vs_single_fit_max_abs_diff": same,
        "seconds": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------------------
# 2. Helmholtz machine on bars
# ----------------------------------------------------------------------------------------

def run_bars(rng, n_updates=2_000_000, n_records=40, n_runs=1, quiet=True):
    """Online wake-sleep (eq. 9 of :mod:`lvmref.helmholtz`) for a 1-8-16 Helmholtz machine
    on 4x4 bars (Hinton et al. 1995), learning rates 0.1; exact KL(data || model) in bits
    recorded ``n_records`` times (enumeration over all 2^9 latent states).

    The first run gives the evaluation metrics and the samples; ``n_runs - 1`` further
    runs from independent initialisations and data streams record only their KL curves
    (wake-sleep often stalls in a local optimum; the spread shows how often)."""
    from . import estimators as E
    from .datasets import bars, bars_table, entropy_bits
    from .estimators import kl_data_model
    from .helmholtz import HelmholtzMachine, exact_elbo

    t0 = time.perf_counter()
    rng_init, rng_fit, rng_eval = rng.spawn(3)
    table = bars_table()
    images, probs = table
    model = HelmholtzMachine((1, 8, 16), rng=rng_init)
    kl0 = kl_data_model(table, model)
    record_every = max(n_updates // n_records, 1)

    def monitor_with(bar):
        def monitor(m):  # called every record_every updates (and after the last one)
            kl = kl_data_model(table, m)
            bar.update(min(record_every, n_updates - bar.count), KL_bits=kl)
            return kl
        return monitor

    bar = _progress(f"wake-sleep run 1/{n_runs}", n_updates, "updates", quiet)
    model.fit(bars, method="wake-sleep", n_updates=n_updates, learning_rate=0.1,
              recognition_learning_rate=0.1, record_every=record_every,
              monitor=monitor_with(bar), rng=rng_fit)
    train_seconds = time.perf_counter() - t0
    hist = model.history_
    log_px = np.asarray(E.exact_log_marginal(model, images))          # nats, (30,)
    elbo_x = exact_elbo(model.params, images, model.arch)              # nats, (30,)
    iw = E.iwae_bound(model, images, 100, rng_eval, n_repeats=5)
    z_s, x_s = model.sample(64, rng=rng_eval)
    data_s = bars(64, rng_eval)
    bar.done(f"(initial KL {kl0:.4f} bits)")
    other = []
    for run, r in enumerate(rng.spawn(n_runs - 1), start=2):
        r_init, r_fit = r.spawn(2)
        m = HelmholtzMachine((1, 8, 16), rng=r_init)
        k0 = kl_data_model(table, m)
        bar = _progress(f"wake-sleep run {run}/{n_runs}", n_updates, "updates", quiet)
        m.fit(bars, method="wake-sleep", n_updates=n_updates, learning_rate=0.1,
              recognition_learning_rate=0.1, record_every=record_every,
              monitor=monitor_with(bar), rng=r_fit)
        curve = [float(k0)] + [float(v) for v in m.history_["monitor"]]
        other.append({"kl_bits_history": curve, "kl_bits_final": curve[-1]})
        bar.done(f"(initial KL {k0:.4f} bits)")
    finals = [float(hist["monitor"][-1])] + [o["kl_bits_final"] for o in other]
    return {
        "layer_sizes": [1, 8, 16], "method": "wake-sleep", "learning_rate": 0.1,
        "n_updates": int(n_updates),
        "updates": [0] + [int(u) for u in hist["update"]],
        "kl_bits_history": [float(kl0)] + [float(v) for v in hist["monitor"]],
        "objective_history": [float(v) for v in hist["objective"]],
        "kl_bits_initial": float(kl0), "kl_bits_final": float(hist["monitor"][-1]),
        "n_runs": int(n_runs), "other_runs": other, "kl_bits_final_all_runs": finals,
        "kl_bits_final_median": float(np.median(finals)),
        "data_entropy_bits": entropy_bits(probs),
        "expected_log_likelihood_nats": float(probs @ log_px),
        "expected_elbo_nats": float(probs @ elbo_x),
        "expected_iwae100_nats": float(probs @ iw.value),
        "expected_iwae100_stderr": float(np.sqrt(probs**2 @ iw.stderr**2)),
        "samples": x_s, "data_samples": data_s,
        "seconds": time.perf_counter() - t0, "train_seconds": train_seconds,
    }


# ----------------------------------------------------------------------------------------
# 3. VAE on binarized digits
# ----------------------------------------------------------------------------------------

def run_vae(rng, n_epochs=100, n_epochs_2d=100, iwae_k=1000, iwae_rows=297, quiet=True):
    """Train the 64-200-10 VAE (Adam 1e-3, batch 100, one noise sample, analytic KL) and,
    for the latent scatter, a 64-200-2 VAE with the same settings."""
    from .datasets import load_digits_binarized
    from .vae import VAE

    t0 = time.perf_counter()
    rng_fit, rng_eval, rng_fit2, rng_img = rng.spawn(4)
    train, test, _, test_labels = load_digits_binarized(return_labels=True)

    def fit(vae, n, seed_rng, label):
        bar = _progress(f"{label} on {train.shape[0]} digits", n, "epochs", quiet)
        vae.fit(train, test, n_epochs=n, rng=seed_rng,
                callback=lambda epoch, h: bar.update(train_ELBO=h["train_elbo"][-1],
                                                     test_ELBO=h["test_elbo"][-1]))
        bar.done()

    vae = VAE(64, 10, hidden=(200,))
    fit(vae, n_epochs, rng_fit, "VAE 64-200-10")
    train_seconds = time.perf_counter() - t0
    params = vae.params_
    # test ELBO with 100 noise draws per row (less Monte Carlo noise), and the IWAE bound
    per_row = vae.elbo(params, test, rng_eval.standard_normal((test.shape[0], 100, 10)))
    rows = test[:iwae_rows]
    iw = vae.iwae_bound(params, rows, iwae_k, rng_eval, n_repeats=1)
    elbo_rows = float(np.mean(per_row[:iwae_rows]))
    recon = vae.reconstruct(test[:16])
    samples = vae.sample(16, rng_img, return_mean=True)

    t1 = time.perf_counter()
    vae2 = VAE(64, 2, hidden=(200,))
    fit(vae2, n_epochs_2d, rng_fit2, "VAE 64-200-2 (latent scatter)")
    mean2, _ = vae2.encode(test)
    per_row2 = vae2.elbo(vae2.params_, test, rng_eval.standard_normal((test.shape[0], 100, 2)))
    seconds2 = time.perf_counter() - t1
    _say(quiet, f"  VAE 64-200-10: test ELBO {per_row.mean():.3f} nats (100 draws per row), "
                f"IWAE L_{iwae_k} on {rows.shape[0]} rows {iw.value.mean():.3f} nats")
    return {
        "architecture": "64-200-10, tanh, Bernoulli decoder", "n_epochs": int(n_epochs),
        "batch_size": 100, "learning_rate": 1e-3,
        "epochs": [int(e) for e in vae.history_["epoch"]],
        "train_elbo_history": [float(v) for v in vae.history_["train_elbo"]],
        "test_elbo_history": [float(v) for v in vae.history_["test_elbo"]],
        "test_elbo": float(per_row.mean()),
        "test_elbo_stderr_rows": float(per_row.std(ddof=1) / math.sqrt(per_row.size)),
        "iwae_k": int(iwae_k), "iwae_rows": int(rows.shape[0]),
        "test_iwae": float(iw.value.mean()), "test_elbo_same_rows": elbo_rows,
        "train_seconds": train_seconds,
        "latent2": {
            "architecture": "64-200-2", "n_epochs": int(n_epochs_2d),
            "test_elbo": float(per_row2.mean()),
            "train_elbo_history": [float(v) for v in vae2.history_["train_elbo"]],
            "test_elbo_history": [float(v) for v in vae2.history_["test_elbo"]],
            "seconds": seconds2,
        },
        "vae": vae, "params": params, "test": test, "test_labels": test_labels,
        "recon": recon, "samples": samples, "latent_means": mean2,
        "seconds": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------------------
# 4. REINFORCE vs reparameterization: gradient variance
# ----------------------------------------------------------------------------------------

def run_gradient_variance(vae, params, x, rng, n_draws=300, quiet=True):
    """Total variance (sum over encoder parameters of the per-coordinate variance across
    ``n_draws`` independent noise draws) of the encoder gradient of the batch-mean ELBO.

    Each draw uses the same eps for all estimators (z = mean + exp(log_var / 2) * eps).
    Also reports, per estimator, the largest |mean(estimate - reparam)| / its standard
    error over encoder coordinates (both are unbiased, so this should be a typical
    maximum of that many standard normals, a few units).
    """
    t0 = time.perf_counter()
    keys = [k for k in params if k.startswith("enc.")]
    n, K = x.shape[0], vae.n_latent
    configs = [
        ("reparameterization", 1, None),
        ("REINFORCE, no baseline", 1, None),
        ("REINFORCE, no baseline", 8, None),
        ("REINFORCE, leave-one-out baseline", 8, "loo"),
        ("reparameterization", 8, None),
    ]

    def flat(g):
        return np.concatenate([g[k].ravel() for k in keys])

    rows = []
    ref = None
    bar = _progress("gradient draws", len(configs) * n_draws, "draws", quiet)
    for name, s, baseline in configs:
        g, d = [], []
        for _ in range(n_draws):
            bar.update()
            eps = rng.standard_normal((n, s, K))
            gp = flat(vae.elbo_grad_reparam(params, x, eps)[1])
            if name.startswith("reparam"):
                g.append(gp)
                continue
            gr = flat(vae.elbo_grad_reinforce(params, x, eps, baseline=baseline)[1])
            g.append(gr)
            d.append(gr - gp)
        g = np.asarray(g)
        var = float(g.var(axis=0, ddof=1).sum())
        ref = var if ref is None else ref
        if d:
            d = np.asarray(d)
            se = d.std(axis=0, ddof=1) / math.sqrt(n_draws)
            ok = se > 0
            zmax = float(np.max(np.abs(d.mean(axis=0)[ok]) / se[ok]))
        else:
            zmax = None
        rows.append({"estimator": name, "samples_per_row": s, "total_variance": var,
                     "ratio_to_reparam_s1": var / ref, "max_abs_z_vs_reparam": zmax})
    bar.done(f"REINFORCE (S=1) / reparameterization variance {rows[1]['ratio_to_reparam_s1']:.3g}")
    return {"n_draws": int(n_draws), "batch_rows": int(n), "n_encoder_parameters":
            int(sum(params[k].size for k in keys)), "rows": rows,
            "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------
# 5. gradient signal-to-noise ratio as k grows
# ----------------------------------------------------------------------------------------

#: Estimators of :func:`run_estimator_snr`: (label, objective, how to call it).
SNR_ESTIMATORS = (
    ("ELBO, reparameterisation (9)", "ELBO", "reparam"),
    ("ELBO, STL (19)", "ELBO", "stl"),
    ("IWAE L_k, reparameterisation (16)", "L_k", "iwae"),
    ("IWAE L_k, DReG (18)", "L_k", "dreg"),
)


def gradient_snr(draws, groups):
    """Signal-to-noise ratio |E g| / sd(g) of gradient coordinates from draws (rows),
    summarised per group of coordinates.

    Per coordinate, ``(mean / sd)^2 - 1/m`` estimates SNR^2 without the leading bias of
    the plain ratio: |mean| / sd of m draws is at least ~1/sqrt(m) even where E g = 0
    (the mean carries its own Monte Carlo error), which hides small SNRs. A smaller bias
    remains from the sample sd: for normal draws (mean and sd independent, sd with
    ddof=1) E[(mean / sd)^2] = (SNR^2 + 1/m)(m - 1)/(m - 3), a relative excess of about
    2/(m - 3) (12 % at m = 20, 0.7 % at the demo's 300 draws;
    ``tests/test_demo.py`` checks this expectation). The summary is the root mean square
    over the group, ``sqrt(max(mean_j [(mean_j / sd_j)^2 - 1/m], 0))`` -- averaged before
    clipping, so small SNRs below the detection limit 1/sqrt(m) are not rounded up to it.

    Parameters
    ----------
    draws : ndarray, shape (m, P)
        m independent gradient estimates of P coordinates.
    groups : dict name -> boolean mask of shape (P,)

    Returns
    -------
    dict name -> {"rms": ..., "median": ..., "n": ...}: the bias-corrected RMS SNR and the
    median over coordinates of ``sqrt(max((mean / sd)^2 - 1/m, 0))`` (robust to a few
    near-deterministic coordinates, but 0 once most coordinates are below the detection
    limit 1/sqrt(m)), over the coordinates of the group whose sd is positive (a coordinate
    that does not vary has no SNR).
    """
    m = draws.shape[0]
    mean = draws.mean(axis=0)
    sd = draws.std(axis=0, ddof=1)
    out = {}
    for name, mask in groups.items():
        ok = mask & (sd > 0)
        snr2 = (mean[ok] / sd[ok]) ** 2 - 1.0 / m
        out[name] = {"rms": float(np.sqrt(max(np.mean(snr2), 0.0))),
                     "median": float(np.median(np.sqrt(np.maximum(snr2, 0.0)))),
                     "n": int(ok.sum())}
    return out


def run_estimator_snr(vae, params, x, rng, ks=(1, 10, 100), n_draws=300,
                      estimators=SNR_ESTIMATORS, quiet=True):
    """Gradient SNR per estimator as the number of samples k grows (Rainforth et al. 2018).

    For each k, ``n_draws`` independent noise draws ``eps`` of shape (n, k, K) give
    ``n_draws`` gradient estimates of the batch-mean objective on the rows ``x`` (the same
    eps for every estimator); SNR per parameter coordinate is |mean| / sd over the draws,
    summarised by its bias-corrected root mean square over the encoder and over the
    decoder coordinates (:func:`gradient_snr`). The ELBO
    estimators average k samples; the IWAE estimators use them inside L_k (so their target
    changes with k). Rainforth et al.: the encoder SNR of the IWAE reparameterisation
    gradient falls like k^(-1/2), its decoder SNR rises like k^(1/2); DReG's encoder SNR
    does not fall.
    """
    t0 = time.perf_counter()
    keys = list(params)
    enc = np.concatenate([np.full(params[k].size, k.startswith("enc.")) for k in keys])
    groups = {"encoder": enc, "decoder": ~enc}
    calls = {"reparam": lambda e: vae.elbo_grad_reparam(params, x, e, "mc"),
             "stl": lambda e: vae.elbo_grad_stl(params, x, e),
             "iwae": lambda e: vae.iwae_grad(params, x, e, "reparam"),
             "dreg": lambda e: vae.iwae_grad(params, x, e, "dreg")}
    rows = []
    bar = _progress("gradient draws", len(ks) * n_draws, "draws", quiet)
    for k in ks:
        draws = {name: [] for name, _, _ in estimators}
        for _ in range(n_draws):
            bar.update(k=int(k))
            eps = rng.standard_normal((x.shape[0], k, vae.n_latent))
            for name, _, how in estimators:
                g = calls[how](eps)[1]
                draws[name].append(np.concatenate([g[key].ravel() for key in keys]))
        for name, objective, _ in estimators:
            snr = gradient_snr(np.asarray(draws[name]), groups)
            rows.append({"estimator": name, "objective": objective, "k": int(k),
                         "snr_encoder": snr["encoder"]["rms"],
                         "snr_decoder": snr["decoder"]["rms"]})
    bar.done()
    return {"ks": [int(k) for k in ks], "n_draws": int(n_draws), "batch_rows": int(x.shape[0]),
            "rows": rows, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------

_PRIVATE = {"gmm": ("X", "labels", "params", "params_init"),
            "bars": ("samples", "data_samples"),
            "vae": ("vae", "params", "test", "test_labels", "recon", "samples",
                    "latent_means")}


def _metrics(results, seed, quick, total, stages):
    import numba
    import scipy

    out = {"lvmref_demo": 1, "seed": seed, "mode": "quick" if quick else "default",
           "total_seconds": total, "stage_seconds": stages,
           "versions": {"python": platform.python_version(), "numpy": np.__version__,
                        "scipy": scipy.__version__, "numba": numba.__version__}}
    for key, res in results.items():
        out[key] = {k: v for k, v in res.items() if k not in _PRIVATE.get(key, ())}
    g = results["gmm"]
    if out["gmm"]["vbgmm"] is None:
        del out["gmm"]["vbgmm"]
    out["gmm"]["fitted"] = {"weights": g["params"]["weights"], "means": g["params"]["means"],
                            "covariances": g["params"]["covariances"]}
    return jsonable(out)


def run_demo(out="lvmref-demo", quick=False, seed=0, quiet=False):
    """Run all stages and write ``out/metrics.json``, ``out/report.md`` and the figures.

    Parameters
    ----------
    out : str or Path
        Output directory (created).
    quick : bool
        Short runs (smoke test, a few seconds of training).
    seed : int
        Seed of the one Generator all randomness is spawned from.
    quiet : bool
        Print nothing.

    Returns
    -------
    metrics : dict
        What was written to ``metrics.json``.
    """
    from .kernels.checks import check_positive_int

    seed = check_positive_int(seed, "seed", minimum=0)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a directory, but {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    cfg = SETTINGS["quick" if quick else "default"]

    def say(msg):
        _say(quiet, msg)

    t0 = time.perf_counter()
    root = np.random.default_rng(seed)
    r_gmm, r_bars, r_vae, r_var = root.spawn(4)
    r_snr = root.spawn(1)[0]   # spawned after the others: their streams are unchanged
    results = {}
    say(f"lvmref demo ({'quick' if quick else 'default'} mode, seed {seed}) -> {out}")
    say("[1/5] Gaussian mixture by EM")
    results["gmm"] = run_gmm(r_gmm, max_iter=cfg["gmm_max_iter"], bic_ks=cfg["gmm_bic_ks"],
                             quiet=quiet)
    say("[2/5] Helmholtz machine on bars (wake-sleep)")
    results["bars"] = run_bars(r_bars, cfg["bars_updates"], cfg["bars_records"],
                               cfg["bars_runs"], quiet=quiet)
    say("[3/5] VAE on binarized digits")
    results["vae"] = run_vae(r_vae, cfg["vae_epochs"], cfg["vae2_epochs"], cfg["iwae_k"],
                             cfg["iwae_rows"], quiet=quiet)
    say("[4/5] REINFORCE vs reparameterization gradient variance")
    v = results["vae"]
    results["gradient_variance"] = run_gradient_variance(
        v["vae"], v["params"], v["test"][:20], r_var, cfg["var_draws"], quiet=quiet)
    say("[5/5] gradient signal-to-noise ratio as k grows (IWAE, DReG, STL)")
    results["estimator_snr"] = run_estimator_snr(
        v["vae"], v["params"], v["test"][:1], r_snr, cfg["snr_ks"], cfg["snr_draws"],
        quiet=quiet)
    stages = time.perf_counter() - t0
    figures, plot_error = {}, None
    try:
        from . import plots
        figures = plots.make_all(results, out)
    except ImportError as exc:
        plot_error = str(exc)
    total = time.perf_counter() - t0   # metrics.json and report.md take milliseconds
    metrics = _metrics(results, seed, quick, total, stages)
    metrics["figures"] = sorted(figures.values())
    with open(out / "metrics.json", "w") as fh:
        json.dump(metrics, fh, indent=1, allow_nan=False)
    write_report(out / "report.md", metrics, figures, plot_error)
    say(f"done in {format_seconds(total)} (figures {format_seconds(total - stages)}): "
        f"{out / 'report.md'}, {out / 'metrics.json'}"
        + (f", {len(figures)} figures" if figures else
           f" (no figures: {plot_error})"))
    return metrics


# ----------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------

def _f(v, fmt=".4f"):
    return "n/a" if v is None else format(v, fmt)


def _bic_agreement(g):
    """How close the BIC table's K = 3 row is to the explicit run's BIC, in words."""
    row = next((r for r in g["bic_by_k"] if r["k"] == g["n_components"]), None)
    if row is None:
        return "(K = 3 not in the table)"
    diff = abs(row["bic"] - g["bic"])
    return (f"{diff:.2g} (relative {diff / abs(g['bic']):.1e}; a larger difference would "
            "mean one of the two fits stopped in another optimum)")


def _snr_section(L, s, fig):
    L += [
        "## 5. Gradient signal-to-noise ratio as k grows",
        "",
        f"At the trained 64-200-10 VAE, on {s['batch_rows']} test digit: {s['n_draws']} "
        "independent noise draws per k (the same eps for every estimator); SNR = |mean| / "
        "sd of each gradient coordinate over the draws, summarised by its root mean square "
        "over the encoder and over the decoder coordinates, corrected for the Monte Carlo "
        "error of the mean (`lvmref.demo.gradient_snr`). ELBO estimators average the k "
        "samples; IWAE estimators "
        "use them inside L_k (`VAE.iwae_grad`, `VAE.elbo_grad_stl`).",
        "",
        "| estimator | k | encoder SNR (RMS) | decoder SNR (RMS) |",
        "|---|---|---|---|",
    ]
    for r in s["rows"]:
        L.append(f"| {r['estimator']} | {r['k']} | {r['snr_encoder']:.3g} | "
                 f"{r['snr_decoder']:.3g} |")
    L += ["", "Rainforth et al. (2018) predict the IWAE encoder SNR to fall like k^(-1/2) "
          "(the decoder's to rise like k^(1/2)) and DReG's encoder SNR not to fall. "
          "In the source repository, `python validation/estimator_variance.py` measures it "
          "for more k, the REINFORCE "
          "estimators and VIMCO/NVIL on bars, and the test log-likelihood of VAE- vs "
          "IWAE-trained models.", ""]
    fig("estimator_snr", "gradient SNR as k grows")


def write_report(path, m, figures, plot_error=None):
    """Write the Markdown report from the metrics dict and the figure file names."""
    g, b, v, gv = m["gmm"], m["bars"], m["vae"], m["gradient_variance"]
    cmd = "lvmref demo" + (" --quick" if m["mode"] == "quick" else "") + f" --seed {m['seed']}"
    L = [
        "# lvmref demo report",
        "",
        f"Regenerate with `{cmd}`. Mode **{m['mode']}**, seed {m['seed']}, total "
        f"{m['total_seconds']:.1f} s, of which the figures "
        f"{m['total_seconds'] - m.get('stage_seconds', m['total_seconds']):.1f} s "
        f"(Python {m['versions']['python']}, NumPy "
        f"{m['versions']['numpy']}, SciPy {m['versions']['scipy']}, Numba "
        f"{m['versions']['numba']}). All numbers are also in `metrics.json`.",
        "",
    ]
    if not figures:
        from .plots import INSTALL_HINT

        L += [f"> **No figures**: {plot_error or 'matplotlib is not installed'}"
              + ("" if plot_error and "pip install" in plot_error
                 else f"; get them with `{INSTALL_HINT}`")
              + ", then rerun.", ""]

    def fig(key, alt):
        if key in figures:
            L.extend([f"![{alt}]({figures[key]})", ""])

    L += [
        "## 1. Gaussian mixture by EM",
        "",
        f"Data: {g['n_samples']} points in 2-D from a fixed 3-component mixture "
        "(`lvmref.datasets.gmm_demo_data`, weights 0.5/0.3/0.2). Model: K = 3, full "
        "covariances, `reg_covar = 0`, started from 3 random data points as means and the "
        "data covariance for every component. EM is run as explicit "
        "`lvmref.gmm.e_step` / `m_step` calls so the ELBO is recorded after every half-step.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| EM iterations | {g['n_iter']} |",
        f"| log-likelihood per point, start -> end | {_f(g['log_likelihood_history'][0])} -> "
        f"{_f(g['final_log_likelihood_per_point'], '.6f')} |",
        f"| BIC of this fit (K = 3, eq. 22 of `lvmref.gmm`) | {_f(g['bic'], '.2f')} |",
        f"| max abs difference, `GaussianMixture.lower_bounds_` vs the explicit E/M loop "
        f"(same start) | {_f(g['class_vs_functions_max_abs_diff'], '.2e')} |",
        f"| time | {g['seconds']:.2f} s |",
        "",
        "BIC over K: a separate fit for every K (`GaussianMixture(K, n_init=3, "
        "tol=1e-8).bic`, k-means starts, the default `reg_covar = 1e-6`), so its K = 3 row "
        "is a second fit of the model above, from other starts and with the small "
        "covariance regularisation: it agrees with the BIC of the explicit run to "
        f"{_bic_agreement(g)}.",
        "",
        "| K | BIC | log-likelihood per point |",
        "|---|---|---|",
    ]
    best = min(g["bic_by_k"], key=lambda r: r["bic"])["k"]
    for r in g["bic_by_k"]:
        star = " (min)" if r["k"] == best else ""
        note = "" if r.get("converged", True) else " (not converged in max_iter)"
        L.append(f"| {r['k']}{star} | {r['bic']:.2f}{note} | "
                 f"{r['log_likelihood_per_point']:.4f} |")
    L += [""]
    fig("gmm", "EM staircase and fitted mixture")
    L += [
        "Left: the E-step makes the bound tight (ELBO = log-likelihood, eq. 7 of "
        "`lvmref.gmm`), the M-step raises the ELBO at fixed responsibilities (eq. 8), so "
        "the log-likelihood never decreases (eq. 9). Middle: the first iterations. Right: "
        "1- and 2-sigma ellipses of the fitted components (solid) and of the generating "
        "mixture (dashed).",
        "",
    ]
    vb = g.get("vbgmm")
    if vb:
        L += [
            f"**Bayesian GMM** (`lvmref.vbgmm.BayesianGaussianMixture`, up to "
            f"{vb['n_components']} components, Dirichlet-process weight prior, "
            f"`reg_covar = 0`): {vb['n_iter']} iterations, final variational bound "
            f"{vb['lower_bounds'][-1]:.2f} nats; posterior mean weights "
            + ", ".join(f"{w:.3f}" for w in sorted(vb["weights"], reverse=True))
            + f" ({vb['n_components_weight_above_1pct']} above 1 %). The weight "
            "trajectory is recorded by one-iteration warm-started fits "
            "(`max_iter=1, warm_start=True`); they repeat the single fit's iterations "
            "(bound histories equal to "
            f"{_f(vb.get('stepwise_vs_single_fit_max_abs_diff'), '.1e')} nats).", ""]
        fig("vbgmm", "Bayesian GMM")
    L += [
        "## 2. Helmholtz machine on bars (wake-sleep)",
        "",
        f"A 1-8-16 sigmoid belief net with a recognition net, trained online (batch 1) by "
        f"wake-sleep (Hinton et al. 1995), learning rate 0.1, {b['n_updates']:,} updates on "
        "freshly drawn 4x4 bars. The KL is exact: the 30 possible images against log p(x) "
        "enumerated over all 2^9 latent states.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| KL(data \\|\\| model), initial -> final | {_f(b['kl_bits_initial'])} -> "
        f"**{_f(b['kl_bits_final'])} bits** |",
        f"| final KL of all {b['n_runs']} runs (median) | "
        + ", ".join(_f(v, ".3f") for v in b["kl_bits_final_all_runs"])
        + f" ({_f(b['kl_bits_final_median'], '.3f')}) |",
        f"| data entropy | {_f(b['data_entropy_bits'])} bits |",
        f"| E_data log p(x) (exact) | {_f(b['expected_log_likelihood_nats'])} nats |",
        f"| E_data ELBO (exact) | {_f(b['expected_elbo_nats'])} nats |",
        f"| E_data IWAE bound L_100 (5 sets of 100 samples) | "
        f"{_f(b['expected_iwae100_nats'])} nats (se {_f(b['expected_iwae100_stderr'])}) |",
        f"| training time (run 1) | {b['train_seconds']:.1f} s |",
        "",
        "Exact metrics and samples are from run 1; further runs (independent "
        "initialisations and data) record their KL curves only. Hinton et al. report "
        "about 0.10 bits after 2e6 updates; runs here usually stall in a local optimum "
        "(often 7 units covering 8 bars). Exact maximum likelihood by enumeration, started "
        "from the same weights, stalls too (0.35-1.2 bits over 6 seeds), so these optima "
        "belong to the likelihood, not only to wake-sleep's approximations. "
        "In the source repository, `python validation/bars_wake_sleep.py` compares "
        "wake-sleep, reweighted wake-sleep and REINFORCE over seeds.",
        "",
    ]
    fig("bars", "bars KL curve and samples")
    L += [
        "## 3. VAE on binarized digits",
        "",
        f"{v['architecture']}, Adam (lr {v['learning_rate']:g}), batch {v['batch_size']}, "
        f"{v['n_epochs']} epochs, reparameterization gradient with one noise sample, "
        "analytic KL, on the bundled 8x8 binarized digits (1500 train / 297 test).",
        "",
        "| quantity (test set) | value |",
        "|---|---|",
        f"| ELBO (100 noise draws per row) | {_f(v['test_elbo'], '.3f')} nats "
        f"(se over rows {_f(v['test_elbo_stderr_rows'], '.3f')}) |",
        f"| IWAE bound L_k, k = {v['iwae_k']}, on {v['iwae_rows']} test rows | "
        f"{_f(v['test_iwae'], '.3f')} nats (ELBO on the same rows "
        f"{_f(v['test_elbo_same_rows'], '.3f')}) |",
        f"| training time | {v['train_seconds']:.1f} s |",
        f"| 2-D latent model (64-200-2, {v['latent2']['n_epochs']} epochs): test ELBO | "
        f"{_f(v['latent2']['test_elbo'], '.3f')} nats |",
        "",
        "The IWAE bound lies above the ELBO (Burda et al. 2015). In the source repository, "
        "`python validation/vae_digits.py` reproduces the published range over seeds.",
        "",
    ]
    fig("vae_curves", "VAE ELBO curves")
    fig("vae_images", "VAE reconstructions and samples")
    L += ["The latent scatter comes from a **separate VAE trained with n_latent = 2** "
          "(encoder means of the test digits, coloured by label), not a projection.", ""]
    fig("vae_latent", "VAE 2-D latent scatter")
    L += [
        "## 4. REINFORCE vs reparameterization",
        "",
        f"Encoder gradient of the batch-mean ELBO on {gv['batch_rows']} test digits at the "
        f"trained 64-200-10 parameters ({gv['n_encoder_parameters']:,} encoder parameters), "
        f"{gv['n_draws']} independent noise draws, the same eps for every estimator "
        "(`VAE.elbo_grad_reinforce`, `VAE.elbo_grad_reparam`). Total variance = sum over "
        "coordinates of the variance across draws. max |z|: largest |mean difference to "
        "the reparameterization gradient| / its standard error over coordinates (both are "
        "unbiased, so a few units is expected).",
        "",
        "| estimator | samples per row | total variance | ratio to reparam (S=1) | max abs z |",
        "|---|---|---|---|---|",
    ]
    for r in gv["rows"]:
        z = "-" if r["max_abs_z_vs_reparam"] is None else f"{r['max_abs_z_vs_reparam']:.2f}"
        L.append(f"| {r['estimator']} | {r['samples_per_row']} | {r['total_variance']:.4g} | "
                 f"{r['ratio_to_reparam_s1']:.4g} | {z} |")
    L += [""]
    fig("grad_variance", "gradient variance")
    L += ["In the source repository, `python validation/vae_gradient_variance.py` runs the "
          "same comparison with more baselines and an unbiasedness test.", ""]
    _snr_section(L, m["estimator_snr"], fig)
    Path(path).write_text("\n".join(L))
