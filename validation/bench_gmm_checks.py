"""Benchmark: does input validation slow EM? ``GaussianMixture(16).fit`` before and after.

Issue 15 hardened the mixtures' public functions; the EM loop calls gmm's private
unchecked versions (public ``foo`` validates, then calls ``_foo``), except the two factor
helpers it shares with the Bayesian mixture through ``lvmref.mixture`` (no private name
crosses a module): ``log_det_cholesky`` (once per E-step) and ``triangular_inverse`` (once
per component per M-step) validate their (K, d, d) / (d, d) arguments, O(K d^2) work per
iteration against O(N K d^2) for the E- and M-steps. A fit should cost what it did. This
script times ``GaussianMixture(16, random_state=0).fit(X)`` (defaults otherwise:
``covariance_type="full"``, k-means initialisation, ``tol=1e-3``, ``max_iter=100``;
``--tol 0 --max-iter 20`` times 20 EM iterations) on N = 100,000 rows, D = 10, of this
tree ("ours") and of another copy of the library ("peer", e.g. the tree before the
change), both imported into this one process.

Give the peer as a directory holding an importable ``lvmref`` package with its kernels at
``lvmref/kernels`` (the layout of an installed package), e.g. for the commit before::

    git archive <commit> lvmref kernels | tar -x -C /tmp/before
    mv /tmp/before/kernels /tmp/before/lvmref/kernels
    python validation/bench_gmm_checks.py --peer /tmp/before

The two are run interleaved, repeat by repeat (same machine load), with the same thread
count for BLAS (threadpoolctl) and Numba; Numba compile (or cache load) is timed on a
small fit and reported separately. Prints the medians of ``--repeats`` (>= 5) fits, the
median of the paired per-repeat ratios and ``ratio: <ours/peer>``. Exits 1 unless both
fits give bit-identical fitted parameters and lower bound (validation must not change a
number).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # see bench_gmm.py: a shared machine

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


def _load_gaussian_mixture(path):
    """``lvmref.gmm.GaussianMixture`` of the tree at ``path`` (None: the installed one).

    The modules of one tree are dropped from ``sys.modules`` after the import; the class
    keeps them alive through its functions' globals, so both trees coexist.
    """
    saved = sys.path[:]
    for name in [m for m in sys.modules if m == "lvmref" or m.startswith("lvmref.")]:
        del sys.modules[name]
    if path is not None:
        sys.path.insert(0, str(Path(path).resolve()))
    try:
        gmm = importlib.import_module("lvmref.gmm")
        origin = Path(gmm.__file__).resolve().parent
        cls = gmm.GaussianMixture
    finally:
        sys.path[:] = saved
        for name in [m for m in sys.modules if m == "lvmref" or m.startswith("lvmref.")]:
            del sys.modules[name]
    return cls, origin


def make_data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3.0
    lab = rng.integers(k, size=n)
    return centers[lab] + rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=(k, d))[lab]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", required=True, help="directory holding the other lvmref")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--tol", type=float, default=1e-3,
                    help="EM tolerance (0 with --max-iter: a fixed number of iterations)")
    ap.add_argument("--max-iter", type=int, default=100)
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")
    numba.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*did not converge")  # the 2-iteration warm-up
    impls = {}
    impls["peer"] = _load_gaussian_mixture(args.peer)
    impls["ours"] = _load_gaussian_mixture(None)
    X = make_data(args.n, args.d, args.k)

    compile_s = {}
    for name, (cls, _) in impls.items():
        t0 = time.perf_counter()
        for n_small in (200, 40_000):  # serial and parallel kernels
            cls(args.k, max_iter=2, random_state=0).fit(X[:n_small])
        compile_s[name] = time.perf_counter() - t0

    times = {name: [] for name in impls}
    fitted = {}
    with threadpool_limits(limits=args.threads):
        for _ in range(args.repeats):
            for name, (cls, _) in impls.items():
                gm = cls(args.k, random_state=0, tol=args.tol, max_iter=args.max_iter)
                t0 = time.perf_counter()
                gm.fit(X)
                times[name].append(time.perf_counter() - t0)
                fitted[name] = gm
    same = all(np.array_equal(getattr(fitted["ours"], a), getattr(fitted["peer"], a))
               for a in ("weights_", "means_", "covariances_", "precisions_cholesky_",
                         "lower_bound_", "n_iter_"))
    print(f"GaussianMixture({args.k}).fit, N={args.n}, D={args.d}, covariance_type=full, "
          f"tol={args.tol:g}, max_iter={args.max_iter}, threads={args.threads} (BLAS and "
          f"Numba), median of {args.repeats}, interleaved")
    hdr = f"{'impl':<5} {'tree':<44} {'compile s':>9} {'fit s (median)':>14} {'n_iter':>6}"
    print(hdr)
    print("-" * len(hdr))
    for name, (_, origin) in impls.items():
        print(f"{name:<5} {str(origin)[-44:]:<44} {compile_s[name]:9.2f} "
              f"{np.median(times[name]):14.3f} {fitted[name].n_iter_:6d}")
    print("all fits (s): " + "; ".join(
        f"{n} " + " ".join(f"{t:.3f}" for t in ts) for n, ts in times.items()))
    paired = np.median(np.asarray(times["ours"]) / np.asarray(times["peer"]))
    print(f"identical fitted parameters and lower bound: {same}")
    print(f"median of the paired per-repeat ratios: {paired:.3f}")
    print(f"ratio: {np.median(times['ours']) / np.median(times['peer']):.3f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
