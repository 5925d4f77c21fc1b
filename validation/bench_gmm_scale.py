"""Benchmark: EM beyond memory -- seconds per iteration and peak anonymous memory vs N.

D = 10 features, K = 16 components, full covariances; N = 1e5, 1e6, 1e7 rows written
to a ``.npy`` file (float64; 800 MB at 1e7) and fitted from ``np.load(path,
mmap_mode="r")``. Every run starts from the same initial parameters (uniform weights,
K fixed rows as means, the inverse column variances of the first 1e5 rows as
precisions). Rows

* ``lvmref memmap``: ``GaussianMixture`` on the memory map (the default chunk size,
  ~64 MiB of working memory), in-process, ``--threads`` threads (1 by default: the
  machine is shared);
* ``lvmref LocalCluster``: the same fit of a Dask array whose blocks (the default chunk
  size of rows) each worker reads from the same file, on a ``distributed.LocalCluster``
  of 2 worker processes with 1 thread each; the M-step runs in the client;
* ``lvmref in memory`` and ``scikit-learn`` (its ``GaussianMixture``) on the array read
  into memory, in one process with ``lvmref memmap`` (interleaved repeats), at the
  sizes whose estimated scikit-learn footprint (8 N (D + 4 K) bytes: the data, its
  responsibilities and per-component temporaries) fits in half of ``MemAvailable``.

Seconds per EM iteration: the median (and range) of ``--repeats`` (>= 5) iterations,
each timed alone. lvmref: ``fit`` with ``warm_start=True, max_iter=1, tol=0`` (one E-step
and M-step pass; its fixed costs are microseconds); scikit-learn: its loop body
``_e_step`` + ``_m_step`` on the fitted estimator (its ``fit`` adds a final E-step,
which would count an iteration 1.5 times). JIT compile time (or the load of Numba's
cache) is measured on 2000 rows first and reported separately; each Dask worker compiles
(or loads the cache) on 2000 rows before anything is timed (``Client.run``), and every
run's first iteration is not timed.

Peak anonymous memory: ``RssAnon`` of ``/proc/<pid>/status`` (private, non-file-backed
resident memory: the heap, NumPy's arrays; the page-cached pages of the memory-mapped
file are ``RssFile`` and do not count). Linux reports no peak of ``RssAnon`` -- ``VmHWM``
is the peak of the total ``VmRSS``, which includes the mapped file and so grows with N --
so this script samples ``RssAnon`` of each measured process (and of the Dask workers, its
descendants) every ``--interval`` seconds from the parent process (a sampler inside the
process would stall while a Numba kernel holds the GIL) and reports the maximum over the
timed phase, with the process's ``RssAnon`` before it (the interpreter, NumPy, Numba and
the compiled kernels) as the baseline.

Exits 1 if a chunked or Dask fit's lower bound differs from the in-memory one by more
than 1e-10 relative (where both were run). The data files are deleted at the end.

Usage: python validation/bench_gmm_scale.py [--sizes 1e5,1e6,1e7] [--repeats 5]
       [--threads 1] [--dir /tmp] [--no-dask] [--no-sklearn]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

D, K, COV = 10, 16, "full"
INIT_ROWS = 100_000
ENV_THREADS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS")


# ----------------------------------------------------------------------------- parent

def write_data(path, n, seed=0):
    """N x D float64 rows of a K-component mixture, written chunk by chunk."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(K, D)) * 3.0
    scales = rng.uniform(0.5, 2.0, size=(K, D))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, D))
    step = 1 << 20
    for a in range(0, n, step):
        m = min(step, n - a)
        lab = rng.integers(K, size=m)
        out[a:a + m] = centres[lab] + rng.normal(size=(m, D)) * scales[lab]
    out.flush()
    del out


def _status(pid):
    """{field: kB} of /proc/<pid>/status (RssAnon, RssFile, VmHWM), or None if gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in fh)
                    if k in ("RssAnon", "RssFile", "VmHWM")}
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    kids = [int(c) for c in fh.read().split()]
            except FileNotFoundError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def run_child(args, role, n, path):
    """Run one measuring child; sample its (and its descendants') RssAnon meanwhile.

    Returns its JSON result with, per phase, the peak RssAnon (MiB) of the process and
    the peak of the summed RssAnon of its descendants (Dask workers)."""
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    env.update({v: str(args.threads) for v in ENV_THREADS})
    cmd = [sys.executable, __file__, "--child", role, "--n", str(n), "--path", str(path),
           "--repeats", str(args.repeats), "--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)
    samples = []  # (time, own RssAnon kB, descendants' RssAnon kB)
    while proc.poll() is None:
        own = _status(proc.pid)
        if own is not None:
            kids = sum((_status(c) or {}).get("RssAnon", 0) for c in _descendants(proc.pid))
            samples.append((time.time(), own.get("RssAnon", 0), kids))
        time.sleep(args.interval)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"child {role} N={n} failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    for ph in result["phases"]:
        inside = [(a, k) for t, a, k in samples if ph["t0"] <= t <= ph["t1"]]
        before = [a for t, a, _ in samples if t <= ph["t0"]]
        ph["peak_anon_mib"] = max(a for a, _ in inside) / 1024 if inside else float("nan")
        ph["peak_workers_mib"] = max(k for _, k in inside) / 1024 if inside else float("nan")
        ph["base_anon_mib"] = (before[-1] if before else ph["anon_before_kb"]) / 1024
        ph["n_samples"] = len(inside)
    return result


def mem_available():
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e5,1e6,1e7")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--interval", type=float, default=0.002)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="lvmref-scale-", dir=args.dir))
    rows, failures, compile_s = [], [], None
    try:
        for n in sizes:
            path = work / f"X_{n}.npy"
            t = time.perf_counter()
            write_data(path, n)
            print(f"N={n:.0e}: wrote {path.stat().st_size / 2**20:.0f} MiB in "
                  f"{time.perf_counter() - t:.1f} s", flush=True)
            ours = run_child(args, "ours", n, path)
            compile_s = ours.get("compile_s", compile_s)
            rows.append((n, "lvmref memmap", ours["phases"][0], ours))
            if not args.no_dask:
                dk = run_child(args, "dask", n, path)
                rows.append((n, "lvmref LocalCluster (2 workers)", dk["phases"][0], dk))
                if abs(dk["bound"] - ours["bound"]) > 1e-10 * abs(ours["bound"]):
                    failures.append(f"N={n}: Dask bound {dk['bound']!r} vs {ours['bound']!r}")
            need = 8 * n * (D + 4 * K)
            if not args.no_sklearn and need < 0.5 * mem_available():
                peer = run_child(args, "peer", n, path)
                for ph in peer["phases"]:
                    rows.append((n, ph["name"], ph, peer))
                if abs(peer["bound_memory"] - ours["bound"]) > 1e-10 * abs(ours["bound"]):
                    failures.append(f"N={n}: in-memory bound {peer['bound_memory']!r} vs "
                                    f"chunked {ours['bound']!r}")
            elif not args.no_sklearn:
                print(f"N={n:.0e}: scikit-learn skipped (needs ~{need / 2**30:.1f} GiB, "
                      f"{mem_available() / 2**30:.1f} GiB available)", flush=True)
            path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, rows, compile_s)
    for f in failures:
        print("MISMATCH:", f)
    return 1 if failures else 0


def report(args, rows, compile_s):
    with open("/proc/cpuinfo") as fh:
        model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")),
                     "?")
    print(f"\nGaussianMixture EM, D={D}, K={K}, covariance_type={COV!r}; {args.threads} "
          f"thread(s) per process; CPU: {model}")
    if compile_s is not None:
        print(f"JIT compile (or Numba cache load) + first fit on 2000 rows: {compile_s:.2f} s "
              "(excluded below)")
    head = (f"{'N':>6} {'run':<34} {'s/iter median':>13} {'[min, max]':>17} "
            f"{'s/iter/1e6 rows':>15} {'peak RssAnon MiB':>16} {'(before)':>9} "
            f"{'workers MiB':>11}")
    print(head)
    print("-" * len(head))
    for n, name, ph, _ in rows:
        med, lo, hi = ph["median_s"], ph["min_s"], ph["max_s"]
        workers = f"{ph['peak_workers_mib']:11.0f}" if "LocalCluster" in name else " " * 11
        print(f"{n:6.0e} {name:<34} {med:13.3f} {f'[{lo:.3f}, {hi:.3f}]':>17} "
              f"{med / n * 1e6:15.3f} {ph['peak_anon_mib']:16.0f} {ph['base_anon_mib']:9.0f} "
              f"{workers}")
    peer = [(n, ph) for n, name, ph, _ in rows if name == "scikit-learn"]
    if peer:
        n, sk = peer[-1]
        ours = next(ph for m, name, ph, _ in rows if m == n and name == "lvmref memmap (peer)")
        print(f"ratio: {ours['median_s'] / sk['median_s']:.3f}  (lvmref memmap / scikit-learn "
              f"in memory, seconds per EM iteration at N={n:.0e}, same process, "
              f"{args.threads} thread(s))")


# ------------------------------------------------------------------------------ child

def _anon_kb():
    return (_status(os.getpid()) or {}).get("RssAnon", 0)


def _inits(X):
    import numpy as np

    rng = np.random.default_rng(1)
    idx = np.sort(rng.choice(X.shape[0], size=K, replace=False))
    var = np.asarray(X[:INIT_ROWS]).var(axis=0)
    return {"weights_init": np.full(K, 1.0 / K), "means_init": np.asarray(X[idx]),
            "precisions_init": np.broadcast_to(np.diag(1.0 / var), (K, D, D)).copy()}


def _ours(X, inits, chunk_size=None):
    from lvmref.gmm import GaussianMixture

    return GaussianMixture(K, covariance_type=COV, tol=0.0, max_iter=1, warm_start=True,
                           chunk_size=chunk_size, **inits)


def _time(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _phase(name, times, t0, t1, before):
    import numpy as np

    return {"name": name, "median_s": float(np.median(times)), "min_s": float(min(times)),
            "max_s": float(max(times)), "times": times, "t0": t0, "t1": t1,
            "anon_before_kb": before}


def child(args):
    import numpy as np

    warnings.simplefilter("ignore")  # ConvergenceWarning of the single-iteration fits
    X = np.load(args.path, mmap_mode="r")
    inits = _inits(X)
    out = {"phases": []}
    if args.child == "ours":
        out["compile_s"] = _time(lambda: _ours(X[:2000], inits).fit(X[:2000]))
        g = _ours(X, inits)
        g.fit(X)  # the first iteration (from the given start)
        before, t0 = _anon_kb(), time.time()
        times = [_time(lambda: g.fit(X)) for _ in range(args.repeats)]
        out["phases"].append(_phase("lvmref memmap", times, t0, time.time(), before))
        out["bound"] = g.lower_bound_
    elif args.child == "dask":
        out.update(_dask_child(args, X, inits))
    else:  # peer: lvmref memmap, lvmref in memory, scikit-learn, one process
        from sklearn.mixture import GaussianMixture as SkGM

        g = _ours(X, inits)
        g.fit(X)
        before, t0 = _anon_kb(), time.time()
        t_ours = [_time(lambda: g.fit(X)) for _ in range(args.repeats)]
        out["phases"].append(_phase("lvmref memmap (peer)", t_ours, t0, time.time(), before))
        before, t0 = _anon_kb(), time.time()
        A = np.load(args.path)  # into memory (counted in this phase)
        m = _ours(A, inits)
        m.fit(A)
        t_mem = [_time(lambda: m.fit(A)) for _ in range(args.repeats)]
        out["phases"].append(_phase("lvmref in memory", t_mem, t0, time.time(), before))
        out["bound_memory"] = m.lower_bound_
        del m
        sk = SkGM(K, covariance_type=COV, tol=0.0, max_iter=1, **inits).fit(A)
        before, t0 = _anon_kb(), time.time()
        t_sk = []
        for _ in range(args.repeats):  # scikit-learn's loop body: E-step then M-step
            t = time.perf_counter()
            _, log_resp = sk._e_step(A)
            sk._m_step(A, log_resp)
            t_sk.append(time.perf_counter() - t)
            del log_resp
        out["phases"].append(_phase("scikit-learn", t_sk, t0, time.time(), before))
    print(json.dumps(out), flush=True)
    return 0


def _warm_up(path):
    """Compile the kernels in a worker (not timed)."""
    import numpy as np

    warnings.simplefilter("ignore")
    X = np.load(path, mmap_mode="r")
    _ours(X[:2000], _inits(X)).fit(X[:2000])


def _load_rows(path, a, b):
    import numpy as np

    return np.load(path, mmap_mode="r")[a:b]  # a view of the map: the worker reads pages


def _dask_child(args, X, inits):
    import dask
    import dask.array as da
    import numpy as np
    from distributed import Client, LocalCluster

    from lvmref.chunked import default_chunk_size

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=50)
    client = Client(cluster)
    client.run(_warm_up, args.path)  # every worker compiles (or loads Numba's cache) first
    n = X.shape[0]
    step = default_chunk_size(D, K)
    blocks = [da.from_delayed(dask.delayed(_load_rows)(args.path, a, min(a + step, n)),
                              shape=(min(a + step, n) - a, D), dtype=np.float64)
              for a in range(0, n, step)]
    Xd = da.concatenate(blocks)
    g = _ours(Xd, inits)
    g.fit(Xd)  # first iteration: workers compile / load Numba's cache
    before, t0 = _anon_kb(), time.time()
    times = [_time(lambda: g.fit(Xd)) for _ in range(args.repeats)]
    phase = _phase("lvmref LocalCluster", times, t0, time.time(), before)
    bound = g.lower_bound_
    client.close()
    cluster.close()
    return {"phases": [phase], "bound": bound, "blocks": len(blocks)}


if __name__ == "__main__":
    sys.exit(main())
