"""Cross-check and benchmark lvmref.vbgmm against scikit-learn's BayesianGaussianMixture.

Part 1 (exit status): from the same initial responsibilities, run both for ``--iters``
iterations (both weight priors, full covariance, tol=0, reg_covar=0) and report
the largest absolute difference of every variational parameter and of the bound
increments (scikit-learn drops constants from its bound). Exits 1 if any exceeds 1e-8.
scikit-learn is driven through its private ``_initialize`` (validation only).

Part 2 (timing, Dirichlet-distribution prior): ``fit`` with ``max_iter=100, tol=0``
(100 E+M iterations each), median of ``--repeats`` runs, same data, same process, BLAS
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


def cross_check(iters, prior_type):
    rng = np.random.default_rng(0)
    X = make_data(rng, 2000, 4, 5)
    k = 6
    resp = rng.dirichlet(np.ones(k), size=len(X))
    opts = dict(
        weight_concentration_prior=0.05,
        mean_precision_prior=0.5,
        weight_concentration_prior_type=prior_type,
    )
    sk = SkBGM(
        n_components=k,
        covariance_type="full",
        tol=0.0,
        reg_covar=0.0,
        **opts,
    )
    sk._check_parameters(X)
    sk._initialize(X, resp)
    prior = make_prior(X, k, **opts)
    state = m_step(X, resp, prior)
    worst = dict.fromkeys(KEYS, 0.0)
    ours_b, sk_b = [], []
    for _ in range(iters):
        log_prob_norm, sk_log_resp = sk._e_step(X)
        sk._m_step(X, sk_log_resp)
        sk_b.append(sk._compute_lower_bound(sk_log_resp, log_prob_norm))
        log_resp = e_step(state, X)
        state = m_step(X, np.exp(log_resp), prior)
        ours_b.append(lower_bound(state, X, log_resp, prior))
        for key in KEYS:
            diff = np.max(np.abs(state[key] - np.array(getattr(sk, key + "_"))))
            worst[key] = max(worst[key], float(diff))
    worst["bound increments"] = float(np.max(np.abs(np.diff(ours_b) - np.diff(sk_b))))
    print(
        f"cross-check ({prior_type}): N=2000 D=4 K={k}, {iters} iterations "
        "from the same responsibilities"
    )
    print(f"{'quantity':<24}{'max |ours - sklearn|':>22}")
    for key, value in worst.items():
        print(f"{key:<24}{value:>22.3e}")
    print(f"final bound (ours, all constants): {ours_b[-1]:.6f}")
    return max(worst.values()) <= 1e-8


def bench(n, d, k, repeats):
    rng = np.random.default_rng(1)
    X = make_data(rng, n, d, k // 2)
    resp = rng.dirichlet(np.ones(k), size=n)
    common = dict(
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
        ok = all(
            [cross_check(args.iters, t) for t in ("dirichlet_distribution", "dirichlet_process")]
        )
        print()
        print(
            f"timing: fit, 100 iterations, median of {args.repeats}, "
            f"{args.threads} BLAS thread(s)"
        )
        print("JIT compile time: none (no jitted kernel on this path); 'first' = warm-up fit")
        print(
            f"{'N':>7}{'D':>4}{'K':>4}{'lvmref [s]':>13}{'sklearn [s]':>13}{'ratio':>8}"
            f"{'lvmref first':>14}{'sklearn first':>15}"
        )
        ratios = []
        for n, d, k in ((2000, 3, 6), (20000, 5, 10), (5000, 20, 8)):
            t = bench(n, d, k, args.repeats)
            r = t["lvmref"] / t["sklearn"]
            ratios.append((n, d, k, r))
            print(
                f"{n:>7}{d:>4}{k:>4}{t['lvmref']:>13.4f}{t['sklearn']:>13.4f}{r:>8.3f}"
                f"{t['lvmref first']:>14.4f}{t['sklearn first']:>15.4f}"
            )
        for n, d, k, r in ratios:
            print(f"ratio: {r:.3f}  (N={n} D={d} K={k}, ours/peer)")
    if not ok:
        print("MISMATCH: a parameter or bound increment differs by more than 1e-8")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
