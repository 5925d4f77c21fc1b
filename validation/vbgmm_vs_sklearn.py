"""Cross-check and benchmark lvmref.vbgmm against scikit-learn's BayesianGaussianMixture.

Part 1 (exit status): from the same initial responsibilities, run both for ``--iters``
iterations (both weight priors, every covariance type, tol=0, reg_covar=0) and report
the largest absolute difference of every variational parameter and of the bound
increments (scikit-learn drops constants from its bound). Exits 1 if any exceeds 1e-8.
scikit-learn is driven through its private ``_initialize`` (validation only).

Part 2 (timing, Dirichlet-distribution prior, every covariance type): ``fit`` with
``max_iter=100, tol=0`` (100 E+M iterations each), median of ``--repeats`` runs, same
data, same process, BLAS
pinned to ``--threads`` threads via threadpoolctl for both (Numba set to the same count).
lvmref.vbgmm calls no jitted kernel (its work is BLAS; see its module docstring), so
there is no JIT compile time; the first (warm-up) fit of each is still timed separately
and excluded from the median. Prints a table and ``ratio: <ours/peer>`` lines.

    python validation/vbgmm_vs_sklearn.py [--iters 50] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numba
import numpy as np
from sklearn.mixture import BayesianGaussianMixture as SkBGM
from threadpoolctl import threadpool_limits

from lvmref.vbgmm import BayesianGaussianMixture, e_step, lower_bound, m_step, make_prior

KEYS = (
    "weight_concentration",
    "mean_precision",
    "means",
    "degrees_of_freedom",
    "covariances",
    "precisions_cholesky",
)


def make_data(rng, n, d, n_clusters):
    centres = rng.normal(scale=4.0, size=(n_clusters, d))
    labels = rng.integers(n_clusters, size=n)
    return centres[labels] + rng.normal(size=(n, d)) @ rng.normal(scale=0.5, size=(d, d))


def cross_check(iters, prior_type, covariance_type):
    rng = np.random.default_rng(0)
    X = make_data(rng, 2000, 4, 5)
    k = 6
    resp = rng.dirichlet(np.ones(k), size=len(X))
    opts = dict(
        weight_concentration_prior=0.05,
        mean_precision_prior=0.5,
        weight_concentration_prior_type=prior_type,
    )
    ct = covariance_type
    sk = SkBGM(
        n_components=k,
        covariance_type=ct,
        tol=0.0,
        reg_covar=0.0,
        **opts,
    )
    sk._check_parameters(X)
    sk._initialize(X, resp)
    prior = make_prior(X, k, covariance_type=ct, **opts)
    state = m_step(X, resp, prior, ct)
    worst = dict.fromkeys(KEYS, 0.0)
    ours_b, sk_b = [], []
    for _ in range(iters):
        log_prob_norm, sk_log_resp = sk._e_step(X)
        sk._m_step(X, sk_log_resp)
        # (scikit-learn 1.9 returns its tied bound as an array of shape (1,))
        sk_b.append(float(np.ravel(sk._compute_lower_bound(sk_log_resp, log_prob_norm))[0]))
        log_resp = e_step(state, X, ct)
        state = m_step(X, np.exp(log_resp), prior, ct)
        ours_b.append(lower_bound(state, X, log_resp, prior, ct))
        for key in KEYS:
            diff = np.max(np.abs(state[key] - np.array(getattr(sk, key + "_"))))
            worst[key] = max(worst[key], float(diff))
    worst["bound increments"] = float(np.max(np.abs(np.diff(ours_b) - np.diff(sk_b))))
    return worst, ours_b[-1]


def bench(n, d, k, repeats, covariance_type="full"):
    rng = np.random.default_rng(1)
    X = make_data(rng, n, d, k // 2)
    resp = rng.dirichlet(np.ones(k), size=n)
    common = dict(
        covariance_type=covariance_type,
        tol=0.0,
        max_iter=100,
        reg_covar=1e-6,
        weight_concentration_prior=0.01,
        weight_concentration_prior_type="dirichlet_distribution",
    )

    def ours():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tol=0: unconverged by design
            BayesianGaussianMixture(k, **common).fit(X, resp_init=resp)

    def peer():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SkBGM(
                n_components=k,
                init_params="random",
                random_state=0,
                **common,
            ).fit(X)

    times = {}
    for name, fn in (("lvmref", ours), ("sklearn", peer)):
        t0 = time.perf_counter()
        fn()  # warm-up: JIT compile / cache load (ours), imports and caches (both)
        times[name + " first"] = time.perf_counter() - t0
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        times[name] = float(np.median(runs))
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    with threadpool_limits(limits=args.threads):
        ok = True
        print(f"cross-check: N=2000 D=4 K=6, {args.iters} iterations from the same "
              "responsibilities, max |ours - sklearn| over the trajectory")
        header = f"{'covariance':<11}{'weight prior':<24}" + "".join(
            f"{key:>22}" for key in KEYS + ("bound increments",))
        print(header + f"{'final bound (ours)':>20}")
        for ct in ("full", "tied", "diag", "spherical"):
            for prior_type in ("dirichlet_distribution", "dirichlet_process"):
                worst, final = cross_check(args.iters, prior_type, ct)
                ok &= max(worst.values()) <= 1e-8
                print(f"{ct:<11}{prior_type:<24}"
                      + "".join(f"{worst[key]:>22.3e}" for key in worst) + f"{final:>20.6f}")
        print()
        print(
            f"timing: fit, 100 iterations, median of {args.repeats}, "
            f"{args.threads} BLAS thread(s)"
        )
        print("JIT compile time: none (no jitted kernel on this path); 'first' = warm-up fit")
        print(
            f"{'type':>10}{'N':>7}{'D':>4}{'K':>4}{'lvmref [s]':>13}{'sklearn [s]':>13}"
            f"{'ratio':>8}{'lvmref first':>14}{'sklearn first':>15}"
        )
        ratios = []
        for ct in ("full", "tied", "diag", "spherical"):
            for n, d, k in ((2000, 3, 6), (20000, 5, 10), (5000, 20, 8)):
                t = bench(n, d, k, args.repeats, ct)
                r = t["lvmref"] / t["sklearn"]
                ratios.append((ct, n, d, k, r))
                print(
                    f"{ct:>10}{n:>7}{d:>4}{k:>4}{t['lvmref']:>13.4f}{t['sklearn']:>13.4f}"
                    f"{r:>8.3f}{t['lvmref first']:>14.4f}{t['sklearn first']:>15.4f}"
                )
        for ct, n, d, k, r in ratios:
            print(f"ratio: {r:.3f}  ({ct}, N={n} D={d} K={k}, ours/peer)")
    if not ok:
        print("MISMATCH: a parameter or bound increment differs by more than 1e-8")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
