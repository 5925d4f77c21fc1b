"""Benchmark: one VAE training step (forward + backward + Adam), ours vs a PyTorch twin.

64-200-10 tanh VAE, Bernoulli decoder, analytic KL, one noise sample per row, float64,
batch 100 of the bundled binarized digits; both sides get the same initial weights, the
same minibatches and the same noise. Our step is :class:`lvmref.vae_training.TrainingWorkspace`
(what ``VAE.fit`` runs); the twin is ``validation/vae_torch_twin.py`` with
``torch.optim.Adam``. NumPy/OpenBLAS, Numba and torch are pinned to the same thread
count (``--threads``, default 1) before they are imported. JIT compile time (or cache
load) of our Numba kernel is measured separately and excluded. Repeats alternate
between the two implementations so that machine load hits both alike; the table shows
medians over repeats, and the last line is ``ratio: <ours/peer>`` (per-step time; < 1
means ours is faster).

    python validation/bench_vae.py [--threads N] [--repeats R] [--steps S]

Exits 0 with a message when torch is not installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--repeats", type=int, default=9)
parser.add_argument("--steps", type=int, default=200)
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402

try:
    import torch
except ImportError:
    print("torch is not installed: skipping (pip install torch==2.13.0)")
    sys.exit(0)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vae_torch_twin import TorchVAE  # noqa: E402

from lvmref.datasets import load_digits_binarized  # noqa: E402
from lvmref.vae import VAE  # noqa: E402
from lvmref.vae_training import TrainingWorkspace  # noqa: E402


def main() -> int:
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)
    x_train, _ = load_digits_binarized()
    vae = VAE(64, 10, hidden=(200,))
    rng = np.random.default_rng(0)
    params = vae.init_params(rng)
    batches = [x_train[rng.permutation(1500)[:100]] for _ in range(15)]
    noise = [rng.standard_normal((100, 10)) for _ in range(15)]

    # JIT compile (or on-disk cache load) of our Numba kernels (Adam, fused tanh backward,
    # Bernoulli gradient): the first step on a throw-away workspace, excluded from timings.
    t0 = time.perf_counter()
    TrainingWorkspace(vae.arch, params, 100, "analytic", 1e-3).step(batches[0], noise[0])
    compile_s = time.perf_counter() - t0

    ws = TrainingWorkspace(vae.arch, params, 100, "analytic", 1e-3)
    twin = TorchVAE(vae, params)
    opt = torch.optim.Adam(twin.parameters(), lr=1e-3)
    tb = [torch.from_numpy(b) for b in batches]
    te = [torch.from_numpy(e[:, None, :]) for e in noise]

    def ours(steps):
        for i in range(steps):
            ws.step(batches[i % 15], noise[i % 15])

    def peer(steps):
        for i in range(steps):
            opt.zero_grad()
            loss = -twin.elbo(tb[i % 15], te[i % 15]).mean()
            loss.backward()
            opt.step()

    ours(30)
    peer(30)  # warm-up (allocator, caches)
    times = {"ours": [], "torch": []}
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("torch", peer)):
            t0 = time.perf_counter()
            fn(args.steps)
            times[name].append((time.perf_counter() - t0) / args.steps)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"VAE 64-200-10 tanh, Bernoulli, batch 100, float64, threads={args.threads}, "
          f"{args.repeats} repeats x {args.steps} steps (alternating)")
    print(f"first step incl. numba compile/cache load (excluded): {compile_s * 1e3:.1f} ms")
    print(f"torch {torch.__version__}, numpy {np.__version__}")
    print(f"{'implementation':<16}{'median ms/step':>16}{'min':>10}{'max':>10}")
    for k, v in times.items():
        print(f"{k:<16}{med[k] * 1e3:>16.3f}{min(v) * 1e3:>10.3f}{max(v) * 1e3:>10.3f}")
    per_rep = np.array(times["ours"]) / np.array(times["torch"])
    print(f"per-repeat ratios ours/torch: median {np.median(per_rep):.3f}, "
          f"range [{per_rep.min():.3f}, {per_rep.max():.3f}]")
    print(f"speed-up (torch/ours): {med['torch'] / med['ours']:.2f}x")
    print(f"ratio: {med['ours'] / med['torch']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
