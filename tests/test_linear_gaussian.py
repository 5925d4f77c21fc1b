"""Tests of lvmref.linear_gaussian (PPCA closed forms, eqs. 13-14 of lvmref.vae) against
SciPy's multivariate normal, Gaussian conditioning written out here, and Monte Carlo with
its own standard error."""

import numpy as np
import pytest
from scipy import stats

from lvmref.kernels import kl_normal_std
from lvmref.linear_gaussian import (
    linear_gaussian_elbo,
    linear_gaussian_log_marginal,
    linear_gaussian_posterior,
    linear_gaussian_vae,
)
from lvmref.vae import VAE, reparameterize


def _zbound(m, alpha=1e-5):
    """Bonferroni z-bound for m simultaneous two-sided comparisons at family level alpha."""
    return float(stats.norm.isf(alpha / (2 * m)))


def _perturbed(vae, rng, scale=0.3):
    p = vae.init_params(rng)
    return {k: v + scale * rng.normal(size=v.shape) for k, v in p.items()}


def _ppca(rng, d=6, k=3, scales=(2.0, 1.0, 0.5), noise_var=0.3):
    q, _ = np.linalg.qr(rng.normal(size=(d, k)))
    return q * np.array(scales[:k]), rng.normal(size=d), noise_var


def _enc_perturbed(params, rng, scale):
    return {k: (v + scale * rng.normal(size=v.shape) if k.startswith("enc.") else v.copy())
            for k, v in params.items()}


def test_ppca_log_marginal_and_posterior_match_independent_formulas():
    rng = np.random.default_rng(21)
    W, b, s2 = _ppca(rng)
    x = rng.normal(size=(5, 6)) * 2
    cov = W @ W.T + s2 * np.eye(6)
    np.testing.assert_allclose(linear_gaussian_log_marginal(W, b, s2, x),
                               stats.multivariate_normal(b, cov).logpdf(x), rtol=1e-13)
    # Gaussian conditioning of the joint (z, x): E[z|x] = W^T C^-1 (x-b), Cov = I - W^T C^-1 W
    mean, post_cov = linear_gaussian_posterior(W, b, s2, x)
    np.testing.assert_allclose(mean, (W.T @ np.linalg.solve(cov, (x - b).T)).T, rtol=1e-12)
    np.testing.assert_allclose(post_cov, np.eye(3) - W.T @ np.linalg.solve(cov, W),
                               rtol=1e-12, atol=1e-14)


def test_elbo_with_exact_posterior_equals_log_marginal():
    """Eq. (4): KL(q || posterior) = 0, so every single-sample MC ELBO equals log p(x)."""
    rng = np.random.default_rng(22)
    W, b, s2 = _ppca(rng)
    vae, params = linear_gaussian_vae(W, b, s2)
    x = rng.normal(size=(7, 6)) * 2
    log_px = stats.multivariate_normal(b, W @ W.T + s2 * np.eye(6)).logpdf(x)
    for _ in range(3):
        eps = rng.normal(size=(7, 3)) * 3
        np.testing.assert_allclose(vae.elbo(params, x, eps, kl="mc"), log_px, rtol=0,
                                   atol=1e-10)
    np.testing.assert_allclose(linear_gaussian_elbo(params, x, vae.arch), log_px, rtol=0,
                               atol=1e-10)
    mean, log_var = vae.encode(x, params)
    post_mean, post_cov = linear_gaussian_posterior(W, b, s2, x)
    np.testing.assert_allclose(mean, post_mean, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.exp(log_var), np.broadcast_to(np.diag(post_cov), (7, 3)),
                               rtol=1e-12)
    # IWAE through lvmref.estimators: every weight equals p(x), so L_k = log p(x)
    est = vae.iwae_bound(params, x, 20, rng, n_repeats=2)
    np.testing.assert_allclose(est.value, log_px, rtol=0, atol=1e-10)


def test_closed_form_elbo_bounds_and_matches_monte_carlo():
    rng = np.random.default_rng(23)
    W, b, s2 = _ppca(rng)
    vae, exact = linear_gaussian_vae(W, b, s2)
    x = rng.normal(size=(4, 6)) * 2
    log_px = linear_gaussian_log_marginal(W, b, s2, x)
    # a generic linear VAE: decoder log-variance depends on z too
    params = _perturbed(vae, rng, 0.2)
    params["dec.W0"] = exact["dec.W0"] + 0.1 * rng.normal(size=exact["dec.W0"].shape)
    closed = linear_gaussian_elbo(params, x, vae.arch)
    mean, log_var = vae.encode(x, params)
    z = reparameterize(mean, log_var, rng.normal(size=(4, 100_000, 3)))
    per = vae.as_model(params).log_likelihood(x, z) - kl_normal_std(mean, log_var)[:, None]
    se = per.std(axis=1, ddof=1) / np.sqrt(per.shape[1])
    assert np.all(np.abs(per.mean(1) - closed) < _zbound(4) * se)
    # exact inequality ELBO(q) <= log p(x) for the PPCA decoder and any encoder
    enc_only = _enc_perturbed(exact, rng, 0.3)
    assert np.all(linear_gaussian_elbo(enc_only, x, vae.arch) < log_px)




def test_bad_linear_gaussian_input():
    rng = np.random.default_rng(31)
    W = rng.normal(size=(4, 2))  # not orthogonal
    with pytest.raises(ValueError, match="W"):
        linear_gaussian_vae(W, np.zeros(4), 0.5)
    with pytest.raises(ValueError, match="noise_var"):
        linear_gaussian_log_marginal(W, np.zeros(4), 0.0, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="b"):
        linear_gaussian_posterior(W, np.zeros(3), 1.0, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="x"):
        linear_gaussian_log_marginal(W, np.zeros(4), 1.0, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="arch"):
        linear_gaussian_elbo({}, np.zeros((1, 4)), VAE(4, 2, hidden=(3,)).arch)
    with pytest.raises(ValueError, match="arch"):  # the estimator, not its architecture
        linear_gaussian_elbo({}, np.zeros((1, 4)), VAE(4, 2, hidden=(), likelihood="gaussian"))
    vae, params = linear_gaussian_vae(np.eye(4)[:, :2], np.zeros(4), 0.5)
    with pytest.raises(ValueError, match="mean"):
        linear_gaussian_elbo(params, np.zeros((1, 4)), vae.arch, np.zeros((2, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="log_var"):
        linear_gaussian_elbo(params, np.zeros((1, 4)), vae.arch, np.zeros((1, 2)),
                             np.full((1, 2), np.nan))
    with pytest.raises(ValueError, match="x"):
        linear_gaussian_elbo(params, np.zeros((1, 3)), vae.arch)
    with pytest.raises(ValueError, match="W"):
        linear_gaussian_posterior(np.full((4, 2), np.inf), np.zeros(4), 1.0, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="noise_var"):
        linear_gaussian_vae(np.eye(4)[:, :2], np.zeros(4), -1.0)


def test_linear_gaussian_vae_carries_its_parameters():
    """The returned VAE is 'fitted' with (a copy of) the exact parameters: its encoder is
    the posterior of eq. (13) without passing params."""
    rng = np.random.default_rng(42)
    W, b, s2 = _ppca(rng, d=5, k=2, scales=(1.2, 0.6))
    vae, params = linear_gaussian_vae(W, b, s2)
    assert (vae.n_features, vae.n_latent, vae.hidden, vae.likelihood) == (5, 2, (), "gaussian")
    x = rng.normal(size=(3, 5))
    mean, log_var = vae.encode(x)
    post_mean, post_cov = linear_gaussian_posterior(W, b, s2, x)
    np.testing.assert_allclose(mean, post_mean, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.exp(log_var[0]), np.diag(post_cov), rtol=1e-12)
    params["dec.b0"][0] += 1.0  # the VAE holds its own copy
    assert vae.params_["dec.b0"][0] == b[0]
