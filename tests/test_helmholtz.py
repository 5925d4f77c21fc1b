"""Helmholtz machine: densities vs brute force, gradients vs finite differences,
REINFORCE unbiasedness vs enumeration, sampler chi-square, Numba vs NumPy paths."""

import itertools

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logsumexp

from lvmref import helmholtz as H
from lvmref.datasets import bars, bars_table
from lvmref.estimators import kl_data_model
from lvmref.helmholtz import Architecture, HelmholtzMachine
from lvmref.kernels import helmholtz as KH
from lvmref.kernels.helmholtz import pack_params, unpack_params
from lvmref.testing import assert_grad_close

ARCHS = [
    Architecture((3, 5)),                                  # single latent layer (the seed)
    Architecture((1, 2, 4)),                               # layered sigmoid belief net
    Architecture((2, 3, 4), hidden=(3,), recognition_hidden=(2, 3), activation="tanh"),
]


def _model(arch, seed=0, scale=0.7):
    rng = np.random.default_rng(seed)
    m = HelmholtzMachine(arch.layer_sizes, arch.hidden, arch.recognition_hidden,
                         arch.activation, rng=rng)
    # non-zero biases/priors so every term of the gradients is exercised
    m.params = {k: v + scale * rng.standard_normal(v.shape) for k, v in m.params.items()}
    return m


def _all_binary(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def _brute_log_joint_sbn(params, sizes, x, z):
    """log p(x, z) of a sigmoid belief net as an explicit product of probabilities."""
    hs = np.split(np.concatenate([z, x]), np.cumsum(sizes)[:-1])
    p = expit(params["prior"])
    prob = np.prod(np.where(hs[0] == 1, p, 1 - p))
    for l in range(len(sizes) - 1):
        p = expit(hs[l] @ params[f"gen{l}.W0"] + params[f"gen{l}.b0"])
        prob *= np.prod(np.where(hs[l + 1] == 1, p, 1 - p))
    return np.log(prob)


# ---------------------------------------------------------------- densities

@pytest.mark.parametrize("arch", ARCHS[:2], ids=["single", "layered"])
def test_log_joint_matches_explicit_product(arch):
    m = _model(arch)
    rng = np.random.default_rng(1)
    x = (rng.random((6, arch.n_features)) < 0.5).astype(float)
    z = (rng.random((6, arch.n_latent)) < 0.5).astype(float)
    got = H.log_joint(m.params, x, z, arch)
    want = [_brute_log_joint_sbn(m.params, arch.layer_sizes, x[i], z[i]) for i in range(6)]
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_confident_prior_terms_keep_full_relative_accuracy():
    """log sigma(35) = -log1p(e^-35) = -6.3e-16: the prior term of eq. (3) in the form
    h b - softplus(b) would give 0 (35 - 35.000...), losing everything."""
    m = HelmholtzMachine((2, 3), init_scale=0.0)
    m.params["prior"][:] = [35.0, -35.0]
    z = np.array([[[1.0, 0.0]]])
    exact = -2.0 * np.log1p(np.exp(-35.0))
    assert m.log_prior(z)[0, 0] == pytest.approx(exact, rel=1e-15, abs=0)
    m.params["gen0.b0"][:] = 35.0                      # confident pixels, all on
    want = 5 * -np.log1p(np.exp(-35.0))
    assert m.log_joint(np.ones((1, 3)), z)[0, 0] == pytest.approx(want, rel=1e-15, abs=0)


@pytest.mark.parametrize("arch", ARCHS, ids=["single", "layered", "mlp"])
def test_joint_and_q_are_normalised(arch):
    """sum_x sum_z p(x, z) = 1 and sum_z q(z | x) = 1, by enumeration."""
    m = _model(arch)
    xs, zs = _all_binary(arch.n_features), _all_binary(arch.n_latent)
    lj = m.log_joint(xs, zs[None])
    assert logsumexp(lj) == pytest.approx(0.0, abs=1e-12)
    lq = m.log_q(xs, zs[None])
    np.testing.assert_allclose(logsumexp(lq, axis=1), 0.0, atol=1e-12)


@pytest.mark.parametrize("arch", ARCHS, ids=["single", "layered", "mlp"])
def test_log_prior_is_the_marginal_of_the_joint(arch):
    """log p(z) = logsumexp_x log p(x, z) (enumerated over all x)."""
    m = _model(arch)
    zs = _all_binary(arch.n_latent)
    xs = _all_binary(arch.n_features)
    lj = m.log_joint(xs, zs[None])                       # (2^D, 2^K)
    np.testing.assert_allclose(m.log_prior(zs[None])[0], logsumexp(lj, axis=0), rtol=1e-12,
                               atol=1e-12)


def test_broadcast_z_over_rows_matches_per_row():
    m = _model(ARCHS[2])
    rng = np.random.default_rng(2)
    x = (rng.random((3, 4)) < 0.5).astype(float)
    z = (rng.random((1, 5, 5)) < 0.5).astype(float)
    full = np.broadcast_to(z, (3, 5, 5))
    np.testing.assert_array_equal(m.log_joint(x, z), m.log_joint(x, full))
    np.testing.assert_array_equal(m.log_q(x, z), m.log_q(x, full))
    for i in range(3):
        np.testing.assert_array_equal(
            m.log_joint(x, z)[i], H.log_joint(m.params, np.repeat(x[i:i + 1], 5, 0), z[0],
                                              m.arch))


@pytest.mark.parametrize("arch", ARCHS, ids=["single", "layered", "mlp"])
def test_elbo_below_exact_log_marginal(arch):
    """ELBO(q) <= log p(x) for every x, both by enumeration (exact inequality)."""
    m = _model(arch)
    xs = _all_binary(arch.n_features)
    log_px = logsumexp(m.log_joint(xs, _all_binary(arch.n_latent)[None]), axis=1)
    elbo = H.exact_elbo(m.params, xs, arch)
    assert np.all(elbo <= log_px + 1e-12)
    assert np.all(elbo < log_px)  # q is not the posterior here


def test_plugs_into_estimators():
    """Protocol check through lvmref.estimators: exact log p(x) = brute-force logsumexp;
    importance sampling with q within a z-bound of it; IWAE bound below it."""
    from lvmref import estimators as E

    arch = ARCHS[2]
    m = _model(arch, scale=0.5)
    xs = _all_binary(arch.n_features)[:6]
    brute = logsumexp(m.log_joint(xs, _all_binary(arch.n_latent)[None]), axis=1)
    np.testing.assert_allclose(E.exact_log_marginal(m, xs), brute, rtol=1e-12)
    est = E.importance_log_marginal(m, xs, 4000, rng=np.random.default_rng(0))
    assert np.all(np.abs(est.value - brute) < 4.5 * est.stderr)
    naive = E.naive_mc_log_marginal(m, xs, 4000, rng=np.random.default_rng(2))
    assert np.all(np.abs(naive.value - brute) < 4.5 * naive.stderr)
    naive = E.naive_mc_log_marginal(m, xs, 4000, rng=np.random.default_rng(2))
    assert np.all(np.abs(naive.value - brute) < 4.5 * naive.stderr)
    elbo = H.exact_elbo(m.params, xs, arch)
    np.testing.assert_allclose(elbo, E.exact_log_marginal(m, xs)
                               - E.exact_kl_to_posterior(m, xs), rtol=1e-12)
    # ELBO <= L_5 <= log p(x) (Burda et al. 2015, Thm 1); the estimate is unbiased for
    # L_5, so each side is checked with a z-bound of its standard error
    iw = E.iwae_bound(m, xs, 5, n_repeats=400, rng=np.random.default_rng(1))
    assert np.all(iw.value < brute + 4 * iw.stderr)
    assert np.all(iw.value > elbo - 4 * iw.stderr)


# ---------------------------------------------------------------- samplers

def _chi2_pvalue(counts, probs):
    """Pearson chi-square p-value; cells with expected count < 5 pooled into one."""
    n = counts.sum()
    keep = probs * n >= 5
    obs, exp = counts[keep], probs[keep] * n
    if not keep.all():
        obs, exp = np.append(obs, counts[~keep].sum()), np.append(exp, probs[~keep].sum() * n)
    return stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue


@pytest.mark.parametrize("arch", ARCHS[1:], ids=["layered", "mlp"])
def test_ancestral_samples_match_exact_distribution(arch):
    m = _model(arch, scale=0.5)
    n = 100_000
    z, x = m.sample(n, rng=np.random.default_rng(3))
    zx = np.concatenate([z, x], axis=1)
    codes = (zx @ (2 ** np.arange(zx.shape[1])[::-1])).astype(int)
    allzx = _all_binary(zx.shape[1])  # same code order
    K = arch.n_latent
    p = np.exp(H.log_joint(m.params, allzx[:, K:], allzx[:, :K], arch))
    assert _chi2_pvalue(np.bincount(codes, minlength=len(p)), p) > 1e-3


def test_q_samples_match_exact_q():
    arch = ARCHS[2]
    m = _model(arch, scale=0.5)
    x = np.array([[1.0, 0.0, 1.0, 1.0]])
    n = 100_000
    z = m.sample_q(x, n, rng=np.random.default_rng(4))[0]
    codes = (z @ (2 ** np.arange(arch.n_latent)[::-1])).astype(int)
    q = np.exp(m.log_q(x, _all_binary(arch.n_latent)[None])[0])
    assert _chi2_pvalue(np.bincount(codes, minlength=len(q)), q) > 1e-3


def test_explicit_uniforms_give_threshold_samples():
    m = _model(Architecture((2, 3)))
    u = np.random.default_rng(5).random((4, 5))
    z, x = m.sample(4, u=u)
    p0 = expit(m.params["prior"])
    np.testing.assert_array_equal(z, (u[:, :2] < p0).astype(float))
    px = expit(z @ m.params["gen0.W0"] + m.params["gen0.b0"])
    np.testing.assert_array_equal(x, (u[:, 2:] < px).astype(float))
    np.testing.assert_array_equal(m.sample_prior(4, 1, u=u[:, None])[:, 0], z)


# ---------------------------------------------------------------- gradients vs FD

def _data(arch, n=5, seed=6):
    rng = np.random.default_rng(seed)
    return ((rng.random((n, arch.n_features)) < 0.5).astype(float),
            (rng.random((n, arch.n_latent)) < 0.5).astype(float))


@pytest.mark.parametrize("arch", ARCHS, ids=["single", "layered", "mlp"])
def test_wake_gradient_matches_finite_differences(arch):
    m = _model(arch)
    x, z = _data(arch)
    w = np.linspace(0.5, 1.5, len(x))
    gen = {k: v for k, v in m.params.items() if not k.startswith("rec")}

    def f(p):
        return float(w @ H.log_joint({**m.params, **p}, x, z, arch))

    grad = H.wake_grad(m.params, x, z, arch, w)
    assert set(grad) == set(gen)
    assert_grad_close(f, gen, grad, richardson=True, rtol=1e-8)


@pytest.mark.parametrize("arch", ARCHS, ids=["single", "layered", "mlp"])
def test_sleep_gradient_matches_finite_differences(arch):
    m = _model(arch)
    x, z = _data(arch, seed=7)
    rec = {k: v for k, v in m.params.items() if k.startswith("rec")}

    def f(p):
        return float(np.sum(H.log_q({**m.params, **p}, x, z, arch)))

    grad = H.sleep_grad(m.params, x, z, arch)
    assert set(grad) == set(rec)
    assert_grad_close(f, rec, grad, richardson=True, rtol=1e-8)


def test_wake_delta_rule_for_sigmoid_units():
    """Without hidden layers eq. (7) is dW = h^T (x - sigmoid(h W + b))."""
    arch = Architecture((3, 5))
    m = _model(arch)
    x, z = _data(arch)
    g = H.wake_grad(m.params, x, z, arch)
    r = x - expit(z @ m.params["gen0.W0"] + m.params["gen0.b0"])
    np.testing.assert_allclose(g["gen0.W0"], z.T @ r, rtol=1e-13)
    np.testing.assert_allclose(g["prior"], np.sum(z - expit(m.params["prior"]), 0), rtol=1e-13)


@pytest.mark.parametrize("arch", ARCHS[1:], ids=["layered", "mlp"])
def test_rws_gradients_are_gradients_of_iwae_bound_at_fixed_samples(arch):
    """sum_s omega_s grad_theta log p = grad_theta log sum_s w_s, and
    sum_s omega_s grad_phi log q = -grad_phi log sum_s w_s (z held fixed)."""
    m = _model(arch)
    rng = np.random.default_rng(8)
    x = (rng.random((3, arch.n_features)) < 0.5).astype(float)
    z = m.sample_q(x, 4, rng)

    def iwae(p):
        return float(np.sum(logsumexp(H.log_weights({**m.params, **p}, x, z, arch), axis=1)))

    grads, log_px = H.rws_grads(m.params, x, z, arch)
    np.testing.assert_allclose(log_px, logsumexp(H.log_weights(m.params, x, z, arch), 1)
                               - np.log(4), rtol=1e-13)
    gen = {k: v for k, v in m.params.items() if not k.startswith("rec")}
    rec = {k: v for k, v in m.params.items() if k.startswith("rec")}
    assert_grad_close(iwae, gen, {k: grads[k] for k in gen}, richardson=True, rtol=1e-8)
    assert_grad_close(iwae, rec, {k: -grads[k] for k in rec}, richardson=True, rtol=1e-8)


# ---------------------------------------------------------------- REINFORCE

def _exact_elbo_grad(m, x):
    """Exact ELBO gradient: Richardson central differences of the enumerated ELBO."""

    def f(k, v):
        return float(np.sum(H.exact_elbo({**m.params, k: v}, x, m.arch)))

    out = {}
    h = np.finfo(float).eps ** 0.2
    for k, v in m.params.items():
        g = np.empty(v.size)
        for i in range(v.size):
            e = np.zeros(v.size)
            e[i] = 1.0
            e = e.reshape(v.shape)
            d1 = (f(k, v + h * e) - f(k, v - h * e)) / (2 * h)
            d2 = (f(k, v + h / 2 * e) - f(k, v - h / 2 * e)) / h
            g[i] = (4 * d2 - d1) / 3
        out[k] = g.reshape(v.shape)
    return out


def _flat(d, keys):
    return np.concatenate([np.ravel(d[k]) for k in keys])


def test_reinforce_gradient_unbiased_and_baseline_reduces_variance():
    arch = Architecture((1, 2, 3))
    m = _model(arch, seed=9, scale=1.0)
    x = np.array([[1.0, 0.0, 1.0]])
    keys = list(m.params)
    exact = _flat(_exact_elbo_grad(m, x), keys)
    n = 40_000
    z = m.sample_q(x, n, rng=np.random.default_rng(10))[0]
    elbo = float(H.exact_elbo(m.params, x, arch)[0])
    results = {}
    zs = _all_binary(arch.n_latent)
    codes = (z @ (2 ** np.arange(arch.n_latent)[::-1])).astype(int)
    for name, b in (("none", 0.0), ("baseline", elbo)):
        # z takes 2^K values: per-sample gradient rows are looked up, not recomputed
        table = np.array([_flat(H.reinforce_grads(m.params, x, zs[j:j + 1], arch, b)[0], keys)
                          for j in range(len(zs))])
        per = table[codes]
        mean, se = per.mean(0), per.std(0, ddof=1) / np.sqrt(n)
        # Bonferroni over the P coordinates at overall level ~1e-3
        zcrit = stats.norm.isf(1e-3 / (2 * len(exact)))
        random = se > 0
        assert np.all(np.abs(mean - exact)[random] < zcrit * se[random]), name
        # constant coordinates (e.g. weights from pixels that are off) are exact
        np.testing.assert_allclose(mean[~random], exact[~random], atol=1e-8)
        results[name] = per.var(0, ddof=1)
    rec = np.array([k.startswith("rec") for k in keys for _ in range(m.params[k].size)])
    # the baseline touches only the phi (recognition) coordinates ...
    np.testing.assert_allclose(results["none"][~rec], results["baseline"][~rec], rtol=1e-12)
    # ... and lowers their total variance (measured); exact variance below as a check
    assert results["baseline"][rec].sum() < 0.8 * results["none"][rec].sum()


def test_reinforce_exact_variance_reduction_by_enumeration():
    arch = Architecture((1, 2, 3))
    m = _model(arch, seed=9, scale=1.0)
    x = np.array([[1.0, 0.0, 1.0]])
    zs = _all_binary(arch.n_latent)
    q = np.exp(m.log_q(x, zs[None])[0])
    keys = [k for k in m.params if k.startswith("rec")]
    elbo = float(H.exact_elbo(m.params, x, arch)[0])

    def total_var(b):
        g = np.array([_flat(H.reinforce_grads(m.params, x, zs[i:i + 1], arch, b)[0], keys)
                      for i in range(len(zs))])
        mean = q @ g
        return float(np.sum(q @ (g - mean) ** 2)), mean

    v0, m0 = total_var(0.0)
    v1, m1 = total_var(elbo)
    np.testing.assert_allclose(m0, m1, rtol=1e-10, atol=1e-12)  # mean unchanged (exactly)
    assert v1 < v0


# ---------------------------------------------------------------- Numba vs NumPy

@pytest.mark.parametrize("kind", ["ws", "rws", "rws-sleep", "reinforce", "reinforce-none"])
def test_numba_kernels_match_numpy_twins(kind):
    sizes = (2, 3, 5)
    m = _model(Architecture(sizes), seed=11)
    flat, layout = pack_params(m.params, sizes)
    flat_np = flat.copy()
    rng = np.random.default_rng(12)
    T = 300
    X = (rng.random((T, 5)) < 0.4).astype(float)
    UQ, US = rng.random((T, 5)), rng.random((T, 10))
    if kind == "ws":
        w_nb = KH.ws_online(flat, layout, X, UQ, US, 0.05, 0.07)
        w_np = KH.ws_online_np(flat_np, layout, X, UQ, US, 0.05, 0.07)
    elif kind.startswith("rws"):
        UQ3 = rng.random((T, 4, 5))
        sleep = kind == "rws-sleep"
        w_nb = KH.rws_online(flat, layout, X, UQ3, US, 0.05, 0.07, sleep)
        w_np = KH.rws_online_np(flat_np, layout, X, UQ3, US, 0.05, 0.07, sleep)
    else:
        use = kind == "reinforce"
        s_nb, s_np = np.array([0.0, 1.0]), np.array([0.0, 1.0])
        w_nb = KH.reinforce_online(flat, layout, X, UQ, 0.02, 0.01, use, use, 0.9, s_nb)
        w_np = KH.reinforce_online_np(flat_np, layout, X, UQ, 0.02, 0.01, use, use, 0.9, s_np)
        assert np.max(np.abs(s_nb - s_np)) <= 1e-12
    assert np.max(np.abs(flat - flat_np)) <= 1e-12
    assert np.max(np.abs(w_nb - w_np)) <= 1e-12
    assert np.max(np.abs(flat - pack_params(m.params, sizes)[0])) > 1e-3  # it did learn


def test_pack_unpack_roundtrip_layout():
    arch = Architecture((1, 8, 16))
    m = _model(arch)
    flat, layout = pack_params(m.params, arch.layer_sizes)
    back = unpack_params(flat, layout)
    assert list(back) == arch.keys()
    for k in arch.keys():
        np.testing.assert_array_equal(back[k], m.params[k])


@pytest.mark.parametrize("method, extra", [
    ("wake-sleep", {}),
    ("reweighted", {"n_samples": 3, "sleep": True}),
    ("reinforce", {"normalize_variance": True}),
])
def test_fit_numba_and_numpy_engines_agree(method, extra):
    """The kernels equal the library's general path (eqs. 7-12) on the same noise.

    (Horizon kept short: these are stochastic maps, so over very long runs one flipped
    threshold comparison u < sigmoid(a) would make the two trajectories part.)"""
    kw = dict(n_updates=400, learning_rate=0.05, recognition_learning_rate=0.02, block=200)
    a = HelmholtzMachine((1, 8, 16), rng=0).fit(bars, method, engine="numba", rng=5,
                                                **extra, **kw)
    b = HelmholtzMachine((1, 8, 16), rng=0).fit(bars, method, engine="numpy", rng=5,
                                                **extra, **kw)
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.history_["objective"], b.history_["objective"], atol=1e-12)


# ---------------------------------------------------------------- training

def test_wake_sleep_learns_bars():
    table = bars_table()
    m = HelmholtzMachine((1, 8, 16), rng=1)
    kl0 = kl_data_model(table, m)
    m.fit(bars, n_updates=40_000, learning_rate=0.1, rng=2)
    kl1 = kl_data_model(table, m)
    # 13.3 bits at the start, 1.15 after 4e4 updates at these seeds (Numba or twin)
    assert kl0 > 10.0 and kl1 < 1.5


@pytest.mark.parametrize("method, extra", [
    ("reweighted", {"n_samples": 5, "sleep": True}),
    ("reinforce", {"baseline": "input-dependent", "normalize_variance": True}),
    ("reinforce", {"baseline": "input-dependent", "baseline_hidden": (4,)}),
    ("reinforce", {"baseline": "none"}),
    ("wake-sleep", {"batch_size": 4}),
])
def test_other_methods_improve_exact_log_likelihood(method, extra):
    arch = ARCHS[1]
    m = HelmholtzMachine(arch.layer_sizes, rng=3)
    rng = np.random.default_rng(4)
    X = (rng.random((64, 4)) < np.array([0.9, 0.1, 0.8, 0.2])).astype(float)
    zs = _all_binary(arch.n_latent)[None]

    def ll(mm):
        return float(np.mean(logsumexp(mm.log_joint(X, zs), axis=1)))

    before = ll(m)
    m.fit(X, method, n_updates=1500, batch_size=extra.pop("batch_size", 8),
          learning_rate=0.05, rng=5, record_every=500, **extra)
    assert ll(m) > before + 0.5
    assert len(m.history_["objective"]) == 3


def test_init_bias_sets_the_generative_output_biases_only():
    base = HelmholtzMachine((1, 3, 4), hidden=(2,), rng=7)
    m = HelmholtzMachine((1, 3, 4), hidden=(2,), rng=7, init_bias=(-1.5, -3.0))
    changed = {k for k in m.params if not np.array_equal(m.params[k], base.params[k])}
    assert changed == {"gen0.b1", "gen1.b1"}           # output layers of g_0 and g_1
    np.testing.assert_array_equal(m.params["gen0.b1"], np.full(3, -1.5))
    np.testing.assert_array_equal(m.params["gen1.b1"], np.full(4, -3.0))
    one = HelmholtzMachine((2, 3, 4), rng=7, init_bias=-2)
    assert all(np.all(one.params[f"gen{l}.b0"] == -2.0) for l in (0, 1))
    # with all weights zero, log p(x) is the closed form of independent Bernoulli pixels
    z = HelmholtzMachine((2, 4), init_scale=0.0, init_bias=-3.0)
    x = np.array([[1.0, 0.0, 0.0, 1.0]])
    expected = 2 * np.log(expit(-3.0)) + 2 * np.log(expit(3.0))
    zs = _all_binary(2)[None]
    np.testing.assert_allclose(logsumexp(z.log_joint(x, zs), axis=1), [expected],
                               rtol=1e-14)


@pytest.mark.parametrize("bias, err, match", [
    ((1.0, 2.0, 3.0), ValueError, "init_bias"),
    ((np.nan,), ValueError, "init_bias"),
    ("x", TypeError, "init_bias"),
    ([[1.0, 2.0]], TypeError, "init_bias"),
])
def test_init_bias_bad_input(bias, err, match):
    with pytest.raises(err, match=match):
        HelmholtzMachine((1, 3, 4), rng=0, init_bias=bias)
    with pytest.raises(err, match="bias"):
        H.init_params(Architecture((1, 3, 4)), 0, bias=bias)
    m = HelmholtzMachine((1, 3, 4), rng=0)
    with pytest.raises(ValueError, match="init_bias"):
        HelmholtzMachine((1, 3, 4), params=m.params, init_bias=-1.0)


def test_save_load_roundtrip(tmp_path):
    m = _model(ARCHS[2])
    m.save(tmp_path / "hm.npz")
    m2 = HelmholtzMachine.load(tmp_path / "hm.npz")
    assert m2.arch == m.arch
    for k in m.params:
        np.testing.assert_array_equal(m.params[k], m2.params[k])
    np.savez(tmp_path / "bad.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="bad.npz"):
        HelmholtzMachine.load(tmp_path / "bad.npz")


# ---------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def small():
    return _model(ARCHS[1])


@pytest.mark.parametrize("x, match", [
    (np.full((2, 4), np.nan), "x"),
    (np.zeros((2, 3)), "x"),
    (np.zeros(4), "x"),
    (np.zeros((0, 4)), "x"),
    (np.full((2, 4), 0.5), "x"),
    (np.full((2, 4), np.inf), "x"),
])
def test_bad_x(small, x, match):
    z = np.zeros((1, 1, 3))
    for call in (lambda: small.log_joint(x, z), lambda: small.log_q(x, z),
                 lambda: small.sample_q(x, 2, 0)):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize("z", [np.zeros((2, 1, 4)), np.zeros((3, 1, 3)), np.zeros((2, 3)),
                               np.full((2, 1, 3), 2.0), np.full((2, 1, 3), np.nan)])
def test_bad_z(small, z):
    with pytest.raises(ValueError, match="z"):
        small.log_joint(np.zeros((2, 4)), z)


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "em"}, "method"),
    ({"n_updates": 0}, "n_updates"),
    ({"batch_size": -1}, "batch_size"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": np.nan}, "learning_rate"),
    ({"recognition_learning_rate": -1.0}, "recognition_learning_rate"),
    ({"n_samples": 0, "method": "reweighted"}, "n_samples"),
    ({"baseline": "ema"}, "baseline"),
    ({"baseline_decay": 1.0}, "baseline_decay"),
    ({"engine": "cuda"}, "engine"),
    ({"engine": "numba", "batch_size": 2}, "engine"),
    ({"engine": "numba", "method": "reinforce", "baseline": "input-dependent"}, "engine"),
    ({"rng": -3}, "rng"),
])
def test_fit_bad_arguments(small, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        small.fit(np.zeros((3, 4)), **kwargs)


def test_fit_bad_data(small):
    with pytest.raises(ValueError, match="X"):
        small.fit(np.full((3, 4), 0.3))
    with pytest.raises(ValueError, match="X"):
        small.fit(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"X\(m, rng\)"):
        small.fit(lambda m, rng: np.zeros((m, 5)), n_updates=2)


def test_constructor_and_sampler_bad_input():
    with pytest.raises(ValueError, match="layer_sizes"):
        HelmholtzMachine((4,))
    with pytest.raises(ValueError, match="layer_sizes"):
        HelmholtzMachine((0, 4))
    with pytest.raises(ValueError, match="activation"):
        HelmholtzMachine((2, 4), hidden=(3,), activation="gelu")
    with pytest.raises(ValueError, match="params"):
        HelmholtzMachine((2, 4), params={"prior": np.zeros(2)})
    with pytest.raises(ValueError, match="params"):
        m = HelmholtzMachine((2, 4), rng=0)
        HelmholtzMachine((2, 4), params={**m.params, "prior": np.zeros(3)})
    m = HelmholtzMachine((2, 4), rng=0)
    with pytest.raises(ValueError, match="u"):
        m.sample(3, u=np.full((3, 6), 1.5))
    with pytest.raises(ValueError, match="u"):
        m.sample(3, u=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="n"):
        m.sample(0)
    with pytest.raises(ValueError, match="k"):
        m.sample_q(np.zeros((1, 4)), 0)
