"""Tests of lvmref.vae against finite differences, closed forms and independent code.

Expected values come from: central differences (lvmref.testing), scipy.stats densities,
closed forms derived independently in the test (Gaussian conditioning for the PPCA
posterior), and Monte Carlo with its own standard error and a stated z-bound.
"""

import dataclasses
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from scipy.special import expit

import lvmref.vae as V
from lvmref.linear_gaussian import (
    linear_gaussian_elbo,
    linear_gaussian_log_marginal,
    linear_gaussian_vae,
)
from lvmref.optim import Adam
from lvmref.testing import assert_grad_close
from lvmref.vae import (
    VAE,
    VAEArchitecture,
    VAEModel,
    kl_normal_std_grad,
    reparameterize,
)

# Two-sided z-bound for Monte Carlo checks. With fixed seeds the checks are
# deterministic; 4.5 sd is ~7e-6 per comparison, Bonferroni-adjusted where many
# coordinates are compared at once (see _zbound).
Z = 4.5


# Central differences with Richardson extrapolation (lvmref.testing, h = eps^(1/5) max(1, |x|)
# ~ 7.4e-4): truncation h^4 |f^(5)| / 480 ~ 6e-16 |f^(5)|, rounding 3 * 2u |f| / h ~ 1.8e-12
# |f| relative to max |g|; with |f| / max|g| < 1e3 and |f^(5)| / max|g| < 1e3 for these
# small smooth nets the normwise error is < 2e-9 (measured: <= 2.4e-10, the sigmoid
# two-layer net). The exact oracle at 1e-10 is the PyTorch twin (tests/test_vae_autograd.py).
FD_RTOL = 1e-8


def _zbound(m, alpha=1e-5):
    """Bonferroni z-bound for m simultaneous two-sided comparisons at family level alpha."""
    return float(stats.norm.isf(alpha / (2 * m)))


def _perturbed(vae, rng, scale=0.3):
    p = vae.init_params(rng)
    return {k: v + scale * rng.normal(size=v.shape) for k, v in p.items()}


def _data(vae, n, rng):
    if vae.likelihood == "bernoulli":
        return (rng.random((n, vae.n_features)) < 0.4).astype(float)
    return rng.normal(size=(n, vae.n_features))


def _ppca(rng, d=6, k=3, scales=(2.0, 1.0, 0.5), noise_var=0.3):
    q, _ = np.linalg.qr(rng.normal(size=(d, k)))
    return q * np.array(scales[:k]), rng.normal(size=d), noise_var


def _enc_perturbed(params, rng, scale):
    return {k: (v + scale * rng.normal(size=v.shape) if k.startswith("enc.") else v.copy())
            for k, v in params.items()}


# ------------------------------------------------------------------ architecture, functions


def test_architecture_is_frozen_and_the_vae_views_it():
    a = VAEArchitecture(5, 2, hidden=[4], likelihood="gaussian", activation="relu")
    assert a.hidden == (4,) and a.encoder.sizes == (5, 4, 4) and a.decoder.sizes == (2, 4, 10)
    assert a.encoder.activations == ("relu", "identity") and a.decoder.prefix == "dec."
    b = VAEArchitecture(5, 2, (4,), "gaussian", "relu")
    assert a == b and hash(a) == hash(b) and a != VAEArchitecture(5, 2, (4,), "gaussian")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.n_latent = 3
    vae = VAE(5, 2, (4,), "gaussian", "relu")
    assert vae.arch == a
    assert (vae.n_features, vae.n_latent, vae.hidden, vae.likelihood, vae.activation) == \
        (5, 2, (4,), "gaussian", "relu")
    with pytest.raises(AttributeError):
        vae.n_features = 6  # read-only views of the architecture
    assert repr(vae) == ("VAE(n_features=5, n_latent=2, hidden=(4,), likelihood='gaussian', "
                         "activation='relu')")
    assert vae.param_shapes() == a.param_shapes()


def test_methods_are_the_functions_and_params_none_means_fitted():
    rng = np.random.default_rng(44)
    vae = VAE(5, 2, hidden=(4,))
    p = _perturbed(vae, rng)
    x, eps = _data(vae, 4, rng), rng.normal(size=(4, 3, 2))
    a = vae.arch
    calls = [
        (lambda q: vae.elbo(q, x, eps, "mc"), lambda: V.elbo(p, x, eps, a, "mc")),
        (lambda q: vae.elbo_grad_reparam(q, x, eps)[1]["enc.W0"],
         lambda: V.elbo_grad_reparam(p, x, eps, a)[1]["enc.W0"]),
        (lambda q: vae.elbo_grad_reinforce(q, x, eps, baseline="loo")[1]["enc.b0"],
         lambda: V.elbo_grad_reinforce(p, x, eps, a, baseline="loo")[1]["enc.b0"]),
        (lambda q: vae.elbo_grad_stl(q, x, eps)[1]["enc.W0"],
         lambda: V.elbo_grad_stl(p, x, eps, a)[1]["enc.W0"]),
        (lambda q: vae.iwae_grad(q, x, eps, "dreg")[1]["enc.b0"],
         lambda: V.iwae_grad(p, x, eps, a, "dreg")[1]["enc.b0"]),
        (lambda q: vae.log_q(q, x, eps), lambda: V.log_q(p, x, eps, a)),
        (lambda q: vae.iwae_bound(q, x, 3, 7).value, lambda: V.iwae_bound(p, x, a, 3, 7).value),
        (lambda q: vae.fit_local(q, x, n_steps=3, rng=1, k=2)[0],
         lambda: V.fit_local(p, x, a, n_steps=3, rng=1, k=2)[0]),
        (lambda q: vae.amortization_gap(q, x, k_eval=5, rng=2, n_steps=2).gap,
         lambda: V.amortization_gap(p, x, a, k_eval=5, rng=2, n_steps=2).gap),
        (lambda q: vae.encode(x, q)[1], lambda: V.encode(p, x, a)[1]),
        (lambda q: vae.as_model(q).log_joint(x, eps), lambda: VAEModel(a, p).log_joint(x, eps)),
    ]
    for method, function in calls:
        np.testing.assert_array_equal(method(p), function())
    for method, _ in calls:  # not fitted: params=None is an error naming params
        with pytest.raises(ValueError, match="params"):
            method(None)
    for call in (lambda: vae.decode(np.zeros((1, 2))), lambda: vae.reconstruct(x),
                 lambda: vae.sample(2, 0)):
        with pytest.raises(ValueError, match="params"):
            call()
    vae.params_ = p
    for method, function in calls:
        np.testing.assert_array_equal(method(None), function())


def test_log_prior_and_log_likelihood_against_scipy():
    rng = np.random.default_rng(45)
    vae = VAE(5, 3, hidden=(4,))
    p = _perturbed(vae, rng)
    x, z = _data(vae, 4, rng), rng.normal(size=(4, 6, 3))
    np.testing.assert_allclose(V.log_prior(z), stats.norm.logpdf(z).sum(-1), rtol=1e-13)
    np.testing.assert_allclose(V.log_prior(z[0, 0]), stats.norm.logpdf(z[0, 0]).sum(),
                               rtol=1e-13)
    logits = vae.decode(z.reshape(24, 3), p, raw=True)
    expect = stats.bernoulli.logpmf(np.repeat(x, 6, 0), expit(logits)).sum(1).reshape(4, 6)
    np.testing.assert_allclose(V.log_likelihood(p, x, z, vae.arch), expect, rtol=1e-12)
    np.testing.assert_allclose(V.log_likelihood(p, x, z[:, 0], vae.arch), expect[:, 0],
                               rtol=1e-12)


def test_functions_check_arch_and_arguments():
    vae = VAE(4, 2, hidden=(3,))
    p, a = vae.init_params(0), vae.arch
    x, eps = np.zeros((3, 4)), np.zeros((3, 2))
    for call in (lambda arch: V.elbo(p, x, eps, arch), lambda arch: V.encode(p, x, arch),
                 lambda arch: V.elbo_grad_reparam(p, x, eps, arch),
                 lambda arch: V.elbo_grad_reinforce(p, x, eps, arch),
                 lambda arch: V.log_q(p, x, eps, arch), lambda arch: V.iwae_bound(p, x, arch, 2),
                 lambda arch: V.log_likelihood(p, x, eps, arch), lambda arch: V.init_params(arch),
                 lambda arch: V.fit_local(p, x, arch), lambda arch: V.amortization_gap(p, x, arch),
                 lambda arch: VAEModel(arch, p)):
        with pytest.raises(TypeError, match="arch"):
            call(vae)  # the estimator, not its architecture
    with pytest.raises(ValueError, match="n_features"):
        VAEArchitecture(0, 2)
    with pytest.raises(ValueError, match="scheme"):
        V.init_params(a, 0, "he")
    with pytest.raises(ValueError, match="z"):
        V.log_prior(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="z"):
        V.log_likelihood(p, x, np.zeros((3, 3)), a)
    with pytest.raises(ValueError, match="x"):
        V.encode(p, np.zeros((3, 5)), a)
    with pytest.raises(ValueError, match="params"):
        V.log_q({**p, "enc.W0": np.zeros((4, 4))}, x, eps, a)
    with pytest.raises(ValueError, match="k"):
        V.fit_local(p, x, a, k=0)
    with pytest.raises(ValueError, match="k"):
        vae.fit(x, k=0)
    with pytest.raises(ValueError, match="chunk_size"):
        V.iwae_bound(p, x, a, 2, 0, chunk_size=0)
    with pytest.raises(ValueError, match="init"):
        V.fit_local(p, x, a, init=(np.zeros((3, 2)), np.zeros((2, 2))))
    with pytest.raises(ValueError, match="z"):
        VAEModel(a, p).log_joint(x, np.zeros((2, 1, 2)))



# ------------------------------------------------------------------ gradients vs FD


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("kl", ["analytic", "mc"])
@pytest.mark.parametrize("s", [None, 3])
def test_reparam_gradient_matches_finite_differences(likelihood, kl, s):
    rng = np.random.default_rng(10)
    vae = VAE(5, 3, hidden=(4,), likelihood=likelihood)
    params = _perturbed(vae, rng)
    x = _data(vae, 6, rng)
    eps = rng.normal(size=(6, 3) if s is None else (6, s, 3))
    rep = assert_grad_close(lambda p: vae.elbo_grad_reparam(p, x, eps, kl), params,
                            richardson=True, rtol=FD_RTOL)
    np.testing.assert_allclose(rep.value, vae.elbo(params, x, eps, kl).mean(), rtol=1e-14)


@pytest.mark.parametrize("activation", ["softplus", "sigmoid", "tanh"])
def test_reparam_gradient_two_hidden_layers(activation):
    rng = np.random.default_rng(11)
    vae = VAE(4, 2, hidden=(5, 3), likelihood="gaussian", activation=activation)
    params = _perturbed(vae, rng)
    x, eps = _data(vae, 5, rng), rng.normal(size=(5, 2))
    assert_grad_close(lambda p: vae.elbo_grad_reparam(p, x, eps, "mc"), params,
                      richardson=True, rtol=FD_RTOL)


def test_reparam_gradient_directions_on_digits_size():
    """The 64-200-10 architecture, long parameters checked along random directions."""
    rng = np.random.default_rng(12)
    vae = VAE(64, 10, hidden=(200,))
    params = vae.init_params(rng)
    x, eps = _data(vae, 8, rng), rng.normal(size=(8, 10))
    assert_grad_close(lambda p: vae.elbo_grad_reparam(p, x, eps), params, richardson=True,
                      rtol=FD_RTOL, max_coords=100, n_directions=3)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_reinforce_decoder_gradient_matches_finite_differences(likelihood, kl):
    """At fixed samples z, the decoder part of REINFORCE is the exact gradient, eq. (8)."""
    rng = np.random.default_rng(13)
    vae = VAE(5, 3, hidden=(4,), likelihood=likelihood)
    params = _perturbed(vae, rng)
    x = _data(vae, 6, rng)
    z = rng.normal(size=(6, 2, 3))
    dec_keys = [k for k in params if k.startswith("dec.")]
    assert_grad_close(lambda p: vae.elbo_grad_reinforce(p, x, z=z, kl=kl), params,
                      keys=dec_keys, richardson=True, rtol=FD_RTOL)


@pytest.mark.parametrize("baseline", [None, "loo", 0.7])
def test_reinforce_encoder_gradient_is_weighted_score(baseline):
    """Encoder part of eq. (10): the gradient of sum_t w_t log q(z_t|x) / (nS) - mean KL at
    fixed weights w_t = f_t - b_t, with log q from scipy and the KL written out here."""
    rng = np.random.default_rng(14)
    vae = VAE(5, 3, hidden=(4,))
    params = _perturbed(vae, rng)
    n, s = 6, 4
    x = _data(vae, n, rng)
    z = rng.normal(size=(n, s, 3))
    # f_t = log p(x | z_t) from scipy's Bernoulli pmf at the decoder's probabilities
    logits = vae.decode(z.reshape(n * s, 3), params, raw=True)
    f = stats.bernoulli.logpmf(np.repeat(x, s, axis=0), expit(logits)).sum(1).reshape(n, s)
    if baseline is None:
        w = f
    elif baseline == "loo":
        w = f - (f.sum(1, keepdims=True) - f) / (s - 1)
    else:
        w = f - baseline

    def surrogate(p):
        mean, log_var = vae.encode(x, p)
        sd = np.exp(0.5 * log_var)[:, None, :]
        log_q = stats.norm.logpdf(z, mean[:, None, :], sd).sum(2)
        kl = 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=1)
        return float(np.sum(w * log_q) / (n * s) - kl.mean())

    _, grads = vae.elbo_grad_reinforce(params, x, z=z, baseline=baseline)
    enc_keys = [k for k in params if k.startswith("enc.")]
    assert_grad_close(surrogate, params, {k: grads[k] for k in enc_keys}, richardson=True,
                      rtol=FD_RTOL)


def test_log_q_matches_scipy():
    rng = np.random.default_rng(15)
    vae = VAE(5, 3, hidden=(4,))
    params = _perturbed(vae, rng)
    x, z = _data(vae, 4, rng), rng.normal(size=(4, 7, 3))
    mean, log_var = vae.encode(x, params)
    expect = stats.norm.logpdf(z, mean[:, None], np.exp(0.5 * log_var)[:, None]).sum(2)
    np.testing.assert_allclose(vae.log_q(params, x, z), expect, rtol=1e-13)
    np.testing.assert_allclose(vae.log_q(params, x, z[:, 0]), expect[:, 0], rtol=1e-13)


# ------------------------------------------------------------------ KL and sampler


@given(
    st.lists(st.floats(-5, 5), min_size=1, max_size=6),
    st.lists(st.floats(-5, 5), min_size=1, max_size=6),
)
def test_kl_nonnegative_and_matches_textbook_formula(mu, lv):
    k = min(len(mu), len(lv))
    mean, log_var = np.array([mu[:k]]), np.array([lv[:k]])
    vae = VAE(2, k, hidden=())
    # textbook KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2 per dimension
    with np.errstate(under="ignore"):
        sd = np.exp(0.5 * log_var)
        expect = np.sum(-np.log(sd) + (sd**2 + mean**2) / 2 - 0.5)
    from lvmref.kernels import kl_normal_std as _kl_rows

    got = _kl_rows(mean, log_var)[0]
    assert got >= 0.0
    assert got == pytest.approx(expect, rel=1e-12, abs=1e-12)
    d_mean, d_lv = kl_normal_std_grad(mean, log_var)
    with np.errstate(under="ignore"):  # numpy.testing's own arithmetic on subnormals
        np.testing.assert_allclose(d_mean, mean)
        np.testing.assert_allclose(d_lv, 0.5 * (sd**2 - 1), rtol=1e-12, atol=1e-15)
    assert vae.n_latent == k


def test_kl_zero_only_at_prior():
    from lvmref.kernels import kl_normal_std as _kl_rows

    assert _kl_rows(np.zeros((1, 4)), np.zeros((1, 4)))[0] == 0.0
    assert _kl_rows(np.full((1, 4), 1e-3), np.zeros((1, 4)))[0] > 0.0


def test_analytic_kl_equals_monte_carlo_kl_and_sampler_uses_log_var():
    """E_q[log q(z) - log p(z)] with z from our sampler (eq. 6) equals the analytic KL (5),
    and the sample variance is exp(log_var): a sampler using exp(log_var) as the standard
    deviation (the classic log-sigma / log-sigma^2 mix-up) fails both checks."""
    rng = np.random.default_rng(18)
    mean = np.array([[0.5, -1.0, 0.0]])
    log_var = np.array([[-1.0, 0.7, 2.0]])
    s = 200_000
    eps = rng.normal(size=(1, s, 3))
    z = reparameterize(mean, log_var, eps)[0]
    sd = np.exp(0.5 * log_var[0])
    terms = (stats.norm.logpdf(z, mean[0], sd) - stats.norm.logpdf(z)).sum(1)
    from lvmref.kernels import kl_normal_std as _kl_rows

    kl = _kl_rows(mean, log_var)[0]
    se = terms.std(ddof=1) / np.sqrt(s)
    assert abs(terms.mean() - kl) < Z * se
    # sample variance vs exp(log_var): se of a normal sample variance is var*sqrt(2/(s-1))
    var = z.var(axis=0, ddof=1)
    assert np.all(np.abs(var - np.exp(log_var[0])) < Z * np.exp(log_var[0]) * np.sqrt(2 / (s - 1)))
    # and the ELBO's two estimators agree in expectation (eq. 7a vs 7b)
    vae = VAE(4, 3, hidden=(5,))
    params = _perturbed(vae, rng)
    x = _data(vae, 1, rng)
    e = rng.normal(size=(1, 20_000, 3))
    mean_e, lv_e = vae.encode(x, params)
    zz = reparameterize(mean_e, lv_e, e)
    # per-sample (7a): log p(x | z_t) - KL; (7b) adds KL + log p(z_t) - log q(z_t | x)
    per_a = vae.as_model(params).log_likelihood(x, zz)[0] - _kl_rows(mean_e, lv_e)[0]
    per_m = per_a + _kl_rows(mean_e, lv_e)[0] + stats.norm.logpdf(zz[0]).sum(1) \
        - vae.log_q(params, x, zz)[0]
    d = per_m - per_a
    assert abs(d.mean()) < Z * d.std(ddof=1) / np.sqrt(d.size)
    np.testing.assert_allclose(vae.elbo(params, x, e, "analytic"), per_a.mean(), rtol=1e-12)
    np.testing.assert_allclose(vae.elbo(params, x, e, "mc"), per_m.mean(), rtol=1e-12)


def test_reparameterize_both_branches_against_the_formula():
    """Eq. (6) z = mean + sigma * eps with sigma = sqrt(exp(log_var)), written here with
    sqrt (not our exp(log_var / 2)), for the 2-D (n, K) and 3-D (n, k, K) noise layouts
    and log_var far from 0. Tolerance: exp and sqrt are each within 1 ulp (<= 2u relative,
    so sigma within 4u on both sides: 2u ours + 4u here), the product and the sum round
    (u each): |z - ref| <= 8u (|mean| + |sigma eps|) + u |ref|, i.e. <= 9u in all."""
    u = 2.0**-53
    rng = np.random.default_rng(40)
    mean = rng.normal(size=(5, 3))
    log_var = rng.uniform(-6.0, 6.0, size=(5, 3))
    sigma = np.sqrt(np.exp(log_var))
    for eps in (rng.normal(size=(5, 3)), rng.normal(size=(5, 4, 3))):
        z = reparameterize(mean, log_var, eps)
        m, s = (mean, sigma) if eps.ndim == 2 else (mean[:, None], sigma[:, None])
        ref = m + s * eps
        assert z.shape == eps.shape
        assert np.all(np.abs(z - ref) <= 9 * u * (np.abs(m) + np.abs(s * eps) + np.abs(ref)))
    # the two layouts are the same computation: (n, K) noise == (n, 1, K) noise
    eps = rng.normal(size=(5, 3))
    np.testing.assert_array_equal(reparameterize(mean, log_var, eps),
                                  reparameterize(mean, log_var, eps[:, None, :])[:, 0])


# ------------------------------------------------------------------ REINFORCE unbiasedness


def _gradient_draws(vae, params, x, rng, m, s, baseline):
    """m independent (reparam, REINFORCE) gradient pairs on the same noise, flattened."""
    keys = list(params)
    rep, rf = [], []
    for _ in range(m):
        eps = rng.normal(size=(x.shape[0], s, vae.n_latent))
        g1 = vae.elbo_grad_reparam(params, x, eps)[1]
        g2 = vae.elbo_grad_reinforce(params, x, eps, baseline=baseline)[1]
        rep.append(np.concatenate([g1[k].ravel() for k in keys]))
        rf.append(np.concatenate([g2[k].ravel() for k in keys]))
    return np.array(rep), np.array(rf)


def test_reinforce_is_unbiased_and_baseline_reduces_variance():
    rng = np.random.default_rng(19)
    vae = VAE(4, 2, hidden=(3,))
    params = _perturbed(vae, rng, 0.2)
    x = _data(vae, 1, rng)
    m = 3000
    enc = np.array([k.startswith("enc.") for k in params for _ in range(params[k].size)])
    rep, rf = _gradient_draws(vae, params, x, rng, m, 1, None)
    rep2, rf2 = _gradient_draws(vae, params, x, rng, m, 2, "loo")
    for a, b in ((rep, rf), (rep2, rf2)):
        d = b - a  # paired on the same noise; mean zero iff both unbiased for the same thing
        se = d.std(axis=0, ddof=1) / np.sqrt(m)
        zscore = np.abs(d.mean(axis=0)) / np.where(se > 0, se, np.inf)
        assert zscore.max() < _zbound(d.shape[1]), zscore.max()
        # decoder parts are the same estimator: equal draw by draw
        np.testing.assert_allclose(b[:, ~enc], a[:, ~enc], rtol=1e-12, atol=1e-14)
    v_rep = rep[:, enc].var(axis=0).sum()
    v_rf = rf[:, enc].var(axis=0).sum()
    v_rep2, v_rf2 = rep2[:, enc].var(axis=0).sum(), rf2[:, enc].var(axis=0).sum()
    # variance ratios (printed with -s): REINFORCE is far noisier, the baseline helps
    print(f"\nencoder gradient variance ratio REINFORCE/reparam: S=1 no baseline "
          f"{v_rf / v_rep:.1f}; S=2 leave-one-out baseline {v_rf2 / v_rep2:.1f}")
    assert v_rf > v_rep
    # compare at equal S=2 cost: no-baseline S=2 variance is half the S=1 variance
    assert v_rf2 < v_rf / 2


def test_reinforce_matches_exact_gradient_linear_gaussian():
    """In the linear-Gaussian case the expected ELBO is analytic (eq. 14); its gradient (by
    Richardson finite differences of the closed form) is the target of both estimators."""
    rng = np.random.default_rng(20)
    W, b, s2 = _ppca(rng, d=4, k=2, scales=(1.5, 0.7))
    vae, params = linear_gaussian_vae(W, b, s2)
    params = _enc_perturbed(params, rng, 0.3)
    x = rng.normal(size=(1, 4))
    # five-point central differences of the closed form (truncation O(h^4) ~ 1e-16)
    fd = []
    for k in params:
        for i in range(params[k].size):
            h = 1e-4

            def f(t, k=k, i=i):
                p = {kk: vv.copy() for kk, vv in params.items()}
                p[k].reshape(-1)[i] += t
                return float(linear_gaussian_elbo(p, x, vae.arch)[0])

            fd.append((8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h))
    fd = np.array(fd)
    m = 4000
    for s, baseline in ((1, None), (2, "loo")):
        rep, rf = _gradient_draws(vae, params, x, rng, m, s, baseline)
        bound = _zbound(2 * fd.size)
        for draws in (rep, rf):
            se = draws.std(axis=0, ddof=1) / np.sqrt(m)
            zs = np.abs(draws.mean(axis=0) - fd) / np.where(se > 0, se, np.inf)
            ok = se > 0
            assert zs[ok].max() < bound, zs[ok].max()
            # zero-variance coordinates are exact
            np.testing.assert_allclose(draws.mean(axis=0)[~ok], fd[~ok], atol=1e-7)


def test_iwae_increases_towards_log_marginal():
    rng = np.random.default_rng(24)
    W, b, s2 = _ppca(rng)
    vae, params = linear_gaussian_vae(W, b, s2)
    params = _enc_perturbed(params, rng, 0.1)
    x = rng.normal(size=(3, 6)) * 2
    log_px = linear_gaussian_log_marginal(W, b, s2, x)
    elbo = linear_gaussian_elbo(params, x, vae.arch)
    e1 = vae.iwae_bound(params, x, 1, rng, n_repeats=4000)
    e_big = vae.iwae_bound(params, x, 2000, rng, n_repeats=10)
    # L_1 is the ELBO (closed form), L_k <= log p(x), and the gap shrinks with k; the
    # standard errors are computed here from the per-set estimates (not est.stderr)
    from scipy.special import logsumexp

    def mean_se(est, k, reps):
        per_set = logsumexp(est.log_weights.reshape(3, reps, k), axis=2) - np.log(k)
        return per_set.mean(axis=1), per_set.std(axis=1, ddof=1) / np.sqrt(reps)

    v1, se1 = mean_se(e1, 1, 4000)
    vk, sek = mean_se(e_big, 2000, 10)
    np.testing.assert_allclose(e1.value, v1, rtol=1e-12)
    np.testing.assert_allclose(e_big.value, vk, rtol=1e-12)
    assert np.all(np.abs(v1 - elbo) < Z * se1)
    assert np.all(vk < log_px + Z * sek)
    assert np.all(log_px - e_big.value < 0.2 * (log_px - elbo))
    # Jensen on every sample set, exactly (eq. 11 with k=1 vs k)
    lw = e_big.log_weights.reshape(3, 10, 2000)
    assert np.all(lw.mean(axis=2) <= np.log(np.mean(np.exp(lw), axis=2)) + 1e-12)


def test_iwae_chunking_does_not_change_the_result():
    rng = np.random.default_rng(25)
    vae = VAE(6, 2, hidden=(4,))
    params = _perturbed(vae, rng)
    x = _data(vae, 5, rng)
    a = vae.iwae_bound(params, x, 7, 3, n_repeats=2)
    b = vae.iwae_bound(params, x, 7, 3, n_repeats=2, chunk_size=2)
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(a.stderr, b.stderr)
    assert b.log_weights.shape == (5, 14)


def test_model_protocol_against_scipy():
    rng = np.random.default_rng(26)
    vae = VAE(5, 2, hidden=(3,), likelihood="gaussian")
    params = _perturbed(vae, rng)
    model = vae.as_model(params)
    assert isinstance(model, VAEModel) and model.latent_type == "continuous"
    x = _data(vae, 3, rng)
    z = rng.normal(size=(3, 4, 2))
    mean, log_var = vae.decode(z.reshape(12, 2), params, raw=True)
    ll = stats.norm.logpdf(np.repeat(x, 4, 0), mean, np.exp(0.5 * log_var)).sum(1).reshape(3, 4)
    lp = stats.norm.logpdf(z).sum(2)
    np.testing.assert_allclose(model.log_likelihood(x, z), ll, rtol=1e-12)
    np.testing.assert_allclose(model.log_prior(z), lp, rtol=1e-12)
    np.testing.assert_allclose(model.log_joint(x, z), ll + lp, rtol=1e-12)
    np.testing.assert_allclose(model.log_joint(x, z[:1]),
                               model.log_joint(x, np.repeat(z[:1], 3, 0)))
    np.testing.assert_allclose(model.log_q(x, z), vae.log_q(params, x, z), rtol=1e-13)
    zs = model.sample_q(x, 5000, np.random.default_rng(0))
    qm, qlv = vae.encode(x, params)
    se = np.exp(0.5 * qlv) / np.sqrt(5000)
    assert np.all(np.abs(zs.mean(1) - qm) < _zbound(6) * se)
    assert model.sample_prior(2, 3, rng).shape == (2, 3, 2)


# ------------------------------------------------------------------ amortization


def _gap_stderr_exact(W, b, s2, x, m_l, lv_l, m_e, lv_e, k_eval):
    """Exact standard error of the k_eval-draw mean of the amortization gap's per-draw
    difference d(eps) = [log p(x | z_l) - KL_l] - [log p(x | z_e) - KL_e] (eq. 7a, both
    KLs constants), z = m + s eps with the same eps ~ N(0, I) for both, in the
    linear-Gaussian model: log p(x | z) = c(x) - z^T G z / 2 + g^T z with G = W^T W / s2,
    g = W^T (x - b) / s2. So d = const + beta^T eps + eps^T A eps with
    beta = S_l (g - G m_l) - S_e (g - G m_e), A = (S_e G S_e - S_l G S_l) / 2, and
    Var d = beta^T beta + 2 tr(A^2) (odd moments of eps vanish)."""
    G = W.T @ W / s2
    out = []
    for i in range(x.shape[0]):
        g = W.T @ (x[i] - b) / s2
        sl, se_ = np.exp(0.5 * lv_l[i]), np.exp(0.5 * lv_e[i])
        beta = sl * (g - G @ m_l[i]) - se_ * (g - G @ m_e[i])
        A = 0.5 * (se_[:, None] * G * se_[None, :] - sl[:, None] * G * sl[None, :])
        out.append(np.sqrt((beta @ beta + 2.0 * np.sum(A * A)) / k_eval))
    return np.array(out)


def test_local_vi_closes_the_amortization_gap_in_ppca():
    """With a fixed PPCA decoder the best diagonal q is the exact posterior (orthogonal W),
    so local VI should reach log p(x); the encoder here is deliberately poor."""
    rng = np.random.default_rng(27)
    W, b, s2 = _ppca(rng, d=5, k=2, scales=(1.5, 0.8))
    vae, params = linear_gaussian_vae(W, b, s2)
    params = _enc_perturbed(params, rng, 0.4)
    x = rng.normal(size=(4, 5))
    log_px = linear_gaussian_log_marginal(W, b, s2, x)
    res = vae.amortization_gap(params, x, k_eval=4000, rng=1, n_steps=1500, lr=0.05,
                               lr_final=1e-4, k=4)
    closed_enc = linear_gaussian_elbo(params, x, vae.arch)
    closed_loc = linear_gaussian_elbo(params, x, vae.arch, res.mean, res.log_var)
    assert np.all(closed_loc > closed_enc)
    assert np.all(log_px - closed_loc < 0.01 * (log_px - closed_enc))
    m_e, lv_e = vae.encode(x, params)
    se = _gap_stderr_exact(W, b, s2, x, res.mean, res.log_var, m_e, lv_e, 4000)
    assert np.all(np.abs(res.gap - (closed_loc - closed_enc)) < Z * se)
    assert np.all(res.gap > 0)
    np.testing.assert_allclose(res.gap, res.elbo_local - res.elbo_encoder, rtol=1e-10)


# ------------------------------------------------------------------ fit


def test_fit_replays_the_documented_noise_protocol():
    """fit (fast workspace path) equals a hand loop over the documented rng draws using the
    reference gradient and the Adam class."""
    rng_data = np.random.default_rng(28)
    vae = VAE(6, 2, hidden=(5,))
    x = _data(vae, 23, rng_data)
    vae.fit(x, n_epochs=3, batch_size=10, lr=1e-2, rng=5)
    rng = np.random.default_rng(5)
    rng.spawn(1)
    params = vae.init_params(rng)
    opt = Adam(params, lr=1e-2)
    for _ in range(3):
        perm = rng.permutation(23)
        for start in range(0, 23, 10):
            xb = x[perm[start:start + 10]]
            eps = rng.standard_normal((xb.shape[0], 2))
            opt.step(vae.elbo_grad_reparam(params, xb, eps)[1], sign=-1.0)
    for k in params:
        np.testing.assert_allclose(vae.params_[k], params[k], rtol=1e-9, atol=1e-12)


def test_fit_improves_elbo_on_digits_and_is_deterministic():
    from lvmref.datasets import load_digits_binarized

    train, test = load_digits_binarized()
    vae = VAE(64, 4, hidden=(32,))
    eps = np.random.default_rng(0).normal(size=(test.shape[0], 4))
    init = vae.init_params(1)
    before = vae.elbo(init, test, eps).mean()
    vae.fit(train[:500], test, n_epochs=8, batch_size=50, lr=3e-3, rng=1)
    after = vae.elbo(vae.params_, test, eps).mean()
    assert after > before + 10.0  # nats; starts near -44, a trained model is near -25
    assert len(vae.history_["test_elbo"]) == 8
    assert vae.history_["train_elbo"][-1] > vae.history_["train_elbo"][0]
    again = VAE(64, 4, hidden=(32,)).fit(train[:500], n_epochs=8, batch_size=50, lr=3e-3,
                                         rng=1)
    for k in vae.params_:
        np.testing.assert_array_equal(vae.params_[k], again.params_[k])


def test_fit_callback_sees_each_epoch_and_leaves_the_fit_unchanged():
    rng = np.random.default_rng(31)
    vae = VAE(6, 2, hidden=(5,))
    x = _data(vae, 23, rng)
    seen = []
    vae.fit(x, x[:7], n_epochs=3, batch_size=10, rng=5,
            callback=lambda epoch, h: seen.append((epoch, len(h["epoch"]), h["test_elbo"][-1])))
    assert [s[:2] for s in seen] == [(1, 1), (2, 2), (3, 3)]
    assert [s[2] for s in seen] == vae.history_["test_elbo"]
    plain = VAE(6, 2, hidden=(5,)).fit(x, x[:7], n_epochs=3, batch_size=10, rng=5)
    for k in plain.params_:
        np.testing.assert_array_equal(vae.params_[k], plain.params_[k])
    with pytest.raises(TypeError, match="callback"):
        vae.fit(x, n_epochs=1, callback="print")


@pytest.mark.parametrize("kw", [dict(estimator="reinforce", k=2, baseline="loo"),
                                dict(k=3, kl="mc")])
def test_fit_generic_paths_improve(kw):
    rng = np.random.default_rng(29)
    vae = VAE(8, 2, hidden=(6,))
    x = _data(vae, 40, rng)
    eps = rng.normal(size=(40, 50, 2))
    before = vae.elbo(vae.init_params(3), x, eps).mean()
    vae.fit(x, n_epochs=40, batch_size=20, lr=1e-2, rng=3, **kw)
    assert vae.elbo(vae.params_, x, eps).mean() > before + 0.5


# ------------------------------------------------------------------ conveniences


def test_encode_decode_reconstruct_sample():
    rng = np.random.default_rng(30)
    vae = VAE(6, 2, hidden=(4,))
    with pytest.raises(ValueError, match="params"):
        vae.encode(np.zeros((1, 6)))
    params = _perturbed(vae, rng)
    x = _data(vae, 3, rng)
    mean, log_var = vae.encode(x, params)
    logits = vae.decode(mean, params, raw=True)
    np.testing.assert_allclose(vae.decode(mean, params), expit(logits), rtol=1e-14)
    np.testing.assert_allclose(vae.reconstruct(x, params), expit(logits), rtol=1e-14)
    r1, r2 = vae.reconstruct(x, params, rng=4), vae.reconstruct(x, params, rng=4)
    np.testing.assert_array_equal(r1, r2)
    s = vae.sample(1000, 5, params)
    assert set(np.unique(s)) <= {0.0, 1.0}
    np.testing.assert_array_equal(s, vae.sample(1000, 5, params))
    probs = vae.sample(1000, 5, params, return_mean=True)
    assert np.all(np.abs(s.mean(0) - probs.mean(0)) < 0.1)
    g = VAE(3, 2, hidden=(), likelihood="gaussian")
    gp = g.init_params(0)
    m, v = g.decode(np.zeros((1, 2)), gp, raw=True)
    np.testing.assert_array_equal(m, gp["dec.b0"][None, :3])
    np.testing.assert_array_equal(v, gp["dec.b0"][None, 3:])
    assert g.sample(4, 0, gp).shape == (4, 3)


def test_parameter_layout_is_documented_shape():
    vae = VAE(64, 10, hidden=(200,))
    assert vae.param_shapes() == {
        "enc.W0": (64, 200), "enc.b0": (200,), "enc.W1": (200, 20), "enc.b1": (20,),
        "dec.W0": (10, 200), "dec.b0": (200,), "dec.W1": (200, 64), "dec.b1": (64,),
    }
    p = vae.init_params(0)
    assert {k: v.shape for k, v in p.items()} == vae.param_shapes()


def test_digits_data():
    from sklearn.datasets import load_digits

    from lvmref.datasets import load_digits_binarized

    train, test, ytr, yte = load_digits_binarized(return_labels=True)
    d = load_digits()
    expect = (d.data / 16.0 > 0.5).astype(float)
    assert train.dtype == np.float64 and train.shape == (1500, 64) and test.shape == (297, 64)
    np.testing.assert_array_equal(train, expect[:1500])
    np.testing.assert_array_equal(test, expect[1500:])
    np.testing.assert_array_equal(np.concatenate([ytr, yte]), d.target)


# ------------------------------------------------------------------ bad input


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="n_features"):
        VAE(0, 2)
    with pytest.raises(TypeError, match="n_latent"):
        VAE(3, 2.5)
    with pytest.raises(ValueError, match="hidden"):
        VAE(3, 2, hidden=(0,))
    with pytest.raises(TypeError, match="hidden"):
        VAE(3, 2, hidden=5)
    with pytest.raises(ValueError, match="likelihood"):
        VAE(3, 2, likelihood="poisson")
    with pytest.raises(ValueError, match="activation"):
        VAE(3, 2, activation="gelu")


@pytest.mark.parametrize(
    "x, match",
    [
        (np.full((2, 4), np.nan), "x"),
        (np.zeros(4), "x"),
        (np.zeros((0, 4)), "x"),
        (np.zeros((2, 5)), "x"),
        (np.full((2, 4), 0.5), "x"),
        (np.full((2, 4), np.inf), "x"),
    ],
)
def test_bad_x(x, match):
    vae = VAE(4, 2, hidden=(3,))
    p = vae.init_params(0)
    eps = np.zeros((x.shape[0] if x.ndim == 2 else 2, 2))
    for call in (lambda: vae.elbo(p, x, eps), lambda: vae.elbo_grad_reparam(p, x, eps),
                 lambda: vae.elbo_grad_reinforce(p, x, eps), lambda: vae.encode(x, p),
                 lambda: vae.iwae_bound(p, x, 2, 0), lambda: vae.fit(x, n_epochs=1),
                 lambda: vae.amortization_gap(p, x, k_eval=2, n_steps=1)):
        with pytest.raises((ValueError, TypeError), match=match):
            call()


def test_bad_noise_params_and_options():
    vae = VAE(4, 2, hidden=(3,))
    p = vae.init_params(0)
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="eps"):
        vae.elbo(p, x, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="eps"):
        vae.elbo(p, x, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="eps"):
        vae.elbo(p, x, np.zeros((3, 0, 2)))
    with pytest.raises(ValueError, match="eps"):
        vae.elbo(p, x, np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="kl"):
        vae.elbo(p, x, np.zeros((3, 2)), kl="exact")
    with pytest.raises(ValueError, match="params"):
        vae.elbo({k: v for k, v in p.items() if k != "dec.b0"}, x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="params"):
        vae.elbo({**p, "dec.b1": np.zeros(3)}, x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="params"):
        vae.elbo({**p, "dec.b0": np.full(3, np.nan)}, x, np.zeros((3, 2)))
    with pytest.raises(TypeError, match="params"):
        vae.elbo([1, 2], x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="eps and z"):
        vae.elbo_grad_reinforce(p, x)
    with pytest.raises(ValueError, match="eps and z"):
        vae.elbo_grad_reinforce(p, x, np.zeros((3, 2)), z=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="baseline"):
        vae.elbo_grad_reinforce(p, x, np.zeros((3, 2)), baseline="loo")
    with pytest.raises(ValueError, match="baseline"):
        vae.elbo_grad_reinforce(p, x, np.zeros((3, 2)), baseline="mean")
    with pytest.raises(ValueError, match="baseline"):
        vae.elbo_grad_reinforce(p, x, np.zeros((3, 2)), baseline=np.zeros(2))
    with pytest.raises(ValueError, match="baseline"):
        vae.elbo_grad_reinforce(p, x, np.zeros((3, 2)), baseline=np.nan)
    with pytest.raises(ValueError, match="k"):
        vae.iwae_bound(p, x, 0, 0)
    with pytest.raises(TypeError, match="rng"):
        vae.iwae_bound(p, x, 2, "seed")
    with pytest.raises(ValueError, match="n_epochs"):
        vae.fit(x, n_epochs=0)
    with pytest.raises(ValueError, match="lr"):
        vae.fit(x, lr=-1.0)
    with pytest.raises(ValueError, match="estimator"):
        vae.fit(x, estimator="score")
    with pytest.raises(ValueError, match="baseline"):
        vae.fit(x, baseline="loo")
    with pytest.raises(ValueError, match="x_test"):
        vae.fit(x, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="z"):
        vae.decode(np.zeros((2, 3)), p)
    with pytest.raises(ValueError, match="n"):
        vae.sample(0, 0, p)
    with pytest.raises(ValueError, match="k_eval"):
        vae.amortization_gap(p, x, k_eval=1)
    with pytest.raises(ValueError, match="mean"):
        reparameterize(np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="eps"):
        reparameterize(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 2)))


def test_inputs_not_mutated():
    rng = np.random.default_rng(32)
    vae = VAE(4, 2, hidden=(3,))
    p = _perturbed(vae, rng)
    x = _data(vae, 3, rng)
    eps = rng.normal(size=(3, 2))
    copies = ({k: v.copy() for k, v in p.items()}, x.copy(), eps.copy())
    vae.elbo_grad_reparam(p, x, eps)
    vae.elbo_grad_reinforce(p, x, eps, baseline=0.1)
    vae.fit(x, n_epochs=1, params=p, rng=0)
    vae.fit_local(p, x, n_steps=2, rng=0)
    for k in p:
        np.testing.assert_array_equal(p[k], copies[0][k])
    np.testing.assert_array_equal(x, copies[1])
    np.testing.assert_array_equal(eps, copies[2])


def test_init_schemes():
    vae = VAE(64, 10, hidden=(200,))
    g = vae.init_params(0)
    t = vae.init_params(0, scheme="torch")
    for k, shape in vae.param_shapes().items():
        n_in = vae.param_shapes()[k.replace("b", "W")][0]
        bound = 1 / np.sqrt(n_in)
        assert t[k].shape == shape and np.all(np.abs(t[k]) <= bound)
        assert np.abs(t[k]).max() > 0.8 * bound  # fills the interval (>= 20 draws each)
        if k.split(".")[1].startswith("b"):
            assert np.all(g[k] == 0)
        else:
            r = np.sqrt(6 / sum(shape))
            assert np.all(np.abs(g[k]) <= r) and np.abs(g[k]).max() > 0.8 * r
    with pytest.raises(ValueError, match="scheme"):
        vae.init_params(0, scheme="he")
    with pytest.raises(ValueError, match="init"):
        vae.fit(np.zeros((2, 64)), init="he")


def test_iwae_bound_with_given_samples_matches_independent_computation():
    """L_k from given z equals logmeanexp of log p(x|z) + log p(z) - log q(z|x) computed
    with scipy densities, set by set (eq. 11)."""
    from scipy.special import logsumexp

    rng = np.random.default_rng(34)
    vae = VAE(5, 2, hidden=(3,), likelihood="gaussian")
    params = _perturbed(vae, rng)
    x = _data(vae, 3, rng)
    z = rng.normal(size=(3, 12, 2))
    est = vae.iwae_bound(params, x, 4, n_repeats=3, z=z)
    m, v = vae.decode(z.reshape(36, 2), params, raw=True)
    ll = stats.norm.logpdf(np.repeat(x, 12, 0), m, np.exp(0.5 * v)).sum(1).reshape(3, 12)
    qm, qlv = vae.encode(x, params)
    lq = stats.norm.logpdf(z, qm[:, None], np.exp(0.5 * qlv)[:, None]).sum(2)
    lw = (ll + stats.norm.logpdf(z).sum(2) - lq).reshape(3, 3, 4)
    per_set = logsumexp(lw, axis=2) - np.log(4)
    np.testing.assert_allclose(est.value, per_set.mean(1), rtol=1e-12)
    np.testing.assert_allclose(est.stderr, per_set.std(1, ddof=1) / np.sqrt(3), rtol=1e-10)
    with pytest.raises(ValueError, match="z"):
        vae.iwae_bound(params, x, 4, n_repeats=2, z=z)
    with pytest.raises(ValueError, match="rng"):
        vae.iwae_bound(params, x, 4, 0, n_repeats=3, z=z)


# ---------------------------------------------------------------- persistence


def _fitted(tmp_path):
    rng = np.random.default_rng(43)
    vae = VAE(6, 2, hidden=(5, 4), likelihood="gaussian", activation="relu")
    x = rng.standard_normal((9, 6))
    vae.fit(x, x[:4], n_epochs=2, batch_size=4, lr=1e-2, rng=3)
    return vae, vae.save(tmp_path / "v")


def test_save_load_roundtrip_gives_identical_predictions(tmp_path):
    vae, path = _fitted(tmp_path)
    assert path == tmp_path / "v.npz" and path.is_file()
    vae2 = VAE.load(path)
    assert vae2.arch == vae.arch and repr(vae2) == repr(vae)
    assert list(vae2.params_) == list(vae.params_)
    for k in vae.params_:
        np.testing.assert_array_equal(vae2.params_[k], vae.params_[k])
    assert vae2.history_ == vae.history_ and len(vae2.history_["epoch"]) == 2
    rng = np.random.default_rng(4)
    x, eps = rng.standard_normal((3, 6)), rng.standard_normal((3, 2, 2))
    np.testing.assert_array_equal(vae2.elbo(None, x, eps), vae.elbo(None, x, eps))
    np.testing.assert_array_equal(vae2.encode(x)[1], vae.encode(x)[1])
    np.testing.assert_array_equal(vae2.sample(5, 7), vae.sample(5, 7))
    # a VAE whose params_ were assigned (no history), Bernoulli, no hidden layer
    b = VAE(4, 3, hidden=())
    b.params_ = b.init_params(5)
    b2 = VAE.load(b.save(tmp_path / "b.npz"))
    assert b2.arch == b.arch and b2.history_ is None
    xb = (rng.random((2, 4)) < 0.5).astype(float)
    np.testing.assert_array_equal(b2.reconstruct(xb), b.reconstruct(xb))


def test_save_needs_params(tmp_path):
    with pytest.raises(ValueError, match="params_"):
        VAE(4, 2, hidden=(3,)).save(tmp_path / "a.npz")
    vae = VAE(4, 2, hidden=(3,))
    vae.params_ = {"enc.W0": np.zeros((4, 3))}
    with pytest.raises(ValueError, match="params"):
        vae.save(tmp_path / "a.npz")
    vae.params_ = vae.init_params(0)
    vae.history_ = {"epoch": [1, 2], "train_elbo": [1.0], "test_elbo": [1.0, 2.0],
                    "seconds": [0.1, 0.2]}
    with pytest.raises(ValueError, match="train_elbo"):
        vae.save(tmp_path / "a.npz")
    with pytest.raises(FileNotFoundError):
        VAE.load(tmp_path / "none.npz")


def _rewrite(src, dst, **changes):
    """Copy model file src to dst with entries replaced (value) or removed (None)."""
    with np.load(src) as f:
        d = {k: f[k] for k in f.files}
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = np.asarray(v)
    np.savez(dst, **d)
    return dst


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"enc.W0": None}, "enc.W0 is missing"),
        ({"n_latent": None}, "n_latent is missing"),
        ({"dec.b2": np.zeros(5)}, r"params\['dec.b2'\] must have shape \(12\), got \(5,\)"),
        ({"enc.b0": np.array([0.0, np.nan, 0, 0, 0])}, "enc.b0.*NaN"),
        ({"dec.W0": np.full((2, 4), np.inf)}, "dec.W0.*infinite"),
        ({"n_features": np.array(6.0)}, "n_features must be an integer"),
        ({"n_features": np.array(0)}, "invalid architecture: n_features must be >= 1"),
        ({"hidden": np.array([5.0, 4.0])}, "hidden must be a 1-D integer array"),
        ({"likelihood": np.array("poisson")}, "invalid architecture: likelihood"),
        ({"activation": np.array(3)}, "activation must be a string"),
        ({"extra": np.zeros(2)}, r"unexpected entries \['extra'\]"),
        ({"__kind__": np.array("GaussianMixture")}, "holds a GaussianMixture, not a VAE"),
        ({"__format__": np.array(2)}, "format version 2 is not supported"),
        ({"history_.epoch": np.array([1, 3])}, r"history_\['epoch'\] must be 1, 2"),
        ({"history_.epoch": np.array([1.0, 2.0])}, "epoch.*integers"),
        ({"history_.seconds": np.array([0.5])}, "seconds.*shape"),
        ({"history_.train_elbo": np.array([-3.0, np.inf])}, "train_elbo.*must be finite"),
        ({"history_.test_elbo": np.array([-3.0, -np.inf])}, "test_elbo.*finite"),
        ({"history_.seconds": np.array([0.5, 0.1])}, "non-decreasing"),
        ({"history_.test_elbo": None}, "history_.test_elbo is missing"),
    ],
)
def test_load_rejects_bad_files_naming_them(tmp_path, changes, match):
    _, good = _fitted(tmp_path)
    bad = _rewrite(good, tmp_path / "bad.npz", **changes)
    with pytest.raises(ValueError, match=match) as info:
        VAE.load(bad)
    assert str(info.value).startswith(f"{bad}: ")


def test_load_accepts_nan_test_elbo_and_rejects_unreadable_files(tmp_path):
    _, good = _fitted(tmp_path)
    ok = _rewrite(good, tmp_path / "ok.npz", **{"history_.test_elbo": np.array([np.nan] * 2)})
    assert np.isnan(VAE.load(ok).history_["test_elbo"]).all()  # fitted without x_test
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        VAE.load(tmp_path / "junk.npz")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.npz: truncated or corrupted"):
        VAE.load(cut)


# ---------------------------------------------------------------- finite input never gives NaN


def test_vae_collapsed_unit_log_q_is_finite():
    """log_var < -710 (e^{-s} = inf) with z == mean: the quadratic term is 0, not 0 * inf,
    so log q = -1/2 sum (log 2 pi + s) exactly; the IWAE bound and the REINFORCE gradient
    (kl="mc") built on it stay finite."""
    vae = VAE(3, 2, hidden=())
    p = vae.init_params(0)
    p["enc.b0"][2:] = [-800.0, -1500.0]
    x = np.array([[1.0, 0.0, 1.0]])
    mean, lv = vae.encode(x, p)
    got = vae.log_q(p, x, mean)[0]
    want = -0.5 * np.sum(np.log(2 * np.pi) + lv)
    assert abs(got - want) <= 4e-16 * abs(want)
    z = np.repeat(mean[:, None, :], 3, axis=1)
    est = vae.iwae_bound(p, x, k=3, z=z)
    assert np.isfinite(est.value).all()
    value, grads = vae.elbo_grad_reinforce(p, x, z=z[:, :2], kl="mc")
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads.values())


def test_vae_gaussian_decoder_with_extreme_log_variance_is_finite():
    """A Gaussian decoder output with v = -1500 at x == m: log-likelihood and its gradient
    (8) from the scaled residual (no 0 * inf)."""
    vae = VAE(2, 1, hidden=(), likelihood="gaussian")
    p = {"enc.W0": np.zeros((2, 2)), "enc.b0": np.array([0.0, -3.0]),
         "dec.W0": np.zeros((1, 4)), "dec.b0": np.array([0.25, -0.5, -1500.0, 0.0])}
    x = np.array([[0.25, 1.0]])
    eps = np.array([[0.3]])
    value, grads = vae.elbo_grad_reparam(p, x, eps)
    # x_0 == m_0 exactly (the decoder ignores z): that term is -1/2 (log 2 pi - 1500)
    ll = -0.5 * (np.log(2 * np.pi) - 1500.0) - 0.5 * (np.log(2 * np.pi) + 0.0 + 1.5**2)
    kl = 0.5 * (np.expm1(-3.0) + 3.0)
    assert abs(value - (ll - kl)) <= 1e-13 * abs(ll)
    assert all(np.isfinite(g).all() for g in grads.values())
    assert grads["dec.b0"][0] == 0.0 and grads["dec.b0"][2] == -0.5


# ------------------------------------------------------------------ eqs. (15)-(19): IWAE, DReG, STL


def _log_weights_scipy(vae, p, x, eps, q_params=None):
    """log w_it of eq. (15) from scipy densities at z = mean(p) + sd(p) eps, with the q
    density at ``q_params`` (default p; the "held fixed" q of eq. 17)."""
    n, k, K = eps.shape
    mean, log_var = vae.encode(x, p)
    z = mean[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * eps
    out = vae.decode(z.reshape(n * k, K), p, raw=True)
    xr = np.repeat(x, k, axis=0)
    if vae.likelihood == "bernoulli":
        ll = stats.bernoulli.logpmf(xr, expit(out)).sum(1)
    else:
        m, v = out
        ll = stats.norm.logpdf(xr, m, np.exp(0.5 * v)).sum(1)
    qm, qlv = vae.encode(x, p if q_params is None else q_params)
    log_q = stats.norm.logpdf(z, qm[:, None, :], np.exp(0.5 * qlv)[:, None, :]).sum(2)
    return ll.reshape(n, k) + stats.norm.logpdf(z).sum(2) - log_q


def _flat(g, keys):
    return np.concatenate([g[k].ravel() for k in keys])


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("k", [1, 4])
def test_iwae_grad_reparam_is_the_gradient_of_the_estimate(likelihood, k):
    """Eq. (16) is the exact gradient of (15) at fixed noise: central differences; the value
    is logmeanexp of log weights from scipy densities."""
    rng = np.random.default_rng(40)
    vae = VAE(5, 3, hidden=(4,), likelihood=likelihood)
    params = _perturbed(vae, rng)
    x = _data(vae, 6, rng)
    eps = rng.normal(size=(6, k, 3))
    rep = assert_grad_close(lambda p: vae.iwae_grad(p, x, eps), params, richardson=True,
                            rtol=FD_RTOL)
    lw = _log_weights_scipy(vae, params, x, eps)
    expected = np.mean(np.logaddexp.reduce(lw, axis=1) - np.log(k))
    np.testing.assert_allclose(rep.value, expected, rtol=1e-12)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("estimator", ["dreg", "stl"])
def test_dreg_and_stl_are_gradients_of_their_surrogates(likelihood, estimator):
    """Encoder part of (18)/(19): the gradient in the encoder of
    sum_i c_i [log p(x, z_i(lambda)) - log q_{lambda_0}(z_i(lambda) | x)] / n, with the
    weights c_i = omega_i^2 (DReG) or 1/k (STL) and the density of q held at lambda_0 --
    written here with scipy densities and differentiated by central differences. Decoder
    part: the gradient of the returned value (15)/(7b)."""
    rng = np.random.default_rng(41)
    vae = VAE(5, 3, hidden=(4,), likelihood=likelihood)
    params = _perturbed(vae, rng)
    n, k = 6, 4
    x = _data(vae, n, rng)
    eps = rng.normal(size=(n, k, 3))
    lw0 = _log_weights_scipy(vae, params, x, eps)
    if estimator == "dreg":
        value, grads = vae.iwae_grad(params, x, eps, estimator="dreg")
        omega = np.exp(lw0 - np.logaddexp.reduce(lw0, axis=1, keepdims=True))
        c = omega**2
        expected_value = np.mean(np.logaddexp.reduce(lw0, axis=1) - np.log(k))
        value_fn = lambda p: vae.iwae_grad(p, x, eps, estimator="reparam")  # noqa: E731
    else:
        value, grads = vae.elbo_grad_stl(params, x, eps)
        c = np.full((n, k), 1.0 / k)
        expected_value = lw0.mean()
        value_fn = lambda p: vae.elbo_grad_reparam(p, x, eps, "mc")  # noqa: E731
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)

    def surrogate(p):
        return float(np.sum(c * _log_weights_scipy(vae, p, x, eps, q_params=params)) / n)

    enc = [key for key in params if key.startswith("enc.")]
    dec = [key for key in params if key.startswith("dec.")]
    assert_grad_close(surrogate, params, {key: grads[key] for key in enc}, keys=enc,
                      richardson=True, rtol=FD_RTOL)
    assert_grad_close(lambda p: value_fn(p)[0], params, {key: grads[key] for key in dec},
                      keys=dec, richardson=True, rtol=FD_RTOL)


def test_one_sample_iwae_is_the_mc_elbo_and_dreg_is_stl():
    """k = 1: (16) is (9b) and (18) is (19) -- the same operations in another order, so
    equal to a few ulp (rtol 1e-13 normwise is ~500 u)."""
    rng = np.random.default_rng(42)
    vae = VAE(5, 3, hidden=(4,))
    params = _perturbed(vae, rng)
    x, eps = _data(vae, 6, rng), rng.normal(size=(6, 1, 3))
    for (v1, g1), (v2, g2) in (
            (vae.iwae_grad(params, x, eps), vae.elbo_grad_reparam(params, x, eps, "mc")),
            (vae.iwae_grad(params, x, eps, estimator="dreg"), vae.elbo_grad_stl(params, x, eps))):
        np.testing.assert_allclose(v1, v2, rtol=1e-13)
        for key in params:
            assert np.max(np.abs(g1[key] - g2[key])) <= 1e-13 * np.max(np.abs(g2[key]))


def test_stl_and_dreg_are_exactly_zero_at_the_exact_posterior():
    """Linear-Gaussian VAE with the exact posterior (eq. 13): log p(x, z) - log q(z | x) =
    log p(x) for every z, so delta = 0 in (17) and the encoder parts of (18) and (19)
    vanish for every noise draw (zero variance), while those of (9b) and (16) do not. In
    floating point delta is a cancellation of O(1) terms: we allow 1e-12 of the
    reparameterisation gradient's size. Moving the encoder by 1e-3 makes them O(1e-3)."""
    rng = np.random.default_rng(43)
    W, b, s2 = _ppca(rng, d=5, k=2, scales=(1.5, 0.8))
    vae, params = linear_gaussian_vae(W, b, s2)
    x = rng.normal(size=(3, 5))
    enc = [key for key in params if key.startswith("enc.")]
    near = _enc_perturbed(params, rng, 1e-3)
    for _ in range(20):
        eps = rng.normal(size=(3, 4, 2))
        rep = _flat(vae.elbo_grad_reparam(params, x, eps, "mc")[1], enc)
        iw = _flat(vae.iwae_grad(params, x, eps)[1], enc)
        stl = _flat(vae.elbo_grad_stl(params, x, eps)[1], enc)
        dreg = _flat(vae.iwae_grad(params, x, eps, estimator="dreg")[1], enc)
        scale = np.max(np.abs(rep))
        assert scale > 1e-2 and np.max(np.abs(iw)) > 1e-2
        assert np.max(np.abs(stl)) <= 1e-12 * scale
        assert np.max(np.abs(dreg)) <= 1e-12 * scale
        off = _flat(vae.elbo_grad_stl(near, x, eps)[1], enc)
        assert np.max(np.abs(off)) > 1e-5


def _draws(fn, keys, rng, shape, m):
    return np.array([_flat(fn(rng.normal(size=shape))[1], keys) for _ in range(m)])


def _assert_mean(draws, target, m_compare):
    """Mean of the draws equals ``target`` coordinatewise within a Bonferroni z-bound of
    the standard error computed from the draws; zero-variance coordinates exactly (to
    the 1e-7 of the finite-difference target)."""
    se = draws.std(axis=0, ddof=1) / np.sqrt(draws.shape[0])
    ok = se > 1e-12 * max(1.0, np.max(np.abs(target)))
    z = np.abs(draws.mean(axis=0)[ok] - target[ok]) / se[ok]
    assert z.max() < _zbound(m_compare), z.max()
    np.testing.assert_allclose(draws.mean(axis=0)[~ok], target[~ok], atol=1e-7)


def _fd5(f, params, keys):
    """Five-point central differences (truncation O(h^4) ~ 1e-16 at h = 1e-4)."""
    out = []
    for key in keys:
        for i in range(params[key].size):
            def g(t, key=key, i=i):
                p = {kk: vv.copy() for kk, vv in params.items()}
                p[key].reshape(-1)[i] += t
                return f(p)
            h = 1e-4
            out.append((8 * (g(h) - g(-h)) - (g(2 * h) - g(-2 * h))) / (12 * h))
    return np.array(out)


def test_stl_is_unbiased_for_the_closed_form_elbo_gradient():
    """E[(19)] = grad of the analytic ELBO (14) of a linear Gaussian VAE, encoder and
    decoder moved off the exact posterior (so the gradient is not zero)."""
    rng = np.random.default_rng(44)
    W, b, s2 = _ppca(rng, d=4, k=2, scales=(1.5, 0.7))
    vae, params = linear_gaussian_vae(W, b, s2)
    params = {key: v + 0.2 * rng.normal(size=v.shape) for key, v in params.items()}
    x = rng.normal(size=(1, 4))
    keys = list(params)
    target = _fd5(lambda p: float(linear_gaussian_elbo(p, x, vae.arch)[0]), params, keys)
    draws = _draws(lambda e: vae.elbo_grad_stl(params, x, e), keys, rng, (1, 2, 2), 4000)
    _assert_mean(draws, target, target.size)


def test_iwae_gradients_at_the_exact_posterior_match_the_closed_form_marginal():
    """At q = p(z | x), L_k = log p(x) for every k (eq. 11), so E[(16)] = E[(18)] =
    grad log p(x): zero in the encoder, and in the decoder's mean weights A, mean bias a and
    log-variance bias c the gradient of log N(x | a, A^T A + diag e^c), written with
    scipy and differentiated by five-point differences. (The log-variance weights C enter
    p(x) only through a non-Gaussian marginal, so they are compared with nothing here.)"""
    rng = np.random.default_rng(45)
    W, b, s2 = _ppca(rng, d=4, k=2, scales=(1.5, 0.7))
    vae, params = linear_gaussian_vae(W, b, s2)
    x = rng.normal(size=(1, 4))
    d = 4

    def log_px(p):
        A, a, c = p["dec.W0"][:, :d], p["dec.b0"][:d], p["dec.b0"][d:]
        return float(stats.multivariate_normal.logpdf(x[0], a, A.T @ A + np.diag(np.exp(c))))

    A_idx = np.zeros_like(params["dec.W0"], dtype=bool)
    A_idx[:, :d] = True
    keys = list(params)
    flat_sel = np.concatenate([np.zeros(params["enc.W0"].size + params["enc.b0"].size, bool),
                               A_idx.ravel(), np.ones(2 * d, bool)])
    grad_dec = _fd5(log_px, params, ["dec.W0", "dec.b0"])
    target = np.concatenate([np.zeros(params["enc.W0"].size + params["enc.b0"].size),
                             grad_dec])
    for estimator in ("reparam", "dreg"):
        draws = _draws(lambda e, est=estimator: vae.iwae_grad(params, x, e, est), keys, rng,
                       (1, 3, 2), 4000)
        enc_and_sel = flat_sel.copy()
        enc_and_sel[:params["enc.W0"].size + params["enc.b0"].size] = True
        _assert_mean(draws[:, enc_and_sel], target[enc_and_sel], 2 * enc_and_sel.sum())


def test_dreg_and_iwae_reparam_have_the_same_expectation():
    """Paired on the same noise, the mean of (18) - (16) is zero within the z-bound (both
    are unbiased for grad L_k, eq. 18's derivation); decoder parts are identical."""
    rng = np.random.default_rng(46)
    vae = VAE(4, 2, hidden=(3,))
    params = _perturbed(vae, rng, 0.2)
    x = _data(vae, 1, rng)
    keys = list(params)
    m = 3000
    rep, dreg = [], []
    for _ in range(m):
        eps = rng.normal(size=(1, 3, 2))
        rep.append(_flat(vae.iwae_grad(params, x, eps)[1], keys))
        dreg.append(_flat(vae.iwae_grad(params, x, eps, estimator="dreg")[1], keys))
    rep, dreg = np.array(rep), np.array(dreg)
    enc = np.array([key.startswith("enc.") for key in keys for _ in range(params[key].size)])
    np.testing.assert_array_equal(rep[:, ~enc], dreg[:, ~enc])
    _assert_mean(dreg[:, enc] - rep[:, enc], np.zeros(enc.sum()), enc.sum())
    # and DReG is the less noisy encoder gradient here (printed with -s)
    ratio = rep[:, enc].var(axis=0).sum() / dreg[:, enc].var(axis=0).sum()
    print(f"\nencoder variance IWAE-reparam / DReG at k = 3: {ratio:.2f}")
    assert ratio > 1.0


def test_fit_iwae_and_stl_replay_the_noise_protocol_and_improve():
    """fit(objective="iwae") and fit(estimator="stl") equal a hand loop over the documented
    rng draws with iwae_grad / elbo_grad_stl and Adam, and raise their objective."""
    rng_data = np.random.default_rng(47)
    vae = VAE(6, 2, hidden=(5,))
    x = _data(vae, 23, rng_data)
    eval_eps = rng_data.normal(size=(23, 200, 2))
    for kw, k, grad in (
            (dict(objective="iwae", k=3), 3, lambda p, xb, e: vae.iwae_grad(p, xb, e)),
            (dict(objective="iwae", k=3, estimator="dreg"), 3,
             lambda p, xb, e: vae.iwae_grad(p, xb, e, estimator="dreg")),
            (dict(estimator="stl", k=2), 2, lambda p, xb, e: vae.elbo_grad_stl(p, xb, e))):
        fitted = VAE(6, 2, hidden=(5,)).fit(x, n_epochs=30, batch_size=10, lr=1e-2, rng=5, **kw)
        rng = np.random.default_rng(5)
        rng.spawn(1)
        params = vae.init_params(rng)
        before = vae.iwae_grad(params, x, eval_eps[:, :k])[0]
        opt = Adam(params, lr=1e-2)
        for _ in range(30):
            perm = rng.permutation(23)
            for start in range(0, 23, 10):
                xb = x[perm[start:start + 10]]
                opt.step(grad(params, xb, rng.standard_normal((xb.shape[0], k, 2)))[1],
                         sign=-1.0)
        for key in params:
            np.testing.assert_array_equal(fitted.params_[key], params[key])
        after = vae.iwae_grad(params, x, eval_eps[:, :k])[0]
        assert after > before + 0.5, (kw, before, after)
        assert len(fitted.history_["train_elbo"]) == 30


def test_bad_estimator_arguments():
    vae = VAE(4, 2, hidden=(3,))
    p = vae.init_params(0)
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="eps"):
        vae.iwae_grad(p, x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="eps"):
        vae.iwae_grad(p, x, np.zeros((3, 0, 2)))
    with pytest.raises(ValueError, match="eps"):
        vae.iwae_grad(p, x, np.zeros((2, 1, 2)))
    with pytest.raises(ValueError, match="eps"):
        vae.iwae_grad(p, x, np.full((3, 1, 2), np.inf))
    with pytest.raises(ValueError, match="estimator"):
        vae.iwae_grad(p, x, np.zeros((3, 1, 2)), estimator="stl")
    with pytest.raises(ValueError, match="eps"):
        vae.elbo_grad_stl(p, x, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="x"):
        vae.elbo_grad_stl(p, np.full((3, 4), 0.5), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="params"):
        vae.iwae_grad(None, x, np.zeros((3, 1, 2)))
    with pytest.raises(ValueError, match="objective"):
        vae.fit(x, objective="iwae5")
    with pytest.raises(ValueError, match="estimator"):
        vae.fit(x, objective="iwae", estimator="reinforce")
    with pytest.raises(ValueError, match="estimator"):
        vae.fit(x, estimator="dreg")
    with pytest.raises(ValueError, match="kl"):
        vae.fit(x, objective="iwae", kl="mc")
    with pytest.raises(ValueError, match="kl"):
        vae.fit(x, estimator="stl", kl="analytic")
    with pytest.raises(ValueError, match="baseline"):
        vae.fit(x, objective="iwae", baseline="loo", k=2)
    p_copy, eps = {key: v.copy() for key, v in p.items()}, np.ones((3, 2, 2))
    vae.iwae_grad(p, x, eps, estimator="dreg")
    vae.elbo_grad_stl(p, x, eps)
    for key in p:
        np.testing.assert_array_equal(p[key], p_copy[key])
    np.testing.assert_array_equal(eps, np.ones((3, 2, 2)))


def test_fit_on_a_memory_map_is_the_fit_on_the_array(tmp_path):
    """VAE.fit gathers each minibatch from an np.memmap (never copied whole): every
    number equals the fit on the loaded array, for every training path and file dtype."""
    rng = np.random.default_rng(70)
    X = (rng.random((130, 12)) < 0.3).astype(np.uint8)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "x32.npy", X.astype(np.float32))
    for name in ("x.npy", "x32.npy"):
        Xm = np.load(tmp_path / name, mmap_mode="r")
        for kw in ({}, {"k": 2}, {"estimator": "reinforce"}):
            a = VAE(12, 3, hidden=(8,)).fit(X.astype(float), n_epochs=2, batch_size=32,
                                             rng=1, **kw)
            b = VAE(12, 3, hidden=(8,)).fit(Xm, n_epochs=2, batch_size=32, rng=1, **kw)
            for key in a.params_:
                np.testing.assert_array_equal(b.params_[key], a.params_[key])
            assert b.history_["train_elbo"] == a.history_["train_elbo"]
    grey = X.astype(float)
    grey[77, 3] = 0.5
    np.save(tmp_path / "g.npy", grey)
    with pytest.raises(ValueError, match="x must be binary"):
        VAE(12, 3).fit(np.load(tmp_path / "g.npy", mmap_mode="r"), n_epochs=1)
    with pytest.raises(ValueError, match=r"x must have n_features = 11 columns"):
        VAE(11, 3).fit(np.load(tmp_path / "x.npy", mmap_mode="r"), n_epochs=1)
    nan = X.astype(float)
    nan[90, 0] = np.nan
    np.save(tmp_path / "n.npy", nan)
    with pytest.raises(ValueError, match=r"x contains NaN or infinite values \(first in row 90"):
        VAE(12, 3).fit(np.load(tmp_path / "n.npy", mmap_mode="r"), n_epochs=1)


# -- issue 15: bad input named, extreme-but-valid input exact ---------------------------

_HV = VAE(5, 2, (3,))
_HP = _HV.init_params(0)
_HX = np.array([[1.0, 0, 1, 0, 0], [0, 1, 1, 0, 1], [0, 0, 0, 0, 0]])


def test_fit_local_refuses_a_growing_step_size_instead_of_nan():
    """lr_final = 1e300 made the "decaying" schedule grow to 1e300 and returned NaN."""
    with pytest.raises(ValueError, match="lr_final"):
        V.fit_local(_HP, _HX, _HV.arch, n_steps=5, lr_final=1e300, rng=0)
    with pytest.raises(ValueError, match="lr_final"):
        _HV.fit_local(_HP, _HX, n_steps=5, lr=1e-5, rng=0)      # default lr_final = 1e-4
    mean, log_var = V.fit_local(_HP, _HX, _HV.arch, n_steps=5, lr=1e-3, lr_final=1e-3, rng=0)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(log_var))


def test_fit_local_reports_divergence_instead_of_returning_nan():
    """An absurd step size (one Adam step moves every coordinate by about lr) diverges;
    with floating-point errors ignored that would be a NaN result, now an error."""
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="lower lr"):
        V.fit_local(_HP, _HX, _HV.arch, n_steps=3, lr=1e300, lr_final=1.0, rng=0)


@pytest.mark.parametrize("options", [{}, {"estimator": "reinforce"},
                                     {"objective": "iwae", "k": 3}])
def test_fit_divergence_is_one_clear_error_whatever_the_errstate(options):
    """lr = 1e10 diverges within the first epoch. The result is one FloatingPointError
    naming lr -- no RuntimeWarning from inside the step (warnings are errors here) and not
    an error about matmul when the caller runs under np.errstate(all="raise")."""
    x = np.tile(_HX, (10, 1))
    for state in ("ignore", "warn", "raise"):
        with warnings.catch_warnings(), np.errstate(all=state):
            warnings.simplefilter("error")
            with pytest.raises(FloatingPointError, match="lower lr = 1e[+]10"):
                VAE(5, 2, (3,)).fit(x, n_epochs=3, batch_size=10, lr=1e10, rng=0, **options)


def test_fit_refuses_to_return_non_finite_parameters(monkeypatch):
    """A last step whose ELBO was finite but whose Adam update overflowed must not end in
    params_ with inf: the step is replaced by one that does exactly that."""
    from lvmref import vae_training

    def overflowing_step(self, x, eps):
        self.theta[0] = np.inf
        return -1.0

    monkeypatch.setattr(vae_training.TrainingWorkspace, "step", overflowing_step)
    model = VAE(5, 2, (3,))
    with pytest.raises(FloatingPointError, match="parameters became non-finite"):
        model.fit(_HX, n_epochs=1, batch_size=3, lr=1e-3, rng=0)
    assert model.params_ is None  # still unfitted


def test_log_prior_of_huge_latents_is_the_closed_form():
    """log N(z | 0, I) = -(K log(2 pi) + |z|^2) / 2: finite while |z|^2 is, else -inf."""
    K = 2
    z = np.array([[1e153, 0.0], [1e200, 1.0], [-1e308, 0.0]])
    got = V.log_prior(z)
    assert got[0] == -0.5 * (K * np.log(2 * np.pi) + 1e306)
    assert got[1] == -np.inf and got[2] == -np.inf
    assert VAEModel(_HV.arch, _HP).log_prior(z[:, None, :])[2, 0] == -np.inf


def test_kl_gradient_and_reparameterization_where_the_variance_overflows():
    """d KL / d log_var = (e^s - 1) / 2 = +inf for e^s beyond float64 (s >= 1500);
    z = mean + e^{s/2} eps is +-inf for eps != 0 and exactly mean for eps = 0."""
    mean = np.array([[0.5, -2.0]])
    log_var = np.array([[1500.0, 2000.0]])
    d_mean, d_lv = kl_normal_std_grad(mean, log_var)
    np.testing.assert_array_equal(d_mean, mean)
    np.testing.assert_array_equal(d_lv, [[np.inf, np.inf]])
    z = reparameterize(mean, log_var, np.array([[0.0, -1.0]]))
    np.testing.assert_array_equal(z, [[0.5, -np.inf]])
    z3 = reparameterize(mean, log_var, np.array([[[1.0, 0.0], [0.0, 0.0]]]))
    np.testing.assert_array_equal(z3, [[[np.inf, -2.0], [0.5, -2.0]]])


def test_mean_and_log_var_shapes_are_named_together():
    with pytest.raises(ValueError, match=r"mean and log_var"):
        kl_normal_std_grad(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"mean and log_var"):
        reparameterize(np.zeros((3, 3)), np.zeros((3, 2)), np.zeros((3, 3)))


def test_noise_latents_and_baselines_beyond_1e150_are_refused():
    """They feed products (z W, eps^2, back-propagated gradients) that overflow."""
    a = _HV.arch
    eps = np.zeros((3, 2))
    eps[1, 1] = 1e151
    for call in (lambda: V.elbo(_HP, _HX, eps, a), lambda: V.elbo_grad_stl(_HP, _HX, eps, a),
                 lambda: V.iwae_grad(_HP, _HX, eps[:, None, :], a),
                 lambda: V.elbo_grad_reinforce(_HP, _HX, None, a, z=eps)):
        with pytest.raises(ValueError, match=r"\b(eps|z)\b.*1e\+150"):
            call()
    with pytest.raises(ValueError, match="baseline"):
        V.elbo_grad_reinforce(_HP, _HX, np.zeros((3, 2)), a, baseline=1e200)
    with pytest.raises(ValueError, match=r"\bz\b"):
        VAEModel(a, _HP).log_joint(_HX, eps[:, None, :])
    # log q needs no product with the networks: -(z / sd)^2 / 2 overflows to -inf, no error
    np.testing.assert_array_equal(V.log_q(_HP, _HX, np.full((3, 2), 1e200), a), -np.inf)


def test_model_protocol_and_flags_refuse_bad_input_naming_it():
    m = VAEModel(_HV.arch, _HP)
    with pytest.raises(ValueError, match=r"\bn\b"):
        m.sample_prior(0, 2, 0)
    with pytest.raises(TypeError, match=r"\bk\b"):
        m.sample_prior(2, 1.5, 0)
    with pytest.raises(ValueError, match=r"\bk\b"):
        m.sample_q(_HX, 0, 0)
    with pytest.raises(ValueError, match=r"\bz\b"):
        m.log_prior(np.zeros((2, 1, 3)))
    vae = VAE(5, 2, (3,))
    vae.params_ = _HP
    with pytest.raises(TypeError, match="raw"):
        vae.decode(np.zeros((2, 2)), raw="no")
    with pytest.raises(TypeError, match="return_mean"):
        vae.sample(2, 0, return_mean=1)
    with pytest.raises(TypeError, match="verbose"):
        vae.fit(_HX, n_epochs=1, verbose=None)
    with pytest.raises(TypeError, match="init"):
        V.fit_local(_HP, _HX, vae.arch, init=3)


def test_save_and_load_refuse_what_is_not_a_path():
    vae = VAE(5, 2, (3,))
    vae.params_ = _HP
    for bad, err in ((None, TypeError), (3, TypeError), ("", ValueError)):
        with pytest.raises(err, match="path"):
            vae.save(bad)
        with pytest.raises(err, match="path"):
            VAE.load(bad)
