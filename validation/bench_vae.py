"""Benchmark: one VAE training step (forward + backward + Adam): ours vs jax.jit vs PyTorch.

64-200-10 tanh VAE, Bernoulli decoder, analytic KL, one noise sample per row, float64,
batch 100 of the bundled binarized digits; every implementation gets the same initial
weights, the same minibatches and the same noise. Ours is
:class:`lvmref.vae_training.TrainingWorkspace` (what ``VAE.fit`` runs); the peers are
``validation/vae_jax_twin.py`` (the whole step including Adam under ``jax.jit``, float64)
and ``validation/vae_torch_twin.py`` with ``torch.optim.Adam``. Each peer is optional and
skipped when not installed (``pip install "jax[cpu]"``, ``pip install torch==2.13.0``).

Threads: NumPy/OpenBLAS, Numba, torch and XLA (``--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1``; XLA's CPU backend runs a jitted step on one thread
then) are pinned to ``--threads`` (default 1) before they are imported. Compile time (the
first step: Numba compile or cache load, XLA compilation) is measured separately and
excluded. Repeats alternate between the implementations so that machine load hits all
alike; the table shows medians over repeats, the median of the per-repeat paired ratios,
and the FLOP floor: the step's multiply-adds of the matrix products (forward, weight
gradients, input gradients) at the dgemm rate measured here on a 1000^3 product.

Equality in the same run: from the same start, ``--check-steps`` steps (default 200) of
ours and of each peer on the same batches and noise; the largest parameter difference
relative to the largest parameter is printed, and the script exits 1 if it exceeds 1e-9
(the agreement of one step is to rounding; 200 Adam steps amplify rounding differences
somewhat).

    python validation/bench_vae.py [--threads N] [--repeats R] [--steps S] [--parts]

With ``--parts``, also where our step's time goes, measured in the same process on the
workspace's own buffers and plans: each matrix product (time and GFLOP/s, against the
dgemm rate), each elementwise kernel (time and ns per element), the transposed copies, and
the remainder of the step (Python and call overhead). "Floor of the parts" is the step
with every product at the large-matrix dgemm rate, the kernels as measured and no
overhead: what this design (BLAS products + vectorized ~1 ulp elementwise kernels) can
reach at best on the machine.

The last lines are ``ratio: <ours/peer>`` (per-step time; < 1 means ours is faster).
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
parser.add_argument("--check-steps", type=int, default=200)
parser.add_argument("--parts", action="store_true",
                    help="also time each part of our step (matrix products, kernels)")
args = parser.parse_args()
if args.repeats < 5:
    parser.error("--repeats must be >= 5")
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(args.threads)
if args.threads == 1:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_multi_thread_eigen=false"
                               + " intra_op_parallelism_threads=1").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import torch
    from vae_torch_twin import TorchVAE
except ImportError:
    torch = None
try:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from vae_jax_twin import make_step
except ImportError:
    jax = None

from lvmref.datasets import load_digits_binarized  # noqa: E402
from lvmref.vae import VAE  # noqa: E402
from lvmref.vae_training import TrainingWorkspace  # noqa: E402

N_BATCHES = 15
BATCH = 100
RTOL_PARAMS = 1e-9


def gemm_macs(arch, nb):
    """Multiply-adds of the step's matrix products: forward, weight gradients, input
    gradients (none for the encoder's first layer)."""
    total = 0
    for net in (arch.encoder, arch.decoder):
        for i in range(net.n_layers):
            mac = nb * (net.sizes[i] + 1) * net.sizes[i + 1]
            total += 2 * mac + (mac if (i > 0 or net is arch.decoder) else 0)
    return total


def dgemm_rate():
    a = np.random.default_rng(0).standard_normal((1000, 1000))
    a @ a
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ a
        ts.append(time.perf_counter() - t0)
    return 1e9 / float(np.median(ts))  # multiply-adds per second


def _median_call(f, calls=200, repeats=9):
    """Median over ``repeats`` of the mean time of ``calls`` calls of f(), seconds."""
    for _ in range(20):
        f()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        ts.append((time.perf_counter() - t0) / calls)
    return float(np.median(ts))


def step_parts(ws, x, eps):
    """Time the parts of ``ws.step(x, eps)`` (a TrainingWorkspace after some steps) on its
    own buffers and plans; returns [(part, seconds, work, unit)], where work is the
    multiply-adds of a product or the elements of a kernel.

    Each part is timed alone, repeated on the same buffers. Parts that update their input
    get inputs that do not drift: the tanh kernel runs on a scratch copy of a
    pre-activation (repeated tanh shrinks it slowly), tanh' on h = 0 (so that delta keeps
    its values and never becomes subnormal; the kernel has no branches), Adam on copies
    of theta, m and v.
    """
    nb = x.shape[0]
    ws.step(x, eps)
    bufs = ws._bufs(nb)
    parts = []
    k, d = ws.arch.n_latent, ws.arch.n_features
    for net in ws.nets:
        _inp, _grd, fwd, bwd = bufs[net.prefix]
        for i, (blocks, out, act) in enumerate(fwd):
            for a, b, o in blocks:
                parts.append((f"{net.prefix} layer {i} forward {a.shape[0]}x{a.shape[1]} "
                              f"@ {b.shape[0]}x{b.shape[1]}",
                              _median_call(lambda a=a, b=b, o=o: np.matmul(a, b, out=o)),
                              a.shape[0] * a.shape[1] * b.shape[1], "gemm"))
            if act == "tanh":
                scratch = out.copy()
                parts.append((f"{net.prefix} layer {i} tanh",
                              _median_call(lambda s=scratch: ws._tanh(s)), out.size, "elem"))
        n_layers = len(bwd)
        for layer, (delta, h, act, delta_t, copy, wgrad, igrad) in enumerate(bwd):
            i = n_layers - 1 - layer
            if act == "tanh":
                h0 = np.zeros_like(h)
                parts.append((f"{net.prefix} layer {i} tanh'",
                              _median_call(lambda dl=delta, h0=h0: ws._tanh_backward(dl, h0)),
                              delta.size, "elem"))
            # the step copies delta on the small-matrix path only (the top layers' copies
            # are written by the Bernoulli / KL kernels)
            if layer and copy:
                parts.append((f"{net.prefix} layer {i} delta transposed copy",
                              _median_call(lambda dt=delta_t, dl=delta: np.copyto(dt, dl.T)),
                              delta.size, "elem"))
            for kind, blocks in (("weight grad", wgrad), ("input grad", igrad)):
                for a, b, o in blocks:
                    parts.append((f"{net.prefix} layer {i} {kind} {a.shape[0]}x{a.shape[1]} "
                                  f"@ {b.shape[0]}x{b.shape[1]}",
                                  _median_call(lambda a=a, b=b, o=o: np.matmul(a, b, out=o)),
                                  a.shape[0] * a.shape[1] * b.shape[1], "gemm"))
    enc, dec = ws.nets
    e_inp, e_grd, _f, e_bwd = bufs[enc.prefix]
    d_inp, d_grd, _f, d_bwd = bufs[dec.prefix]
    xt = e_inp[0][:d]
    out = e_inp[-1]
    parts.append(("x transposed copy", _median_call(lambda: np.copyto(xt, x.T)), x.size, "elem"))
    parts.append(("noise transposed copy",
                  _median_call(lambda: np.copyto(bufs["eps"], eps.T)), eps.size, "elem"))
    parts.append(("latent sample (exp, expm1)",
                  _median_call(lambda: ws._latent_sample(out[:k], out[k:], bufs["eps"], bufs["std"],
                                                         bufs["em1"], d_inp[0][:k])),
                  nb * k, "elem"))
    parts.append(("Bernoulli log-lik. and gradient",
                  _median_call(lambda: ws._bernoulli_grad(xt, d_inp[-1], 1.0 / nb, d_grd[-1],
                                                          d_bwd[0][3])),
                  xt.size, "elem"))
    g_enc = e_grd[-1]
    parts.append(("analytic KL and gradient",
                  _median_call(lambda: ws._kl_grad_analytic(
                      out[:k], out[k:], bufs["em1"], bufs["std"], bufs["eps"], d_grd[0], 1.0 / nb,
                      g_enc[:k], g_enc[k:], e_bwd[0][3])),
                  nb * k, "elem"))
    theta, m, v = ws.theta.copy(), ws.m.copy(), ws.v.copy()
    parts.append(("Adam update",
                  _median_call(lambda: ws._adam_update(theta, ws.grad, m, v, -1.0, 1e-3, 0.9,
                                                       0.999, 1e-8, 0.5, 0.5)),
                  theta.size, "elem"))
    return parts


def print_parts(parts, step_s, rate):
    """The table of :func:`step_parts`, the remainder and the floor of the parts."""
    print(f"\nwhere our step's time goes (each part timed alone, median; dgemm rate "
          f"{2 * rate / 1e9:.1f} GFLOP/s)")
    print(f"{'part':<52}{'us':>8}{'rate':>16}")
    for name, sec, work, unit in parts:
        rate_s = (f"{2 * work / sec / 1e9:.1f} GFLOP/s" if unit == "gemm"
                  else f"{sec / work * 1e9:.2f} ns/elt")
        print(f"{name:<52}{sec * 1e6:>8.1f}{rate_s:>16}")
    gemm = sum(sec for _, sec, _, u in parts if u == "gemm")
    elem = sum(sec for _, sec, _, u in parts if u == "elem")
    macs = sum(w for _, _, w, u in parts if u == "gemm")
    print(f"{'matrix products':<52}{gemm * 1e6:>8.1f}{2 * macs / gemm / 1e9:>9.1f} GFLOP/s")
    print(f"{'elementwise kernels and copies':<52}{elem * 1e6:>8.1f}")
    print(f"{'remainder (Python, call overhead)':<52}{(step_s - gemm - elem) * 1e6:>8.1f}")
    print(f"{'whole step (timed alone)':<52}{step_s * 1e6:>8.1f}")
    best = macs / rate + elem
    print(f"floor of the parts (products at the dgemm rate + kernels as measured): "
          f"{best * 1e3:.3f} ms; the step is {step_s / best:.2f}x that")
    return best


class Jax:
    def __init__(self, arch, params):
        self.fn = make_step(arch)
        self.p = {k: jnp.asarray(v) for k, v in params.items()}
        self.m = {k: jnp.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: jnp.zeros_like(v) for k, v in self.p.items()}
        self.t = 0

    def step(self, x, eps):
        self.t += 1
        self.p, self.m, self.v, val = self.fn(self.p, self.m, self.v, float(self.t), x, eps)
        return val

    def params(self):
        return {k: np.asarray(v) for k, v in self.p.items()}


class Torch:
    def __init__(self, vae, params):
        self.twin = TorchVAE(vae, params)
        self.opt = torch.optim.Adam(self.twin.parameters(), lr=1e-3)

    def step(self, x, eps):
        self.opt.zero_grad()
        loss = -self.twin.elbo(x, eps).mean()
        loss.backward()
        self.opt.step()
        return loss

    def params(self):
        return self.twin.state_as_params()


def main() -> int:
    x_train, _ = load_digits_binarized()
    vae = VAE(64, 10, hidden=(200,))
    rng = np.random.default_rng(0)
    params = vae.init_params(rng)
    batches = [x_train[rng.permutation(1500)[:BATCH]] for _ in range(N_BATCHES)]
    noise = [rng.standard_normal((BATCH, 10)) for _ in range(N_BATCHES)]

    peers = {}  # name -> (factory, batches, noise) in the peer's own array type
    if jax is not None:
        jb = [jnp.asarray(b) for b in batches]
        jn = [jnp.asarray(e) for e in noise]
        peers["jax.jit"] = (lambda: Jax(vae.arch, params), jb, jn)
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.set_default_dtype(torch.float64)
        tb = [torch.from_numpy(b) for b in batches]
        te = [torch.from_numpy(e[:, None, :]) for e in noise]
        peers["torch"] = (lambda: Torch(vae, params), tb, te)

    def ours_factory():
        # as VAE.fit runs it: the data were validated once, the noise is its own
        return TrainingWorkspace(vae.arch, params, BATCH, "analytic", 1e-3, check_inputs=False)

    impls = {"ours": (ours_factory, batches, noise), **peers}
    compile_ms, runners = {}, {}
    for name, (factory, xb, eb) in impls.items():
        t0 = time.perf_counter()
        factory().step(xb[0], eb[0])  # compile / cache load on a throw-away instance
        if name == "jax.jit":
            jax.block_until_ready(jax.numpy.zeros(1))
        compile_ms[name] = (time.perf_counter() - t0) * 1e3
        runners[name] = factory()

    # equality of the final parameters after --check-steps steps from the same start
    final = {}
    for name, (factory, xb, eb) in impls.items():
        obj = factory()
        for i in range(args.check_steps):
            obj.step(xb[i % N_BATCHES], eb[i % N_BATCHES])
        final[name] = obj.params() if name != "ours" else {k: v.copy()
                                                          for k, v in obj.params.items()}
    scale = max(float(np.max(np.abs(v))) for v in final["ours"].values())
    diffs = {name: max(float(np.max(np.abs(final[name][k] - final["ours"][k])))
                       for k in final["ours"]) / scale for name in peers}

    def run(name, steps):
        obj, xb, eb = runners[name], impls[name][1], impls[name][2]
        for i in range(steps):
            out = obj.step(xb[i % N_BATCHES], eb[i % N_BATCHES])
        if name == "jax.jit":
            out.block_until_ready()

    for name in impls:
        run(name, 30)  # warm-up (allocators, caches)
    times = {name: [] for name in impls}
    for _ in range(args.repeats):
        for name in impls:
            t0 = time.perf_counter()
            run(name, args.steps)
            times[name].append((time.perf_counter() - t0) / args.steps)
    med = {k: float(np.median(v)) for k, v in times.items()}
    rate = dgemm_rate()
    macs = gemm_macs(vae.arch, BATCH)
    floor = macs / rate

    print(f"VAE 64-200-10 tanh, Bernoulli, batch {BATCH}, float64, threads={args.threads}, "
          f"{args.repeats} repeats x {args.steps} steps (alternating)")
    vers = [f"numpy {np.__version__}"]
    if jax is not None:
        vers.append(f"jax {jax.__version__}")
    if torch is not None:
        vers.append(f"torch {torch.__version__}")
    print(", ".join(vers))
    print(f"FLOP floor: {2 * macs / 1e6:.1f} MFLOP of matrix products at the measured dgemm "
          f"rate {2 * rate / 1e9:.1f} GFLOP/s = {floor * 1e3:.3f} ms")
    print(f"{'implementation':<16}{'median ms/step':>16}{'min':>10}{'max':>10}"
          f"{'x floor':>9}{'compile ms':>12}{'param diff':>12}")
    for k, v in times.items():
        diff = "" if k == "ours" else f"{diffs[k]:.1e}"
        print(f"{k:<16}{med[k] * 1e3:>16.3f}{min(v) * 1e3:>10.3f}{max(v) * 1e3:>10.3f}"
              f"{med[k] / floor:>9.2f}{compile_ms[k]:>12.0f}{diff:>12}")
    print(f"(param diff: max |peer - ours| / max |ours| after {args.check_steps} steps from "
          f"the same start; must be <= {RTOL_PARAMS:g})")
    for name in peers:
        per_rep = np.array(times["ours"]) / np.array(times[name])
        print(f"per-repeat ratios ours/{name}: median {np.median(per_rep):.3f}, "
              f"range [{per_rep.min():.3f}, {per_rep.max():.3f}]; speed-up "
              f"{med[name] / med['ours']:.2f}x")
    if not peers:
        print("no peer installed (jax, torch): nothing to compare")
    for name in peers:
        print(f"ratio: {med['ours'] / med[name]:.3f} (ours/{name})")
    if args.parts:
        ws = ours_factory()
        for i in range(30):
            ws.step(batches[i % N_BATCHES], noise[i % N_BATCHES])
        step_s = _median_call(lambda: ws.step(batches[0], noise[0]))
        best = print_parts(step_parts(ws, batches[0], noise[0]), step_s, rate)
        for name in peers:
            print(f"{name} / floor of our parts: {med[name] / best:.2f}x")
    bad = [name for name, d in diffs.items() if not d <= RTOL_PARAMS]
    if bad:
        print(f"MISMATCH: final parameters differ from {bad} by more than {RTOL_PARAMS:g}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
