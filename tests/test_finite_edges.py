"""Finite input never gives NaN (issue "CI green ... oracle precision at the edges", part 3).

Each case is either the correct value -- computed independently (mpmath, exact power-of-two
scaling, a closed form) -- or a ValueError naming the argument and the cause.
"""

import mpmath
import numpy as np
import pytest

from lvmref import gmm, vbgmm
from lvmref.gmm import GaussianMixture
from lvmref.vae import VAE

COV_TYPES = ("full", "tied", "diag", "spherical")


def _fitted(ct, seed=0):
    X = np.random.default_rng(seed).normal(size=(60, 2))
    return GaussianMixture(2, covariance_type=ct, random_state=seed).fit(X)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_gmm_far_rows_score_minus_inf_and_posterior_refused(ct):
    g = _fitted(ct)
    far = np.array([[1e200, 1e200], [1e155, -1e155], [1e300, 0.0]])
    near = np.array([[0.3, -0.2], [1e153, 0.0]])
    got = g.score_samples(np.vstack([far, near]))
    assert np.all(got[:3] == -np.inf)  # squared distances beyond float64: log p < -8.9e307
    np.testing.assert_array_equal(got[3:], g.score_samples(near))
    assert np.all(np.isfinite(got[3:]))
    assert g.score(far) == -np.inf and g.bic(far) == np.inf and g.aic(far) == np.inf
    for f in (g.predict_proba, g.predict):
        with pytest.raises(ValueError, match="X row 0 is too far from every component"):
            f(far)
    params = {"weights": g.weights_, "means": g.means_,
              "precisions_cholesky": g.precisions_cholesky_}
    with pytest.raises(ValueError, match="X row 1 is too far"):
        gmm.e_step(np.vstack([near[:1], far]), params, ct)


def _mp_log_normal(x, mean, sd):
    with mpmath.workdps(60):
        x, m, s = (mpmath.mpf(float(t)) for t in (x, mean, sd))
        return -mpmath.log(2 * mpmath.pi) / 2 - mpmath.log(s) - ((x - m) / s) ** 2 / 2


def test_gmm_difference_overflow_recomputed_at_half_scale():
    """x - mu = 2e308 overflows, but with sigma = 1e300 the answer is finite (z = 2e8):
    log p and the posterior against a 60-digit mpmath evaluation."""
    means = np.array([[-1e308], [1e308]])
    sd = np.array([1e300, 2e300])
    params = {"weights": np.array([0.3, 0.7]), "means": means,
              "precisions_cholesky": (1.0 / sd)[:, None]}
    X = np.array([[1e308], [-1.5e308], [0.0]])
    resp, log_norm = gmm.e_step(X, params, "diag")
    for i, x in enumerate(X[:, 0]):
        with mpmath.workdps(60):
            a = [mpmath.log(w) + _mp_log_normal(x, m, s)
                 for w, m, s in zip((0.3, 0.7), means[:, 0], sd)]
            lse = mpmath.log(sum(mpmath.exp(t) for t in a))
            post = [float(mpmath.exp(t - lse)) for t in a]
        assert abs(log_norm[i] - float(lse)) <= 1e-13 * abs(float(lse))
        np.testing.assert_allclose(resp[i], post, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_m_step_is_invariant_to_huge_responsibilities(ct):
    """resp scaled by 2^1000 (sums overflow) gives exactly the parameters of resp: the
    M-step rescales by a power of two; and 1e308 agrees to rounding."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    r = rng.random((40, 2))
    r /= r.sum(axis=1, keepdims=True)
    base = gmm.m_step(X, r, ct)
    for k, v in gmm.m_step(X, np.ldexp(r, 1000), ct).items():
        np.testing.assert_array_equal(v, base[k])
    for k, v in gmm.m_step(X, r * (1e308 / r.max()), ct).items():
        np.testing.assert_allclose(v, base[k], rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="X values too large"):
        gmm.m_step(X * 1e160, r, ct)


@pytest.mark.parametrize("ct", COV_TYPES)
@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_gmm_fit_on_overflowing_data_is_a_clear_error(ct, init):
    X = np.random.default_rng(4).normal(size=(30, 2)) * 1e160
    # "X values too large" (overflowing distances or scatter), or for one-point initial
    # components the degenerate-covariance message; both say to rescale the data
    with pytest.raises(ValueError, match="X values too large|rescale the data"):
        GaussianMixture(2, covariance_type=ct, init_params=init, random_state=0).fit(X)


def test_vbgmm_far_rows_and_overflow():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 2))
    v = vbgmm.BayesianGaussianMixture(2, random_state=0).fit(X)
    far = np.array([[1e200, -1e200], [0.1, 0.2]])
    log_rho = vbgmm.estimate_log_rho(far, v.state_)
    assert np.all(log_rho[0] == -np.inf) and np.all(np.isfinite(log_rho[1]))
    for f in (lambda: vbgmm.e_step(far, v.state_), lambda: v.predict_proba(far)):
        with pytest.raises(ValueError, match="X row 0 is too far from every component"):
            f()
    with pytest.raises(ValueError, match="X values too large"):
        vbgmm.BayesianGaussianMixture(2, random_state=0).fit(X * 1e160)
    prior = vbgmm.make_prior(X, 2)
    r = rng.random((60, 2))
    with pytest.raises(ValueError, match="resp too large"):
        vbgmm.m_step(X, r * 1e308, prior)
    with pytest.raises(ValueError, match="X values too large"):
        vbgmm.m_step(X * 1e160, r, prior)
    # the bound of a q that puts a far row anywhere is -inf, not NaN
    lr = np.log(np.full((2, 2), 0.5))
    assert vbgmm.lower_bound(far, lr, v.state_, v.prior_) == -np.inf


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
