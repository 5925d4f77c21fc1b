"""Does validating every public entry point slow training? Before/after in one process.

Issue 15 (hardening) made the module-level functions of :mod:`lvmref.helmholtz` validate
their arguments; the training loops call unchecked private twins (``_sgd_update`` ...) so
that the checks run once per call of a public function, not once per update. This script
times the training loops of this tree ("ours") against those of a git revision ("peer",
default the merge base of ``HEAD`` and ``main``, i.e. the code before this branch) in
one process: the peer's ``lvmref`` and ``kernels`` are exported with
``git archive`` into a temporary package ``lvmref_base``.

Rows: ``HelmholtzMachine.fit`` wake-sleep on 4x4 bars (1-8-16, batch 1) with the Numba
engine (200k updates) and the NumPy engine (:func:`sgd_update`, 5k updates);
``VAE.fit`` on the bundled binarized digits, 5 epochs, with the fused reparameterised
step (``TrainingWorkspace``) and 1 epoch with the STL estimator (the module-level
gradient functions). Compile time is excluded: each implementation is run once first
(reported as "first call"). Repeats are interleaved, in alternating order (ours, peer,
peer, ours, ...); the table gives medians of ``--repeats`` (>= 5) runs. One thread for
BLAS and Numba.

    python validation/bench_entry_checks.py [--ref REV] [--repeats 5] [--only TEXT]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import importlib  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def export_base(ref: str, dest: Path) -> None:
    """``lvmref`` and ``kernels`` of ``ref`` as the package ``dest/lvmref_base``."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "lvmref", "kernels"],
                         check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    pkg = dest / "lvmref_base"
    shutil.move(str(dest / "lvmref"), pkg)
    shutil.move(str(dest / "kernels"), pkg / "kernels")
    for f in pkg.rglob("*.py"):
        text = f.read_text()
        new = re.sub(r"\b(from|import) lvmref\b", r"\1 lvmref_base", text)
        if new != text:
            f.write_text(new)


def workloads(pkg: str):
    H = importlib.import_module(f"{pkg}.helmholtz")
    V = importlib.import_module(f"{pkg}.vae")
    D = importlib.import_module(f"{pkg}.datasets")
    digits = D.load_digits_binarized()[0]

    def hm(engine, n_updates):
        def run():
            m = H.HelmholtzMachine((1, 8, 16), rng=0)
            m.fit(D.bars, method="wake-sleep", n_updates=n_updates, learning_rate=0.1,
                  recognition_learning_rate=0.1, engine=engine, rng=1)
            return m.params["prior"][0]
        return run

    def vae(n_epochs, **kw):
        def run():
            v = V.VAE(64, 2, (200,)).fit(digits, n_epochs=n_epochs, batch_size=100, lr=1e-3,
                                          rng=0, **kw)
            return v.params_["enc.b0"][0]
        return run

    return {"HelmholtzMachine.fit wake-sleep, numba, 200k updates": hm("numba", 200_000),
            "HelmholtzMachine.fit wake-sleep, numpy, 5k updates": hm("numpy", 5_000),
            "VAE.fit reparam (fused step), 5 epochs": vae(5),
            "VAE.fit stl (module functions), 1 epoch": vae(1, estimator="stl")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default=None,
                    help="git revision of the peer (default: the merge base of HEAD and main)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="", help="run the workloads whose name contains this")
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be >= 5 (medians of at least 5 runs)")
    if args.ref is None:
        args.ref = subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
                                  check=True, capture_output=True, text=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="lvmref-bench-"))
    try:
        export_base(args.ref, tmp)
        sys.path.insert(0, str(tmp))
        ours, peer = workloads("lvmref"), workloads("lvmref_base")
        print(f"ours: {ROOT} (working tree); peer: {args.ref} (git archive)")
        print(f"{'workload':55s} {'first ours':>10s} {'first peer':>10s} {'ours s':>8s} "
              f"{'peer s':>8s} {'ours/peer':>9s}")
        ratios = []
        for name in [w for w in ours if args.only in w]:
            first = []
            for fn in (ours[name], peer[name]):
                t = time.perf_counter()
                fn()
                first.append(time.perf_counter() - t)
            a, b = ours[name](), peer[name]()
            if a != b:  # same seeds, same mathematics: the same numbers
                raise SystemExit(f"{name}: ours and peer differ ({a!r} vs {b!r})")
            times = {"ours": [], "peer": []}
            for rep in range(args.repeats):
                pair = (("ours", ours[name]), ("peer", peer[name]))
                for who, fn in pair if rep % 2 == 0 else pair[::-1]:  # no order bias
                    t = time.perf_counter()
                    fn()
                    times[who].append(time.perf_counter() - t)
            mo, mp = np.median(times["ours"]), np.median(times["peer"])
            ratios.append(mo / mp)
            print(f"{name:55s} {first[0]:10.3f} {first[1]:10.3f} {mo:8.3f} {mp:8.3f} "
                  f"{mo / mp:9.3f}")
        print(f"(geometric mean over the {len(ratios)} workloads; largest "
              f"{max(ratios):.3f})")
        print(f"ratio: {float(np.exp(np.mean(np.log(ratios)))):.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
