"""Figures of the ``lvmref demo`` report (matplotlib, optional dependency ``plot``).

matplotlib is imported lazily inside :func:`make_all` with the non-interactive Agg
backend; without it :func:`make_all` raises ``ImportError`` whose message says how to
install it (``pip install "lvmref[plot]"``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["make_all", "INSTALL_HINT"]

INSTALL_HINT = 'pip install "lvmref[plot]"  (or: pip install matplotlib)'


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"matplotlib is not installed; {INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _ellipse_xy(mean, cov, n_sigma, n=100):
    """Points (n, 2) on the n_sigma contour of N(mean, cov) in 2-D."""
    vals, vecs = np.linalg.eigh(cov)
    t = np.linspace(0.0, 2.0 * np.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)], axis=1)
    return mean + n_sigma * (circle * np.sqrt(np.maximum(vals, 0.0))) @ vecs.T


def _tile(images, n_cols, side, pad=1, fill=0.5):
    """Grid image of (m, side*side) images, row-major, ``pad`` pixels of ``fill``."""
    m = images.shape[0]
    n_rows = -(-m // n_cols)
    step = side + pad
    grid = np.full((n_rows * step - pad, n_cols * step - pad), fill)
    for i in range(m):
        r, c = divmod(i, n_cols)
        grid[r * step:r * step + side, c * step:c * step + side] = images[i].reshape(side, side)
    return grid


def plot_gmm(plt, g, true_mixture, path):
    """EM staircase (ELBO after each E- and M-step, log-likelihood) and the ellipses."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ll = np.asarray(g["log_likelihood_history"])
    e = np.asarray(g["elbo_after_e_step"])
    mm = np.asarray(g["elbo_after_m_step"])
    t = np.arange(ll.size)
    # staircase: ELBO at E-step t (x = t), then after the M-step (x = t + 1/2)
    xs = np.ravel(np.column_stack([t, t + 0.5]))
    ys = np.ravel(np.column_stack([e, mm]))
    for ax, last in ((axes[0], ll.size), (axes[1], min(ll.size, 8))):
        sel = xs < last
        ax.plot(xs[sel], ys[sel], "-", color="C1", lw=1.2, drawstyle="steps-post",
                label="ELBO(q, theta), held between half-steps")
        ax.plot(t[:last], e[:last], "o", color="C1", ms=4,
                label="after E-step (= log-lik., bound tight)")
        ax.plot(t[:last] + 0.5, mm[:last], "s", color="C2", ms=4,
                label="after M-step (ELBO at fixed q)")
        ax.plot(t[:last], ll[:last], "-", color="C0", lw=0.8, alpha=0.6,
                label="log-likelihood l(theta_t)")
        ax.set_xlabel("EM iteration t (E-step at t, M-step at t + 1/2)")
        ax.set_ylabel("per data point [nats]")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"EM on {g['n_samples']} points: {g['n_iter']} iterations")
    axes[0].legend(fontsize=8, loc="lower right")
    axes[1].set_title("first iterations: the E/M staircase")

    ax = axes[2]
    X, labels = g["X"], g["labels"]
    ax.scatter(X[:, 0], X[:, 1], c=labels, cmap="tab10", vmin=0, vmax=9, s=6, alpha=0.5)
    p = g["params"]
    for k in range(p["means"].shape[0]):
        for s in (1.0, 2.0):
            xy = _ellipse_xy(p["means"][k], p["covariances"][k], s)
            ax.plot(xy[:, 0], xy[:, 1], "-", color="k", lw=1.4 if s == 1 else 0.8,
                    label="fitted (1, 2 sigma)" if (k == 0 and s == 1) else None)
        ax.plot(*p["means"][k], "k+", ms=10, mew=2,
                label="fitted means" if k == 0 else None)
    for k in range(true_mixture["means"].shape[0]):
        for s in (1.0, 2.0):
            xy = _ellipse_xy(true_mixture["means"][k], true_mixture["covariances"][k], s)
            ax.plot(xy[:, 0], xy[:, 1], "--", color="C3", lw=0.9,
                    label="generating mixture" if (k == 0 and s == 1) else None)
    ax.set_aspect("equal")
    ax.set_xlabel("x_1")
    ax.set_ylabel("x_2")
    ax.set_title("fitted mixture (colour: true component)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_vbgmm(plt, g, path):
    """Variational Bayesian GMM: bound per iteration, weights, ellipses."""
    vb = g["vbgmm"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    lb = np.asarray(vb["lower_bounds"])
    axes[0].plot(np.arange(1, lb.size + 1), lb, "o-", ms=3)
    axes[0].set_xlabel("iteration (variational E- and M-step)")
    axes[0].set_ylabel("variational lower bound on ln p(X) [nats]")
    axes[0].set_title("Bayesian GMM: the bound never decreases")
    axes[0].grid(alpha=0.3)
    w = np.asarray(vb["weights"])
    order = np.argsort(w)[::-1]
    traj = np.asarray(vb["weights_history"])            # (iterations, K)
    it = np.arange(1, traj.shape[0] + 1)
    floor = max(1e-6, 0.3 * float(traj.min()))      # a weight of exactly 0 stays in view
    for rank, k in enumerate(order):
        axes[1].plot(it, np.maximum(traj[:, k], floor), "-", color=f"C{rank}",
                     label=f"component {k}: final {w[k]:.3f}")
    axes[1].axhline(0.01, color="k", ls=":", lw=0.8)
    axes[1].set_yscale("log")
    axes[1].set_ylim(floor, 1.5)
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("posterior mean weight")
    axes[1].set_title(f"{vb['n_components']} components allowed, "
                      f"{vb['n_components_weight_above_1pct']} keep > 1 % (dotted)")
    axes[1].legend(fontsize=7, loc="lower left")
    axes[1].grid(alpha=0.3, which="both")
    ax = axes[2]
    X = g["X"]
    ax.scatter(X[:, 0], X[:, 1], s=5, color="0.6", alpha=0.6)
    means, covs = np.asarray(vb["means"]), np.asarray(vb["covariances"])
    for k in order:
        if w[k] <= 0.01:
            continue
        for s in (1.0, 2.0):
            xy = _ellipse_xy(means[k], covs[k], s)
            ax.plot(xy[:, 0], xy[:, 1], "-", color="C0", lw=1.4 if s == 1 else 0.8)
        ax.annotate(f"{w[k]:.2f}", means[k], fontsize=9, ha="center", va="center")
    ax.set_aspect("equal")
    ax.set_xlabel("x_1")
    ax.set_ylabel("x_2")
    ax.set_title("components with weight > 1 % (1, 2 sigma)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bars(plt, b, path):
    fig = plt.figure(figsize=(14, 4.4))
    ax = fig.add_subplot(1, 3, 1)
    ax.plot(b["updates"], b["kl_bits_history"], "o-", ms=3, color="C0", label="run 1")
    for i, o in enumerate(b.get("other_runs", []), start=2):
        ax.plot(b["updates"], o["kl_bits_history"], "-", lw=1, alpha=0.7, color=f"C{i}",
                label=f"run {i}")
    ax.axhline(0.10, color="k", ls="--", lw=0.8, label="Hinton et al. 1995: ~0.10 bits")
    ax.set_yscale("log")
    ax.set_xlabel("online wake-sleep updates (one bars image each)")
    ax.set_ylabel("exact KL(data || model) [bits]")
    ax.set_title("1-8-16 Helmholtz machine on 4x4 bars")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    for i, (imgs, title) in enumerate(((b["data_samples"], "64 data samples"),
                                       (b["samples"], "64 model samples (ancestral, run 1)"))):
        ax = fig.add_subplot(1, 3, 2 + i)
        ax.imshow(_tile(imgs, 8, 4), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_vae_curves(plt, v, path):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, res, title in ((axes[0], v, "64-200-10 VAE"),
                           (axes[1], v["latent2"], "64-200-2 VAE (latent scatter model)")):
        ep = np.arange(1, len(res["train_elbo_history"]) + 1)
        ax.plot(ep, res["train_elbo_history"], label="train ELBO (running, during epoch)")
        ax.plot(ep, res["test_elbo_history"], label="test ELBO (1 sample per row)")
        ax.set_xscale("log")    # every epoch in view: the fast start and the slow end
        ax.set_xlabel("epoch (log scale)")
        ax.set_ylabel("ELBO per digit [nats]")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_vae_images(plt, v, path):
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    panels = ((v["test"][:16], "16 test digits (binarized)"),
              (v["recon"], "reconstructions: decoder mean at encoder mean"),
              (v["samples"], "samples: decoder mean at z ~ N(0, I)"))
    for ax, (imgs, title) in zip(axes, panels):
        ax.imshow(_tile(imgs, 4, 8), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_vae_latent(plt, v, path):
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    z, y = v["latent_means"], v["test_labels"]
    sc = ax.scatter(z[:, 0], z[:, 1], c=y, cmap="tab10", vmin=-0.5, vmax=9.5, s=14)
    fig.colorbar(sc, ax=ax, ticks=range(10), label="digit label")
    ax.set_xlabel("z_1 (encoder mean)")
    ax.set_ylabel("z_2 (encoder mean)")
    ax.set_title("297 test digits in the latent space of a VAE with n_latent = 2")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_grad_variance(plt, gv, path):
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    rows = gv["rows"]
    labels = [f"{r['estimator']}\nS = {r['samples_per_row']}" for r in rows]
    vals = [r["total_variance"] for r in rows]
    colors = ["C0" if r["estimator"].startswith("reparam") else "C3" for r in rows]
    ax.barh(range(len(rows)), vals, color=colors)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("total variance of the encoder gradient (sum over parameters)")
    ax.set_title(f"encoder-gradient variance, {gv['n_draws']} draws, "
                 f"{gv['batch_rows']} test digits")
    for i, r in enumerate(rows):
        ax.text(vals[i], i, f" x{r['ratio_to_reparam_s1']:.3g}", va="center", fontsize=8)
    ax.grid(alpha=0.3, axis="x", which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_estimator_snr(plt, s, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    names = list(dict.fromkeys(r["estimator"] for r in s["rows"]))
    for i, name in enumerate(names):
        rows = [r for r in s["rows"] if r["estimator"] == name]
        ks = [r["k"] for r in rows]
        style = "-" if rows[0]["objective"] == "L_k" else "--"
        for ax, key in zip(axes, ("snr_encoder", "snr_decoder")):
            ax.plot(ks, [r[key] for r in rows], style, marker="o", color=f"C{i}", label=name)
    for ax, what in zip(axes, ("encoder", "decoder")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("k (samples per row)")
        ax.set_ylabel(f"{what} gradient SNR (RMS)")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    axes[1].set_title("estimators with the same decoder gradient overlap", fontsize=9)
    fig.suptitle(f"gradient SNR vs k ({s['n_draws']} draws per k, {s['batch_rows']} test "
                 "digit); Rainforth et al. 2018: IWAE encoder SNR falls like k^-1/2",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_all(results, out):
    """Write every figure into directory ``out``; returns {key: file name}.

    Raises
    ------
    ImportError
        If matplotlib is not installed (the message says how to get it).
    """
    from .datasets import GMM_TRUE

    plt = _pyplot()
    out = Path(out)
    made = {}
    jobs = [
        ("gmm", "gmm_em.png", lambda p: plot_gmm(plt, results["gmm"], GMM_TRUE, p)),
        ("bars", "bars_wake_sleep.png", lambda p: plot_bars(plt, results["bars"], p)),
        ("vae_curves", "vae_elbo.png", lambda p: plot_vae_curves(plt, results["vae"], p)),
        ("vae_images", "vae_images.png", lambda p: plot_vae_images(plt, results["vae"], p)),
        ("vae_latent", "vae_latent2d.png", lambda p: plot_vae_latent(plt, results["vae"], p)),
        ("grad_variance", "gradient_variance.png",
         lambda p: plot_grad_variance(plt, results["gradient_variance"], p)),
    ]
    if "estimator_snr" in results:
        jobs.append(("estimator_snr", "estimator_snr.png",
                     lambda p: plot_estimator_snr(plt, results["estimator_snr"], p)))
    if results["gmm"].get("vbgmm"):
        jobs.insert(1, ("vbgmm", "vbgmm.png", lambda p: plot_vbgmm(plt, results["gmm"], p)))
    for key, name, draw in jobs:
        draw(out / name)
        made[key] = name
    return made
