"""Estimators against brute force, exact identities, exact expectations and z-bounds.

Reference models are built here (kept minimal, independent of lvmref's models):
``TinySBN`` (factorised Bernoulli prior, linear-sigmoid decoder, factorised Bernoulli q
with free logits per data row), ``PosteriorQ`` (the same model with q = the exact
posterior, from a brute-force table) and ``BernoulliMixture`` (categorical latent).
Brute-force references use ``itertools.product`` and scalar ``math`` only.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.special as sps
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lvmref import estimators as E
from lvmref.kernels.estimators import sbn_log_marginal_nb, sbn_log_marginal_np

EPS = np.finfo(np.float64).eps


# ----------------------------------------------------------------- reference models


def _softplus(a):
    return np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a)))


def _log_sigmoid_scalar(v: float) -> float:
    return -math.log1p(math.exp(-v)) if v >= 0 else v - math.log1p(math.exp(v))


class TinySBN:
    """p(z) = prod Bern(z_k | sig(a_k)), p(x|z) = prod Bern(x_d | sig((z W + b)_d)),
    q(z|x_i) = prod Bern(z_k | sig(ql[i, k])) with free logits per row i."""

    latent_type = "binary"

    def __init__(self, K, D, n, seed, scale=1.0, q_scale=1.0):
        r = np.random.default_rng(seed)
        self.n_latent = K
        self.a = scale * r.normal(size=K)
        self.W = scale * r.normal(size=(K, D))
        self.b = scale * r.normal(size=D)
        self.ql = q_scale * r.normal(size=(n, K))

    def log_prior(self, z):
        return (z * self.a).sum(-1) - _softplus(self.a).sum()

    def log_joint(self, x, z):
        lg = z @ self.W + self.b
        return self.log_prior(z) + (x[:, None, :] * lg - _softplus(lg)).sum(-1)

    def log_q(self, x, z):
        return (z * self.ql[:, None, :]).sum(-1) - _softplus(self.ql).sum(-1)[:, None]

    def sample_prior(self, n, k, rng):
        p = 1.0 / (1.0 + np.exp(-self.a))
        return (rng.random((n, k, self.n_latent)) < p).astype(float)

    def sample_q(self, x, k, rng):
        p = 1.0 / (1.0 + np.exp(-self.ql))
        return (rng.random((x.shape[0], k, self.n_latent)) < p[:, None, :]).astype(float)

    # scalar brute force, independent of the vectorised methods above
    def brute_log_joint(self, xi, zt):
        lp = sum(_log_sigmoid_scalar(a) if zk else _log_sigmoid_scalar(-a)
                 for zk, a in zip(zt, self.a))
        for d in range(self.W.shape[1]):
            lg = self.b[d] + sum(zt[k] * self.W[k, d] for k in range(len(zt)))
            lp += _log_sigmoid_scalar(lg) if xi[d] else _log_sigmoid_scalar(-lg)
        return lp

    def brute_log_q(self, i, zt):
        return sum(_log_sigmoid_scalar(v) if zk else _log_sigmoid_scalar(-v)
                   for zk, v in zip(zt, self.ql[i]))


class LikelihoodSBN:
    """TinySBN exposing log_likelihood but no log_prior (the other naive-MC path)."""

    latent_type = "binary"

    def __init__(self, *args, **kw):
        self.m = TinySBN(*args, **kw)
        self.n_latent = self.m.n_latent
        self.sample_prior = self.m.sample_prior
        self.brute_log_joint = self.m.brute_log_joint

    def log_likelihood(self, x, z):
        lg = z @ self.m.W + self.m.b
        return (x[:, None, :] * lg - _softplus(lg)).sum(-1)

    def log_joint(self, x, z):
        return self.m.log_prior(z) + self.log_likelihood(x, z)


def _bits_to_index(z):
    K = z.shape[-1]
    return (z.astype(np.int64) * (1 << np.arange(K - 1, -1, -1))).sum(-1)


class PosteriorQ(TinySBN):
    """TinySBN with q(z|x) = p(z|x) exactly (brute-force table for the given x)."""

    def __init__(self, K, D, x, seed):
        super().__init__(K, D, x.shape[0], seed)
        configs = list(itertools.product((0, 1), repeat=K))
        lj = np.array([[self.brute_log_joint(xi, zt) for zt in configs] for xi in x])
        m = lj.max(1, keepdims=True)
        self.table = lj - (m + np.log(np.exp(lj - m).sum(1, keepdims=True)))
        self.configs = np.array(configs, dtype=float)

    def log_q(self, x, z):
        idx = _bits_to_index(z)
        rows = np.arange(x.shape[0])[:, None]
        return self.table[rows, np.broadcast_to(idx, (x.shape[0], z.shape[1]))]

    def sample_q(self, x, k, rng):
        cdf = np.cumsum(np.exp(self.table), axis=1)
        u = rng.random((x.shape[0], k))
        idx = np.minimum((u[:, :, None] > cdf[:, None, :]).sum(-1), cdf.shape[1] - 1)
        return self.configs[idx]


class BernoulliMixture:
    """z ~ Cat(pi), x | z=c ~ prod Bern(sig(L[c])); q(z|x_i) = softmax(ql[i])."""

    latent_type = "categorical"
    n_latent = 1

    def __init__(self, C, D, n, seed):
        r = np.random.default_rng(seed)
        self.n_categories = C
        lpi = r.normal(size=C)
        self.log_pi = lpi - np.log(np.exp(lpi).sum())
        self.L = 2.0 * r.normal(size=(C, D))
        ql = r.normal(size=(n, C))
        self.log_qt = ql - np.log(np.exp(ql).sum(1, keepdims=True))

    def log_joint(self, x, z):
        c = z[..., 0].astype(np.int64)  # (m, k)
        lg = self.L[c]  # (m, k, D)
        return self.log_pi[c] + (x[:, None, :] * lg - _softplus(lg)).sum(-1)

    def log_prior(self, z):
        return self.log_pi[z[..., 0].astype(np.int64)]

    def log_q(self, x, z):
        c = np.broadcast_to(z[..., 0].astype(np.int64), (x.shape[0], z.shape[1]))
        return np.take_along_axis(self.log_qt, c, axis=1)

    def sample_prior(self, n, k, rng):
        return rng.choice(self.n_categories, size=(n, k, 1), p=np.exp(self.log_pi)).astype(float)

    def sample_q(self, x, k, rng):
        out = np.empty((x.shape[0], k, 1))
        for i in range(x.shape[0]):
            out[i, :, 0] = rng.choice(self.n_categories, size=k, p=np.exp(self.log_qt[i]))
        return out

    def brute_log_joint(self, xi, c):
        lp = self.log_pi[c]
        for d, v in enumerate(self.L[c]):
            lp += _log_sigmoid_scalar(v) if xi[d] else _log_sigmoid_scalar(-v)
        return lp


def _data(n, D, seed):
    return (np.random.default_rng(seed).random((n, D)) < 0.5).astype(float)


def _brute_lse(vals):
    m = max(vals)
    return m + math.log(math.fsum(math.exp(v - m) for v in vals))


def brute_log_marginal(model, x):
    if model.latent_type == "categorical":
        configs = range(model.n_categories)
    else:
        configs = list(itertools.product((0, 1), repeat=model.n_latent))
    return np.array([_brute_lse([model.brute_log_joint(xi, zt) for zt in configs]) for xi in x])


def brute_elbo_kl(model, x):
    """Exact ELBO and KL(q || p(z|x)) per row by brute force (TinySBN only)."""
    configs = list(itertools.product((0, 1), repeat=model.n_latent))
    elbos, kls = [], []
    for i, xi in enumerate(x):
        lj = [model.brute_log_joint(xi, zt) for zt in configs]
        lq = [model.brute_log_q(i, zt) for zt in configs]
        lpx = _brute_lse(lj)
        elbos.append(math.fsum(math.exp(b) * (a - b) for a, b in zip(lj, lq)))
        kls.append(math.fsum(math.exp(b) * (b - a + lpx) for a, b in zip(lj, lq)))
    return np.array(elbos), np.array(kls)


# ------------------------------------------------------------------- enumeration


@pytest.mark.parametrize("K", [1, 2, 3, 7])
def test_enumerate_binary_is_itertools_order(K):
    expect = np.array(list(itertools.product((0, 1), repeat=K)), dtype=float)
    got = E.enumerate_binary(K)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expect)


def test_enumerate_binary_bad_K():
    for bad, err in [(0, ValueError), (25, ValueError), (2.0, TypeError), (True, TypeError)]:
        with pytest.raises(err, match="K"):
            E.enumerate_binary(bad)


@pytest.mark.parametrize("K,D,seed", [(1, 3, 0), (5, 4, 1), (10, 6, 2)])
def test_exact_log_marginal_equals_brute_force(K, D, seed):
    x = _data(3, D, seed + 10)
    model = TinySBN(K, D, 3, seed)
    ref = brute_log_marginal(model, x)
    for cs in (1, 7, None, 10**6):
        got = E.exact_log_marginal(model, x, chunk_size=cs)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_exact_log_marginal_categorical_equals_brute_force():
    x = _data(5, 7, 3)
    model = BernoulliMixture(6, 7, 5, 4)
    ref = brute_log_marginal(model, x)
    for cs in (1, 4, None):
        np.testing.assert_allclose(E.exact_log_marginal(model, x, chunk_size=cs), ref,
                                   rtol=0, atol=1e-12)


def test_exact_log_marginal_large_logits_no_overflow():
    # |logits| ~ 1e3: p(x) underflows to 0 in linear space but log p(x) is finite
    x = _data(2, 5, 5)
    model = TinySBN(4, 5, 2, 6, scale=1000.0)
    ref = brute_log_marginal(model, x)
    with np.errstate(under="ignore"):
        assert np.any(np.exp(ref) == 0.0)  # the regime this test is about
    got = E.exact_log_marginal(model, x, chunk_size=3)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0)


def test_exact_posterior_equals_brute_force():
    x = _data(3, 5, 7)
    model = TinySBN(6, 5, 3, 8)
    configs = list(itertools.product((0, 1), repeat=6))
    lj = np.array([[model.brute_log_joint(xi, zt) for zt in configs] for xi in x])
    ref = np.exp(lj - brute_log_marginal(model, x)[:, None])
    post = E.exact_posterior(model, x, chunk_size=5)
    np.testing.assert_allclose(post, ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(E.exact_posterior(model, x, log=True), np.log(ref),
                               rtol=0, atol=1e-12)
    cat = BernoulliMixture(4, 5, 3, 9)
    lj_c = np.array([[cat.brute_log_joint(xi, c) for c in range(4)] for xi in x])
    ref_c = np.exp(lj_c - brute_log_marginal(cat, x)[:, None])
    np.testing.assert_allclose(E.exact_posterior(cat, x), ref_c, rtol=1e-12, atol=0)


@pytest.mark.parametrize("K,q_scale,seed", [(3, 1.0, 0), (8, 2.0, 1), (12, 0.5, 2)])
def test_log_marginal_is_elbo_plus_kl(K, q_scale, seed):
    D = 6 if K < 12 else 4
    x = _data(2, D, seed + 20)
    model = TinySBN(K, D, 2, seed, q_scale=q_scale)
    elbo_ref, kl_ref = brute_elbo_kl(model, x)
    kl = E.exact_kl_to_posterior(model, x, chunk_size=37)
    np.testing.assert_allclose(kl, kl_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(E.exact_log_marginal(model, x), elbo_ref + kl, rtol=0, atol=1e-12)
    assert np.all(kl > 0)


def test_kl_categorical_against_direct_sum():
    x = _data(3, 5, 11)
    model = BernoulliMixture(5, 5, 3, 12)
    lpx = brute_log_marginal(model, x)
    ref = []
    for i, xi in enumerate(x):
        ref.append(math.fsum(
            math.exp(model.log_qt[i, c]) * (model.log_qt[i, c] - model.brute_log_joint(xi, c)
                                            + lpx[i]) for c in range(5)))
    np.testing.assert_allclose(E.exact_kl_to_posterior(model, x), ref, rtol=0, atol=1e-12)


@given(st.integers(1, 6), st.floats(0.1, 3.0), st.integers(0, 2**16))
def test_elbo_plus_kl_identity_random_models(K, q_scale, seed):
    """eq. (4) for random models and q: log p(x) = ELBO(q) + KL, hence ELBO <= log p(x)."""
    x = _data(2, 3, seed + 1)
    model = TinySBN(K, 3, 2, seed, q_scale=q_scale)
    elbo_ref, _ = brute_elbo_kl(model, x)
    lpx = E.exact_log_marginal(model, x, chunk_size=3)
    kl = E.exact_kl_to_posterior(model, x, chunk_size=5)
    np.testing.assert_allclose(lpx, elbo_ref + kl, rtol=0, atol=1e-12)
    assert np.all(kl >= -1e-12)


def test_exact_k20_factorised_model_closed_form():
    """K = 20 (2**20 configs, many chunks): a model where latent k drives only pixel k has
    p(x) = prod_k sum_{z_k} p(z_k) p(x_k | z_k), a closed form independent of enumeration."""
    K = 20
    model = TinySBN(K, K, 2, 80)
    model.W = np.diag(np.random.default_rng(81).normal(scale=2.0, size=K))
    x = _data(2, K, 82)
    ref = np.zeros(2)
    for i in range(2):
        for k in range(K):
            terms = []
            for zk in (0, 1):
                lp = _log_sigmoid_scalar(model.a[k]) if zk else _log_sigmoid_scalar(-model.a[k])
                lg = model.b[k] + zk * model.W[k, k]
                lp += _log_sigmoid_scalar(lg) if x[i, k] else _log_sigmoid_scalar(-lg)
                terms.append(lp)
            ref[i] += _brute_lse(terms)
    got = E.exact_log_marginal(model, x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_default_chunk_size_bounds_memory():
    """Default chunks keep n * c * max(D, K) <= 2**22 entries (documented budget)."""
    seen = []

    class Recording(TinySBN):
        def log_joint(self, x, z):
            seen.append(z.shape)
            return super().log_joint(x, z)

    n, D, K = 64, 300, 12
    model = Recording(K, D, n, 83)
    x = _data(n, D, 84)
    E.exact_log_marginal(model, x)
    assert all(s[0] == 1 and s[2] == K for s in seen)
    assert sum(s[1] for s in seen) == 2**K
    assert max(s[1] for s in seen) * n * D <= 2**22
    assert len(seen) > 1  # this size does need chunking


class _ZeroWhereFirstBit(TinySBN):
    """p(x, z) = 0 whenever z_0 = 1 (log_joint = -inf there)."""

    def log_joint(self, x, z):
        out = super().log_joint(x, z)
        return np.where(np.broadcast_to(z[..., 0], out.shape) == 1, -np.inf, out)


def test_zero_probability_configurations():
    x = _data(2, 4, 85)
    model = _ZeroWhereFirstBit(4, 4, 2, 86)
    configs = [zt for zt in itertools.product((0, 1), repeat=4) if zt[0] == 0]
    ref = np.array([_brute_lse([model.brute_log_joint(xi, zt) for zt in configs])
                    for xi in x])
    np.testing.assert_allclose(E.exact_log_marginal(model, x, chunk_size=3), ref,
                               rtol=0, atol=1e-12)
    post = E.exact_posterior(model, x)
    assert np.all(post[:, 8:] == 0.0)
    # q puts mass on z_0 = 1 where the posterior has none: KL = +inf
    assert np.all(E.exact_kl_to_posterior(model, x) == np.inf)

    class AllZero(TinySBN):
        def log_joint(self, x, z):
            return np.full((x.shape[0], z.shape[1]), -np.inf)

    dead = AllZero(3, 4, 2, 0)
    assert np.all(E.exact_log_marginal(dead, x) == -np.inf)
    with pytest.raises(ValueError, match="p\\(x\\) = 0"):
        E.exact_posterior(dead, x)
    with pytest.raises(ValueError, match="p\\(x\\) = 0"):
        E.exact_kl_to_posterior(dead, x)


def test_posterior_proposal_is_exact():
    """q = p(z|x): KL = 0, ELBO = log p(x), every importance weight equals p(x)."""
    x = _data(3, 5, 13)
    model = PosteriorQ(5, 5, x, 14)
    lpx = brute_log_marginal(model, x)
    np.testing.assert_allclose(E.exact_kl_to_posterior(model, x), 0.0, rtol=0, atol=1e-12)
    is_est = E.importance_log_marginal(model, x, 200, 15)
    np.testing.assert_allclose(is_est.log_weights, np.broadcast_to(lpx[:, None], (3, 200)),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(is_est.value, lpx, rtol=0, atol=1e-12)
    assert np.all(is_est.stderr <= 1e-12)  # zero variance up to round-off
    el = E.elbo(model, x, 200, 16)
    np.testing.assert_allclose(el.value, lpx, rtol=0, atol=1e-12)
    lk = E.iwae_bound(model, x, 7, 17, n_repeats=3)
    np.testing.assert_allclose(lk.value, lpx, rtol=0, atol=1e-12)
    # naive MC on the same model has clearly non-zero variance (its proposal is p(z))
    naive = E.naive_mc_log_marginal(model, x, 200, 18)
    assert np.all(naive.stderr > 1e3 * np.maximum(is_est.stderr, EPS))


# ------------------------------------------------------- exact sample-set inequality


_log_w = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 4), st.integers(1, 12)),
    elements=st.floats(-700, 700, allow_nan=False, allow_infinity=False),
)


@given(_log_w, st.data())
def test_mean_log_w_below_log_mean_w(log_w, data):
    """Jensen on each fixed sample set, eq. (11): exact up to round-off of the reductions.

    Round-off allowance: both sides are reductions of S terms of size <= max|log w|;
    their floating-point error is below (S + 4) eps (1 + max|log w|)."""
    el = E.elbo_from_log_weights(log_w)
    lm = E.log_marginal_from_log_weights(log_w)
    s = log_w.shape[1]
    tol = (s + 4) * EPS * (1.0 + np.abs(log_w).max())
    assert np.all(el.value <= lm.value + tol)
    # the IWAE estimate (mean over sets of log-mean-exp) lies between the two
    k = data.draw(st.sampled_from([d for d in range(1, s + 1) if s % d == 0]))
    lk = E.iwae_from_log_weights(log_w, k)
    assert np.all(el.value <= lk.value + tol)
    assert np.all(lk.value <= lm.value + tol)


@given(_log_w)
def test_log_weight_reductions_against_direct_formulas(log_w):
    n, s = log_w.shape
    lm = E.log_marginal_from_log_weights(log_w)
    el = E.elbo_from_log_weights(log_w)
    for i in range(n):
        ref = _brute_lse(list(log_w[i])) - math.log(s)
        assert abs(lm.value[i] - ref) <= 4 * s * EPS * (1 + abs(ref))
        assert abs(el.value[i] - math.fsum(log_w[i]) / s) <= 4 * s * EPS * (
            1 + np.abs(log_w[i]).max())
        if s == 1:
            assert np.isnan(lm.stderr[i]) and np.isnan(el.stderr[i])
        else:
            # eq. (7) against the textbook se of the mean of w / p_hat computed with fsum
            rho = [math.exp(v - ref) for v in log_w[i]]
            rbar = math.fsum(rho) / s
            sd = math.sqrt(math.fsum((r - rbar) ** 2 for r in rho) / (s - 1))
            assert abs(lm.stderr[i] - sd / math.sqrt(s)) <= 1e-9 * (1 + sd)


def test_log_weight_special_values():
    lw = np.array([[-np.inf, -np.inf], [0.0, -np.inf]])
    lm = E.log_marginal_from_log_weights(lw)
    assert lm.value[0] == -np.inf and np.isnan(lm.stderr[0])
    assert lm.value[1] == pytest.approx(np.log(0.5), abs=1e-15)
    # weights (1, 0)/0.5 = (2, 0): sd = sqrt(2), se = sqrt(2)/sqrt(2) = 1
    assert lm.stderr[1] == pytest.approx(1.0, abs=1e-15)
    el = E.elbo_from_log_weights(lw)
    assert np.all(el.value == -np.inf) and np.all(np.isnan(el.stderr))


# -------------------------------------------------------- expectations, exactly


def _exact_Lk(model, x, k):
    """E_q[log mean_i w_i] over all k-tuples, by summing over multinomial counts."""
    K = model.n_latent
    configs = np.array(list(itertools.product((0, 1), repeat=K)), dtype=float)
    m = len(configs)
    lw = model.log_joint(x, configs[None]) - model.log_q(x, configs[None])  # (n, m)
    lq = model.log_q(x, configs[None])
    out = np.zeros(x.shape[0])
    for counts in itertools.product(range(k + 1), repeat=m - 1):
        if sum(counts) > k:
            continue
        c = np.array(counts + (k - sum(counts),))
        log_coef = math.lgamma(k + 1) - sum(math.lgamma(ci + 1) for ci in c)
        nz = c > 0
        log_prob = log_coef + (c[nz] * lq[:, nz]).sum(1)
        inner = lw[:, nz] + np.log(c[nz])
        mx = inner.max(1, keepdims=True)
        val = (mx[:, 0] + np.log(np.exp(inner - mx).sum(1))) - math.log(k)
        out += np.exp(log_prob) * val
    return out


def test_iwae_chain_exact_expectation():
    """ELBO = L_1 <= L_2 <= ... <= log p(x) and the gap shrinks, by exact expectation."""
    x = _data(3, 4, 30)
    model = TinySBN(2, 4, 3, 31, q_scale=1.5)
    lpx = brute_log_marginal(model, x)
    elbo_ref, _ = brute_elbo_kl(model, x)
    ks = [1, 2, 3, 5, 10, 20, 40]
    Lk = np.array([_exact_Lk(model, x, k) for k in ks])
    np.testing.assert_allclose(Lk[0], elbo_ref, rtol=0, atol=1e-12)
    tol = 1e-12
    assert np.all(np.diff(Lk, axis=0) >= -tol)
    assert np.all(Lk <= lpx + tol)
    gaps = lpx - Lk
    assert np.all(gaps[:-1] > gaps[1:])  # strictly shrinking (weights are not constant)
    # L_k -> log p(x): k * gap -> Var_q(w / p) / 2 (second-order expansion of log)
    configs = E.enumerate_binary(2)[None]
    lw = model.log_joint(x, configs) - model.log_q(x, configs)
    q = np.exp(model.log_q(x, configs))
    var_rel = (q * (np.exp(lw - lpx[:, None]) - 1.0) ** 2).sum(1)
    err = np.abs(np.array(ks)[:, None] * gaps - var_rel / 2)
    assert np.all(err[-1] < err[2])  # the expansion error decays with k
    assert np.all(err[-1] < 0.2 * var_rel)


def test_iwae_uniform_q_all_tuples_is_exact_Lk():
    """With uniform q every k-tuple is equally likely: iwae_bound over all tuples = L_k."""
    x = _data(2, 4, 32)
    model = TinySBN(2, 4, 2, 33)
    model.ql = np.zeros_like(model.ql)
    configs = E.enumerate_binary(2)
    for k in (1, 2, 3):
        tuples = np.array(list(itertools.product(range(4), repeat=k)))  # (4**k, k)
        z = configs[tuples.reshape(-1)][None]  # (1, 4**k * k, 2), set r = tuple r
        est = E.iwae_bound(model, x, k, z=z)
        np.testing.assert_allclose(est.value, _exact_Lk(model, x, k), rtol=0, atol=1e-12)
        assert est.n_draws == 4**k * k


# ------------------------------------------------- Monte Carlo with z-bounds

Z = 4.0  # two-sided z-bound; per-row checks with fixed seeds


def _log_w(model, x, z, proposal):
    """Log weights of the given samples from the test's own model methods: log p(x, z) -
    log q(z | x) (proposal q), or log p(x | z) (proposal = the prior)."""
    if proposal == "q":
        return model.log_joint(x, z) - model.log_q(x, z)
    if hasattr(model, "log_likelihood"):
        return model.log_likelihood(x, z)
    return model.log_joint(x, z) - model.log_prior(z)


def _check_p_hat(est, lw, px):
    """p_hat = mean w within Z standard errors of p(x), the standard error sd(w)/sqrt(k)
    computed here from the weights (not est.stderr); then ours reproduces both, eq. (7):
    value = log p_hat, stderr = se / p_hat (each a k-term sum: ~1e-12 relative)."""
    k = lw.shape[1]
    w = np.exp(lw)
    p_hat, se = w.mean(axis=1), w.std(axis=1, ddof=1) / np.sqrt(k)
    assert np.all(se > 0)
    assert np.all(np.abs(p_hat - px) <= Z * se)
    np.testing.assert_allclose(est.value, np.log(p_hat), rtol=1e-12)
    np.testing.assert_allclose(est.stderr, se / p_hat, rtol=1e-9)


def test_importance_and_naive_mc_unbiased_for_px():
    x = _data(4, 5, 40)
    model = TinySBN(5, 5, 4, 41, q_scale=0.7)
    px = np.exp(brute_log_marginal(model, x))
    z = model.sample_q(x, 20000, np.random.default_rng(42))
    _check_p_hat(E.importance_log_marginal(model, x, z=z), _log_w(model, x, z, "q"), px)
    z = model.sample_prior(4, 20000, np.random.default_rng(43))
    _check_p_hat(E.naive_mc_log_marginal(model, x, z=z), _log_w(model, x, z, "prior"), px)


def test_naive_mc_likelihood_path_unbiased():
    x = _data(3, 4, 44)
    model = LikelihoodSBN(4, 4, 3, 45)
    assert not hasattr(model, "log_prior")
    px = np.exp(brute_log_marginal(model, x))
    z = model.sample_prior(3, 20000, np.random.default_rng(46))
    _check_p_hat(E.naive_mc_log_marginal(model, x, z=z), _log_w(model, x, z, "prior"), px)
    cat = BernoulliMixture(5, 4, 3, 47)
    px_c = np.exp(brute_log_marginal(cat, x))
    z = cat.sample_prior(3, 20000, np.random.default_rng(48))
    _check_p_hat(E.naive_mc_log_marginal(cat, x, z=z), _log_w(cat, x, z, "prior"), px_c)
    z = cat.sample_q(x, 20000, np.random.default_rng(49))
    _check_p_hat(E.importance_log_marginal(cat, x, z=z), _log_w(cat, x, z, "q"), px_c)


def test_elbo_and_iwae_estimates_match_exact_expectations():
    """Means of i.i.d. terms (log w for the ELBO, per-set logmeanexp for L_k) within Z
    standard errors computed here from the terms; ours reproduces value and stderr."""
    x = _data(3, 4, 50)
    model = TinySBN(2, 4, 3, 51, q_scale=1.5)
    elbo_ref, _ = brute_elbo_kl(model, x)
    z = model.sample_q(x, 20000, np.random.default_rng(52))
    lw = _log_w(model, x, z, "q")
    el = E.elbo(model, x, z=z)
    mean, se = lw.mean(axis=1), lw.std(axis=1, ddof=1) / np.sqrt(lw.shape[1])
    assert np.all(np.abs(mean - elbo_ref) <= Z * se)
    np.testing.assert_allclose(el.value, mean, rtol=1e-12)
    np.testing.assert_allclose(el.stderr, se, rtol=1e-9)
    for k in (1, 5, 20):
        R = 2000
        z = model.sample_q(x, R * k, np.random.default_rng(53 + k))
        per_set = sps.logsumexp(_log_w(model, x, z, "q").reshape(3, R, k), axis=2) - np.log(k)
        lk = E.iwae_bound(model, x, k, z=z)
        mean, se = per_set.mean(axis=1), per_set.std(axis=1, ddof=1) / np.sqrt(R)
        assert np.all(np.abs(mean - _exact_Lk(model, x, k)) <= Z * se)
        np.testing.assert_allclose(lk.value, mean, rtol=1e-12)
        np.testing.assert_allclose(lk.stderr, se, rtol=1e-9)


def test_iwae_k1_equals_elbo_on_same_samples():
    x = _data(3, 5, 60)
    model = TinySBN(4, 5, 3, 61)
    z = model.sample_q(x, 50, np.random.default_rng(62))
    el = E.elbo(model, x, z=z)
    l1 = E.iwae_bound(model, x, 1, z=z)
    np.testing.assert_allclose(l1.value, el.value, rtol=0, atol=1e-13)
    np.testing.assert_allclose(l1.stderr, el.stderr, rtol=1e-12)
    assert l1.n_draws == 50


# ------------------------------------------------------------------ determinism


def test_same_samples_same_numbers_and_no_mutation():
    x = _data(3, 5, 70)
    model = TinySBN(4, 5, 3, 71)
    z = model.sample_q(x, 12, np.random.default_rng(72))
    x0, z0 = x.copy(), z.copy()
    for fn in (E.importance_log_marginal, E.elbo, E.naive_mc_log_marginal):
        a, b = fn(model, x, z=z), fn(model, x, 12, z=z)
        np.testing.assert_array_equal(a.value, b.value)
        np.testing.assert_array_equal(a.stderr, b.stderr)
    a = E.iwae_bound(model, x, 4, z=z)
    b = E.iwae_bound(model, x, 4, z=z, n_repeats=3)
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(z, z0)
    # importance_log_weights is the same function of the same samples
    np.testing.assert_array_equal(E.importance_log_weights(model, x, z),
                                  E.importance_log_marginal(model, x, z=z).log_weights)
    np.testing.assert_array_equal(E.prior_log_weights(model, x, z),
                                  E.naive_mc_log_marginal(model, x, z=z).log_weights)


def test_shared_samples_broadcast_over_rows():
    x = _data(3, 5, 73)
    model = TinySBN(4, 5, 3, 74)
    z1 = model.sample_prior(1, 9, np.random.default_rng(75))
    a = E.importance_log_marginal(model, x, z=z1)
    b = E.importance_log_marginal(model, x, z=np.repeat(z1, 3, axis=0))
    np.testing.assert_allclose(a.value, b.value, rtol=0, atol=1e-14)


def test_int_seed_reproducible():
    x = _data(2, 5, 76)
    model = TinySBN(4, 5, 2, 77)
    for fn, args in [(E.importance_log_marginal, (30,)), (E.elbo, (30,)),
                     (E.naive_mc_log_marginal, (30,)), (E.iwae_bound, (5,))]:
        a = fn(model, x, *args, 0)
        b = fn(model, x, *args, 0)
        c = fn(model, x, *args, np.random.default_rng(0))
        np.testing.assert_array_equal(a.value, b.value)
        np.testing.assert_array_equal(a.value, c.value)
    assert E.iwae_bound(model, x, 5, 0).n_draws == 5 * E.DEFAULT_IWAE_REPEATS


# ------------------------------------------------------------------ kernel twin







@pytest.mark.parametrize("K,D,n,scale", [(1, 3, 2, 1.0), (2, 4, 3, 1.0), (4, 5, 3, 2.0),
                                         (5, 4, 1, 1.0), (9, 6, 4, 1.0), (12, 3, 2, 0.5)])
def test_sbn_fused_kernel_twin_and_brute_force(K, D, n, scale):
    model = TinySBN(K, D, n, 90 + K, scale=scale)
    x = _data(n, D, 91 + K)
    ref = brute_log_marginal(model, x)
    gray = sbn_log_marginal_nb(x, model.a, model.W, model.b)
    for cs in (None, 1, 5):
        twin = sbn_log_marginal_np(x, model.a, model.W, model.b, cs)
        np.testing.assert_allclose(gray, twin, rtol=0, atol=1e-12)
    for method in ("block", "gray"):
        got = E.sbn_exact_log_marginal(x, model.a, model.W, model.b, method=method)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(E.exact_log_marginal(model, x), gray, rtol=0, atol=1e-12)


def test_sbn_fused_kernel_large_logits():
    model = TinySBN(6, 5, 2, 95, scale=1000.0)
    x = _data(2, 5, 96)
    ref = brute_log_marginal(model, x)
    for method in ("block", "gray"):
        got = E.sbn_exact_log_marginal(x, model.a, model.W, model.b, method=method)
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0)


def test_sbn_exact_bad_input():
    a, W, b, x = np.zeros(3), np.zeros((3, 4)), np.zeros(4), _data(2, 4, 0)
    cases = [
        ((x * 2, a, W, b), {}, ValueError, "x"),
        ((np.full((2, 4), np.nan), a, W, b), {}, ValueError, "x"),
        ((x, np.zeros((3, 1)), W, b), {}, ValueError, "prior_logits"),
        ((x, np.zeros(25), np.zeros((25, 4)), b), {}, ValueError, "prior_logits"),
        ((x, a, np.zeros((3, 5)), b), {}, ValueError, "W"),
        ((x, a, W, np.zeros(3)), {}, ValueError, "b"),
        ((x, a, np.full((3, 4), np.inf), b), {}, ValueError, "W"),
        ((x, a, W, b), {"method": "fast"}, ValueError, "method"),
        ((x, a, W, b), {"chunk_size": 0}, ValueError, "chunk_size"),
        ((x, np.zeros(0), np.zeros((0, 4)), b), {}, ValueError, "prior_logits"),
    ]
    for args, kw, err, name in cases:
        with pytest.raises(err, match=name):
            E.sbn_exact_log_marginal(*args, **kw)


# ------------------------------------------------------------------- bad inputs


class _Bad(TinySBN):
    def __init__(self, what):
        super().__init__(3, 4, 2, 0)
        self.what = what

    def log_joint(self, x, z):
        out = super().log_joint(x, z)
        if self.what == "nan":
            out = out.copy()
            out[0, 0] = np.nan
        elif self.what == "shape":
            out = out[:, :1]
        return out


def test_bad_x():
    model = TinySBN(3, 4, 2, 0)
    for bad in (np.full((2, 4), np.nan), np.full((2, 4), np.inf), np.zeros(4),
                np.zeros((0, 4)), "abc"):
        for fn in (E.exact_log_marginal, E.exact_posterior, E.exact_kl_to_posterior):
            with pytest.raises((ValueError, TypeError), match="x"):
                fn(model, bad)
        for fn in (E.importance_log_marginal, E.elbo, E.naive_mc_log_marginal, E.iwae_bound):
            with pytest.raises((ValueError, TypeError), match="x"):
                fn(model, bad, 3, 0)


def test_bad_sample_counts_and_rng():
    model = TinySBN(3, 4, 2, 0)
    x = _data(2, 4, 1)
    for fn in (E.importance_log_marginal, E.elbo, E.naive_mc_log_marginal):
        with pytest.raises(ValueError, match="^k must be >= 1"):
            fn(model, x, 0, 0)
        with pytest.raises(TypeError, match="^k must be an integer"):
            fn(model, x, 2.5, 0)
        with pytest.raises(ValueError, match=r"^k \(samples per row\) is required"):
            fn(model, x)
        with pytest.raises(TypeError, match="rng"):
            fn(model, x, 3, "seed")
    with pytest.raises(ValueError, match="k"):
        E.iwae_bound(model, x, 0, 0)
    with pytest.raises(ValueError, match="n_repeats"):
        E.iwae_bound(model, x, 2, 0, n_repeats=0)
    with pytest.raises(ValueError, match="chunk_size"):
        E.exact_log_marginal(model, x, chunk_size=0)


def test_bad_z():
    model = TinySBN(3, 4, 2, 0)
    x = _data(2, 4, 1)
    good = np.zeros((2, 6, 3))
    cases = [
        (np.zeros((2, 6)), "z"),  # wrong ndim
        (np.zeros((3, 6, 3)), "z"),  # wrong n
        (np.zeros((2, 6, 4)), "z"),  # wrong K
        (np.full((2, 6, 3), 0.5), "binary"),  # not binary
        (np.full((2, 6, 3), np.nan), "z"),
        (np.zeros((2, 0, 3)), "z"),  # empty
    ]
    for fn in (E.importance_log_marginal, E.elbo, E.naive_mc_log_marginal):
        for z, msg in cases:
            with pytest.raises(ValueError, match=msg):
                fn(model, x, z=z)
        with pytest.raises(ValueError, match="6 samples per row .* but k = 5"):
            fn(model, x, 5, z=good)
        with pytest.raises(ValueError, match="rng"):
            fn(model, x, rng=0, z=good)
    with pytest.raises(ValueError, match="multiple of k"):
        E.iwae_bound(model, x, 4, z=good)
    with pytest.raises(ValueError, match="n_repeats"):
        E.iwae_bound(model, x, 3, z=good, n_repeats=3)
    with pytest.raises(ValueError, match="z"):
        E.importance_log_weights(model, x, np.zeros((2, 6, 2)))
    cat = BernoulliMixture(3, 4, 2, 0)
    for bad in (np.full((2, 4, 1), 3.0), np.full((2, 4, 1), 0.5), np.full((2, 4, 1), -1.0)):
        with pytest.raises(ValueError, match="category"):
            E.importance_log_marginal(cat, x, z=bad)


def test_bad_log_weights():
    for fn in (E.log_marginal_from_log_weights, E.elbo_from_log_weights):
        for bad in (np.array([[0.0, np.nan]]), np.array([[0.0, np.inf]]), np.zeros(3),
                    np.zeros((2, 0))):
            with pytest.raises(ValueError, match="log_w"):
                fn(bad)
    with pytest.raises(ValueError, match="multiple of k"):
        E.iwae_from_log_weights(np.zeros((2, 5)), 2)
    with pytest.raises(TypeError, match="k"):
        E.iwae_from_log_weights(np.zeros((2, 4)), 2.0)


def test_bad_models():
    x = _data(2, 4, 1)
    big = TinySBN(3, 4, 2, 0)
    big.n_latent = 25
    with pytest.raises(ValueError, match="model.n_latent"):
        E.exact_log_marginal(big, x)
    cont = TinySBN(3, 4, 2, 0)
    cont.latent_type = "continuous"
    with pytest.raises(ValueError, match="continuous"):
        E.exact_log_marginal(cont, x)
    weird = TinySBN(3, 4, 2, 0)
    weird.latent_type = "gaussian"
    with pytest.raises(ValueError, match="model.latent_type"):
        E.exact_log_marginal(weird, x)
    with pytest.raises(ValueError, match="model.log_joint"):
        E.exact_log_marginal(_Bad("nan"), x)
    with pytest.raises(ValueError, match="model.log_joint"):
        E.exact_log_marginal(_Bad("shape"), x)
    with pytest.raises(ValueError, match="model.log_joint"):
        E.elbo(_Bad("nan"), x, 3, 0)

    class NoPrior:
        latent_type = "binary"
        n_latent = 3

        def log_joint(self, x, z):
            return np.zeros((x.shape[0], z.shape[1]))

    with pytest.raises(TypeError, match="log_prior"):
        E.naive_mc_log_marginal(NoPrior(), x, z=np.zeros((2, 4, 3)))
    with pytest.raises(TypeError, match="sample_q"):
        E.elbo(NoPrior(), x, 3, 0)
    unnorm = TinySBN(3, 4, 2, 0)
    unnorm.log_q = lambda x, z: np.zeros((x.shape[0], z.shape[1]))  # sums to 8, not 1
    with pytest.raises(ValueError, match="normalise"):
        E.exact_kl_to_posterior(unnorm, x)
    badsampler = TinySBN(3, 4, 2, 0)
    badsampler.sample_q = lambda x, k, rng: np.zeros((x.shape[0], k, 2))
    with pytest.raises(ValueError, match="model.sample_q"):
        E.elbo(badsampler, x, 3, 0)


# ------------------------------------------------------- kl_data_model (from tests/test_bars.py)

class _TableModel:
    """A 'model' whose exact marginal is a given table (one latent bit that is ignored)."""

    n_latent = 1
    latent_type = "binary"

    def __init__(self, images, probs):
        self.lookup = {im.tobytes(): p for im, p in zip(images, probs)}

    def log_joint(self, x, z):
        lp = np.array([np.log(self.lookup.get(r.tobytes(), 1e-300)) for r in x])
        return np.broadcast_to(lp[:, None] + np.log(0.5), (x.shape[0], z.shape[1])).copy()


def test_kl_data_model_exact_values():
    from lvmref.datasets import bars_table

    images, probs = bars_table()
    assert E.kl_data_model((images, probs), _TableModel(images, probs)) == pytest.approx(
        0.0, abs=1e-12)
    q = probs.copy()
    q[0], q[1] = probs[1], probs[0]
    expected = np.sum(probs * np.log2(probs / q))
    assert E.kl_data_model((images, probs), _TableModel(images, q)) == pytest.approx(
        expected, rel=1e-12)


def test_kl_data_model_bad_input():
    from lvmref.datasets import bars_table

    images, probs = bars_table()
    model = _TableModel(images, probs)
    with pytest.raises(TypeError, match="table"):
        E.kl_data_model(images, model)
    with pytest.raises(ValueError, match="table probs"):
        E.kl_data_model((images, probs[:-1]), model)
    with pytest.raises(ValueError, match="table images"):
        E.kl_data_model((np.full_like(images, np.nan), probs), model)
    with pytest.raises(ValueError, match="table probs"):
        E.kl_data_model((images, probs * 2), model)
