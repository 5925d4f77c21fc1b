"""Reproduce Hinton, Dayan, Frey & Neal (1995): a 1-8-16 Helmholtz machine on 4x4 bars.

Trains online (batch size 1, Numba kernels) with wake-sleep, reweighted wake-sleep
(Bornschein & Bengio 2015) and REINFORCE with NVIL baselines (Mnih & Gregor 2014) over
several seeds, and prints the exact KL(data || model) in bits (the 30-image table of
``lvmref.datasets.bars_table`` against log p(x) enumerated over all 2^9 latent states by
``lvmref.estimators.exact_log_marginal``) with wall times. An extra row, "ws-restarts",
spends the same 2e6-sample budget on wake-sleep with restarts selected by held-out
log-likelihood (``train_restarts``).

Timing: 2e6 online wake-sleep updates (including drawing the bars and the uniforms),
median of ``--repeats`` runs after a warm-up that compiles the kernels (compile time
reported separately); the same updates through the plain-NumPy engine, timed on a
shorter run in the same process, give the ``ratio:`` line (ours-numba / ours-numpy per
update). NOTE: the machine may be shared; the same-process ratio is what is comparable.

Targets (exit status 1 if any is missed): wake-sleep <= 0.10 bits (the paper's figure
after 2e6 samples; median over seeds), reweighted wake-sleep median below wake-sleep,
2e6 online wake-sleep updates in <= 30 s.

Usage::

    python validation/bars_wake_sleep.py [--seeds 0 1 2 3 4 5] [--updates 2e6]
        [--init sparse|glorot] [--plot FILE]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from lvmref.datasets import bars, bars_table, entropy_bits
from lvmref.estimators import exact_log_marginal, kl_data_model
from lvmref.helmholtz import HelmholtzMachine, NVILBaseline, log_joint, wake_grad
from lvmref.helmholtz_training import (
    KernelEngine,
    data_sampler,
    draw_noise,
    noise_blocks,
)

SIZES = (1, 8, 16)

# Initial generative output biases (hidden layer, pixels) for HelmholtzMachine(init_bias=):
# "glorot" (default) starts every bias at zero; "sparse" starts units and pixels mostly off.
INIT_BIAS = {"glorot": None, "sparse": (-1.5, -3.0)}

# Settings per method (plain SGD, online, Glorot weights, zero biases).
#
# Source of the settings. The Science paper's notes on the bars run (learning rates of the
# two nets, initialisation, number of runs) could not be retrieved from the literature
# corpus available here (only the abstract pages and the NIPS-8 metadata of Frey, Hinton &
# Dayan 1996 were found); the one independent reproduction found (yaroslavvb/hinton-problems,
# bars/README.md: lr 0.1 both nets, init 0.1 N(0, 1), 2e6 online samples, one run) reports
# 0.451 bits and the same gap to the paper. So the settings below are ours, chosen by sweep.
#
# Sweeps (2e6 updates, exact KL in bits after training; "median over n seeds"):
# - zero biases (Glorot or 0.1 N(0, 1) weights): generative lr in {0.01 .. 0.3} x
#   recognition/generative ratio in {0.5, 1, 3, 15}, step-wise decays, 1e7-update runs,
#   all-zero weights: medians 0.4-0.8, no run below 0.22 bits; lr 0.1 both nets 0.46
#   (24 seeds, min 0.30); visible bias logit(0.2) alone made it worse (0.80);
# - sparse start (--init sparse: hidden biases -1.5, pixel biases -3): 0.48 on the same 24
#   seeds and data streams, lower than zero biases on only 10 of 24 (Wilcoxon p = 0.78): no
#   gain for wake-sleep (an early 8-seed sweep had suggested 0.37 against 0.54: noise).
#   Also tried from it: -2.5/-4 biases 0.38, + recognition biases -1.5 0.47, + 0.1 N(0, 1)
#   weights 0.47, + all weights zero 0.60, lr 0.03 0.47, lr 0.1 then 0.02 for the last 5e5
#   0.40 (8 seeds each); L2 weight decay 1e-4 / 1e-3 on the generative weights 0.85 / 1.8
#   (the OR of two bars needs large weights);
# - random search, 30 settings x 4 seeds: hidden bias in [-3.5, 0], pixel bias in [-6, -1],
#   optional 10^[-2, 0] N(0, 1) weights and recognition biases, generative lr in
#   10^[-1.7, -0.5], recognition/generative ratio 10^[-0.5, 1]: best median 0.32, best
#   single runs about 0.20 bits;
# - reweighted wake-sleep with sleep (sparse start): S=5 lr 0.1 0.37 (8 seeds), S=5 lr 0.03
#   0.433, S=10 lr 0.03 0.362 (16 seeds, min 0.24) against wake-sleep's 0.435 on the same
#   16 seeds: lower, but not significantly (one-sided Mann-Whitney p = 0.16). Earlier, from
#   zero biases: S=5/10 at lr 0.1 0.78/1.11, lr 0.03 0.75 (6 seeds) - the smaller step
#   with more samples is what helps;
# - REINFORCE/NVIL, lr 0.03: 1.14 (3 seeds), 0.89 from the sparse start (8 seeds).
#
# Why the 0.10 bits is not reached (diagnostics below): (a) started at the hand-built bars
# solution, the same wake-sleep rule stays at 0.04-0.14 bits, so the update rule keeps the
# right basin; (b) exact full-batch maximum likelihood (Adam on the enumerated log p(x),
# ml_polish below) from wake-sleep's *initial weights* stalls as well: 1.13/1.08/0.35/1.16/
# 1.03/0.66 bits (seeds 0-5, zero biases) and 0.31/0.31/0.23/0.15/0.30/0.33 (sparse
# start); polishing where wake-sleep ended lowers the KL, but far from 0.10. So the likelihood
# itself has these local optima; neither better ML-gradient estimates (reweighted) nor the
# exact gradient escape them. In the trained nets one of the 8 hidden units often ends
# always on (a second bias) and the others code combinations of bars with saturated
# weights (|w| ~ 30): 7 units cover 8 bars. The paper's single reported run presumably
# found the 8-bar code; a few of our runs come close (reweighted, sparse start, seed 3 of
# the default seeds: 0.106 bits).
METHODS = {
    "wake-sleep": dict(method="wake-sleep", learning_rate=0.1,
                       recognition_learning_rate=0.1),
    "reweighted": dict(method="reweighted", k=10, sleep=True, learning_rate=0.03,
                       recognition_learning_rate=0.03),
    "reinforce": dict(method="reinforce", baseline=NVILBaseline(normalize_variance=True),
                      learning_rate=0.03, recognition_learning_rate=0.03),
}


def bars_solution(strength=8.0):
    """Hand-built 1-8-16 parameters that generate (almost exactly) the bars data:
    top unit = vertical (prior 2/3); units 0-3 vertical bars gated on by it, units 4-7
    horizontal bars gated off by it (each p = 0.2 when allowed); pixel = OR of its two
    bars via logit -s + 2s (h_col + h_row). Recognition weights are left random."""
    s, lg = strength, np.log(0.2 / 0.8)
    m = HelmholtzMachine(SIZES, rng=0)
    p = m.params
    p["prior"][:] = np.log(2.0)
    p["gen0.b0"][:4], p["gen0.W0"][0, :4] = -s, s + lg
    p["gen0.b0"][4:], p["gen0.W0"][0, 4:] = lg, -s
    p["gen1.b0"][:] = -s
    W = np.zeros((8, 16))
    for r in range(4):
        for c in range(4):
            W[c, 4 * r + c] = W[4 + r, 4 * r + c] = 2 * s
    p["gen1.W0"][:] = W
    return m


def from_solution(n_updates, table, seed):
    """Wake-sleep started in the bars basin: KL stays at its noise floor (diagnostic)."""
    m = bars_solution()
    kl0 = kl_data_model(table, m)
    # train only q first (generative step ~0), so that the wake phase starts sensibly
    m.fit(bars, n_updates=200_000, learning_rate=1e-12, recognition_learning_rate=0.1,
          rng=seed + 2000)
    m.fit(bars, n_updates=n_updates, rng=seed + 1000, record_every=max(n_updates // 40, 1),
          monitor=lambda mm: kl_data_model(table, mm), **METHODS["wake-sleep"])
    return kl0, m


def ml_polish(model, table, steps=2000, lr=0.05):
    """Exact full-batch maximum likelihood from the model's current generative weights
    (diagnostic): Adam ascent on sum_x p_data(x) log p(x), whose gradient is the wake
    gradient (7) weighted by p_data(x) times the exact posterior p(z | x), enumerated over
    all 2^K latent states. Changes ``model.params`` in place; returns the model."""
    images, probs = table
    K, arch, p = model.n_latent, model.arch, model.params
    Z = ((np.arange(2 ** K)[:, None] >> np.arange(K - 1, -1, -1)) & 1).astype(float)
    XR, ZR = np.repeat(images, len(Z), axis=0), np.tile(Z, (len(images), 1))
    keys = [k for k in p if k == "prior" or k.startswith("gen")]
    m1 = {k: np.zeros_like(p[k]) for k in keys}
    m2 = {k: np.zeros_like(p[k]) for k in keys}
    for t in range(1, steps + 1):
        lj = log_joint(p, XR, ZR, arch).reshape(len(images), len(Z))
        post = np.exp(lj - lj.max(axis=1, keepdims=True))
        post /= post.sum(axis=1, keepdims=True)
        g = wake_grad(p, XR, ZR, arch, weights=(probs[:, None] * post).reshape(-1))
        for k in keys:
            m1[k] = 0.9 * m1[k] + 0.1 * g[k]
            m2[k] = 0.999 * m2[k] + 0.001 * g[k] ** 2
            p[k] += lr * (m1[k] / (1 - 0.9 ** t)) / (np.sqrt(m2[k] / (1 - 0.999 ** t)) + 1e-8)
    return model


def train(name, seed, n_updates, table, record_every, init_bias):
    model = HelmholtzMachine(SIZES, rng=seed, init_bias=init_bias)
    t0 = time.perf_counter()
    model.fit(bars, n_updates=n_updates, rng=seed + 1000, record_every=record_every,
              monitor=lambda m: kl_data_model(table, m), **METHODS[name])
    wall = time.perf_counter() - t0
    return model, wall


def wake_sleep_blocks(model, n_updates, rng, block):
    """Online wake-sleep as ``model.fit(bars, rng=rng, **METHODS["wake-sleep"])`` runs it
    (Numba engine, same noise protocol), but with the noise drawn in blocks of ``block``
    updates instead of ``NOISE_BLOCK``: the restarts row below was recorded that way (with
    lvmref 0.1's ``fit(block=...)``), and the block size orders the random numbers."""
    s = METHODS["wake-sleep"]
    engine = KernelEngine(model.params, model.arch.layer_sizes, "wake-sleep",
                          s["learning_rate"], s["recognition_learning_rate"])
    draw = data_sampler(bars, model.n_features)
    for m, _ in noise_blocks(n_updates, block, block):
        engine.run(*draw_noise(draw, rng, m, 1, 1, model.n_latent, model.n_features))
    model.params = engine.params(copy=True)
    return model


def train_restarts(seed, n_updates, n_restarts, n_probe, init_bias, n_heldout=10_000):
    """Wake-sleep with restarts inside the same budget of ``n_updates`` data samples:
    ``n_restarts`` nets from independent initialisations and data streams are trained for
    ``n_probe`` updates each; the one with the highest mean exact log p(x) on ``n_heldout``
    freshly drawn bars (held-out samples, not the exact table) continues for the remaining
    ``n_updates - n_restarts * n_probe`` updates. The basin is decided early: over 24
    seeds the KL after 1e5 updates has Spearman correlation 0.87 with the KL after 2e6.
    Returns (model, index of the chosen restart, wall seconds)."""
    if n_restarts * n_probe >= n_updates:
        raise ValueError("restarts * probe must be below the update budget")
    t0 = time.perf_counter()
    streams = np.random.SeedSequence([seed, 2024]).spawn(n_restarts + 1)
    # mean log p over the held-out draws = counts-weighted log p of their distinct images
    images, counts = np.unique(bars(n_heldout, np.random.default_rng(streams[-1])), axis=0,
                               return_counts=True)
    best = None
    for r in range(n_restarts):
        g = np.random.default_rng(streams[r])
        m = wake_sleep_blocks(HelmholtzMachine(SIZES, rng=g, init_bias=init_bias), n_probe, g,
                              min(n_probe, 100_000))
        score = float(counts @ exact_log_marginal(m, images)) / n_heldout
        if best is None or score > best[0]:
            best = (score, r, m, g)
    _, r, m, g = best
    wake_sleep_blocks(m, n_updates - n_restarts * n_probe, g, 100_000)
    return m, r, time.perf_counter() - t0


def time_wake_sleep(n_updates, repeats):
    """(compile seconds, median seconds for n_updates online wake-sleep updates)."""
    kw = dict(n_updates=n_updates, **METHODS["wake-sleep"])
    t0 = time.perf_counter()
    HelmholtzMachine(SIZES, rng=0).fit(bars, n_updates=10, rng=0,
                                       **{k: v for k, v in kw.items() if k != "n_updates"})
    compile_s = time.perf_counter() - t0
    times = []
    for r in range(repeats):
        m = HelmholtzMachine(SIZES, rng=r)
        t0 = time.perf_counter()
        m.fit(bars, rng=r, engine="numba", **kw)
        times.append(time.perf_counter() - t0)
    return compile_s, float(np.median(times)), times


def time_numpy_engine(n_updates, repeats):
    kw = dict(n_updates=n_updates, engine="numpy", **METHODS["wake-sleep"])
    times = []
    for r in range(repeats):
        m = HelmholtzMachine(SIZES, rng=r)
        t0 = time.perf_counter()
        m.fit(bars, rng=r, **kw)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def plot(results, table, path, seed_models):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 4.5))
    ax = fig.add_subplot(1, 3, 1)
    colors = {"wake-sleep": "C0", "reweighted": "C1", "reinforce": "C2"}
    for (name, seed), (model, _) in results.items():
        h = model.history_
        ax.plot(h["update"], h["monitor"], color=colors[name], alpha=0.7,
                label=name if seed == min(s for n, s in results if n == name) else None)
    ax.axhline(0.10, color="k", ls="--", lw=0.8, label="paper: 0.10 bits")
    ax.set_yscale("log")
    ax.set_xlabel("online updates (data samples)")
    ax.set_ylabel("KL(data || model) [bits]")
    ax.legend(fontsize=8)
    ax.set_title("1-8-16 Helmholtz machine on 4x4 bars")

    rng = np.random.default_rng(0)
    data = bars(64, rng)
    _, samples = seed_models.sample(64, rng=rng)
    for k, (imgs, title) in enumerate(((data, "data samples"),
                                       (samples, "model samples (wake-sleep)"))):
        ax = fig.add_subplot(1, 3, 2 + k)
        grid = np.ones((8 * 5 - 1, 8 * 5 - 1)) * 0.5
        for i in range(64):
            r, c = divmod(i, 8)
            grid[r * 5:r * 5 + 4, c * 5:c * 5 + 4] = imgs[i].reshape(4, 4)
        ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--init", choices=list(INIT_BIAS), default="glorot",
                    help="initial generative biases (see INIT_BIAS)")
    ap.add_argument("--updates", type=float, default=2e6)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--plot", default="bars_wake_sleep.png")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--restarts", type=int, default=10,
                    help="wake-sleep restarts within the budget (0: skip that row)")
    ap.add_argument("--probe", type=float, default=1e5,
                    help="updates per restart before the held-out selection")
    ap.add_argument("--diagnostic", action=argparse.BooleanOptionalAction, default=True,
                    help="also run wake-sleep from the hand-built bars solution")
    args = ap.parse_args(argv)
    n_updates = int(args.updates)
    table = bars_table()
    print(f"bars 4x4: {len(table[1])} images, entropy {entropy_bits(table[1]):.4f} bits")

    ok = True
    if not args.no_timing:
        compile_s, med, times = time_wake_sleep(n_updates, args.repeats)
        n_np = 20_000
        np_med = time_numpy_engine(n_np, 3)
        per_nb, per_np = med / n_updates, np_med / n_np
        print("\nonline wake-sleep timing (1-8-16, batch 1, incl. drawing data and noise)")
        print(f"{'engine':<10}{'updates':>10}{'median s':>12}{'us/update':>12}")
        print(f"{'numba':<10}{n_updates:>10d}{med:>12.2f}{1e6 * per_nb:>12.2f}")
        print(f"{'numpy':<10}{n_np:>10d}{np_med:>12.2f}{1e6 * per_np:>12.2f}")
        print(f"numba compile (first call, excluded): {compile_s:.2f} s; "
              f"numba repeats: {', '.join(f'{t:.2f}' for t in times)}")
        print(f"numpy engine extrapolated to {n_updates:.0e} updates: "
              f"{per_np * n_updates:.0f} s")
        print(f"target 2e6 updates <= 30 s: {'PASS' if med * 2e6 / n_updates <= 30 else 'FAIL'}")
        ok &= med * 2e6 / n_updates <= 30
        print(f"ratio: {per_nb / per_np:.4f}")

    results = {}
    print(f"\nexact KL(data || model) in bits after {n_updates:.0e} online updates")
    print(f"{'method':<12}{'seed':>6}{'KL bits':>10}{'wall s':>9}")
    for name in args.methods:
        for seed in args.seeds:
            model, wall = train(name, seed, n_updates, table, max(n_updates // 40, 1),
                                INIT_BIAS[args.init])
            results[(name, seed)] = (model, wall)
            print(f"{name:<12}{seed:>6}{model.history_['monitor'][-1]:>10.3f}{wall:>9.1f}",
                  flush=True)
    finals = {name: ([results[(name, s)][0].history_["monitor"][-1] for s in args.seeds],
                     [results[(name, s)][1] for s in args.seeds]) for name in args.methods}
    if args.restarts > 0 and "wake-sleep" in args.methods:
        print(f"\nwake-sleep with {args.restarts} restarts of {args.probe:.0e} updates, the "
              f"best by held-out log-likelihood continued ({n_updates:.0e} updates in all)")
        kls, walls = [], []
        for seed in args.seeds:
            m, r, wall = train_restarts(seed, n_updates, args.restarts, int(args.probe),
                                        INIT_BIAS[args.init])
            kls.append(kl_data_model(table, m))
            walls.append(wall)
            print(f"{'ws-restarts':<12}{seed:>6}{kls[-1]:>10.3f}{wall:>9.1f}  "
                  f"(restart {r} chosen)", flush=True)
        finals["ws-restarts"] = (kls, walls)
    print(f"\n{'method':<12}{'median KL':>10}{'min':>8}{'max':>8}{'median s':>10}")
    med_kl = {}
    for name, (kls, walls) in finals.items():
        med_kl[name] = float(np.median(kls))
        print(f"{name:<12}{med_kl[name]:>10.3f}{min(kls):>8.3f}{max(kls):>8.3f}"
              f"{np.median(walls):>10.1f}")
    if args.diagnostic:
        print("\ndiagnostic: wake-sleep (same settings) started from the hand-built bars "
              "solution")
        for seed in args.seeds[:1]:
            kl0, m = from_solution(n_updates, table, seed)
            mon = m.history_["monitor"]
            print(f"KL at the hand-built solution {kl0:.4f} bits; after {n_updates:.0e} "
                  f"updates {mon[-1]:.3f} bits (median over the run {np.median(mon):.3f}, "
                  f"max {max(mon):.3f})")
        if "wake-sleep" in args.methods:
            print("\ndiagnostic: exact maximum likelihood (Adam, full-batch on the enumerated "
                  "log p(x)): 3000 steps from wake-sleep's initial weights, and 2000 steps "
                  "started where wake-sleep ended")
            print(f"{'seed':>4}{'ML from init':>14}{'wake-sleep':>12}{'WS then ML':>12}")
            for seed in args.seeds:
                m0 = HelmholtzMachine(SIZES, rng=seed, init_bias=INIT_BIAS[args.init])
                kl_init = kl_data_model(table, ml_polish(m0, table, steps=3000))
                m = results[("wake-sleep", seed)][0]
                kl_ws = m.history_["monitor"][-1]
                m = HelmholtzMachine(SIZES, params={k: v.copy() for k, v in m.params.items()})
                kl_ml = kl_data_model(table, ml_polish(m, table))
                print(f"{seed:>4}{kl_init:>14.3f}{kl_ws:>12.3f}{kl_ml:>12.3f}", flush=True)
    if "wake-sleep" in med_kl:
        hit = med_kl["wake-sleep"] <= 0.10
        print(f"target wake-sleep <= 0.10 bits (median): {'PASS' if hit else 'FAIL'}")
        ok &= hit
    if "wake-sleep" in med_kl and "reweighted" in med_kl:
        hit = med_kl["reweighted"] < med_kl["wake-sleep"]
        print(f"target reweighted < wake-sleep (median): {'PASS' if hit else 'FAIL'}")
        ok &= hit
    if args.plot and "wake-sleep" in args.methods:
        try:
            best = min(args.seeds,
                       key=lambda s: results[("wake-sleep", s)][0].history_["monitor"][-1])
            plot(results, table, args.plot, results[("wake-sleep", best)][0])
        except ImportError:
            print("matplotlib not installed: no plot")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
