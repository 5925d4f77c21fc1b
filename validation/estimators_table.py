"""Estimator table on an enumerable sigmoid belief net, plus enumeration/kernel timings.

Model: K = 12 binary latents with a factorised Bernoulli prior, D = 20 binary pixels with
a linear-sigmoid decoder (logits = z @ W + b), random weights; data rows drawn from the
model. Proposal q(z|x): the product of the exact posterior marginals (a mean-field
moment match, computed by enumeration), so it is good but not exact.

Prints, per data row, exact log p(x) next to naive Monte Carlo, importance sampling, the
ELBO and the importance-weighted bounds L_k (k = 1, 5, 50, 500), each with its standard
error and run time (median of 5 repeats, JIT compile reported separately). Exits 1 if an
ordering that must hold is violated beyond Z = 4 standard errors:

* ELBO estimate within Z se of the exact ELBO = log p(x) - KL(q || p(z|x));
* L_1 within Z se of the exact ELBO; every L_k <= log p(x) + Z se;
* L_k <= L_m + Z sqrt(se_k^2 + se_m^2) for k < m;
* exp(IS), exp(naive MC) within Z se(p_hat) of p(x) (they are unbiased for p(x));
* exact enumeration equal to a one-shot scipy logsumexp over the full matrix (1e-12).

Then times the chunked exact enumeration against that one-shot NumPy/SciPy evaluation
(the "peer"), and the Numba streaming-merge kernel against its NumPy twin.

Usage: python validation/estimators_table.py
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.special import logsumexp as scipy_logsumexp  # noqa: E402

from lvmref import estimators as E  # noqa: E402
from lvmref.kernels import softplus  # noqa: E402
from lvmref.kernels.estimators import sbn_log_marginal_nb  # noqa: E402
from lvmref.kernels.lse import (  # noqa: E402
    lse_stream_init,
    lse_stream_update_nb,
    lse_stream_update_np,
)

Z = 4.0
REPEATS = 5


class SBN:
    """Single-layer sigmoid belief net with a factorised Bernoulli q (protocol model)."""

    latent_type = "binary"

    def __init__(self, K, D, seed):
        r = np.random.default_rng(seed)
        self.n_latent = K
        self.a = r.normal(size=K)
        self.W = 1.5 * r.normal(size=(K, D))
        self.b = r.normal(size=D)
        self.q_logits = None  # (n, K), set by fit_mean_field

    def log_prior(self, z):
        return z @ self.a - softplus(self.a).sum()

    def log_likelihood(self, x, z):
        lg = z @ self.W + self.b  # (m, k, D), m = 1 (shared z) or n
        lg_n = np.broadcast_to(lg, (x.shape[0],) + lg.shape[1:])
        return np.einsum("nd,nkd->nk", x, lg_n) - softplus(lg).sum(-1)

    def log_joint(self, x, z):
        return self.log_prior(z) + self.log_likelihood(x, z)

    def sample_prior(self, n, k, rng):
        return (rng.random((n, k, self.n_latent)) < 1 / (1 + np.exp(-self.a))).astype(float)

    def sample_data(self, n, rng):
        z = self.sample_prior(n, 1, rng)[:, 0]
        return (rng.random((n, self.W.shape[1])) < 1 / (1 + np.exp(-(z @ self.W + self.b))))\
            .astype(float)

    def fit_mean_field(self, x):
        post = E.exact_posterior(self, x)  # (n, 2**K)
        marg = np.clip(post @ E.enumerate_binary(self.n_latent), 1e-6, 1 - 1e-6)
        self.q_logits = np.log(marg) - np.log1p(-marg)

    def log_q(self, x, z):
        ql = self.q_logits
        return (z * ql[:, None, :]).sum(-1) - softplus(ql).sum(-1)[:, None]

    def sample_q(self, x, k, rng):
        p = 1 / (1 + np.exp(-self.q_logits))
        return (rng.random((x.shape[0], k, self.n_latent)) < p[:, None, :]).astype(float)


def timed(fn, *args, **kw):
    """(result of the first call, median seconds over REPEATS calls)."""
    out = fn(*args, **kw)
    ts = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn(*args, **kw)
        ts.append(time.perf_counter() - t0)
    return out, float(np.median(ts))


def main() -> int:
    failures = []
    t0 = time.perf_counter()
    m0, r0 = lse_stream_init(1)
    lse_stream_update_nb(m0, r0, np.zeros((1, 2)))  # compile (or load from cache)
    compile_s = time.perf_counter() - t0

    model = SBN(12, 20, seed=0)
    x = model.sample_data(3, np.random.default_rng(1))
    model.fit_mean_field(x)
    n = x.shape[0]

    log_px, t_exact = timed(E.exact_log_marginal, model, x)
    kl = E.exact_kl_to_posterior(model, x)
    elbo_exact = log_px - kl
    full = model.log_joint(x, E.enumerate_binary(12)[None])
    oneshot = scipy_logsumexp(full, axis=1)
    if np.max(np.abs(oneshot - log_px)) > 1e-12:
        failures.append(f"exact != one-shot scipy logsumexp: {oneshot - log_px}")

    S = 10_000
    rows = [("exact log p(x)", log_px, np.zeros(n), t_exact),
            ("exact ELBO = log p - KL", elbo_exact, np.zeros(n), float("nan"))]
    naive, t = timed(E.naive_mc_log_marginal, model, x, S, 2)
    rows.append((f"naive MC, S={S}", naive.value, naive.stderr, t))
    imp, t = timed(E.importance_log_marginal, model, x, S, 3)
    rows.append((f"IS (q), S={S}", imp.value, imp.stderr, t))
    el, t = timed(E.elbo, model, x, S, 4)
    rows.append((f"ELBO, S={S}", el.value, el.stderr, t))
    lks = {}
    for k in (1, 5, 50, 500):
        R = max(20, S // k)
        est, t = timed(E.iwae_bound, model, x, k, 10 + k, n_repeats=R)
        lks[k] = est
        rows.append((f"L_{k}, R={R} sets", est.value, est.stderr, t))

    print(f"Sigmoid belief net K=12, D=20; q = product of exact posterior marginals; "
          f"numba kernel compile/load {compile_s * 1e3:.0f} ms (excluded below)")
    print("KL(q || p(z|x)) per row: " + ", ".join(f"{v:.4f}" for v in kl))
    head = f"{'estimator':26s}" + "".join(f"{'row ' + str(i):>22s}" for i in range(n))
    print(head + f"{'time (ms)':>12s}")
    for name, v, se, t in rows:
        cells = "".join(f"{a:12.5f} ± {b:7.5f}" for a, b in zip(v, se))
        print(f"{name:26s}{cells}{t * 1e3:12.2f}")

    # orderings that must hold (within Z standard errors)
    def check(cond, msg):
        if not np.all(cond):
            failures.append(msg)

    check(np.abs(el.value - elbo_exact) <= Z * el.stderr, "ELBO estimate != exact ELBO")
    check(np.abs(lks[1].value - elbo_exact) <= Z * lks[1].stderr, "L_1 != exact ELBO")
    for k, est in lks.items():
        check(est.value <= log_px + Z * est.stderr, f"L_{k} > log p(x)")
    ks = sorted(lks)
    for i, k in enumerate(ks):
        for m in ks[i + 1:]:
            se = np.hypot(lks[k].stderr, lks[m].stderr)
            check(lks[k].value <= lks[m].value + Z * se, f"L_{k} > L_{m}")
    px = np.exp(log_px)
    for name, est in (("IS", imp), ("naive MC", naive)):
        p_hat = np.exp(est.value)
        check(np.abs(p_hat - px) <= Z * p_hat * est.stderr, f"{name} p_hat biased")
    gaps = np.array([log_px - lks[k].value for k in ks])
    print("gap log p(x) - L_k, k = " + ", ".join(map(str, ks)) + ":")
    for i in range(n):
        print(f"  row {i}: " + "  ".join(f"{g:.5f}" for g in gaps[:, i]))

    # -------- exact enumeration: chunked streaming vs one-shot full matrix (peer)
    big = SBN(14, 20, seed=5)
    xb = big.sample_data(20, np.random.default_rng(6))
    zb = E.enumerate_binary(14)[None]

    def peer():
        return scipy_logsumexp(big.log_joint(xb, zb), axis=1)

    ours_v, t_ours = timed(E.exact_log_marginal, big, xb)
    peer_v, t_peer = timed(peer)
    if np.max(np.abs(ours_v - peer_v)) > 1e-12:
        failures.append("K=14 enumeration mismatch vs one-shot")
    print("\nexact log p(x), K=14 (16384 configs), D=20, n=20; 1 thread; median of 5")
    print(f"  {'chunked streaming (ours)':34s}{t_ours * 1e3:10.2f} ms   "
          f"peak model intermediate ~{E._CHUNK_BUDGET * 8 / 2**20:.0f} MiB")
    print(f"  {'one-shot full matrix + scipy lse':34s}{t_peer * 1e3:10.2f} ms   "
          f"full intermediate {20 * 16384 * 20 * 8 / 2**20:.0f} MiB")
    print(f"  max |ours - peer| = {np.max(np.abs(ours_v - peer_v)):.2e}")
    print(f"ratio: {t_ours / t_peer:.3f}")

    # -------- streaming merge: numba kernel vs numpy twin
    a = np.random.default_rng(7).normal(scale=30.0, size=(100, 65536))
    m, r = lse_stream_init(100)
    _, t_nb = timed(lse_stream_update_nb, m, r, a)
    _, t_np = timed(lse_stream_update_np, m, r, a)
    print("\nstreaming log-sum-exp merge of a (100, 65536) chunk; 1 thread; median of 5")
    print(f"  numba kernel {t_nb * 1e3:8.2f} ms   numpy twin {t_np * 1e3:8.2f} ms")
    print(f"ratio: {t_nb / t_np:.3f}")

    # -------- fused Gray-code Numba enumeration vs chunked BLAS twin (sbn_exact_log_marginal)
    t0 = time.perf_counter()
    sbn_log_marginal_nb(np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)), np.zeros(1))
    print(f"\nsbn_exact_log_marginal: method='gray' (Numba, compile/load "
          f"{(time.perf_counter() - t0) * 1e3:.0f} ms, excluded) vs 'block' (NumPy/BLAS); "
          f"1 thread; median of 5")
    print(f"  {'K':>3s}{'D':>5s}{'n':>5s}{'gray ms':>10s}{'block ms':>10s}{'max|diff|':>11s}")
    ratios = []
    rg = np.random.default_rng(8)
    for K, D, nrow in [(14, 20, 1), (14, 20, 4), (14, 20, 64), (14, 100, 1), (14, 100, 16),
                       (12, 784, 1), (12, 784, 64)]:
        a_, W_, b_ = rg.normal(size=K), rg.normal(size=(K, D)), rg.normal(size=D)
        x_ = (rg.random((nrow, D)) < 0.5).astype(float)
        vg, tg = timed(E.sbn_exact_log_marginal, x_, a_, W_, b_, method="gray")
        vb, tb = timed(E.sbn_exact_log_marginal, x_, a_, W_, b_, method="block")
        diff = np.max(np.abs(vg - vb))
        if diff > 1e-13 * (1.0 + np.max(np.abs(vb))):
            failures.append(f"gray != block for K={K} D={D} n={nrow}: {diff:.2e}")
        ratios.append((K, D, nrow, tg / tb))
        print(f"  {K:3d}{D:5d}{nrow:5d}{tg * 1e3:10.2f}{tb * 1e3:10.2f}{diff:11.1e}")
    for K, D, nrow, rt in ratios:
        print(f"ratio: {rt:.3f}   (gray/block, K={K} D={D} n={nrow})")

    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nall orderings hold within their standard errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
