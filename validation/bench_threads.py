"""Benchmark: BLAS threads chosen by the library for ``VAE.fit`` vs OpenBLAS's default.

``VAE.fit`` runs under :func:`lvmref.vae_training.scoped_blas_threads`: for the small
products of a training step (at most ``BLAS_SMALL_WORK`` multiply-adds) it limits BLAS
to one thread for the duration of the call (threadpoolctl) and restores it afterwards.
This script times, in one process and interleaved repeat by repeat, the same fit (64-200-10
tanh VAE on the bundled binarized digits, batch 100, ``--epochs`` epochs, same seed):

* ``library``  ``VAE.fit`` as shipped (the scoped limit);
* ``default``  the same with the limit switched off (``BLAS_SMALL_WORK = 0``), i.e. BLAS
  with its default thread count (``--threads``, default the number of cores) -- what
  ``VAE.fit`` and ``lvmref vae`` did before.

It checks that the limit is scoped (BLAS's thread count is the same before and after a
fit, and 1 inside it) and that both runs give the same parameters up to rounding
(multi-threaded OpenBLAS may sum in another order; the largest difference relative to
the largest parameter must be <= 1e-9 after ``--epochs`` epochs), prints a table (median
of ``--repeats`` >= 5) and ends with ``ratio: <library/default>``. Numba compile time
is excluded (one warm-up fit first).

``--busy N`` starts N spinning Python processes for the duration of the timings (ended
by the script; each stops by itself after 10 minutes at the latest), to imitate the busy
shared machine on which the issue measured ``lvmref vae`` 8x slower with two BLAS threads.

    python validation/bench_threads.py [--epochs 3] [--repeats 5] [--threads 2] [--busy 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--epochs", type=int, default=3)
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--busy", type=int, default=0)
args = ap.parse_args()
if args.repeats < 5:
    ap.error("--repeats must be >= 5")
os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # BLAS's default for this process

import subprocess  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

import lvmref.vae_training as vt  # noqa: E402
from lvmref.datasets import load_digits_binarized  # noqa: E402
from lvmref.vae import VAE  # noqa: E402


def blas_threads_now():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def main() -> int:
    x, _ = load_digits_binarized()
    seen = {}
    original = vt.blas_threads

    def spy(*a, **k):
        n = original(*a, **k)
        seen.setdefault(vt.BLAS_SMALL_WORK > 0, n)
        return n

    def fit(limit):
        vt.BLAS_SMALL_WORK = (1 << 24) if limit else 0
        vae = VAE(64, 10, hidden=(200,))
        t0 = time.perf_counter()
        vae.fit(x, n_epochs=args.epochs, batch_size=100, rng=0)
        return time.perf_counter() - t0, vae.params_

    fit(True)  # Numba compile / cache load, excluded
    spin = "import time\nt = time.time()\nwhile time.time() - t < 600:\n    pass"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(args.busy)]
    try:
        return measure(fit, seen, original, spy)
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def measure(fit, seen, original, spy):
    before = blas_threads_now()
    vt.blas_threads = spy
    times = {"library": [], "default": []}
    params = {}
    for _ in range(args.repeats):
        for name in times:
            dt, params[name] = fit(name == "library")
            times[name].append(dt)
    vt.blas_threads = original
    after = blas_threads_now()
    scale = max(float(np.max(np.abs(v))) for v in params["library"].values())
    diff = max(float(np.max(np.abs(params["library"][k] - params["default"][k])))
               for k in params["library"]) / scale
    same = diff <= 1e-9
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"VAE.fit 64-200-10 on digits (1500 rows), batch 100, {args.epochs} epochs, "
          f"median of {args.repeats} (interleaved), {args.busy} busy processes; "
          f"BLAS default threads {before}, "
          f"library choice {seen.get(True)}, after the fits {after}")
    print(f"{'BLAS threads':<22}{'median s':>10}{'min s':>9}{'max s':>9}")
    for k, v in times.items():
        label = f"{k} ({seen.get(True) if k == 'library' else before[0]})"
        print(f"{label:<22}{med[k]:>10.3f}{min(v):>9.3f}{max(v):>9.3f}")
    paired = np.median(np.array(times["library"]) / np.array(times["default"]))
    print(f"max parameter difference / max |parameter|: {diff:.1e} (<= 1e-9: {same}); "
          f"limit restored: {before == after}; median paired ratio {paired:.3f}")
    print(f"ratio: {med['library'] / med['default']:.3f}")
    return 0 if (same and before == after) else 1


if __name__ == "__main__":
    sys.exit(main())
