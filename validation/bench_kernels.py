"""Benchmark: row-wise log-sum-exp, lvmref.kernels vs scipy.special.logsumexp vs one np.exp pass.

Usage::

    python validation/bench_kernels.py [--threads 1 2] [--repeats 7] [--options] [--warm-cache]

For each shape ((1e6, 10) and (1e5, 100), float64, N(0, 3^2) entries) and each thread
count, times in one process, on the same array:

* ``ours``      ``lvmref.kernels.logsumexp(a, axis=1)`` (public API, validation included);
* ``sum``       ``a.sum()`` -- one streaming read of the array (the bandwidth floor);
* ``scipy``     ``scipy.special.logsumexp(a, axis=1)``;
* ``exp``       ``np.exp(a)`` — one exp pass with a fresh output array (the practical floor);
* ``exp_out``   ``np.exp(a, out=buf)`` — the same without allocating the output;
* ``exp_ours``  our vectorized exponential alone (``fastexp.exp_nonpos_nb``), as many
  evaluations as ``a`` has entries, on a cache-resident block of ``a - max(a)``: the
  exponentials of the kernel with nothing else, not even the reads of ``a`` (the compute
  floor of its design);
* with ``--options`` also the alternatives considered for the kernel: a scalar ``math.exp``
  loop (Numba, no SVML in 0.68) and the blocked NumPy twin (``_twins.lse_parts_np`` over
  blocks of rows); and a second table timing the jitted elementwise kernels against their
  NumPy twins, which decided the path each public wrapper takes (see ``kernels/_api.py``).

The Numba thread count (``numba.set_num_threads``) and the BLAS/OpenMP pools (threadpoolctl,
if installed) are pinned to the same value; NumPy's exp and SciPy are single-threaded either
way. JIT compile time is measured separately (first call, with an empty Numba cache unless
``--warm-cache``) and excluded from the medians (median of ``--repeats`` >= 5 runs after a
warm-up run; in each repeat the implementations run in turn, so machine load hits all
alike). The results are checked against SciPy: the largest |ours - scipy| as a fraction of the
derived error bound is printed, and the script exits with status 1 if it exceeds 1.
The last lines are ``ratio: ...`` lines (ours / peer; < 1 means ours is faster).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--options", action="store_true", help="also time the alternatives")
    p.add_argument("--warm-cache", action="store_true", help="keep the on-disk Numba cache")
    args = p.parse_args()
    if args.repeats < 5:
        p.error("--repeats must be >= 5")
    return args


ARGS = _parse()
if not ARGS.warm_cache:
    # a private empty cache, so the first call below measures real compilation
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="lvmref-bench-numba-")

import math  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.special as sps  # noqa: E402
from numba import njit  # noqa: E402

import lvmref.kernels as K  # noqa: E402
from lvmref.kernels import densities as D  # noqa: E402
from lvmref.kernels import lse as L  # noqa: E402
from lvmref.kernels.fastexp import exp_nonpos_nb  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # optional
    threadpool_limits = None

SHAPES = [(1_000_000, 10), (100_000, 100)]


@njit(cache=True)
def _lse_scalar_exp(a):
    """Alternative 1: max-split lse with scalar libm exp (what plain Numba code gives)."""
    n, m = a.shape
    out = np.empty(n)
    for i in range(n):
        mx = -np.inf
        idx = 0
        for j in range(m):
            if a[i, j] > mx:
                mx = a[i, j]
                idx = j
        s = 0.0
        for j in range(m):
            if j != idx:
                s += math.exp(a[i, j] - mx)
        out[i] = mx + math.log1p(s)
    return out


@njit(cache=True, error_model="numpy")
def _exp_pass(chunk, reps, buf):
    """Our vectorized exponential alone: ``reps`` passes over the cache-resident ``chunk``
    (entries <= 0), the results stored into ``buf``. With reps * chunk.size = a.size this
    is the exponentials of the log-sum-exp kernel with nothing else, not even the reads
    of ``a`` from memory: the compute floor of the kernel's design. Returns buf[0]."""
    for _ in range(reps):
        for j in range(chunk.shape[0]):
            buf[j] = exp_nonpos_nb(chunk[j])
    return buf[0]


def _lse_numpy_blocked(a, rows=4096):
    """Alternative 2: the NumPy twin over blocks of rows (vectorized np.exp, cache-sized)."""
    out = np.empty(a.shape[0])
    for i0 in range(0, a.shape[0], rows):
        mx, lg = L.lse_parts_np(a[i0 : i0 + rows])
        out[i0 : i0 + rows] = mx + lg
    return out


def lse_bound(ref, a):
    """Derived bound on |ours - scipy| per row (tests/support.py::lse_tol):
    2 u |r| + L ((2.4 + 2 + 2.8 + 2) u + 2 gamma_n), L = |r - max| + u |r| (our exp and
    log1p: 2.4 u and 2.8 u, lvmref.kernels.fastexp; libm's: <= 1 ulp = 2 u each)."""
    u = 2.0**-53
    n = a.shape[1]
    big_l = np.abs(ref - a.max(axis=1)) + u * np.abs(ref)
    return 1.001 * (2 * u * np.abs(ref) + big_l * (9.2 * u + 2 * n * u / (1 - n * u)))


def interleaved_medians(fns, repeats):
    """Median time of each function, the functions run in turn in every repeat (so that
    machine load hits all alike), after one warm-up call each."""
    for f in fns.values():
        f()
    ts = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            ts[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in ts.items()}


def median_time(f, repeats):
    f()  # warm-up (page faults, caches)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def elementwise_table(repeats):
    """Numba kernel vs NumPy twin for the non-lse functions (one thread), milliseconds."""
    rng = np.random.default_rng(1)
    x = rng.normal(scale=5.0, size=1_000_000)
    xb = (rng.random((2000, 784)) < 0.5).astype(np.float64)
    lg = rng.normal(scale=3.0, size=(2000, 784))
    mu = rng.normal(size=(2000, 784))
    lv = rng.normal(size=(2000, 784))
    w = rng.normal(size=(10_000, 100))
    cases = {
        "softplus (1e6,)": (lambda: D.softplus_nb(x), lambda: D.softplus_np(x)),
        "log_sigmoid (1e6,)": (lambda: D.log_sigmoid_nb(x), lambda: D.log_sigmoid_np(x)),
        "bernoulli rows (2000,784)": (
            lambda: D.bernoulli_log_prob_rows_nb(xb, lg),
            lambda: D.bernoulli_log_prob_np(xb, lg, True),
        ),
        "normal rows (2000,784)": (
            lambda: D.normal_log_prob_diag_rows_nb(lg, mu, lv),
            lambda: D.normal_log_prob_diag_np(lg, mu, lv, True),
        ),
        "kl rows (2000,784)": (
            lambda: D.kl_normal_std_rows_nb(mu, lv),
            lambda: D.kl_normal_std_np(mu, lv),
        ),
        "elbo_iwae (1e4,100)": (
            lambda: K.elbo_iwae(w, w, w),  # jitted path (lse via the blocked kernel)
            lambda: D.elbo_iwae_np(w, w, w),
        ),
    }
    out = {}
    for name, (fj, fn) in cases.items():
        out[name] = (median_time(fj, repeats), median_time(fn, repeats))
    return out


def compile_times():
    """First-call times (compile, or cache load with --warm-cache) of the kernels used."""
    small = np.random.default_rng(0).normal(size=(64, 10))
    out = {}
    t0 = time.perf_counter()
    L.lse_parts_nb_serial(small)
    out["lse_parts"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    L.lse_parts_nb(small)
    out["lse_parts_parallel"] = time.perf_counter() - t0
    if ARGS.options:
        t0 = time.perf_counter()
        _lse_scalar_exp(small)
        out["scalar_exp_loop"] = time.perf_counter() - t0
    return out


def main():
    print(
        f"numpy {np.__version__}, scipy {scipy.__version__}, numba {numba.__version__}, "
        f"{os.cpu_count()} CPUs, threadpoolctl {'yes' if threadpool_limits else 'no'}"
    )
    ct = compile_times()
    cache = "warm cache" if ARGS.warm_cache else "empty cache"
    print(
        f"JIT first-call times ({cache}), excluded below: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in ct.items())
    )
    rng = np.random.default_rng(0)
    rows = []
    bad = False
    max_threads = numba.config.NUMBA_NUM_THREADS
    for shape in SHAPES:
        a = rng.normal(scale=3.0, size=shape)
        ref = sps.logsumexp(a, axis=1)
        rel = float(np.max(np.abs(K.logsumexp(a, axis=1) - ref) / lse_bound(ref, a)))
        if not rel <= 1.0:
            bad = True
        buf = np.empty_like(a)
        l1buf = np.empty(2000)
        chunk = a.reshape(-1)[:2000] - a.max()  # 2000 divides a.size for both shapes
        for threads in ARGS.threads:
            if threads > max_threads:
                print(f"skipping threads={threads} (> NUMBA_NUM_THREADS={max_threads})")
                continue
            numba.set_num_threads(threads)
            ctx = threadpool_limits(limits=threads) if threadpool_limits else None
            try:
                res = interleaved_medians({
                    "ours": lambda a=a: K.logsumexp(a, axis=1),
                    "sum": lambda a=a: a.sum(),
                    "scipy": lambda a=a: sps.logsumexp(a, axis=1),
                    "exp": lambda a=a: np.exp(a),
                    "exp_out": lambda a=a, b=buf: np.exp(a, out=b),
                    "exp_ours": lambda b=l1buf, c=chunk, r=a.size // chunk.size: _exp_pass(c, r, b),
                }, ARGS.repeats)
                if ARGS.options:
                    res["scalar_exp_loop"] = median_time(
                        lambda a=a: _lse_scalar_exp(a), ARGS.repeats
                    )
                    res["numpy_blocked"] = median_time(
                        lambda a=a: _lse_numpy_blocked(a), ARGS.repeats
                    )
            finally:
                if ctx is not None:
                    ctx.unregister()
            rows.append((shape, threads, rel, res))

    elem = None
    if ARGS.options:
        numba.set_num_threads(1)
        ctx = threadpool_limits(limits=1) if threadpool_limits else None
        try:
            elem = elementwise_table(ARGS.repeats)
        finally:
            if ctx is not None:
                ctx.unregister()

    names = list(rows[0][3]) if rows else []
    header = f"{'shape':>12} {'thr':>3} " + " ".join(f"{n:>16}" for n in names)
    print(f"\nmedian of {ARGS.repeats} runs, milliseconds")
    print(header)
    for shape, threads, _rel, res in rows:
        print(f"{str(shape):>12} {threads:>3} " + " ".join(f"{1e3 * res[n]:>16.2f}" for n in names))
    if elem:
        print("\nelementwise kernels, one thread, median ms")
        print(f"{'function':>28} {'numba':>10} {'numpy twin':>10}")
        for name, (tj, tn) in elem.items():
            print(f"{name:>28} {1e3 * tj:>10.2f} {1e3 * tn:>10.2f}")
    print()
    for shape, _threads, rel, _ in rows[:: max(1, len(ARGS.threads))]:
        print(f"max |ours - scipy| / derived bound {shape}: {rel:.3f}  (must be <= 1)")
    for name, (tj, tn) in (elem or {}).items():
        print(f"ratio: numba/numpy {name}: {tj / tn:.3f}")
    for shape, threads, _rel, res in rows:
        tag = f"{shape[0]:.0e}x{shape[1]} threads={threads}"
        print(f"ratio: ours/a.sum() {tag}: {res['ours'] / res['sum']:.3f}")
        print(f"ratio: ours/scipy {tag}: {res['ours'] / res['scipy']:.3f}")
        print(f"ratio: ours/np.exp {tag}: {res['ours'] / res['exp']:.3f}")
        print(f"ratio: ours/np.exp(out=) {tag}: {res['ours'] / res['exp_out']:.3f}")
        print(f"ratio: our exp pass alone/a.sum() {tag}: {res['exp_ours'] / res['sum']:.3f}")
    if bad:
        print("MISMATCH against scipy.special.logsumexp", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
