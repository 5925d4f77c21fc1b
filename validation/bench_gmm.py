"""Benchmark: lvmref GaussianMixture EM vs scikit-learn, same data, same initial parameters.

N = 100,000 samples, D = 10 features, K = 16 components; covariance types ``full`` and
``diag``; 20 EM iterations with ``tol = 0`` from identical ``weights_init`` / ``means_init``
/ ``precisions_init``. Both run in this process with the same thread count for BLAS
(threadpoolctl) and Numba.

The two implementations are run interleaved, repeat by repeat, so that both see the same
(shared, noisy) machine load; besides the ratio of the medians, the median of the
per-repeat paired ratios is printed. Per-iteration time =
(median T(max_iter=20) - median T(max_iter=1)) / 19, so that the fixed costs that
differ between the two fits (scikit-learn's initial M-step and final E-step, input
validation) cancel (``max_iter=0`` is not usable as the baseline: scikit-learn 1.9 fails
on it when ``precisions_init`` is given). Medians over ``--repeats`` (>= 5) runs. Numba
compile time is measured once on a small problem and reported separately.

FLOP floor: the multiply-adds of one EM iteration (full: E-step N K (2D + D(D+1)/2),
first moments N K (D + 1), scatter N K (D + D(D+1)/2); diag: E-step 3 N K D, first
moments N K (D + 1), scatter 2 N K D) at the dgemm rate measured here (the fastest of
7 products of 1000 x 1000 matrices, ``--threads`` threads: on a shared machine the
least disturbed one); the N K exponentials are not counted. The table shows each
implementation's time as a multiple of that floor.

Exits 1 if the final lower bounds differ by more than 1e-9 (relative).

Usage: python validation/bench_gmm.py [--threads 2] [--repeats 5] [--n 100000]
"""

from __future__ import annotations

import os

# GNU OpenMP (Numba's default threading layer here) spin-waits between parallel regions;
# on an oversubscribed machine (this one is shared) that makes every parallel kernel
# wait for descheduled spinning threads: measured 1.5 s instead of 8 ms for one kernel.
# Passive waiting is the setting for a shared machine; it must be set before OpenMP
# starts. scikit-learn's BLAS (OpenBLAS, pthreads) is not affected by it.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture as SkGM  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from lvmref.gmm import GaussianMixture  # noqa: E402
from lvmref.mixture import ConvergenceWarning  # noqa: E402

N_ITER = 20


def make_problem(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3.0
    lab = rng.integers(k, size=n)
    scales = rng.uniform(0.5, 2.0, size=(k, d))
    X = centers[lab] + rng.normal(size=(n, d)) * scales[lab]
    means0 = X[rng.choice(n, size=k, replace=False)]
    weights0 = np.full(k, 1.0 / k)
    cov = np.cov(X.T)
    prec = {
        "full": np.broadcast_to(np.linalg.inv(cov), (k, d, d)).copy(),
        "diag": np.broadcast_to(1.0 / np.diag(cov), (k, d)).copy(),
    }
    return X, weights0, means0, prec


def floor_ms(n, d, k, covariance_type, threads):
    """The iteration's multiply-adds at the measured dgemm rate: (ms, GFLOP/s)."""
    a = np.random.default_rng(1).standard_normal((1000, 1000))
    with threadpool_limits(limits=threads):
        a @ a
        ts = []
        for _ in range(7):
            t0 = time.perf_counter()
            a @ a
            ts.append(time.perf_counter() - t0)
    rate = 1e9 / float(np.min(ts))  # multiply-adds per second (the fastest: least load)
    tri = d * (d + 1) // 2
    if covariance_type == "full":
        macs = n * k * ((2 * d + tri) + (d + 1) + (d + tri))
    else:
        macs = n * k * (3 * d + (d + 1) + 2 * d)
    return macs / rate * 1e3, 2 * rate / 1e9


def make(name, k, covariance_type, max_iter, inits):
    """A fresh estimator of either implementation with the given initial parameters."""
    if name == "lvmref":
        return GaussianMixture(k, covariance_type=covariance_type, tol=0.0,
                               max_iter=max_iter, **inits)
    return SkGM(k, covariance_type=covariance_type, tol=0.0, max_iter=max_iter,
                init_params="random_from_data", random_state=0, **inits)


def fit_time(name, k, covariance_type, max_iter, inits, X):
    """Wall time (s) of one fresh ``fit`` and the fitted model."""
    m = make(name, k, covariance_type, max_iter, inits)
    t0 = time.perf_counter()
    m.fit(X)
    return time.perf_counter() - t0, m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--k", type=int, default=16)
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", SkConvergenceWarning)

    X, w0, m0, prec = make_problem(args.n, args.d, args.k)
    numba.set_num_threads(args.threads)

    # JIT compile (or cache load) on a small problem, timed separately.
    t0 = time.perf_counter()
    for ct in ("full", "diag"):
        for n_small in (200, 40_000):  # serial and parallel builds
            GaussianMixture(args.k, covariance_type=ct, max_iter=2, random_state=0).fit(
                X[:n_small]
            )
    compile_s = time.perf_counter() - t0

    rows, ok = [], True
    with threadpool_limits(limits=args.threads):
        for ct in ("full", "diag"):
            inits = {"weights_init": w0, "means_init": m0, "precisions_init": prec[ct]}
            t = {(nm, it): [] for nm in ("lvmref", "sklearn") for it in (1, N_ITER)}
            models = {}
            # interleave the implementations so both see the same machine load
            for _ in range(args.repeats):
                for nm in ("lvmref", "sklearn"):
                    for it in (N_ITER, 1):
                        dt, model = fit_time(nm, args.k, ct, it, inits, X)
                        t[nm, it].append(dt)
                        if it == N_ITER:
                            models[nm] = model
            res = {}
            per_iter = {}
            for nm in ("lvmref", "sklearn"):
                per_iter[nm] = (np.asarray(t[nm, N_ITER]) - np.asarray(t[nm, 1])) / (N_ITER - 1)
                res[nm] = (
                    float(np.median(t[nm, N_ITER]) - np.median(t[nm, 1])) / (N_ITER - 1) * 1e3,
                    float(np.median(t[nm, N_ITER])) * 1e3,
                    models[nm].lower_bound_,
                )
            paired = float(np.median(per_iter["lvmref"] / per_iter["sklearn"]))
            res["paired"] = paired
            res["floor"] = floor_ms(args.n, args.d, args.k, ct, args.threads)
            lb_o, lb_s = res["lvmref"][2], res["sklearn"][2]
            rel = abs(lb_o - lb_s) / abs(lb_s)
            ok &= rel <= 1e-9
            rows.append((ct, res, rel))

    print(f"GaussianMixture EM, N={args.n}, D={args.d}, K={args.k}, {N_ITER} iterations, "
          f"tol=0, threads={args.threads} (BLAS and Numba), median of {args.repeats}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"numba layer={numba.threading_layer()}")
    print(f"Numba compile/cache-load (excluded): {compile_s:.2f} s")
    hdr = (f"{'cov':<5} {'impl':<8} {'ms/iter':>9} {'x floor':>8} {'fit(20) ms':>11} "
           f"{'final lower_bound_':>22} {'rel diff':>9}")
    print(hdr)
    print("-" * len(hdr))
    for ct, res, rel in rows:
        fl = res["floor"][0]
        for name in ("lvmref", "sklearn"):
            ms, tot, lb = res[name]
            print(f"{ct:<5} {name:<8} {ms:9.1f} {ms / fl:8.2f} {tot:11.1f} {lb:22.15f} "
                  f"{rel:9.1e}")
    for ct, res, _ in rows:
        print(f"FLOP floor {ct}: {res['floor'][0]:.1f} ms per iteration (multiply-adds at "
              f"the dgemm rate measured here, {res['floor'][1]:.1f} GFLOP/s)")
    print("(ms/iter = (T(max_iter=20) - T(max_iter=1)) / 19; fit(20) = whole fit, medians)")
    for ct, res, _ in rows:
        r = res["lvmref"][0] / res["sklearn"][0]
        print(f"ratio: {ct} {r:.3f}  (lvmref/sklearn ms per iteration of the medians, "
              f"speed-up {1 / r:.1f}x; median of the {args.repeats} paired same-load "
              f"ratios {res['paired']:.3f})")
    if not ok:
        print("MISMATCH: final lower bounds differ by more than 1e-9 relative")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
