"""Tests for lvmref.vbgmm (variational Bayes for the Gaussian mixture).

Oracles, none of which use the code under test to produce an expected value:
* the closed-form log evidence of the Gauss-Wishart model (K = 1), cross-checked by the
  chain rule over Student-t posterior predictives (scipy.stats.multivariate_t);
* finite differences of the bound (coordinate-ascent optimality of every update);
* scikit-learn's BayesianGaussianMixture (driven from given responsibilities through its
  private ``_initialize``; test-only);
* Monte Carlo with scipy.stats samplers and a z-bound on the standard error for the
  expectations (8)-(10) and the KL terms (21)-(22).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp, multigammaln

from lvmref import vbgmm as V
from lvmref.kernels import log_softmax
from lvmref.mixture import ConvergenceWarning
from lvmref.testing import check_grad

EPS = np.finfo(np.float64).eps
# Runs with a fixed iteration budget (tol=0 or a small max_iter) stop unconverged on purpose.
_FIXED_ITERATIONS = pytest.mark.filterwarnings("ignore::lvmref.mixture.ConvergenceWarning")


# ---------------------------------------------------------------------------
# helpers (test side only)
# ---------------------------------------------------------------------------


def _random_spd(rng, k, d):
    a = rng.normal(size=(k, d, d))
    return a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(d)


def _random_state(rng, k, d, min_dof_excess=0.5):
    """A random (not optimal) variational state; ν_k > D - 1 + min_dof_excess."""
    return V.make_state(
        rng.uniform(0.5, 5.0, k),
        rng.uniform(0.5, 5.0, k),
        rng.normal(size=(k, d)),
        d - 1 + min_dof_excess + rng.uniform(0.0, 5.5, k),
        _random_spd(rng, k, d),
    )


def _random_prior(rng, d):
    return {
        "weight_concentration_prior": float(rng.uniform(0.1, 2.0)),
        "mean_precision_prior": float(rng.uniform(0.1, 3.0)),
        "mean_prior": rng.normal(size=d),
        "degrees_of_freedom_prior": float(d - 1 + rng.uniform(0.5, 4.0)),
        "covariance_prior": _random_spd(rng, 1, d)[0],
    }


def _random_resp(rng, n, k):
    return np.exp(log_softmax(2.0 * rng.normal(size=(n, k)), axis=1))


def _blobs(rng, n_per, centres, scale=1.0):
    return np.concatenate([scale * rng.normal(size=(n_per, len(c))) + c for c in centres])


def _assert_close_to(actual, desired, rel, err_msg=""):
    """|actual - desired| <= rel (|desired| + max|desired|) entrywise: relative to each
    entry, with an absolute floor at the array's scale (an entry near 0, such as an
    off-diagonal covariance, carries the rounding of the larger entries it is formed from)."""
    desired = np.asarray(desired, dtype=np.float64)
    np.testing.assert_allclose(actual, desired, rtol=rel, atol=rel * np.max(np.abs(desired)),
                               err_msg=err_msg)


def _log_evidence_closed_form(X, prior):
    """ln p(X) of the Gauss-Wishart model (Murphy 2007, "Conjugate Bayesian analysis of
    the Gaussian distribution", eq. 266 in the Λ-parameterisation), via batch statistics."""
    n, d = X.shape
    b0, m0 = prior["mean_precision_prior"], prior["mean_prior"]
    nu0, s0 = prior["degrees_of_freedom_prior"], prior["covariance_prior"]
    xbar = X.mean(axis=0)
    scatter = (X - xbar).T @ (X - xbar)
    bn, nun = b0 + n, nu0 + n
    sn = s0 + scatter + (b0 * n / bn) * np.outer(xbar - m0, xbar - m0)
    return (
        -0.5 * n * d * np.log(np.pi)
        + 0.5 * d * np.log(b0 / bn)
        + multigammaln(0.5 * nun, d)
        - multigammaln(0.5 * nu0, d)
        + 0.5 * nu0 * np.linalg.slogdet(s0)[1]
        - 0.5 * nun * np.linalg.slogdet(sn)[1]
    )


def _log_evidence_chain_rule(X, prior):
    """ln p(X) = Σ_n ln p(x_n | x_<n) with Student-t predictives (Bishop B10.81, K = 1),
    updating the Gauss-Wishart posterior one point at a time (rank-one updates)."""
    d = X.shape[1]
    b, m = prior["mean_precision_prior"], prior["mean_prior"].copy()
    nu, s = prior["degrees_of_freedom_prior"], prior["covariance_prior"].copy()
    total = 0.0
    for x in X:
        df = nu + 1 - d
        shape = s * (b + 1) / (b * df)
        total += stats.multivariate_t(loc=m, shape=shape, df=df).logpdf(x)
        s = s + (b / (b + 1)) * np.outer(x - m, x - m)
        m = (b * m + x) / (b + 1)
        b, nu = b + 1, nu + 1
    return total


# ---------------------------------------------------------------------------
# oracle: K = 1 -> the bound equals the exact log evidence
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed,n,d", [(0, 1, 1), (1, 7, 1), (2, 15, 3), (3, 40, 4)])
def test_k1_bound_equals_log_evidence(seed, n, d):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0) + rng.normal(size=d)
    prior = _random_prior(rng, d)
    exact = _log_evidence_closed_form(X, prior)
    # The two oracles are independent derivations; they must agree first.
    assert exact == pytest.approx(_log_evidence_chain_rule(X, prior), rel=1e-11, abs=1e-11)
    state = V.m_step(X, np.ones((n, 1)), prior)
    bound = V.lower_bound(state, X, np.zeros((n, 1)), prior)
    assert bound == pytest.approx(exact, rel=1e-11, abs=1e-11)
    # A q that is not the posterior gives a strictly smaller bound (exact inequality).
    worse = dict(state, means=state["means"] + 0.1)
    assert V.lower_bound(worse, X, np.zeros((n, 1)), prior) < exact


@_FIXED_ITERATIONS
def test_k1_estimator_bound_equals_log_evidence():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(30, 2)) @ np.array([[1.0, 0.4], [0.0, 0.7]])
    model = V.BayesianGaussianMixture(
        1,
        weight_concentration_prior_type="dirichlet_distribution",
        reg_covar=0.0,
        tol=0.0,
        max_iter=3,
    ).fit(X)
    exact = _log_evidence_closed_form(X, model.prior_)
    assert np.allclose(model.lower_bounds_, exact, rtol=1e-11, atol=0.0)


# ---------------------------------------------------------------------------
# monotonicity of coordinate ascent
# ---------------------------------------------------------------------------


@_FIXED_ITERATIONS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 40),
    d=st.integers(1, 3),
    k=st.integers(1, 5),
    init=st.sampled_from(["random", "random_from_data", "kmeans", "k-means++"]),
    prior_type=st.sampled_from(["dirichlet_distribution", "dirichlet_process"]),
)
def test_bound_never_decreases(seed, n, d, k, init, prior_type):
    rng = np.random.default_rng(seed)
    k = min(k, n)
    X = _blobs(rng, n, rng.normal(scale=3.0, size=(1, d)))[:n] * rng.uniform(0.2, 5.0)
    X[: n // 2] += 4.0
    prior = _random_prior(rng, d)
    model = V.BayesianGaussianMixture(
        k,
        init_params=init,
        weight_concentration_prior_type=prior_type,
        reg_covar=0.0,
        tol=0.0,
        max_iter=25,
        random_state=seed,
        weight_concentration_prior=prior["weight_concentration_prior"],
        covariance_prior=prior["covariance_prior"],
        degrees_of_freedom_prior=prior["degrees_of_freedom_prior"],
    )
    model.fit(X)
    bounds = np.array(model.lower_bounds_)
    # Exact in real arithmetic; in floating point the bound is a sum of O(n k) terms of
    # size |L|, so it carries a rounding error of a few ulps of |L| per term.
    slack = 8 * EPS * n * k * np.max(np.abs(bounds))
    assert np.all(np.diff(bounds) >= -slack), np.diff(bounds).min()


@pytest.mark.parametrize("seed", range(4))
def test_each_half_step_increases_bound(seed):
    """L(r_t, θ_{t-1}) <= L(r_t, θ_t) (M-step) and L(r_{t-1}, θ) <= L(r_t, θ) (E-step)."""
    rng = np.random.default_rng(seed)
    X = _blobs(rng, 15, [[0, 0], [3, 3], [-3, 2]])
    prior = V.make_prior(X, 4)
    state = _random_state(rng, 4, 2)
    log_resp = np.log(_random_resp(rng, len(X), 4))
    for _ in range(10):
        new_log_resp = V.e_step(state, X)
        before = V.lower_bound(state, X, log_resp, prior)
        mid = V.lower_bound(state, X, new_log_resp, prior)
        new_state = V.m_step(X, np.exp(new_log_resp), prior)
        after = V.lower_bound(new_state, X, new_log_resp, prior)
        slack = 8 * EPS * X.size * 4 * abs(after)
        assert mid >= before - slack
        assert after >= mid - slack
        state, log_resp = new_state, new_log_resp


# ---------------------------------------------------------------------------
# coordinate-ascent optimality by finite differences
# ---------------------------------------------------------------------------

# A gradient at the update counts as zero when it is this small relative to the
# gradient at a perturbed point of the same block (the project's 1e-7 target for
# finite-difference relative error).
_STATIONARY_RTOL = 1e-7


def _fd_grad_norm(f, params):
    zeros = {k: np.zeros_like(v) for k, v in params.items()}
    return check_grad(f, params, zeros, richardson=True).abs_error


def _assert_stationary(f, params_opt, params_perturbed):
    at_opt = _fd_grad_norm(f, params_opt)
    away = _fd_grad_norm(f, params_perturbed)
    for key in params_opt:
        assert away[key] > 1e-4, (key, away[key])  # the perturbed point is not stationary
        assert at_opt[key] <= _STATIONARY_RTOL * away[key], (key, at_opt[key], away[key])


def _block_problem(seed):
    rng = np.random.default_rng(seed)
    n, d, k = 10, 2, 3
    X = _blobs(rng, 4, [[0, 0], [3, 1], [-2, 3]])[:n]
    prior = _random_prior(rng, d)
    return rng, X, prior, k


@pytest.mark.parametrize("seed", range(3))
def test_e_step_zeroes_gradient_in_q_z(seed):
    rng, X, prior, k = _block_problem(seed)
    state = _random_state(rng, k, X.shape[1])

    def f(p):
        return V.lower_bound(state, X, log_softmax(p["logits"], axis=1), prior)

    # Softmax logits parameterise the simplex; the E-step (12) sets them to ln ρ.
    opt = {"logits": V.estimate_log_rho(state, X)}
    away = {"logits": opt["logits"] + rng.normal(size=opt["logits"].shape)}
    _assert_stationary(f, opt, away)


def _m_problem(seed, prior_type="dirichlet_distribution"):
    rng, X, prior, k = _block_problem(seed)
    prior["weight_concentration_prior_type"] = prior_type
    resp = _random_resp(rng, len(X), k)
    return rng, X, prior, np.log(resp), V.m_step(X, resp, prior)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("prior_type", ["dirichlet_distribution", "dirichlet_process"])
def test_m_step_weights_zero_gradient_in_q_pi(seed, prior_type):
    rng, X, prior, log_resp, opt_state = _m_problem(seed, prior_type)

    def f(p):
        return V.lower_bound(dict(opt_state, weight_concentration=p["alpha"]), X, log_resp, prior)

    alpha = opt_state["weight_concentration"]
    _assert_stationary(f, {"alpha": alpha}, {"alpha": alpha * rng.uniform(0.7, 1.3, alpha.shape)})


def _gauss_wishart_params(state):
    """(β, m, ν, lower Cholesky factor of W) from a state; W = precisions_ / ν."""
    w = state["precisions_cholesky"] @ np.swapaxes(state["precisions_cholesky"], 1, 2)
    w /= state["degrees_of_freedom"][:, None, None]
    return {
        "beta": state["mean_precision"],
        "m": state["means"],
        "nu": state["degrees_of_freedom"],
        "L": np.linalg.cholesky(w),
    }


def _gw_objective(X, log_resp, prior, alpha):
    def f(p):
        low = np.tril(p["L"])
        w = low @ np.swapaxes(low, 1, 2)
        state = V.make_state(alpha, p["beta"], p["m"], p["nu"], np.linalg.inv(w))
        return V.lower_bound(state, X, log_resp, prior)

    return f


@pytest.mark.parametrize("seed", range(3))
def test_m_step_gauss_wishart_zeroes_gradient_in_q_mu_lambda(seed):
    rng, X, prior, log_resp, opt_state = _m_problem(seed)
    f = _gw_objective(X, log_resp, prior, opt_state["weight_concentration"])
    opt = _gauss_wishart_params(opt_state)
    away = {key: v * (1.0 + 0.1 * rng.normal(size=v.shape)) for key, v in opt.items()}
    _assert_stationary(f, opt, away)


def test_stationarity_check_detects_wrong_dof_update():
    """Negative control: B10.63's misprint ν_k = ν0 + N_k + 1 is not stationary."""
    rng, X, prior, log_resp, opt_state = _m_problem(0)
    f = _gw_objective(X, log_resp, prior, opt_state["weight_concentration"])
    wrong = _gauss_wishart_params(opt_state)
    wrong["nu"] = wrong["nu"] + 1.0
    assert _fd_grad_norm(f, wrong)["nu"] > 1e-3


# ---------------------------------------------------------------------------
# scikit-learn trajectories (sklearn is a test dependency only)
# ---------------------------------------------------------------------------


def _sklearn_trajectory(X, resp, n_iter, covariance_type="full", **kwargs):
    import sklearn.mixture as sklearn_mixture
    sk = sklearn_mixture.BayesianGaussianMixture(
        n_components=resp.shape[1],
        covariance_type=covariance_type,
        tol=0.0,
        max_iter=n_iter,
        **kwargs,
    )
    # Private API, test-only: set the priors, then the M-step on the given resp.
    sk._check_parameters(X)
    sk._initialize(X, resp)
    out = []
    for _ in range(n_iter):
        log_prob_norm, log_resp = sk._e_step(X)
        sk._m_step(X, log_resp)
        state = {
            "weight_concentration": np.array(sk.weight_concentration_),  # tuple for the DP
            "mean_precision": sk.mean_precision_.copy(),
            "means": sk.means_.copy(),
            "degrees_of_freedom": np.array(sk.degrees_of_freedom_),  # a float for tied
            "covariances": sk.covariances_.copy(),
            "precisions_cholesky": sk.precisions_cholesky_.copy(),
        }
        # scikit-learn 1.9 returns its tied bound as an array of shape (1,)
        bound = float(np.ravel(sk._compute_lower_bound(log_resp, log_prob_norm))[0])
        out.append((state, bound))
    sk._set_parameters(sk._get_parameters())
    return out, sk


_TYPES = ["full", "tied", "diag", "spherical"]
_PRIOR_TYPES = ["dirichlet_distribution", "dirichlet_process"]


@_FIXED_ITERATIONS
@pytest.mark.parametrize("reg_covar", [0.0, 1e-6])
@pytest.mark.parametrize("prior_type", _PRIOR_TYPES)
@pytest.mark.parametrize("ct", _TYPES)
def test_trajectory_matches_sklearn(ct, prior_type, reg_covar):
    """From the same responsibilities, 20 iterations of each covariance type (26)-(29)
    and weight prior follow scikit-learn's parameters to 1e-12 relative, and the bound's
    increments equal scikit-learn's (which drops constants) for the exact updates.

    Tolerances: 20 coupled updates, each summing the n = 120 rows in another order than
    scikit-learn, let rounding grow to ~1e2 eps of each array's scale (measured <= 5e-14
    for every quantity here): 1e-12 leaves a margin of ~20-80x, not more."""
    rng = np.random.default_rng(7)
    X = _blobs(rng, 40, [[0, 0, 0], [4, 0, 1], [0, 5, -2]])
    k, n_iter = 4, 20
    resp = rng.dirichlet(np.ones(k), size=len(X))
    priors = dict(
        weight_concentration_prior=0.3,
        mean_precision_prior=0.7,
        weight_concentration_prior_type=prior_type,
    )
    sk_traj, sk = _sklearn_trajectory(X, resp, n_iter, covariance_type=ct,
                                      reg_covar=reg_covar, **priors)

    prior = V.make_prior(X, k, covariance_type=ct, **priors)
    for key in ("mean_prior", "covariance_prior"):  # scikit-learn's defaults for the type
        np.testing.assert_allclose(prior[key], getattr(sk, key + "_"), rtol=1e-13)
    state = V.m_step(X, resp, prior, ct, reg_covar)
    ours_bounds = []
    for sk_state, _ in sk_traj:
        log_resp = V.e_step(state, X, ct)
        state = V.m_step(X, np.exp(log_resp), prior, ct, reg_covar)
        ours_bounds.append(V.lower_bound(state, X, log_resp, prior, ct))
        for key, value in sk_state.items():
            assert np.shape(state[key]) == np.shape(value), key
            _assert_close_to(state[key], value, 1e-12, err_msg=key)
    if reg_covar == 0.0:
        # scikit-learn drops constants (and its simplification assumes the exact M-step,
        # i.e. reg_covar = 0): compare increments.
        sk_bounds = np.array([b for _, b in sk_traj])
        # an increment is a difference of two bounds (|L| ~ 8e2): its rounding is relative
        # to the bounds, not to the increment (~1e-7 near convergence); measured 2e-15 |L|
        scale = max(np.max(np.abs(ours_bounds)), np.max(np.abs(sk_bounds)))
        np.testing.assert_allclose(np.diff(ours_bounds), np.diff(sk_bounds), rtol=0,
                                   atol=1e-13 * scale)

    # The estimator driven from the same responsibilities ends at the same place.
    model = V.BayesianGaussianMixture(
        k, covariance_type=ct, tol=0.0, max_iter=n_iter, reg_covar=reg_covar, **priors
    ).fit(X, resp_init=resp)
    assert model.n_iter_ == n_iter and not model.converged_
    # the estimator runs the same functions on the same arrays in the same order
    np.testing.assert_array_equal(model.lower_bounds_, ours_bounds)
    for attr in (
        "weights_",
        "means_",
        "covariances_",
        "precisions_",
        "precisions_cholesky_",
        "mean_precision_",
        "degrees_of_freedom_",
    ):
        _assert_close_to(getattr(model, attr), getattr(sk, attr), 1e-12, err_msg=attr)
    _assert_close_to(model.weight_concentration_, np.array(sk.weight_concentration_), 1e-12)
    # probabilities (scale 1) carry the absolute rounding of the log-densities ln rho (~1e1
    # to 1e2) behind them: measured 5e-14
    _assert_close_to(model.predict_proba(X), sk.predict_proba(X), 1e-12)
    with np.errstate(under="ignore"):  # scikit-learn's own log-sum-exp may underflow
        sk_score = sk.score_samples(X)
    # score_samples is ln Σ_k ρ_nk of eq. (11), scikit-learn's quantity for this model;
    # one evaluation at the final state: measured 4e-15 relative
    _assert_close_to(model.score_samples(X), sk_score, 1e-13)
    assert model.score(X) == pytest.approx(np.mean(sk_score), rel=1e-13, abs=0.0)
    np.testing.assert_array_equal(model.predict(X), sk.predict(X))


@pytest.mark.parametrize("ct", _TYPES)
def test_fit_from_sklearns_random_start_equals_sklearn(ct):
    """The class docstring's recipe: scikit-learn's init_params="random" start is
    RandomState(seed).uniform(size=(n, K)), rows normalised; as resp_init it reproduces
    scikit-learn's whole fit (n_init=1)."""
    import sklearn.mixture as sklearn_mixture
    rng = np.random.default_rng(3)
    X = _blobs(rng, 30, [[0, 0], [5, 1], [1, 6]])
    k, seed = 3, 12
    resp = np.random.RandomState(seed).uniform(size=(len(X), k))
    resp /= resp.sum(axis=1, keepdims=True)
    common = dict(covariance_type=ct, max_iter=500, tol=1e-8, reg_covar=1e-6)
    with np.errstate(under="ignore"):  # scikit-learn's own arithmetic
        sk = sklearn_mixture.BayesianGaussianMixture(
            n_components=k, init_params="random", random_state=seed, **common).fit(X)
    ours = V.BayesianGaussianMixture(k, **common).fit(X, resp_init=resp)
    assert ours.n_iter_ == sk.n_iter_ and ours.converged_ and sk.converged_
    # at the converged fixed point rounding does not accumulate: the weights and nu are
    # counts N_k (+ prior), a few ulps (measured 2e-16); means and covariances are moments
    # of data of magnitude ~6 (measured <= 5e-15)
    for attr, rel in (("weights_", 1e-14), ("degrees_of_freedom_", 1e-14), ("means_", 1e-13),
                      ("covariances_", 1e-13)):
        _assert_close_to(getattr(ours, attr), getattr(sk, attr), rel, err_msg=attr)


def test_default_priors_match_sklearn():
    import sklearn.mixture as sklearn_mixture
    rng = np.random.default_rng(5)
    X = rng.normal(size=(25, 3)) @ rng.normal(size=(3, 3))
    sk = sklearn_mixture.BayesianGaussianMixture(
        n_components=4, weight_concentration_prior_type="dirichlet_distribution"
    )
    sk._check_parameters(X)
    prior = V.make_prior(X, 4)
    assert prior.pop("weight_concentration_prior_type") == sk.weight_concentration_prior_type
    for key, value in prior.items():
        np.testing.assert_allclose(value, getattr(sk, key + "_"), rtol=1e-14, err_msg=key)
    for ct in _TYPES[1:]:
        sk = sklearn_mixture.BayesianGaussianMixture(n_components=4, covariance_type=ct)
        sk._check_parameters(X)
        got = V.make_prior(X, 4, covariance_type=ct)["covariance_prior"]
        assert np.shape(got) == np.shape(sk.covariance_prior_)
        np.testing.assert_allclose(got, sk.covariance_prior_, rtol=1e-14, err_msg=ct)


# ---------------------------------------------------------------------------
# pruning of superfluous components
# ---------------------------------------------------------------------------


# Dirichlet-distribution prior only: under the stick-breaking prior an empty component
# placed before occupied ones keeps E[π_k] ~ 1/(N + 1) (E[v_k] = 1/(1 + α0 + Σ_{j>k} N_j)),
# so the 1e-3 threshold is not a property of that model at N = 300.
@pytest.mark.parametrize("init", ["kmeans", "random"])
def test_superfluous_components_are_pruned(init):
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X = _blobs(rng, 100, centres)
    model = V.BayesianGaussianMixture(
        10,
        weight_concentration_prior=1e-3,
        weight_concentration_prior_type="dirichlet_distribution",
        init_params=init,
        random_state=0,
        max_iter=300,
        tol=1e-8,
    ).fit(X)
    assert model.converged_
    assert np.sum(model.weights_ < 1e-3) >= 7
    # The three survivors carry a third of the data each and sit on the true centres.
    big = np.argsort(model.weights_)[-3:]
    np.testing.assert_allclose(model.weights_[big], 1 / 3, atol=0.01)
    dist = np.linalg.norm(model.means_[big][:, None, :] - centres[None], axis=2)
    assert np.all(dist.min(axis=0) < 0.3)


# ---------------------------------------------------------------------------
# expectations and KL terms vs Monte Carlo (z-bound on the standard error)
# ---------------------------------------------------------------------------

_Z = 4.5  # two-sided p ~ 7e-6 per comparison with fixed seeds


def _assert_mc(samples, value):
    mean = np.mean(samples, axis=0)
    se = np.std(samples, axis=0, ddof=1) / np.sqrt(len(samples))
    assert np.all(np.abs(mean - value) <= _Z * se), (mean, value, se)


def test_expectations_match_monte_carlo():
    rng = np.random.default_rng(21)
    d, k, s = 3, 2, 20000
    X = rng.normal(size=(4, d))
    # ν well above D - 1 so that sampled Λ are numerically positive definite.
    state = _random_state(rng, k, d, min_dof_excess=2.0)
    # (8)
    pi = stats.dirichlet(state["weight_concentration"]).rvs(size=s, random_state=rng)
    _assert_mc(np.log(pi), V.expected_log_weights(state["weight_concentration"]))
    log_lam = V.expected_log_det_precision(
        state["degrees_of_freedom"], state["precisions_cholesky"]
    )
    maha = V.expected_mahalanobis(state, X)
    for j in range(k):
        w = np.linalg.inv(state["covariances"][j] * state["degrees_of_freedom"][j])
        lam = stats.wishart(df=state["degrees_of_freedom"][j], scale=w).rvs(s, random_state=rng)
        _assert_mc(np.linalg.slogdet(lam)[1], log_lam[j])  # (9)
        # (10): μ | Λ ~ N(m, (β Λ)^{-1}), sampled through the Cholesky factor of β Λ.
        chol = np.linalg.cholesky(state["mean_precision"][j] * lam)
        eps = rng.normal(size=(s, d, 1))
        mu = state["means"][j] + np.linalg.solve(np.swapaxes(chol, 1, 2), eps)[..., 0]
        diff = X[None, :, :] - mu[:, None, :]
        _assert_mc(np.einsum("sni,sij,snj->sn", diff, lam, diff), maha[:, j])


def test_stick_breaking_terms_match_monte_carlo():
    rng = np.random.default_rng(23)
    k, s = 4, 20000
    gamma = rng.uniform(0.3, 4.0, size=(2, k))
    alpha0 = 0.7
    v = np.column_stack([stats.beta(a, b).rvs(s, random_state=rng) for a, b in gamma.T])
    v = np.clip(v, 1e-300, 1 - 1e-16)
    log_pi = np.log(v) + np.concatenate(
        [np.zeros((s, 1)), np.cumsum(np.log1p(-v), axis=1)[:, :-1]], axis=1
    )
    _assert_mc(log_pi, V.expected_log_weights(gamma))  # (8')
    log_q = sum(stats.beta(a, b).logpdf(v[:, j]) for j, (a, b) in enumerate(gamma.T))
    log_p = stats.beta(1.0, alpha0).logpdf(v).sum(axis=1)
    _assert_mc(log_q - log_p, V.kl_stick_breaking(gamma, alpha0))  # (21')


def test_kl_terms_match_monte_carlo():
    rng = np.random.default_rng(22)
    d, k, s = 2, 2, 20000
    state = _random_state(rng, k, d, min_dof_excess=2.0)
    prior = _random_prior(rng, d)
    # (21)
    alpha, alpha0 = state["weight_concentration"], prior["weight_concentration_prior"]
    q, p = stats.dirichlet(alpha), stats.dirichlet(np.full(k, alpha0))
    pi = q.rvs(size=s, random_state=rng)
    pi = np.clip(pi, 1e-300, None)
    pi /= pi.sum(axis=1, keepdims=True)
    _assert_mc(q.logpdf(pi.T) - p.logpdf(pi.T), V.kl_dirichlet(alpha, alpha0))
    # (22)
    kl = V.kl_gauss_wishart(state, prior)
    w0 = np.linalg.inv(prior["covariance_prior"])
    for j in range(k):
        nu, beta, m = (state[key][j] for key in ("degrees_of_freedom", "mean_precision", "means"))
        w = np.linalg.inv(state["covariances"][j] * nu)
        qw = stats.wishart(df=nu, scale=w)
        pw = stats.wishart(df=prior["degrees_of_freedom_prior"], scale=w0)
        lam = qw.rvs(s, random_state=rng)
        chol = np.linalg.cholesky(beta * lam)
        mu = m + np.linalg.solve(np.swapaxes(chol, 1, 2), rng.normal(size=(s, d, 1)))[..., 0]
        b0, m0 = prior["mean_precision_prior"], prior["mean_prior"]

        def log_normal(mean, scale, lam=lam, mu=mu):  # ln N(μ | mean, (scale Λ)^{-1})
            diff = mu - mean
            quad = np.einsum("si,sij,sj->s", diff, lam, diff)
            return 0.5 * (np.linalg.slogdet(scale * lam)[1] - d * np.log(2 * np.pi) - scale * quad)

        log_q = qw.logpdf(np.moveaxis(lam, 0, -1)) + log_normal(m, beta)
        log_p = pw.logpdf(np.moveaxis(lam, 0, -1)) + log_normal(m0, b0)
        _assert_mc(log_q - log_p, kl[j])


# ---------------------------------------------------------------------------
# pieces checked against exact math
# ---------------------------------------------------------------------------


def test_log_rho_is_eq_11_assembled_from_eqs_8_to_10():
    """ln ρ (11) of a random state and of an M-step state against the closed-form
    expectations (8)-(10) written in the test (not V.expected_*); the tolerance is
    derived in test_log_rho_and_posteriors_against_closed_form_expectations."""
    rng = np.random.default_rng(12)
    X = rng.normal(size=(7, 3))
    for state in (_random_state(rng, 4, 3), V.m_step(X, _random_resp(rng, 7, 4), dict(
        _random_prior(rng, 3), weight_concentration_prior_type="dirichlet_process"))):
        expected = _independent_log_rho(state, X, "full")
        got = V.estimate_log_rho(state, X)
        assert np.all(np.abs(got - expected) <= 1e-12 * (np.abs(expected) + 1))


def test_empty_component_returns_to_the_prior():
    """A component with r_nk = 0 for every n gets exactly the prior, eqs. (14)-(18)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(9, 2))
    prior = _random_prior(rng, 2)
    resp = np.zeros((9, 2))
    resp[:, 0] = 1.0
    state = V.m_step(X, resp, prior)
    assert state["weight_concentration"][1] == prior["weight_concentration_prior"]
    assert state["mean_precision"][1] == prior["mean_precision_prior"]
    assert state["degrees_of_freedom"][1] == prior["degrees_of_freedom_prior"]
    np.testing.assert_array_equal(state["means"][1], prior["mean_prior"])
    np.testing.assert_allclose(
        state["covariances"][1] * prior["degrees_of_freedom_prior"],
        prior["covariance_prior"],
        rtol=1e-14,
    )
    # ... and its KL to the prior is 0 (eq. 22), so the bound is finite with r = 0 entries.
    assert V.kl_gauss_wishart(state, prior)[1] == pytest.approx(0.0, abs=1e-12)
    with np.errstate(divide="ignore"):
        log_resp = np.log(resp)
    assert np.isfinite(V.lower_bound(state, X, log_resp, prior))


def test_m_step_matches_bishop_batch_form():
    """(17) equals B10.62 written with x̄_k and S_k (computed here from scratch)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(20, 3))
    resp = _random_resp(rng, 20, 3)
    prior = _random_prior(rng, 3)
    state = V.m_step(X, resp, prior)
    b0, m0 = prior["mean_precision_prior"], prior["mean_prior"]
    for k in range(3):
        nk = resp[:, k].sum()
        xbar = resp[:, k] @ X / nk
        sk = (resp[:, k, None] * (X - xbar)).T @ (X - xbar) / nk
        w_inv = prior["covariance_prior"] + nk * sk + b0 * nk / (b0 + nk) * np.outer(
            xbar - m0, xbar - m0
        )
        nu = prior["degrees_of_freedom_prior"] + nk
        np.testing.assert_allclose(state["covariances"][k], w_inv / nu, rtol=1e-12)
        np.testing.assert_allclose(state["means"][k], (b0 * m0 + nk * xbar) / (b0 + nk))
        p = state["precisions_cholesky"][k]
        np.testing.assert_allclose(p @ p.T, nu * np.linalg.inv(w_inv), rtol=1e-11)
        assert np.allclose(p, np.triu(p), rtol=0, atol=0)


def test_estimator_attributes_are_posterior_means():
    rng = np.random.default_rng(8)
    X = _blobs(rng, 30, [[0, 0], [6, 6]])
    model = V.BayesianGaussianMixture(
        2, weight_concentration_prior_type="dirichlet_distribution", random_state=0, max_iter=50
    ).fit(X)
    d = X.shape[1]
    for k in range(2):
        nu = model.degrees_of_freedom_[k]
        w_inv = model.covariances_[k] * nu
        # E[Λ_k] of a Wishart(W, ν) is ν W; E[Λ_k^{-1}] is the inverse-Wishart mean.
        np.testing.assert_allclose(
            model.precisions_[k], stats.wishart(df=nu, scale=np.linalg.inv(w_inv)).mean()
        )
        np.testing.assert_allclose(
            model.covariance_posterior_means_[k],
            stats.invwishart(df=nu, scale=w_inv).mean(),
            rtol=1e-12,
        )
        assert nu > d + 1
    np.testing.assert_allclose(
        model.weights_, stats.dirichlet(model.weight_concentration_).mean(), rtol=1e-14
    )


def test_stick_breaking_weights_are_normalised_posterior_means():
    rng = np.random.default_rng(10)
    X = _blobs(rng, 20, [[0, 0], [6, 6], [-6, 6]])
    model = V.BayesianGaussianMixture(4, random_state=0, max_iter=30).fit(X)  # DP default
    assert model.weight_concentration_.shape == (2, 4)
    betas = [stats.beta(a, b) for a, b in model.weight_concentration_.T]
    mean_pi = np.array(
        [betas[k].mean() * np.prod([1 - betas[j].mean() for j in range(k)]) for k in range(4)]
    )
    np.testing.assert_allclose(model.weights_, mean_pi / mean_pi.sum(), rtol=1e-13)


def test_covariance_posterior_mean_is_inf_when_undefined():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(6, 2))
    model = V.BayesianGaussianMixture(
        3, weight_concentration_prior=1e-3, degrees_of_freedom_prior=1.5, random_state=0
    ).fit(X)
    undefined = model.degrees_of_freedom_ <= 3.0
    assert np.all(np.isinf(model.covariance_posterior_means_[undefined]))
    assert np.all(np.isfinite(model.covariance_posterior_means_[~undefined]))


# ---------------------------------------------------------------------------
# estimator behaviour
# ---------------------------------------------------------------------------


def _two_blobs(seed=0):
    rng = np.random.default_rng(seed)
    return _blobs(rng, 25, [[0.0, 0.0], [5.0, 5.0]])


def test_predict_proba_is_the_e_step():
    X = _two_blobs()
    model = V.BayesianGaussianMixture(3, random_state=1).fit(X)
    proba = model.predict_proba(X)
    # r_nk = softmax_k ln ρ_nk (12), ln ρ from the closed-form expectations in this file;
    # a relative error e in ln ρ moves r by <= 2 e |ln ρ| (softmax is 1-Lipschitz per entry
    # in the log domain): 1e-12 (|ln ρ| + 1) from the ln ρ test gives the rtol below.
    ref = _independent_log_rho(model.state_, X, "full")
    tol = 2e-12 * np.max(np.abs(ref) + 1)
    np.testing.assert_allclose(proba, np.exp(ref - logsumexp(ref, axis=1, keepdims=True)),
                               rtol=tol, atol=1e-300)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(model.predict(X), np.argmax(proba, axis=1))
    np.testing.assert_array_equal(
        V.BayesianGaussianMixture(3, random_state=1).fit_predict(X), model.predict(X)
    )


@_FIXED_ITERATIONS
def test_warm_start_continues_the_same_trajectory():
    X = _two_blobs(1)
    common = dict(tol=0.0, random_state=3, init_params="random")
    cold = V.BayesianGaussianMixture(2, max_iter=10, **common).fit(X)
    warm = V.BayesianGaussianMixture(2, max_iter=5, warm_start=True, **common)
    warm.fit(X)
    warm.fit(X)
    np.testing.assert_allclose(warm.lower_bounds_, cold.lower_bounds_[5:], rtol=1e-13)
    np.testing.assert_allclose(warm.means_, cold.means_, rtol=1e-12)


@_FIXED_ITERATIONS
def test_n_init_keeps_the_best_run():
    X = _two_blobs(2)
    common = dict(init_params="random", random_state=5, max_iter=3, tol=0.0)
    one = V.BayesianGaussianMixture(4, n_init=1, **common).fit(X)
    many = V.BayesianGaussianMixture(4, n_init=4, **common).fit(X)
    # The first of the n_init runs draws the same initialisation as the single run.
    assert many.lower_bound_ >= one.lower_bound_


def test_unconverged_fit_warns():
    from lvmref.mixture import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        model = V.BayesianGaussianMixture(2, tol=0.0, max_iter=2, random_state=0)
        model.fit(_two_blobs(5))
    assert not model.converged_ and model.n_iter_ == 2


def test_tol_stops_when_the_bound_settles():
    X = _two_blobs(3)
    model = V.BayesianGaussianMixture(2, tol=1e-6, max_iter=500, random_state=0).fit(X)
    assert model.converged_ and model.n_iter_ < 500
    assert abs(model.lower_bounds_[-1] - model.lower_bounds_[-2]) < 1e-6
    assert all(abs(b - a) >= 1e-6 for a, b in zip(model.lower_bounds_, model.lower_bounds_[1:-1]))


@_FIXED_ITERATIONS
def test_inputs_are_not_mutated_and_dtypes_accepted():
    X = _two_blobs(4)
    resp = _random_resp(np.random.default_rng(0), len(X), 2)
    X0, resp0 = X.copy(), resp.copy()
    mean_prior = np.zeros(2)
    ref = V.BayesianGaussianMixture(2, max_iter=5, mean_prior=mean_prior).fit(X, resp_init=resp)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(resp, resp0)
    np.testing.assert_array_equal(mean_prior, 0.0)
    prior = ref.prior_
    prior["mean_prior"][:] = 7.0  # a copy: the model is unaffected
    assert np.all(ref.mean_prior_ == 0.0)
    f32 = V.BayesianGaussianMixture(2, max_iter=5, mean_prior=mean_prior).fit(
        X.astype(np.float32), resp_init=resp
    )
    assert f32.means_.dtype == np.float64
    np.testing.assert_allclose(f32.means_, ref.means_, rtol=1e-5)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


def _fixture():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 2))
    prior = V.make_prior(X, 3)
    resp = _random_resp(rng, 12, 3)
    state = V.m_step(X, resp, prior)
    return X, prior, resp, state


def _bad_state(state, **changes):
    out = dict(state)
    out.update(changes)
    return out


def _bad_calls():
    X, prior, resp, state = _fixture()
    nan_X = X.copy()
    nan_X[0, 0] = np.nan
    inf_X = X.copy()
    inf_X[1, 1] = np.inf
    log_resp = np.log(resp)
    not_pd = np.array([[1.0, 2.0], [2.0, 1.0]])
    s = state
    K = 3
    eyes = np.eye(2)[None].repeat(2, 0)
    return [
        # make_prior
        (lambda: V.make_prior(nan_X, K), ValueError, "X"),
        (lambda: V.make_prior(inf_X, K), ValueError, "X"),
        (lambda: V.make_prior(X[0], K), ValueError, "X"),
        (lambda: V.make_prior(np.empty((0, 2)), K), ValueError, "X"),
        (lambda: V.make_prior("abc", K), TypeError, "X"),
        (lambda: V.make_prior(X, 0), ValueError, "n_components"),
        (lambda: V.make_prior(X, K, weight_concentration_prior=0.0), ValueError,
         "weight_concentration_prior"),
        (lambda: V.make_prior(X, K, mean_precision_prior=-1.0), ValueError,
         "mean_precision_prior"),
        (lambda: V.make_prior(X, K, mean_prior=np.zeros(3)), ValueError, "mean_prior"),
        (lambda: V.make_prior(X, K, mean_prior=[np.nan, 0.0]), ValueError, "mean_prior"),
        (lambda: V.make_prior(X, K, degrees_of_freedom_prior=1.0), ValueError,
         "degrees_of_freedom_prior"),
        (lambda: V.make_prior(X, K, degrees_of_freedom_prior=np.inf), ValueError,
         "degrees_of_freedom_prior"),
        (lambda: V.make_prior(X, K, covariance_prior=not_pd), ValueError, "covariance_prior"),
        (lambda: V.make_prior(X, K, covariance_prior=np.eye(3)), ValueError,
         "covariance_prior"),
        (lambda: V.make_prior(X, K, covariance_prior=[[1.0, 0.5], [0.0, 1.0]]), ValueError,
         "covariance_prior"),
        (lambda: V.make_prior(X[:1], 1), ValueError, "covariance_prior"),
        (lambda: V.make_prior(np.ones((5, 2)), 1), ValueError, "covariance_prior"),
        # make_state
        (lambda: V.make_state([1, 1], [1, 1], np.zeros((2, 2)), [3, 3], [not_pd, not_pd]),
         ValueError, "scale_inv"),
        (lambda: V.make_state([1, 1], [1, 1], np.zeros((2, 2)), [0.5, 3], eyes),
         ValueError, "degrees_of_freedom"),
        (lambda: V.make_state([1, 1], [-1, 1], np.zeros((2, 2)), [3, 3], eyes),
         ValueError, "mean_precision"),
        (lambda: V.make_state([1, 1], [1, 1], np.zeros(2), [3, 3], eyes),
         ValueError, "means"),
        (lambda: V.make_state([1, 1], [1, 1], np.zeros((2, 2)), [3, 3], np.eye(2)), ValueError,
         "scale_inv"),
        # expectations
        (lambda: V.expected_log_weights([1.0, np.nan]), ValueError, "weight_concentration"),
        (lambda: V.expected_log_weights([1.0, 0.0]), ValueError, "weight_concentration"),
        (lambda: V.expected_log_weights([[1.0]]), ValueError, "weight_concentration"),
        (lambda: V.expected_log_weights([]), ValueError, "weight_concentration"),
        (lambda: V.expected_log_det_precision([1.0] * 3, s["precisions_cholesky"]), ValueError,
         "degrees_of_freedom"),
        (lambda: V.expected_log_det_precision(s["degrees_of_freedom"], s["precisions_cholesky"][0]),
         ValueError, "precisions_cholesky"),
        (lambda: V.expected_log_det_precision(s["degrees_of_freedom"], -s["precisions_cholesky"]),
         ValueError, "precisions_cholesky"),
        (lambda: V.expected_mahalanobis(s, X[:, :1]), ValueError, "X"),
        (lambda: V.expected_mahalanobis(s, nan_X), ValueError, "X"),
        (lambda: V.estimate_log_rho({"means": s["means"]}, X), ValueError, "state"),
        (lambda: V.estimate_log_rho([1, 2], X), TypeError, "state"),
        (lambda: V.e_step(_bad_state(s, means=s["means"][:2]), X), ValueError, "state"),
        (lambda: V.e_step(_bad_state(s, degrees_of_freedom=np.full(3, np.nan)), X), ValueError,
         "degrees_of_freedom"),
        # m_step
        (lambda: V.m_step(X, -resp, prior), ValueError, "resp"),
        (lambda: V.m_step(X, resp[:5], prior), ValueError, "resp"),
        (lambda: V.m_step(X, np.full_like(resp, np.nan), prior), ValueError, "resp"),
        (lambda: V.m_step(X, resp, prior, reg_covar=-1.0), ValueError, "reg_covar"),
        (lambda: V.m_step(X, resp, {"mean_prior": np.zeros(2)}), ValueError, "prior"),
        (lambda: V.m_step(X, resp, dict(prior, mean_prior=np.zeros(5))), ValueError,
         "mean_prior"),
        (lambda: V.m_step(X, resp, None), TypeError, "prior"),
        # KL terms and bound
        (lambda: V.kl_dirichlet([1.0, -1.0], 1.0), ValueError, "weight_concentration"),
        (lambda: V.kl_dirichlet([1.0, 1.0], [1.0, 1.0, 1.0]), ValueError,
         "weight_concentration_prior"),
        (lambda: V.kl_dirichlet([1.0, 1.0], 0.0), ValueError, "weight_concentration_prior"),
        (lambda: V.kl_stick_breaking([1.0, 1.0], 1.0), ValueError, "weight_concentration"),
        (lambda: V.kl_stick_breaking([[1.0], [0.0]], 1.0), ValueError, "weight_concentration"),
        (lambda: V.kl_stick_breaking([[1.0], [1.0]], -1.0), ValueError,
         "weight_concentration_prior"),
        (lambda: V.expected_log_weights(np.ones((3, 2))), ValueError, "weight_concentration"),
        (lambda: V.lower_bound(s, X, log_resp, dict(
            prior, weight_concentration_prior_type="dirichlet_process")), ValueError,
         "weight_concentration"),
        (lambda: V.m_step(X, resp, dict(prior, weight_concentration_prior_type="dp")),
         ValueError, "weight_concentration_prior_type"),
        (lambda: V.kl_gauss_wishart(_bad_state(s, covariances=s["covariances"][:, :1]), prior),
         ValueError, "covariances"),
        (lambda: V.lower_bound(s, X, log_resp + 1.0, prior), ValueError, "log_resp"),
        (lambda: V.lower_bound(s, X, np.full_like(log_resp, np.nan), prior), ValueError,
         "log_resp"),
        (lambda: V.lower_bound(s, X, log_resp[:, :2] - logsumexp(log_resp[:, :2], axis=1,
                                                                keepdims=True), prior),
         ValueError, "log_resp"),
        (lambda: V.lower_bound(s, X[:, :1], log_resp, prior), ValueError, "X"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_bad_input_functions(case):
    call, exc, name = _bad_calls()[case]
    with pytest.raises(exc, match=name):
        call()


_ESTIMATOR_BAD = [
    (dict(n_components=0), ValueError, "n_components"),
    (dict(n_components=2.5), TypeError, "n_components"),
    (dict(covariance_type="diag", covariance_prior=np.eye(2)), ValueError,
     r"covariance_prior must be a vector of shape \(2,\) for covariance_type='diag'"),
    (dict(covariance_type="spherical", covariance_prior=[1.0, 1.0]), ValueError,
     r"covariance_prior must be a number, shape \(\) for covariance_type='spherical'"),
    (dict(covariance_type="diag", covariance_prior=[1.0, -1.0]), ValueError,
     "covariance_prior must be > 0"),
    (dict(covariance_type="tied", covariance_prior=-np.eye(2)), ValueError,
     "covariance_prior must be symmetric positive definite"),
    (dict(verbose=-1), ValueError, "verbose"),
    (dict(verbose_interval=0), ValueError, "verbose_interval"),
    (dict(covariance_type="banana"), ValueError, "covariance_type"),
    (dict(weight_concentration_prior_type="x"), ValueError, "weight_concentration_prior_type"),
    (dict(init_params="kmeans++"), ValueError, "init_params"),
    (dict(tol=-1.0), ValueError, "tol"),
    (dict(tol=np.nan), ValueError, "tol"),
    (dict(reg_covar=-1e-6), ValueError, "reg_covar"),
    (dict(max_iter=0), ValueError, "max_iter"),
    (dict(n_init=0), ValueError, "n_init"),
    (dict(warm_start=1), TypeError, "warm_start"),
    (dict(random_state=-3), ValueError, "random_state"),
    (dict(random_state="seed"), TypeError, "random_state"),
    (dict(weight_concentration_prior=-1.0), ValueError, "weight_concentration_prior"),
    (dict(mean_prior=[0.0, 0.0, 0.0]), ValueError, "mean_prior"),
    (dict(degrees_of_freedom_prior=0.5), ValueError, "degrees_of_freedom_prior"),
    (dict(covariance_prior=-np.eye(2)), ValueError, "covariance_prior"),
]


@pytest.mark.parametrize("kwargs,exc,name", _ESTIMATOR_BAD)
def test_bad_estimator_parameters(kwargs, exc, name):
    kwargs = {"n_components": 2, **kwargs}
    with pytest.raises(exc, match=name):
        V.BayesianGaussianMixture(**kwargs).fit(_two_blobs())


def test_bad_estimator_calls():
    X = _two_blobs()
    model = V.BayesianGaussianMixture(2, random_state=0)
    with pytest.raises(ValueError, match="fit"):
        model.predict(X)
    with pytest.raises(ValueError, match="fit"):
        _ = model.state_
    bad = X.copy()
    bad[3, 0] = np.inf
    with pytest.raises(ValueError, match="X"):
        model.fit(bad)
    with pytest.raises(ValueError, match="X"):
        model.fit(X[:, 0])
    with pytest.raises(ValueError, match="X"):
        model.fit(np.empty((0, 2)))
    with pytest.raises(ValueError, match="n_components"):
        V.BayesianGaussianMixture(60).fit(X)
    with pytest.raises(ValueError, match="resp_init"):
        model.fit(X, resp_init=np.ones((len(X), 3)))
    with pytest.raises(ValueError, match="resp_init"):
        model.fit(X, resp_init=-np.ones((len(X), 2)))
    model.fit(X)
    with pytest.raises(ValueError, match="X"):
        model.predict_proba(X[:, :1])
    with pytest.raises(ValueError, match="X"):
        model.predict(np.full((2, 2), np.nan))
    warm = V.BayesianGaussianMixture(2, warm_start=True, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X"):
        warm.fit(np.hstack([X, X]))


# ---------------------------------------------------------------------------
# persistence (lvmref.persistence: kind BayesianGaussianMixture, format 1)
# ---------------------------------------------------------------------------

_VB_ATTRS = (
    "weights_", "means_", "covariances_", "covariance_posterior_means_", "precisions_",
    "precisions_cholesky_", "weight_concentration_", "mean_precision_", "degrees_of_freedom_",
    "mean_prior_", "covariance_prior_",
)
_VB_SCALARS = (
    "weight_concentration_prior_type_", "weight_concentration_prior_", "mean_precision_prior_",
    "degrees_of_freedom_prior_", "converged_", "n_iter_", "lower_bound_", "lower_bounds_",
    "n_features_in_",
)


def _assert_same_vb(a, b, X):
    for attr in _VB_ATTRS:
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)
    for attr in _VB_SCALARS:
        assert getattr(a, attr) == getattr(b, attr), attr
    for name in V.BayesianGaussianMixture._param_names():
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))


@_FIXED_ITERATIONS
@pytest.mark.parametrize("prior_type", ["dirichlet_process", "dirichlet_distribution"])
@pytest.mark.parametrize("given_priors", [False, True])
def test_save_load_roundtrip(tmp_path, prior_type, given_priors):
    X = _two_blobs(6)
    priors = dict(mean_prior=np.array([1.0, -1.0]), covariance_prior=2.0 * np.eye(2),
                  weight_concentration_prior=0.2, mean_precision_prior=0.5,
                  degrees_of_freedom_prior=3.0) if given_priors else {}
    model = V.BayesianGaussianMixture(3, weight_concentration_prior_type=prior_type,
                                      random_state=4, max_iter=40, **priors).fit(X)
    path = model.save(tmp_path / "vb")
    assert path == tmp_path / "vb.npz"
    loaded = V.BayesianGaussianMixture.load(path)
    _assert_same_vb(model, loaded, X)
    for key, value in model.state_.items():
        np.testing.assert_array_equal(loaded.state_[key], value)
    for key, value in model.prior_.items():
        np.testing.assert_array_equal(loaded.prior_[key], value)


@_FIXED_ITERATIONS
def test_loaded_model_continues_a_warm_start_exactly(tmp_path):
    X = _two_blobs(7)
    model = V.BayesianGaussianMixture(2, tol=0.0, max_iter=3, random_state=1,
                                      warm_start=True).fit(X)
    loaded = V.BayesianGaussianMixture.load(model.save(tmp_path / "warm.npz"))
    model.fit(X)
    loaded.fit(X)
    _assert_same_vb(model, loaded, X)


@pytest.fixture(scope="module")
def good_vb_entries(tmp_path_factory):
    """Entries of a valid file: DP prior, 3 components, 2 features."""
    d = tmp_path_factory.mktemp("vb")
    model = V.BayesianGaussianMixture(3, random_state=0, max_iter=200).fit(_two_blobs(8))
    with np.load(model.save(d / "good.npz"), allow_pickle=False) as f:
        entries = dict(f)
    assert entries["weight_concentration_"].shape == (2, 3) and entries["n_iter_"] > 1
    V.BayesianGaussianMixture.load(_write_vb(d, entries))  # loads unchanged
    return entries


def _write_vb(directory, entries, **changes):
    """A copy of a model file with entries changed (``None``: removed)."""
    entries = dict(entries)
    nones = [v for v in entries["__none__"].tolist() if v not in changes]
    entries["__none__"] = np.array(nones, dtype=np.str_)
    for key, value in changes.items():
        if value is None:
            entries.pop(key)
        else:
            entries[key] = np.asarray(value)
    path = directory / "bad.npz"
    np.savez(path, **entries)
    return path


def _with_nan(a):
    a = np.array(a, dtype=float)
    a.flat[0] = np.nan
    return a


_BAD_VB_FILES = [
    ("missing prior", dict(mean_prior_=None), r"mean_prior_ is missing"),
    ("missing state", dict(degrees_of_freedom_=None), r"degrees_of_freedom_ is missing"),
    ("means_ NaN", lambda e: dict(means_=_with_nan(e["means_"])), r"means_ contains NaN"),
    ("means_ wrong shape", lambda e: dict(means_=e["means_"][:2]), r"means_ must have shape"),
    ("weight_concentration_ of the other prior",
     lambda e: dict(weight_concentration_=e["weight_concentration_"][0]),
     r"weight_concentration_ must have shape \(2, K\) for the dirichlet_process"),
    ("weight_concentration_ negative",
     lambda e: dict(weight_concentration_=-e["weight_concentration_"]),
     r"weight_concentration_ must be > 0"),
    ("mean_precision_ zero", lambda e: dict(mean_precision_=0 * e["mean_precision_"]),
     r"mean_precision_ must be > 0"),
    ("degrees_of_freedom_ too small", dict(degrees_of_freedom_=np.full(3, 0.5)),
     r"degrees_of_freedom_ must exceed n_features - 1 = 1"),
    ("covariances_ = -I", dict(covariances_=-np.broadcast_to(np.eye(2), (3, 2, 2))),
     r"covariances_\[0\] is not positive definite"),
    ("covariances_ not the inverse", lambda e: dict(covariances_=1.01 * e["covariances_"]),
     r"covariances_\[0\] is not the inverse of precisions_cholesky_"),
    ("precisions_cholesky_ lower", lambda e: dict(
        precisions_cholesky_=np.swapaxes(e["precisions_cholesky_"], 1, 2)),
     r"precisions_cholesky_ must be upper triangular"),
    ("covariance_prior_ not PD", dict(covariance_prior_=-np.eye(2)),
     r"covariance_prior_ must be symmetric positive definite"),
    ("covariance_prior_ not symmetric", dict(covariance_prior_=[[1.0, 0.5], [0.0, 1.0]]),
     r"covariance_prior_ must be symmetric"),
    ("mean_prior_ wrong shape", dict(mean_prior_=np.zeros(3)), r"mean_prior_ must have shape"),
    ("degrees_of_freedom_prior_ too small", dict(degrees_of_freedom_prior_=0.5),
     r"degrees_of_freedom_prior_ must be > n_features - 1"),
    ("prior type differs from the constructor's",
     dict(weight_concentration_prior_type="dirichlet_distribution"),
     r"weight_concentration_prior_type_ differs"),
    ("constructor prior not PD", dict(covariance_prior=-np.eye(2)),
     r"covariance_prior must be symmetric positive definite"),
    ("constructor prior wrong shape", dict(mean_prior=np.zeros(5)), r"mean_prior must have"),
    ("n_iter_ zero", dict(n_iter_=0, lower_bounds_=np.zeros(0)),
     r"n_iter_ must lie in \[1, max_iter=200\]"),
    ("max_iter zero", dict(max_iter=0), r"max_iter must be >= 1"),
    ("covariance_type diag with full arrays", dict(covariance_type="diag"),
     r"covariance_prior_ must be a vector of shape \(2,\) for covariance_type='diag'"),
    ("lower_bounds_ inf", lambda e: dict(lower_bounds_=np.full_like(e["lower_bounds_"], np.inf)),
     r"lower_bounds_ contains NaN or infinite"),
    ("converged_ a string", dict(converged_="yes"), r"converged_ must be True or False"),
    ("random_state a float", dict(random_state=1.5), r"random_state must be an integer"),
]


@pytest.mark.parametrize("change, match", [c[1:] for c in _BAD_VB_FILES],
                         ids=[c[0] for c in _BAD_VB_FILES])
def test_load_refuses_bad_files_naming_the_file(tmp_path, good_vb_entries, change, match):
    entries = good_vb_entries
    path = _write_vb(tmp_path, entries, **(change(entries) if callable(change) else change))
    with pytest.raises(ValueError, match=match) as info:
        V.BayesianGaussianMixture.load(path)
    assert str(info.value).startswith(f"{path}: ")


def test_load_refuses_other_kinds(tmp_path):
    from lvmref.gmm import GaussianMixture

    gm = GaussianMixture(2, random_state=0).fit(_two_blobs()).save(tmp_path / "gm.npz")
    with pytest.raises(ValueError, match="holds a GaussianMixture, not a "
                                         "BayesianGaussianMixture") as info:
        V.BayesianGaussianMixture.load(gm)
    assert str(info.value).startswith(f"{gm}: ")
    with pytest.raises(FileNotFoundError):
        V.BayesianGaussianMixture.load(tmp_path / "absent.npz")


# ---------------------------------------------------------------- finite input never gives NaN


def test_vbgmm_far_rows_and_overflow():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 2))
    v = V.BayesianGaussianMixture(2, random_state=0).fit(X)
    far = np.array([[1e200, -1e200], [0.1, 0.2]])
    log_rho = V.estimate_log_rho(v.state_, far)
    assert np.all(log_rho[0] == -np.inf) and np.all(np.isfinite(log_rho[1]))
    for f in (lambda: V.e_step(v.state_, far), lambda: v.predict_proba(far)):
        with pytest.raises(ValueError, match="X row 0 is too far from every component"):
            f()
    score = v.score_samples(far)  # ln Σ_k ρ_nk: -inf for the far row, as for the GMM
    assert score[0] == -np.inf and np.isfinite(score[1])
    with pytest.raises(ValueError, match="X values too large"):
        V.BayesianGaussianMixture(2, random_state=0).fit(X * 1e160)
    prior = V.make_prior(X, 2)
    r = rng.random((60, 2))
    with pytest.raises(ValueError, match="resp too large"):
        V.m_step(X, r * 1e308, prior)
    with pytest.raises(ValueError, match="X values too large"):
        V.m_step(X * 1e160, r, prior)
    # the bound of a q that puts a far row anywhere is -inf, not NaN
    lr = np.log(np.full((2, 2), 0.5))
    assert V.lower_bound(v.state_, far, lr, v.prior_) == -np.inf


# ---------------------------------------------------------------------------
# covariance types (23)-(29): K = 1 closed forms, KL terms against SciPy
# ---------------------------------------------------------------------------


def _dense_scale_inv(state, ct, k, d):
    """W_k^{-1} as (K, D, D) matrices from any layout (covariances = W^{-1} / ν)."""
    cov, nu = state["covariances"], np.broadcast_to(state["degrees_of_freedom"], (k,))
    if ct == "full":
        return cov * nu[:, None, None]
    if ct == "tied":
        return np.broadcast_to(cov * nu[0], (k, d, d))
    if ct == "diag":
        return np.stack([np.diag(c * v) for c, v in zip(cov, nu)])
    return np.stack([c * v * np.eye(d) for c, v in zip(cov, nu)])


def _dense_prior_scale(cov0, ct, d):
    cov0 = np.asarray(cov0, dtype=float)
    return cov0 if ct in ("full", "tied") else (np.diag(cov0) if ct == "diag"
                                                else cov0 * np.eye(d))


def _orthogonal_design(rng, n, d, scales):
    """Rows with mean 0 and orthogonal columns of squared norms ``scales**2`` (the
    scatter is diag(scales**2)), shifted by a random offset."""
    a = rng.normal(size=(n, d))
    q, _ = np.linalg.qr(a - a.mean(axis=0))
    return q * scales + rng.normal(size=d)


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("seed,n,d", [(0, 9, 1), (1, 15, 3), (2, 40, 4)])
def test_k1_bound_equals_log_evidence_for_each_type(ct, seed, n, d):
    """K = 1: the bound after one M-step is ln p(X) of the Gauss-Wishart model with
    W0^{-1} = the dense form of covariance_prior whenever the family (24) holds the exact
    posterior -- always for full/tied, for a diagonal (isotropic) A_1 for diag
    (spherical): orthogonal centred columns with m0 = x̄. Otherwise it is strictly below."""
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 3.0, size=d) if ct != "spherical" else np.full(d, 1.7)
    X = _orthogonal_design(rng, n, d, scales)
    if ct in ("full", "tied"):
        X = X @ rng.normal(size=(d, d))  # any data
    cov0 = {"full": _random_spd(rng, 1, d)[0], "tied": _random_spd(rng, 1, d)[0],
            "diag": rng.uniform(0.3, 2.0, size=d), "spherical": rng.uniform(0.3, 2.0)}[ct]
    prior = V.make_prior(X, 1, covariance_type=ct, covariance_prior=cov0,
                         mean_precision_prior=rng.uniform(0.1, 3.0),
                         degrees_of_freedom_prior=d - 1 + rng.uniform(0.5, 4.0))
    dense = dict(prior, covariance_prior=_dense_prior_scale(cov0, ct, d))
    exact = _log_evidence_closed_form(X, dense)
    assert exact == pytest.approx(_log_evidence_chain_rule(X, dense), rel=1e-11, abs=1e-11)
    state = V.m_step(X, np.ones((n, 1)), prior, ct)
    assert V.lower_bound(state, X, np.zeros((n, 1)), prior, ct) == pytest.approx(
        exact, rel=1e-11, abs=1e-11)
    if ct in ("diag", "spherical") and d > 1:
        # Rotated data: A_1 is no longer diagonal, the exact posterior leaves the family.
        rot = np.linalg.qr(rng.normal(size=(d, d)))[0]
        Xr = (X - X.mean(axis=0)) @ rot * rng.uniform(0.5, 2.0, size=d) + X.mean(axis=0)
        prior_r = dict(prior, mean_prior=Xr.mean(axis=0))
        exact_r = _log_evidence_closed_form(Xr, dict(prior_r, covariance_prior=dense[
            "covariance_prior"]))
        state_r = V.m_step(Xr, np.ones((n, 1)), prior_r, ct)
        assert V.lower_bound(state_r, Xr, np.zeros((n, 1)), prior_r, ct) < exact_r


def _entropy_free_cross(nu0, w0, nu, w, d):
    """E_{W(Λ|W,ν)}[ln W(Λ | W0, ν0)] with ln B(W0, ν0) taken from SciPy's log-density
    at Λ = I (ln B = logpdf(I) + Tr(W0^{-1}) / 2) and the Wishart moments E[Λ] = ν W,
    E[ln|Λ|] = Σ_i ψ((ν + 1 - i)/2) + D ln 2 + ln|W| written out."""
    from scipy.special import digamma

    log_b0 = stats.wishart(df=nu0, scale=w0).logpdf(np.eye(d)) + 0.5 * np.trace(
        np.linalg.inv(w0))
    e_log_det = (np.sum(digamma(0.5 * (nu + 1 - np.arange(1, d + 1)))) + d * np.log(2)
                 + np.linalg.slogdet(w)[1])
    return (log_b0 + 0.5 * (nu0 - d - 1) * e_log_det
            - 0.5 * nu * np.trace(np.linalg.solve(w0, w))), e_log_det


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_kl_terms_against_scipy_entropies(ct):
    """(21), (21'), (22) for K = 3 against SciPy's Dirichlet, Beta and Wishart entropies
    plus cross-entropies written out in closed form (not our functions)."""
    from scipy.special import digamma

    rng = np.random.default_rng(30)
    n, d, k = 25, 3, 3
    X = _blobs(rng, 9, [[0, 0, 0], [4, 1, 0], [0, 4, 2]])[:n]
    cov0 = {"full": _random_spd(rng, 1, d)[0], "tied": _random_spd(rng, 1, d)[0],
            "diag": rng.uniform(0.3, 2.0, size=d), "spherical": 0.8}[ct]
    prior = V.make_prior(X, k, covariance_type=ct, covariance_prior=cov0,
                         mean_precision_prior=0.6, degrees_of_freedom_prior=d + 0.5,
                         weight_concentration_prior=0.4)
    state = V.m_step(X, _random_resp(rng, n, k), prior, ct)
    # (21): KL = -H[q] - E_q[ln p], E[ln π_k] = ψ(α_k) - ψ(Σ α)
    alpha, a0 = state["weight_concentration"], prior["weight_concentration_prior"]
    e_log_pi = digamma(alpha) - digamma(alpha.sum())
    p0 = stats.dirichlet(np.full(k, a0))
    log_c0 = p0.logpdf(np.full(k, 1.0 / k)) - (a0 - 1) * k * np.log(1.0 / k)
    cross = log_c0 + (a0 - 1) * e_log_pi.sum()
    assert V.kl_dirichlet(alpha, a0) == pytest.approx(
        -stats.dirichlet(alpha).entropy() - cross, rel=1e-12, abs=1e-12)
    # (21'): Σ_k -H[Beta(γ_k)] - E[ln Beta(v_k | 1, α0)], E[ln(1 - v)] = ψ(γ2) - ψ(γ1 + γ2)
    gamma = rng.uniform(0.5, 4.0, size=(2, k))
    e_log_1mv = digamma(gamma[1]) - digamma(gamma.sum(axis=0))
    expected = sum(-stats.beta(g1, g2).entropy() - (np.log(a0) + (a0 - 1) * e)
                   for g1, g2, e in zip(*gamma, e_log_1mv))
    assert V.kl_stick_breaking(gamma, a0) == pytest.approx(expected, rel=1e-12)
    # (22) per component, with W_k of the family (24) as a dense matrix
    kl = V.kl_gauss_wishart(state, prior, ct)
    w_inv = _dense_scale_inv(state, ct, k, d)
    w0 = np.linalg.inv(_dense_prior_scale(prior["covariance_prior"], ct, d))
    nu = np.broadcast_to(state["degrees_of_freedom"], (k,))
    b0, m0 = prior["mean_precision_prior"], prior["mean_prior"]
    for j in range(k):
        w = np.linalg.inv(w_inv[j])
        cross_w, _ = _entropy_free_cross(prior["degrees_of_freedom_prior"], w0, nu[j], w, d)
        kl_wishart = -stats.wishart(df=nu[j], scale=w).entropy() - cross_w
        beta, dm = state["mean_precision"][j], state["means"][j] - m0
        # E_Λ KL(N(m, (βΛ)^-1) || N(m0, (β0Λ)^-1)), E[Λ] = ν W
        kl_gauss = 0.5 * (d * b0 / beta - d - d * np.log(b0 / beta)
                          + b0 * nu[j] * dm @ w @ dm)
        assert kl[j] == pytest.approx(kl_wishart + kl_gauss, rel=1e-10, abs=1e-10), j


def _independent_log_rho(state, X, ct):
    """ln ρ_nk of eq. (11) from the closed-form expectations (8)-(10) written here with
    SciPy's digamma and dense W_k matrices (B10.64-B10.66; stick-breaking:
    E[ln π_k] = E[ln v_k] + Σ_{j<k} E[ln(1 - v_j)], Blei & Jordan 2006, eq. 22)."""
    from scipy.special import digamma

    n, d = X.shape
    conc = state["weight_concentration"]
    k = conc.shape[-1]
    if conc.ndim == 1:
        e_log_pi = digamma(conc) - digamma(conc.sum())
    else:
        tot = digamma(conc[0] + conc[1])
        e_log_v, e_log_1mv = digamma(conc[0]) - tot, digamma(conc[1]) - tot
        e_log_pi = e_log_v + np.concatenate([[0.0], np.cumsum(e_log_1mv)[:-1]])
    w = np.linalg.inv(_dense_scale_inv(state, ct, k, d))
    nu = np.broadcast_to(state["degrees_of_freedom"], (k,))
    beta, m = state["mean_precision"], state["means"]
    i = np.arange(1, d + 1)
    e_log_det = np.array([np.sum(digamma(0.5 * (nu[j] + 1 - i))) + d * np.log(2.0)
                          + np.linalg.slogdet(w[j])[1] for j in range(k)])
    diff = X[:, None, :] - m[None]
    e_maha = d / beta + nu * np.einsum("nki,kij,nkj->nk", diff, w, diff)
    return e_log_pi + 0.5 * e_log_det - 0.5 * d * np.log(2 * np.pi) - 0.5 * e_maha


def _independent_kl_weights(conc, a0):
    """(21) / (21') as -H[q] - E_q[ln p] with SciPy's Dirichlet / Beta entropies."""
    from scipy.special import digamma

    if conc.ndim == 1:
        k = conc.size
        e_log_pi = digamma(conc) - digamma(conc.sum())
        p0 = stats.dirichlet(np.full(k, a0))
        log_c0 = p0.logpdf(np.full(k, 1.0 / k)) - (a0 - 1) * k * np.log(1.0 / k)
        return -stats.dirichlet(conc).entropy() - (log_c0 + (a0 - 1) * e_log_pi.sum())
    e_log_1mv = digamma(conc[1]) - digamma(conc.sum(axis=0))
    return sum(-stats.beta(g1, g2).entropy() - (np.log(a0) + (a0 - 1) * e)
               for g1, g2, e in zip(*conc, e_log_1mv))


def _independent_kl_gauss_wishart(state, prior, ct):
    """(22) per component: -H[W(W_k, ν_k)] (SciPy) - E[ln W(Λ | W0, ν0)] (closed form)
    + E_Λ KL(N(m_k, (β_k Λ)^-1) || N(m0, (β0 Λ)^-1)), with E[Λ] = ν_k W_k."""
    k, d = state["means"].shape
    w_inv = _dense_scale_inv(state, ct, k, d)
    w0 = np.linalg.inv(_dense_prior_scale(prior["covariance_prior"], ct, d))
    nu = np.broadcast_to(state["degrees_of_freedom"], (k,))
    b0, m0 = prior["mean_precision_prior"], prior["mean_prior"]
    out = np.empty(k)
    for j in range(k):
        w = np.linalg.inv(w_inv[j])
        cross_w, _ = _entropy_free_cross(prior["degrees_of_freedom_prior"], w0, nu[j], w, d)
        kl_wishart = -stats.wishart(df=nu[j], scale=w).entropy() - cross_w
        beta, dm = state["mean_precision"][j], state["means"][j] - m0
        kl_gauss = 0.5 * (d * b0 / beta - d - d * np.log(b0 / beta) + b0 * nu[j] * dm @ w @ dm)
        out[j] = kl_wishart + kl_gauss
    return out


def _bound_problem(ct, prior_type, seed=33, n=30, d=3, k=4):
    rng = np.random.default_rng(seed)
    X = _blobs(rng, 10, [[0, 0, 0], [4, 1, 0], [0, 4, 2]])[:n]
    cov0 = {"full": _random_spd(rng, 1, d)[0], "tied": _random_spd(rng, 1, d)[0],
            "diag": rng.uniform(0.3, 2.0, size=d), "spherical": 0.8}[ct]
    prior = V.make_prior(X, k, covariance_type=ct, covariance_prior=cov0,
                         mean_precision_prior=0.6, degrees_of_freedom_prior=d + 0.5,
                         weight_concentration_prior=0.4,
                         weight_concentration_prior_type=prior_type)
    state = V.m_step(X, _random_resp(rng, n, k), prior, ct)
    log_resp = log_softmax(2.0 * rng.normal(size=(n, k)), axis=1)  # any q(Z), not optimal
    return X, prior, state, log_resp


_TYPES = ["full", "tied", "diag", "spherical"]
_PRIORS = ["dirichlet_distribution", "dirichlet_process"]


@pytest.mark.parametrize("prior_type", _PRIORS)
@pytest.mark.parametrize("ct", _TYPES)
def test_log_rho_and_posteriors_against_closed_form_expectations(ct, prior_type):
    """(11)-(12) for K = 4 against ln ρ assembled from (8)-(10) written in the test.
    Tolerance: every term is a sum of O(D^2) products of values accurate to a few ulp
    (digamma/slogdet/solve of well-conditioned 3x3 matrices, κ < 1e3 here), so the
    error is <= 1e-12 (|ln ρ| + 1): ~4500 u, covering κ D^2 u with room."""
    X, prior, state, _ = _bound_problem(ct, prior_type)
    ref = _independent_log_rho(state, X, ct)
    got = V.estimate_log_rho(state, X, ct)
    assert np.all(np.abs(got - ref) <= 1e-12 * (np.abs(ref) + 1)), np.max(np.abs(got - ref))
    resp_ref = np.exp(ref - logsumexp(ref, axis=1, keepdims=True))
    np.testing.assert_allclose(np.exp(V.e_step(state, X, ct)), resp_ref, rtol=1e-11,
                               atol=1e-15)


@pytest.mark.parametrize("prior_type", _PRIORS)
@pytest.mark.parametrize("ct", _TYPES)
def test_lower_bound_assembled_from_independent_terms(ct, prior_type):
    """Every term of (19) for K = 4 and any q(Z): the data term (20) from the closed-form
    ln ρ above, the weight KL (21)/(21') from SciPy's Dirichlet/Beta entropies, the
    Gauss-Wishart KL (22) from SciPy's Wishart entropy -- each pinned on its own, then the
    sum. A constant of 1e-9 nats in any term is caught: the tolerances are 1e-12 relative
    to the sum of the terms' magnitudes (the same round-off budget as the ln ρ test)."""
    X, prior, state, log_resp = _bound_problem(ct, prior_type)
    conc, a0 = state["weight_concentration"], prior["weight_concentration_prior"]
    kl_w = _independent_kl_weights(conc, a0)
    got_kl_w = (V.kl_dirichlet(conc, a0) if conc.ndim == 1 else V.kl_stick_breaking(conc, a0))
    assert abs(got_kl_w - kl_w) <= 1e-12 * (abs(kl_w) + 1), (got_kl_w, kl_w)
    kl_gw = _independent_kl_gauss_wishart(state, prior, ct)
    got_kl_gw = V.kl_gauss_wishart(state, prior, ct)
    assert np.all(np.abs(got_kl_gw - kl_gw) <= 1e-12 * (np.abs(kl_gw) + 1)), got_kl_gw - kl_gw
    resp = np.exp(log_resp)
    terms = resp * (_independent_log_rho(state, X, ct) - log_resp)
    data = terms.sum()
    expected = data - kl_w - kl_gw.sum()
    scale = np.abs(terms).sum() + abs(kl_w) + np.abs(kl_gw).sum()
    got = V.lower_bound(state, X, log_resp, prior, ct)
    assert abs(got - expected) <= 1e-12 * scale, (got - expected, scale)
    # frequency weights enter the data term only, eq. (30)
    w = np.random.default_rng(1).integers(0, 4, size=X.shape[0]).astype(float)
    got_w = V.lower_bound(state, X, log_resp, prior, ct, sample_weight=w)
    expected_w = w @ terms.sum(axis=1) - kl_w - kl_gw.sum()
    assert abs(got_w - expected_w) <= 1e-12 * (w @ np.abs(terms).sum(axis=1) + scale)


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_each_type_updates_are_stationary_and_monotone(ct):
    """Coordinate ascent (26)-(29): the bound never decreases along a fit (reg_covar = 0),
    and each M-step beats random states of the same family and the same (α, β, m)."""
    rng = np.random.default_rng(31)
    X = _blobs(rng, 12, [[0, 0], [4, 1], [0, 5]])
    with pytest.warns(ConvergenceWarning):
        model = V.BayesianGaussianMixture(4, covariance_type=ct, reg_covar=0.0, tol=0.0,
                                          max_iter=30, random_state=0).fit(X)
    b = np.array(model.lower_bounds_)
    assert np.all(np.diff(b) >= -8 * EPS * len(X) * 4 * np.max(np.abs(b)))
    prior = V.make_prior(X, 4, covariance_type=ct)
    log_resp = np.log(_random_resp(rng, len(X), 4))
    opt = V.m_step(X, np.exp(log_resp), prior, ct)
    best = V.lower_bound(opt, X, log_resp, prior, ct)
    k, d = 4, 2
    for _ in range(20):
        scale = rng.uniform(0.7, 1.4)
        dof = np.asarray(opt["degrees_of_freedom"]) * rng.uniform(0.9, 1.1, size=np.shape(
            opt["degrees_of_freedom"]))
        scale_inv = _scale_by(opt, ct, scale, rng, k, d)
        other = V.make_state(opt["weight_concentration"], opt["mean_precision"],
                             opt["means"], dof, scale_inv, ct)
        assert V.lower_bound(other, X, log_resp, prior, ct) < best


def _scale_by(state, ct, scale, rng, k, d):
    """A perturbed W^{-1} in the family of ``ct``."""
    nu = np.asarray(state["degrees_of_freedom"])
    cov = state["covariances"]
    if ct == "full":
        return cov * nu[:, None, None] * scale
    if ct == "tied":
        return cov * nu * scale
    if ct == "diag":
        return cov * nu[:, None] * rng.uniform(0.7, 1.4, size=(k, d))
    return cov * nu * scale


def test_make_state_and_expected_log_det_for_each_layout():
    rng = np.random.default_rng(32)
    k, d = 3, 2
    for ct, scale_inv, dof in (
        ("tied", _random_spd(rng, 1, d)[0], 4.0),
        ("diag", rng.uniform(0.5, 2.0, size=(k, d)), rng.uniform(2.0, 5.0, size=k)),
        ("spherical", rng.uniform(0.5, 2.0, size=k), rng.uniform(2.0, 5.0, size=k)),
    ):
        state = V.make_state(rng.uniform(0.5, 2, k), rng.uniform(0.5, 2, k),
                             rng.normal(size=(k, d)), dof, scale_inv, ct)
        dense = _dense_scale_inv(state, ct, k, d)
        got = V.expected_log_det_precision(state["degrees_of_freedom"],
                                           state["precisions_cholesky"], ct, n_features=d)
        for j in range(k):
            nu = np.broadcast_to(dof, (k,))[j]
            lam = stats.wishart(df=nu, scale=np.linalg.inv(dense[j])).mean()
            p = state["precisions_cholesky"]
            fac = p if ct == "tied" else p[j]
            ours_lam = fac @ fac.T if ct == "tied" else np.diag(np.broadcast_to(fac ** 2, d))
            np.testing.assert_allclose(ours_lam, lam, rtol=1e-12)  # P P^T = E[Λ] = ν W
            _, e_log_det = _entropy_free_cross(d, np.eye(d), nu, np.linalg.inv(dense[j]), d)
            assert np.broadcast_to(got, (k,))[j] == pytest.approx(e_log_det, rel=1e-13)
    with pytest.raises(ValueError, match="n_features is needed"):
        V.expected_log_det_precision(np.ones(3) * 3, np.ones(3), "spherical")
    with pytest.raises(ValueError, match=r"scale_inv must have shape \(3, 2\)"):
        V.make_state(np.ones(3), np.ones(3), np.zeros((3, 2)), np.full(3, 3.0),
                     np.ones(3), "diag")


# ---------------------------------------------------------------------------
# sample weights, eq. (30)
# ---------------------------------------------------------------------------


def _vb_fixed(X, ct, resp, prior_type="dirichlet_process", sample_weight=None, **kw):
    with pytest.warns(ConvergenceWarning):
        return V.BayesianGaussianMixture(
            3, covariance_type=ct, tol=0.0, max_iter=20, reg_covar=0.0,
            weight_concentration_prior_type=prior_type, **kw,
        ).fit(X, sample_weight=sample_weight, resp_init=resp)


def _assert_same_vb_fit(a, b, tol=1e-10):
    for key, value in a.state_.items():
        np.testing.assert_allclose(value, b.state_[key], rtol=0, atol=tol, err_msg=key)
    for key, value in a.prior_.items():
        if key != "weight_concentration_prior_type":
            np.testing.assert_allclose(value, b.prior_[key], rtol=1e-13, err_msg=key)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=tol, atol=0)


@pytest.mark.parametrize("prior_type", ["dirichlet_distribution", "dirichlet_process"])
@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_integer_weights_equal_repeated_rows_vb(ct, prior_type):
    rng = np.random.default_rng(40)
    X = _blobs(rng, 15, [[0, 0], [5, 0], [0, 5]])
    resp = _random_resp(rng, len(X), 3)
    w = rng.integers(1, 4, size=len(X))
    weighted = _vb_fixed(X, ct, resp, prior_type, sample_weight=w)
    repeated = _vb_fixed(np.repeat(X, w, axis=0), ct, np.repeat(resp, w, axis=0), prior_type)
    _assert_same_vb_fit(weighted, repeated)
    # c = 3 everywhere is every row three times (W3: the Bayesian fit depends on c)
    thrice = _vb_fixed(X, ct, resp, prior_type, sample_weight=np.full(len(X), 3.0))
    _assert_same_vb_fit(thrice, _vb_fixed(np.repeat(X, 3, axis=0), ct,
                                          np.repeat(resp, 3, axis=0), prior_type))
    assert np.max(np.abs(thrice.mean_precision_ - _vb_fixed(X, ct, resp, prior_type)
                         .mean_precision_)) > 1.0


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_zero_weights_equal_dropped_rows_vb(ct):
    rng = np.random.default_rng(41)
    X = _blobs(rng, 15, [[0, 0], [5, 0], [0, 5]])
    resp = _random_resp(rng, len(X), 3)
    w = rng.uniform(0.0, 3.0, size=len(X))
    w[::5] = 0.0
    keep = w > 0
    _assert_same_vb_fit(_vb_fixed(X, ct, resp, sample_weight=w),
                        _vb_fixed(X[keep], ct, resp[keep], sample_weight=w[keep]))
    # with a seed: 0/1 weights draw exactly the start of the remaining rows
    a = V.BayesianGaussianMixture(3, covariance_type=ct, random_state=2).fit(
        X, sample_weight=keep.astype(float))
    b = V.BayesianGaussianMixture(3, covariance_type=ct, random_state=2).fit(X[keep])
    _assert_same_vb_fit(a, b, tol=0.0)


def test_weighted_default_priors_are_the_repeated_rows_defaults():
    rng = np.random.default_rng(42)
    X = rng.normal(size=(12, 3))
    w = rng.integers(0, 4, size=12)
    w[0] = 2
    for ct in ("full", "tied", "diag", "spherical"):
        got = V.make_prior(X, 2, covariance_type=ct, sample_weight=w)
        want = V.make_prior(np.repeat(X, w, axis=0), 2, covariance_type=ct)
        for key in ("mean_prior", "covariance_prior"):
            np.testing.assert_allclose(got[key], want[key], rtol=1e-13, err_msg=(ct, key))
    with pytest.raises(ValueError, match=r"sample_weight sums to 0.9 <= 1"):
        V.make_prior(X, 2, sample_weight=np.full(12, 0.075))
    V.make_prior(X, 2, sample_weight=np.full(12, 0.075), covariance_prior=np.eye(3))


def test_bad_sample_weight_names_it_vb():
    X = _two_blobs()
    for w, exc, match in [(-np.ones(len(X)), ValueError, "sample_weight must be >= 0"),
                          (np.full(len(X), np.nan), ValueError, "sample_weight contains NaN"),
                          (np.ones(3), ValueError, "sample_weight must have shape"),
                          (np.zeros(len(X)), ValueError, "sample_weight must not be all zero")]:
        with pytest.raises(exc, match=match):
            V.BayesianGaussianMixture(2).fit(X, sample_weight=w)
    X, prior, resp, state = _fixture()
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(12,\)"):
        V.lower_bound(state, X, np.log(resp), prior, sample_weight=np.ones(3))
    # the weighted bound's data term is Σ_n w_n (row term), eq. (30)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=12)
    rep = V.lower_bound(state, np.repeat(X, 2, axis=0), np.repeat(np.log(resp), 2, axis=0),
                        prior)
    assert V.lower_bound(state, X, np.log(resp), prior, sample_weight=np.full(12, 2.0)) == (
        pytest.approx(rep, rel=1e-13))
    assert V.lower_bound(state, X, np.log(resp), prior, sample_weight=w) != rep


@pytest.mark.parametrize("ct", ["tied", "diag", "spherical"])
def test_save_load_sample_and_attributes_for_each_type(tmp_path, ct):
    X = _blobs(np.random.default_rng(50), 40, [[0, 0], [6, 0], [0, 6]])
    model = V.BayesianGaussianMixture(3, covariance_type=ct, random_state=1,
                                      max_iter=200).fit(X)
    loaded = V.BayesianGaussianMixture.load(model.save(tmp_path / ct))
    for key, value in model.state_.items():
        np.testing.assert_array_equal(loaded.state_[key], value, err_msg=key)
    np.testing.assert_array_equal(loaded.covariance_prior_, model.covariance_prior_)
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(loaded.covariance_posterior_means_,
                                  model.covariance_posterior_means_)
    # E[Λ_k^{-1}] of the Wishart (inverse-Wishart mean), dense, against SciPy
    k, d = 3, 2
    dense = _dense_scale_inv(model.state_, ct, k, d)
    nu = np.broadcast_to(model.degrees_of_freedom_, (k,))
    post = model.covariance_posterior_means_
    for j in range(k):
        want = stats.invwishart(df=nu[j], scale=dense[j]).mean()
        got = post if ct == "tied" else (np.diag(post[j]) if ct == "diag"
                                         else post[j] * np.eye(d))
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # the plug-in sample: component means and covariances recovered within 4.5 standard
    # errors (per coordinate, from the sample itself)
    Y, labels = model.sample(20000, rng=3)
    assert Y.shape == (20000, 2)
    for j in np.flatnonzero(np.bincount(labels, minlength=k) > 1000):
        rows = Y[labels == j]
        se = rows.std(axis=0, ddof=1) / np.sqrt(len(rows))
        assert np.all(np.abs(rows.mean(axis=0) - model.means_[j]) <= 4.5 * se)
        cov = model.covariances_ if ct == "tied" else (
            np.diag(model.covariances_[j]) if ct == "diag" else model.covariances_[j] * np.eye(2))
        var = rows.var(axis=0, ddof=1)
        se_var = np.sqrt(2.0 / (len(rows) - 1)) * np.diag(cov)  # Gaussian rows
        assert np.all(np.abs(var - np.diag(cov)) <= 4.5 * se_var)
    wrong = dict(np.load(tmp_path / f"{ct}.npz", allow_pickle=False))
    wrong["covariance_type"] = np.array("full")
    np.savez(tmp_path / "wrong.npz", **wrong)
    with pytest.raises(ValueError, match="wrong.npz: "):
        V.BayesianGaussianMixture.load(tmp_path / "wrong.npz")


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_score_samples_is_below_the_log_posterior_predictive(ct):
    """score_samples = ln Σ_k ρ_nk <= ln Σ_k E[π_k] St(x | m_k, L_k, ν_k + 1 - D) (B10.81),
    the Student-t predictive computed here with scipy.stats.multivariate_t."""
    rng = np.random.default_rng(51)
    X = _blobs(rng, 30, [[0, 0], [5, 0], [0, 5]])
    model = V.BayesianGaussianMixture(3, covariance_type=ct,
                                      weight_concentration_prior_type="dirichlet_distribution",
                                      random_state=0, max_iter=200).fit(X)
    Y = rng.normal(size=(25, 2)) * 3.0
    k, d = 3, 2
    dense = _dense_scale_inv(model.state_, ct, k, d)
    nu = np.broadcast_to(model.degrees_of_freedom_, (k,))
    pi = model.weight_concentration_ / model.weight_concentration_.sum()  # E[π] (exact)
    terms = []
    for j in range(k):
        df = nu[j] + 1 - d
        beta = model.mean_precision_[j]
        shape = dense[j] * (1 + beta) / (beta * df)
        terms.append(np.log(pi[j]) + stats.multivariate_t(
            loc=model.means_[j], shape=shape, df=df).logpdf(Y))
    predictive = logsumexp(np.stack(terms, axis=1), axis=1)
    score = model.score_samples(Y)
    assert np.all(score < predictive)


# ---------------------------------------------------------------------------
# Data beyond memory: the updates and the bound from statistics, eqs. (31)-(32)
# ---------------------------------------------------------------------------
#
# Issue 17's requirement is the tolerance: chunked fits equal the in-memory fit to
# <= 1e-10 relative (max |a - b| / max |b| per array) from the same start; only the order
# of summation differs (measured <= 4e-13). Eq. (32) rewrites the data term of the bound;
# a wrong term in it (the D / (2 β_k), the entropy, the trace) changes the bound by O(N).

RTOL_CHUNKED = 1e-10
_VB_FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_",
              "degrees_of_freedom_", "mean_precision_", "weight_concentration_",
              "lower_bounds_", "mean_prior_", "covariance_prior_")


def _close(a, b, rtol=RTOL_CHUNKED):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    return np.max(np.abs(a - b)) <= rtol * np.max(np.abs(b))


def _blobs3(seed, n=900):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n // 3, 3)) * s + c for s, c in
                        ((1.0, [0, 0, 0]), (0.5, [5, 0, 1]), (1.5, [0, 5, -2]))])
    return X[rng.permutation(n)], rng.integers(0, 4, size=n).astype(float)


@_FIXED_ITERATIONS
@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("prior_type", ["dirichlet_process", "dirichlet_distribution"])
def test_statistics_give_the_m_step_and_the_bound(ct, prior_type):
    """(31) is m_step and (32) is lower_bound: the same numbers from the statistics."""
    X, w = _blobs3(50)
    m = V.BayesianGaussianMixture(4, covariance_type=ct, max_iter=3, tol=0, random_state=0,
                                  weight_concentration_prior_type=prior_type).fit(X)
    state, prior = m.state_, m.prior_
    log_resp = V.e_step(state, X, ct)
    stats = V.sufficient_statistics(state, X, ct, sample_weight=w)
    new_ref = V.m_step(X, np.exp(log_resp) * w[:, None], prior, ct, reg_covar=1e-6)
    new = V.m_step_statistics(stats, prior, ct, reg_covar=1e-6)
    for key in new_ref:
        assert _close(new[key], new_ref[key]), key
    bound_ref = V.lower_bound(new_ref, X, log_resp, prior, ct, sample_weight=w)
    assert V.lower_bound_statistics(new_ref, stats, prior, ct) == pytest.approx(
        bound_ref, rel=RTOL_CHUNKED)
    fewer = stats._replace(nk=stats.nk[:3], sums=stats.sums[:3], scatter=stats.scatter[:3])
    with pytest.raises(ValueError, match="stats has 3 components but state has 4"):
        V.lower_bound_statistics(new_ref, fewer, prior, ct)
    with pytest.raises(ValueError, match="stats.scatter must be"):
        V.m_step_statistics(V.sufficient_statistics(state, X, ct)._replace(
            scatter=np.zeros((4, 3) if ct in ("full", "tied") else (4, 3, 3))), prior, ct)


@_FIXED_ITERATIONS
@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_chunked_fit_equals_the_in_memory_fit(tmp_path, ct):
    """Memory map (and chunk_size on an array), both weight priors, with and without
    weights, from the same seed (the chunked start is the in-memory one, mixture I1-I3)
    and from given responsibilities; the default prior streamed from the same data."""
    X, w = _blobs3(51)
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    R = np.random.default_rng(5).random((X.shape[0], 4))
    for prior_type, init, sw, resp in (("dirichlet_process", "random", None, None),
                                       ("dirichlet_distribution", "kmeans", w, None),
                                       ("dirichlet_process", "k-means++", w, R)):
        kw = dict(covariance_type=ct, weight_concentration_prior_type=prior_type,
                  init_params=init, random_state=3, max_iter=20, tol=0)
        a = V.BayesianGaussianMixture(4, **kw).fit(X, sample_weight=sw, resp_init=resp)
        for data, chunk in ((Xm, 97), (X, 250), (Xm, None)):
            b = V.BayesianGaussianMixture(4, chunk_size=chunk, **kw).fit(
                data, sample_weight=sw, resp_init=resp)
            for name in _VB_FITTED:
                assert _close(getattr(b, name), getattr(a, name)), (name, prior_type)
            assert _close(b.predict_proba(data), a.predict_proba(X))
            assert _close(b.score_samples(data), a.score_samples(X))


@_FIXED_ITERATIONS
def test_chunked_prior_errors_match_the_in_memory_ones(tmp_path):
    X = np.random.default_rng(52).normal(size=(30, 3))
    X[:, 2] = X[:, 0]  # singular sample covariance
    with pytest.raises(ValueError, match="default covariance_prior .* is singular"):
        V.BayesianGaussianMixture(2, chunk_size=7).fit(X)
    V.BayesianGaussianMixture(2, chunk_size=7, covariance_type="diag", max_iter=5).fit(X)
    with pytest.raises(ValueError, match="sample_weight sums to 0.6 <= 1"):
        V.BayesianGaussianMixture(1, chunk_size=7).fit(X, sample_weight=np.r_[0.6, np.zeros(29)])
    bad = X.copy()
    bad[17, 1] = np.inf
    with pytest.raises(ValueError, match=r"X contains NaN or infinite values \(first in row 17"):
        V.BayesianGaussianMixture(2, chunk_size=7).fit(bad)


# ------------------------------------------------------------ issue 15: hardening (appended)

def _hardening_blobs(seed=3):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0, 1, (20, 2)), rng.normal(4, 1, (20, 2))])


def test_concentrations_whose_sum_overflows_are_named():
    for conc in (np.array([1e308, 1e308]), np.full((2, 2), 1e308)):
        with pytest.raises(ValueError, match="weight_concentration too large"):
            V.expected_log_weights(conc)
    with pytest.raises(ValueError, match="weight_concentration too large"):
        V.kl_dirichlet(np.array([1e308, 1e308]), 0.5)
    with pytest.raises(ValueError, match="weight_concentration too large"):
        V.kl_stick_breaking(np.full((2, 2), 1e308), 0.5)
    with pytest.raises(TypeError, match="weight_concentration_prior must be a number"):
        V.kl_dirichlet(np.array([3.0, 4.0]), True)
    # extreme but valid: psi(a) - psi(a + b) for a, b ~ 1e300, against mpmath
    import mpmath

    a = np.array([1e300, 3e300])
    got = V.expected_log_weights(a)
    mpmath.mp.dps = 30
    ref = [float(mpmath.digamma(mpmath.mpf(x)) - mpmath.digamma(mpmath.mpf(4e300)))
           for x in a]
    # a difference of two digammas of ~691: each rounded to eps * 691 in float64
    np.testing.assert_allclose(got, ref, rtol=0,
                               atol=4 * np.finfo(float).eps * float(mpmath.digamma(4e300)))


def test_kl_dirichlet_beyond_the_float_range_is_a_clear_error():
    # Sum finite, but gammaln(sum) ~ 1.4e310 overflows: the KL cannot be formed
    with pytest.raises(ValueError, match="weight_concentration too large: the terms"):
        V.kl_dirichlet(np.array([1e307, 1e307]), 0.5)


def test_m_step_and_make_state_name_the_mismatched_argument():
    X = _hardening_blobs()
    prior = V.make_prior(X, 2)
    resp = np.random.default_rng(0).dirichlet(np.ones(2), size=40)
    with pytest.raises(ValueError, match="X has 3 features but the prior was made for 2"):
        V.m_step(np.hstack([X, X[:, :1]]), resp, prior)
    with pytest.raises(ValueError, match="X values too large"):
        V.m_step(np.full((40, 2), 1e308), resp, prior)
    state = V.m_step(X, resp, prior)
    with pytest.raises(ValueError, match=r"scale_inv must have shape \(2, 3, 3\).*means of "
                                         r"shape \(2, 3\)"):
        V.make_state(state["weight_concentration"], state["mean_precision"],
                     np.hstack([state["means"], state["means"][:, :1]]),
                     state["degrees_of_freedom"], np.tile(np.eye(2), (2, 1, 1)))


def test_huge_data_and_weights_name_the_argument():
    X = _hardening_blobs()
    with pytest.raises(ValueError, match="X values too large"):
        V.make_prior(np.full((40, 2), 1e308), 2)
    with pytest.raises(ValueError, match="X values too large"):
        V.BayesianGaussianMixture(2, random_state=0).fit(np.full((40, 2), 1e308))
    with pytest.raises(ValueError, match="sample_weight too large"):
        V.BayesianGaussianMixture(2, random_state=0).fit(X, sample_weight=np.full(40, 1e308))
    bgm = V.BayesianGaussianMixture(2, random_state=0, max_iter=20).fit(X)
    with pytest.raises(ValueError, match="sample_weight too large"):
        V.sufficient_statistics(bgm.state_, X, sample_weight=np.full(40, 1e308))
    stats = V.sufficient_statistics(bgm.state_, X)
    big = stats._replace(sums=np.full_like(stats.sums, 1e300),
                         scatter=np.full_like(stats.scatter, 1e300))
    with pytest.raises(ValueError, match="^stats"):
        V.m_step_statistics(big, bgm.prior_)
    with pytest.raises(ValueError, match="^stats"):
        V.lower_bound_statistics(bgm.state_, big, bgm.prior_)
