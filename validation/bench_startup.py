"""Start-up costs: ``import lvmref`` (cold), first ``VAE.fit`` / ``GaussianMixture.fit`` with
a cold and with a warm Numba cache, and ``import lvmref.vae`` / ``lvmref.gmm``.

Each measurement runs in a fresh interpreter (``subprocess``) so that nothing is
imported or compiled yet; cold-cache runs get an empty ``NUMBA_CACHE_DIR``, warm-cache
runs reuse the one the cold run filled. Medians of ``--repeats`` (>= 5) runs for the
imports and the warm fits, one run each for the cold fits (which compile for tens of
seconds). The target for ``import lvmref`` is <= 1 s.

    python validation/bench_startup.py [--repeats 5]

Ends with ``ratio: <import lvmref seconds / 1 s target>``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

PROBES = {
    "import lvmref": "import lvmref",
    "import lvmref.vae": "import lvmref.vae",
    "import lvmref.gmm": "import lvmref.gmm",
    "first VAE.fit (1 epoch)": (
        "from lvmref.datasets import load_digits_binarized\n"
        "from lvmref.vae import VAE\n"
        "x, _ = load_digits_binarized()\n"
        "VAE(64, 10, hidden=(200,)).fit(x, n_epochs=1, rng=0)"),
    "first GaussianMixture.fit": (
        "import numpy as np\n"
        "from lvmref.gmm import GaussianMixture\n"
        "X = np.random.default_rng(0).normal(size=(2000, 5))\n"
        "for ct in ('full', 'diag'):\n"
        "    GaussianMixture(4, covariance_type=ct, random_state=0).fit(X)"),
}


def timed(code, cache_dir):
    wrapper = ("import time, json\n_t0 = time.perf_counter()\n" + code +
               "\nprint(json.dumps(time.perf_counter() - _t0))")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", wrapper], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")
    import statistics

    cache = tempfile.mkdtemp(prefix="lvmref-startup-numba-")
    rows = []
    for name, code in PROBES.items():
        if name.startswith("first"):
            cold = timed(code, cache)  # empty cache for these kernels: compiles
            warm = statistics.median(timed(code, cache) for _ in range(args.repeats))
            rows.append((name, cold, warm))
        else:
            t = statistics.median(timed(code, cache) for _ in range(args.repeats))
            rows.append((name, t, None))
    print(f"start-up, fresh interpreter each, python {sys.version.split()[0]}; "
          f"cold = empty Numba cache, warm = median of {args.repeats} with the cache filled")
    print(f"{'what':<30}{'cold s':>9}{'warm s':>9}")
    for name, a, b in rows:
        print(f"{name:<30}{a:>9.3f}{'' if b is None else f'{b:9.3f}':>9}")
    imp = rows[0][1]
    print(f"ratio: {imp / 1.0:.3f} (import lvmref / 1 s target)")
    return 0 if imp <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
