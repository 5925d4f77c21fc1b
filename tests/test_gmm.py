"""lvmref.gmm: the EM derivation checked in code (eqs. refer to the module docstring),
and step-by-step equality with scikit-learn's GaussianMixture (last section).

Round-off tolerances used below, and why:
- per-row log densities are sums of O(d^2) terms; we allow 64 eps * (|value| + 1).
- the identity (6) and the bound (5) combine O(K) such terms per row: 1e-12 * (1 + |log p|)
  (~4500 eps per row, far below any modelling effect, far above float64 noise for K <= 6).
- log-likelihood monotonicity (9): l is a sum over n rows of values each accurate to
  ~64 eps (|log p(x_i)| + 1); we allow 64 eps * sum_i (|log p(x_i)| + 1).
"""

import warnings

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp

from lvmref import gmm
from lvmref.gmm import (
    GaussianMixture,
    e_step,
    elbo,
    kl_to_posterior,
    log_gaussian_prob,
    log_likelihood,
    m_step,
    n_parameters,
)
from lvmref.mixture import (
    INIT_PARAMS,
    ConvergenceWarning,
    NotFittedError,
    compute_precision_cholesky,
    precision_cholesky_from_precisions,
    precisions_from_cholesky,
)

EPS = np.finfo(float).eps
TYPES = ("full", "tied", "diag", "spherical")


def random_covariances(rng, ct, k, d):
    if ct == "full":
        a = rng.normal(size=(k, d, d))
        return a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(d)
    if ct == "tied":
        a = rng.normal(size=(d, d))
        return a @ a.T + 0.5 * np.eye(d)
    if ct == "diag":
        return rng.uniform(0.3, 3.0, size=(k, d))
    return rng.uniform(0.3, 3.0, size=k)


def dense_cov(cov, ct, k, d):
    """(K, d, d) covariance matrices from any covariance_type layout."""
    if ct == "full":
        return cov
    if ct == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if ct == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def random_params(rng, ct, k, d):
    cov = random_covariances(rng, ct, k, d)
    return {
        "weights": rng.dirichlet(np.ones(k)),
        "means": rng.normal(size=(k, d)) * 2.0,
        "covariances": cov,
        "precisions_cholesky": compute_precision_cholesky(cov, ct),
    }


def blobs(rng, n=240, d=3, k=3, spread=4.0):
    centers = rng.normal(size=(k, d)) * spread
    lab = rng.integers(k, size=n)
    return centers[lab] + rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, size=(k, d))[lab]


# ----------------------------------------------------------------------------------------
# Log densities and Cholesky factors
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ct", TYPES)
def test_log_density_matches_scipy(ct):
    rng = np.random.default_rng(1)
    k, d = 3, 4
    p = random_params(rng, ct, k, d)
    X = rng.normal(size=(50, d)) * 3.0
    got = log_gaussian_prob(p, X, ct)
    covs = dense_cov(p["covariances"], ct, k, d)
    ref = np.stack(
        [stats.multivariate_normal(p["means"][j], covs[j]).logpdf(X) for j in range(k)], axis=1
    )
    # scipy works through an eigendecomposition: allow its round-off, cond(Sigma) * eps.
    cond = max(np.linalg.cond(c) for c in covs)
    assert np.all(np.abs(got - ref) <= 64 * cond * EPS * (np.abs(ref) + 1.0))


def test_per_type_log_density_functions_are_the_generic_one():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 3))
    for ct, f in [
        ("full", gmm.log_gaussian_prob_full),
        ("tied", gmm.log_gaussian_prob_tied),
        ("diag", gmm.log_gaussian_prob_diag),
        ("spherical", gmm.log_gaussian_prob_spherical),
    ]:
        p = random_params(rng, ct, 2, 3)
        covs = dense_cov(p["covariances"], ct, 2, 3)
        ref = np.stack(
            [stats.multivariate_normal(p["means"][j], covs[j]).logpdf(X) for j in range(2)],
            axis=1,
        )
        np.testing.assert_allclose(f(p, X), ref, rtol=1e-12)


# ----------------------------------------------------------------------------------------
# ELBO, KL identity, tightness: eqs. (5)-(7)
# ----------------------------------------------------------------------------------------


@st.composite
def _problems(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    ct = draw(st.sampled_from(TYPES))
    k = draw(st.integers(1, 5))
    d = draw(st.integers(1, 4))
    n = draw(st.integers(1, 12))
    rng = np.random.default_rng(seed)
    p = random_params(rng, ct, k, d)
    X = rng.normal(size=(n, d)) * draw(st.sampled_from([0.1, 1.0, 10.0]))
    q = rng.dirichlet(np.full(k, draw(st.sampled_from([0.05, 1.0, 20.0]))), size=n)
    zero = rng.random(size=(n, k)) < draw(st.sampled_from([0.0, 0.3]))
    zero[np.arange(n), rng.integers(k, size=n)] = False  # keep >= 1 non-zero per row
    q = np.where(zero, 0.0, q)
    q /= q.sum(axis=1, keepdims=True)
    return X, p, q, ct


@given(_problems())
def test_kl_identity_and_elbo_bound(prob):
    X, p, q, ct = prob
    ll = log_likelihood(p, X, ct, reduce=False)
    lo = elbo(p, X, q, ct, reduce=False)
    kl = kl_to_posterior(p, X, q, ct, reduce=False)
    tol = 1e-12 * (1.0 + np.abs(ll))
    assert np.all(np.abs(ll - (lo + kl)) <= tol)  # eq. (6)
    assert np.all(lo <= ll + tol)  # eq. (5)
    assert np.all(kl >= -tol)
    # tight at the responsibilities, eq. (7)
    resp, log_norm = e_step(p, X, ct)
    assert np.all(np.abs(log_norm - ll) <= tol)
    assert np.all(np.abs(elbo(p, X, resp, ct, reduce=False) - ll) <= tol)
    assert np.all(np.abs(kl_to_posterior(p, X, resp, ct, reduce=False)) <= tol)
    assert abs(log_likelihood(p, X, ct) - ll.sum()) <= tol.sum()


def test_elbo_strictly_below_for_non_posterior_q():
    """The bound is not trivially tight: a uniform q loses exactly KL(q || posterior) > 0,
    eq. (6), with the posterior computed here from scipy.stats densities."""
    rng = np.random.default_rng(4)
    p = random_params(rng, "full", 3, 2)
    X = rng.normal(size=(30, 2))
    q = np.full((30, 3), 1.0 / 3.0)
    gap = log_likelihood(p, X) - elbo(p, X, q)
    log_joint = np.column_stack([
        np.log(p["weights"][j]) + stats.multivariate_normal(p["means"][j],
                                                            p["covariances"][j]).logpdf(X)
        for j in range(3)])
    log_post = log_joint - logsumexp(log_joint, axis=1, keepdims=True)
    post_kl = np.sum(q * (np.log(q) - log_post))
    assert post_kl > 1e-3
    # 30 rows x 3 terms, each within 1e-12 (1 + |log p|) (module docstring)
    assert abs(gap - post_kl) <= 1e-12 * np.sum(1 + np.abs(logsumexp(log_joint, axis=1)))


# ----------------------------------------------------------------------------------------
# M-step against independent estimators, eqs. (15)-(20)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ct", TYPES)
def test_m_step_against_weighted_np_cov(ct):
    rng = np.random.default_rng(5)
    n, d, k, c = 200, 3, 4, 1e-3
    X = rng.normal(size=(n, d)) * 2.0 + 5.0
    resp = rng.dirichlet(np.ones(k), size=n)
    p = m_step(X, resp, ct, c)
    nk = resp.sum(axis=0)
    w_ref = nk / n
    mu_ref = np.stack([np.average(X, axis=0, weights=resp[:, j]) for j in range(k)])
    full_ref = np.stack([np.cov(X.T, aweights=resp[:, j], bias=True) for j in range(k)])
    if ct == "full":
        cov_ref = full_ref + c * np.eye(d)
    elif ct == "tied":
        cov_ref = np.einsum("k,kij->ij", nk, full_ref) / n + c * np.eye(d)
    elif ct == "diag":
        cov_ref = np.diagonal(full_ref, axis1=1, axis2=2) + c
    else:
        cov_ref = np.diagonal(full_ref, axis1=1, axis2=2).mean(axis=1) + c
    np.testing.assert_allclose(p["weights"], w_ref, rtol=1e-13)
    np.testing.assert_allclose(p["means"], mu_ref, rtol=1e-12)
    np.testing.assert_allclose(p["covariances"], cov_ref, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(
        p["precisions_cholesky"], compute_precision_cholesky(cov_ref, ct), rtol=1e-10,
        atol=1e-12,
    )
    for f, name in [(gmm.m_step_full, "full"), (gmm.m_step_tied, "tied"),
                    (gmm.m_step_diag, "diag"), (gmm.m_step_spherical, "spherical")]:
        if name == ct:
            q = f(X, resp, c)
            for key in p:
                np.testing.assert_array_equal(q[key], p[key])


@pytest.mark.parametrize("ct", TYPES)
def test_m_step_maximises_expected_complete_loglik(ct):
    """Brute force: Q(theta_M) >= Q(theta_M + small random perturbation), eq. (8)."""
    rng = np.random.default_rng(6)
    n, d, k = 150, 2, 3
    X = blobs(rng, n=n, d=d, k=k)
    resp = rng.dirichlet(np.ones(k), size=n)
    p = m_step(X, resp, ct, 0.0)

    def q_fun(params):
        lp = log_gaussian_prob(params, X, ct)
        return np.sum(resp * (np.log(params["weights"]) + lp))

    best = q_fun(p)
    for _ in range(20):
        w = p["weights"] * np.exp(1e-3 * rng.normal(size=k))
        cov = p["covariances"]
        if ct in ("full", "tied"):
            e = 1e-3 * rng.normal(size=cov.shape)
            cov = cov + (e + np.swapaxes(e, -1, -2)) / 2
        else:
            cov = cov * np.exp(1e-3 * rng.normal(size=cov.shape))
        pert = {
            "weights": w / w.sum(),
            "means": p["means"] + 1e-3 * rng.normal(size=p["means"].shape),
            "precisions_cholesky": compute_precision_cholesky(cov, ct),
        }
        assert q_fun(pert) < best


def test_n_parameters_table():
    got = {ct: n_parameters(2, 5, ct) for ct in TYPES}
    assert got == {"spherical": 13, "diag": 21, "tied": 26, "full": 41}


# ----------------------------------------------------------------------------------------
# Monotone log-likelihood, eq. (9)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ct", TYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_never_decreases_log_likelihood(ct, seed):
    rng = np.random.default_rng(seed)
    X = blobs(rng, n=120, d=2, k=3, spread=2.0)
    resp0 = rng.dirichlet(np.ones(4), size=X.shape[0])  # random soft initialisation
    p = m_step(X, resp0, ct, 0.0)
    lls = []
    for _ in range(40):
        ll_rows = log_likelihood(p, X, ct, reduce=False)
        lls.append((ll_rows.sum(), 64 * EPS * np.sum(np.abs(ll_rows) + 1.0)))
        resp, _ = e_step(p, X, ct)
        p = m_step(X, resp, ct, 0.0)
    for (a, tol_a), (b, _) in zip(lls, lls[1:]):
        assert b >= a - tol_a
    assert lls[-1][0] > lls[0][0] + 1e-3  # EM actually moved


@pytest.mark.parametrize("ct", TYPES)
def test_estimator_lower_bounds_are_monotone(ct):
    rng = np.random.default_rng(11)
    X = blobs(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(4, covariance_type=ct, reg_covar=0.0, tol=0.0, max_iter=30,
                             init_params="random", random_state=0).fit(X)
    lb = np.asarray(gm.lower_bounds_)
    assert lb.shape == (30,)
    tol = 64 * EPS * (np.abs(lb) + 1.0)
    assert np.all(np.diff(lb) >= -tol[1:])
    # lower_bound_ (21) is the mean log-likelihood of the parameters before the last M-step
    assert gm.lower_bound_ == lb[-1]


# ----------------------------------------------------------------------------------------
# Estimator behaviour
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(12)
    X = blobs(rng, n=300)
    out = {}
    for ct in TYPES:
        out[ct] = (GaussianMixture(3, covariance_type=ct, random_state=0).fit(X), X)
    return out


@pytest.mark.parametrize("ct", TYPES)
def test_predict_proba_score_consistency(fitted, ct):
    gm, X = fitted[ct]
    proba = gm.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=8 * EPS)
    assert np.array_equal(gm.predict(X), np.argmax(proba, axis=1))
    s = gm.score_samples(X)
    assert gm.score(X) == pytest.approx(np.mean(s), rel=1e-15)
    # score_samples is log sum_k pi_k N(x|k) with scipy densities
    covs = dense_cov(gm.covariances_, ct, 3, X.shape[1])
    ref = np.log(sum(gm.weights_[j] * stats.multivariate_normal(gm.means_[j], covs[j]).pdf(X)
                     for j in range(3)))
    np.testing.assert_allclose(s, ref, rtol=1e-10)
    n = X.shape[0]
    p = n_parameters(3, X.shape[1], ct)
    assert gm.bic(X) == pytest.approx(-2 * s.sum() + p * np.log(n), rel=1e-14)
    assert gm.aic(X) == pytest.approx(-2 * s.sum() + 2 * p, rel=1e-14)
    assert np.array_equal(gm.fit_predict(X), gm.predict(X))


@pytest.mark.parametrize("ct", TYPES)
def test_sample_recovers_parameters(fitted, ct):
    gm, X = fitted[ct]
    Xs, lab = gm.sample(40000, rng=1)
    assert Xs.shape == (40000, X.shape[1])
    d = X.shape[1]
    covs = dense_cov(gm.covariances_, ct, 3, d)
    for j in range(3):
        xs = Xs[lab == j]
        m = xs.shape[0]
        assert abs(m / 40000 - gm.weights_[j]) <= 5 * np.sqrt(gm.weights_[j] / 40000)
        se_mean = np.sqrt(np.diag(covs[j]) / m)
        assert np.all(np.abs(xs.mean(axis=0) - gm.means_[j]) <= 5 * se_mean)
        s = np.cov(xs.T)
        var = np.diag(covs[j])
        se_cov = np.sqrt((np.outer(var, var) + covs[j] ** 2) / (m - 1))  # normal theory
        assert np.all(np.abs(s - covs[j]) <= 5 * se_cov)


@pytest.mark.parametrize("init", INIT_PARAMS)
def test_same_random_state_identical_fit(init):
    X = blobs(np.random.default_rng(13))
    a = GaussianMixture(3, init_params=init, random_state=5, n_init=2).fit(X)
    b = GaussianMixture(3, init_params=init, random_state=5, n_init=2).fit(X)
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.array_equal(getattr(a, attr), getattr(b, attr))
    assert a.lower_bounds_ == b.lower_bounds_


def test_n_init_keeps_the_best_restart():
    X = blobs(np.random.default_rng(14), k=5, spread=2.0)
    rng = np.random.default_rng(3)
    lbs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(4):  # same generator consumed sequentially = the 4 restarts
            lbs.append(GaussianMixture(5, init_params="random", random_state=rng,
                                       max_iter=15).fit(X).lower_bound_)
        gm = GaussianMixture(5, init_params="random", random_state=np.random.default_rng(3),
                             n_init=4, max_iter=15).fit(X)
    assert len(set(lbs)) > 1  # the restarts differ, so the choice matters
    assert gm.lower_bound_ == max(lbs)


def test_warm_start_continues_exactly():
    X = blobs(np.random.default_rng(15))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GaussianMixture(3, tol=0.0, max_iter=5, random_state=0).fit(X)
        gm = GaussianMixture(3, tol=0.0, max_iter=1, random_state=0, warm_start=True)
        lbs = []
        for _ in range(5):
            gm.fit(X)
            lbs.append(gm.lower_bound_)
    assert np.array_equal(gm.means_, ref.means_)
    assert np.array_equal(gm.covariances_, ref.covariances_)
    assert lbs == ref.lower_bounds_


def test_user_initial_parameters_are_used():
    rng = np.random.default_rng(16)
    X = blobs(rng)
    p = random_params(rng, "diag", 3, 3)
    gm = GaussianMixture(3, covariance_type="diag", max_iter=0,
                         weights_init=p["weights"], means_init=p["means"],
                         precisions_init=1.0 / p["covariances"]).fit(X)
    np.testing.assert_array_equal(gm.means_, p["means"])
    np.testing.assert_allclose(gm.covariances_, p["covariances"], rtol=1e-14)
    # one EM step from there equals e_step + m_step by hand
    with pytest.warns(ConvergenceWarning, match="Initialization 0 of n_init=1"):
        gm1 = GaussianMixture(3, covariance_type="diag", max_iter=1,
                              weights_init=p["weights"], means_init=p["means"],
                              precisions_init=1.0 / p["covariances"]).fit(X)
    # the precisions_init path gives U = sqrt(Lambda) (not 1/sqrt(Sigma)): use the same
    # one EM step written out here with scipy.stats densities (eqs. 10-12, 15-17)
    log_joint = np.log(p["weights"]) + np.column_stack(
        [stats.norm(p["means"][j], np.sqrt(p["covariances"][j])).logpdf(X).sum(axis=1)
         for j in range(3)])
    log_norm = logsumexp(log_joint, axis=1)
    resp = np.exp(log_joint - log_norm[:, None])
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    covs = np.stack([resp[:, j] @ (X - means[j]) ** 2 / nk[j] for j in range(3)]) + 1e-6
    # tolerances: the E-step terms are each within 64 eps (|value| + 1) (module docstring),
    # giving relative errors <= 64 eps max(|log_joint| + 1) in resp; weighted averages of
    # data of size |X| <= 10 keep that relative size.
    tol = 64 * EPS * np.max(np.abs(log_joint) + 1)
    np.testing.assert_allclose(gm1.weights_, nk / nk.sum(), rtol=tol)
    np.testing.assert_allclose(gm1.means_, means, rtol=0, atol=tol * np.max(np.abs(X)))
    np.testing.assert_allclose(gm1.covariances_, covs, rtol=4 * tol)
    assert gm1.lower_bound_ == pytest.approx(np.mean(log_norm), rel=tol)
    assert gm1.converged_ is False


def test_convergence_flag_and_warning_names_initialization():
    X = blobs(np.random.default_rng(17))
    gm = GaussianMixture(3, tol=1e-3, max_iter=500, random_state=0).fit(X)
    assert gm.converged_ and gm.n_iter_ < 500
    with pytest.warns(ConvergenceWarning, match=r"Initialization \d of n_init=3.*max_iter=2"):
        GaussianMixture(3, tol=0.0, max_iter=2, n_init=3, random_state=0).fit(X)


# ----------------------------------------------------------------------------------------
# Persistence (lvmref.persistence: kind GaussianMixture, format 1)
# ----------------------------------------------------------------------------------------

FITTED_ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")
EM_ATTRS = ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_")


def _assert_same_model(a, b, X):
    for attr in FITTED_ATTRS:
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)
    for attr in EM_ATTRS:
        assert getattr(a, attr) == getattr(b, attr), attr
    # identical predictions
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert a.bic(X) == b.bic(X) and a.aic(X) == b.aic(X)
    np.testing.assert_array_equal(a.sample(25, rng=3)[0], b.sample(25, rng=3)[0])


@pytest.mark.parametrize("ct", TYPES)
def test_save_load_roundtrip(tmp_path, fitted, ct):
    gm, X = fitted[ct]
    path = gm.save(tmp_path / f"gm_{ct}")
    assert path == tmp_path / f"gm_{ct}.npz" and path.is_file()  # .npz appended, returned
    g2 = GaussianMixture.load(path)
    assert type(g2) is GaussianMixture
    _assert_same_model(gm, g2, X)
    for name in GaussianMixture._param_names():
        assert getattr(g2, name) == getattr(gm, name), name  # None or scalars here


def test_save_load_keeps_initial_parameters_and_seeds(tmp_path):
    rng = np.random.default_rng(30)
    X = blobs(rng)
    p = random_params(rng, "diag", 3, 3)
    inits = dict(weights_init=p["weights"], means_init=p["means"],
                 precisions_init=1.0 / p["covariances"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(3, covariance_type="diag", max_iter=3, tol=0.0, random_state=7,
                             **inits).fit(X)
        g2 = GaussianMixture.load(gm.save(tmp_path / "inits.npz"))
    _assert_same_model(gm, g2, X)
    for key, value in inits.items():
        np.testing.assert_array_equal(getattr(g2, key), value)
    assert g2.random_state == 7 and g2.max_iter == 3 and g2.tol == 0.0
    # a Generator cannot be stored: recorded as None
    gm.random_state = np.random.default_rng(1)
    assert GaussianMixture.load(gm.save(tmp_path / "gen.npz")).random_state is None
    # a model fitted with max_iter=0 (lower_bound_ = -inf, no history) round-trips too
    g0 = GaussianMixture(3, covariance_type="full", max_iter=0, random_state=0).fit(X)
    g0b = GaussianMixture.load(g0.save(tmp_path / "g0.npz"))
    assert g0b.lower_bound_ == -np.inf and g0b.lower_bounds_ == [] and g0b.n_iter_ == 0
    _assert_same_model(g0, g0b, X)


def test_loaded_model_continues_a_warm_start_exactly(tmp_path):
    X = blobs(np.random.default_rng(31))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(3, tol=0.0, max_iter=2, random_state=0, warm_start=True).fit(X)
        g2 = GaussianMixture.load(gm.save(tmp_path / "warm.npz"))
        gm.fit(X)
        g2.fit(X)
    _assert_same_model(gm, g2, X)


def _entries(tmp_path, model):
    with np.load(model.save(tmp_path / "good.npz"), allow_pickle=False) as f:
        return dict(f)


def _write(tmp_path, entries, **changes):
    """A copy of a model file with entries changed (``None``: removed)."""
    entries = dict(entries)
    nones = [v for v in entries["__none__"].tolist() if v not in changes]
    entries["__none__"] = np.array(nones, dtype=np.str_)
    for key, value in changes.items():
        if value is None:
            entries.pop(key)
        else:
            entries[key] = np.asarray(value)
    path = tmp_path / "bad.npz"
    np.savez(path, **entries)
    return path


def _nan_first(a):
    a = np.array(a, dtype=float)
    a.flat[0] = np.nan
    return a


BAD_GMM_FILES = [
    ("missing entry", dict(covariances_=None), r"covariances_ is missing"),
    ("missing hyper-parameter", dict(tol=None), r"tol is missing"),
    ("means_ wrong shape", lambda e: dict(means_=e["means_"][:, :1]), r"means_ must have shape"),
    ("means_ NaN", lambda e: dict(means_=_nan_first(e["means_"])), r"means_ contains NaN"),
    ("weights_ inf", lambda e: dict(weights_=np.full(3, np.inf)), r"weights_ contains NaN"),
    ("covariances_ = -I", lambda e: dict(covariances_=-np.broadcast_to(np.eye(2), (3, 2, 2))),
     r"covariances_\[0\] is not positive definite"),
    ("covariances_ not the inverse", lambda e: dict(covariances_=e["covariances_"] * 1.01),
     r"covariances_\[0\] is not the inverse of precisions_cholesky_"),
    ("covariances_ indefinite", lambda e: dict(covariances_=e["covariances_"]
                                               - 2 * np.max(e["covariances_"]) * np.eye(2)),
     r"covariances_\[0\] is not positive definite"),
    ("weights_ off the simplex", lambda e: dict(weights_=e["weights_"] * 1.5),
     r"weights_ must be non-negative and sum to 1"),
    ("precisions_cholesky_ lower", lambda e: dict(
        precisions_cholesky_=np.swapaxes(e["precisions_cholesky_"], 1, 2)),
     r"precisions_cholesky_ must be upper triangular"),
    ("precisions_cholesky_ negative diagonal", lambda e: dict(
        precisions_cholesky_=-e["precisions_cholesky_"]), r"must have a positive diagonal"),
    ("n_iter_ not an integer", dict(n_iter_=2.5), r"n_iter_ must be an integer"),
    ("n_iter_ negative", dict(n_iter_=-1), r"n_iter_ must lie in \[0, max_iter=100\]"),
    ("n_iter_ beyond max_iter", dict(max_iter=1), r"n_iter_ must lie in \[0, max_iter=1\]"),
    ("converged_ not a bool", dict(converged_=1), r"converged_ must be True or False"),
    ("lower_bounds_ NaN", lambda e: dict(lower_bounds_=_nan_first(e["lower_bounds_"])),
     r"lower_bounds_ contains NaN"),
    ("lower_bounds_ 2-D", lambda e: dict(lower_bounds_=e["lower_bounds_"][None]),
     r"lower_bounds_ must be 1-D"),
    ("lower_bounds_ too short", lambda e: dict(lower_bounds_=e["lower_bounds_"][:-1]),
     r"lower_bounds_ must hold n_iter_=\d+ values"),
    ("lower_bound_ not the last", lambda e: dict(lower_bound_=e["lower_bound_"] + 1.0),
     r"lower_bound_ must be the last of lower_bounds_"),
    ("lower_bound_ NaN", dict(lower_bound_=np.nan), r"lower_bound_ must be the last"),
    ("n_components not an integer", dict(n_components=3.0), r"n_components must be an integer"),
    ("n_components inconsistent", dict(n_components=2), r"means_ must have shape \(2, 2\)"),
    ("n_features_in_ inconsistent", dict(n_features_in_=3), r"means_ must have shape \(3, 3\)"),
    ("n_features_in_ zero", dict(n_features_in_=0), r"n_features_in_ must be >= 1"),
    ("covariance_type unknown", dict(covariance_type="banana"), r"covariance_type must be one"),
    ("covariance_type of other arrays", dict(covariance_type="diag"),
     r"precisions_cholesky_ has shape \(3, 2, 2\), but covariance_type='diag'"),
    ("covariance_type not a string", dict(covariance_type=1), r"covariance_type must be a string"),
    ("warm_start not a bool", dict(warm_start=1), r"warm_start must be True or False"),
    ("tol negative", dict(tol=-1.0), r"tol must be >= 0"),
    ("means_init wrong shape", dict(means_init=np.zeros((2, 2))), r"means_init must have shape"),
    ("precisions_init not positive definite", dict(precisions_init=-np.ones((3, 2, 2))),
     r"precisions_init: precisions\[0\] must be positive definite"),
    ("random_state negative", dict(random_state=-3), r"random_state seed must be non-negative"),
    ("old v0.1 file", lambda e: {k: None for k in e if k.startswith("__")} | dict(
        format="lvmref.GaussianMixture/1"), r"not an lvmref model file"),
    ("newer format version", dict(__format__=2), r"format version 2 is not supported"),
]


@pytest.fixture(scope="module")
def good_file_entries(tmp_path_factory):
    """Entries of a valid file: full covariances, 3 components, 2 features, 100 max_iter."""
    gm = GaussianMixture(3, random_state=0).fit(blobs(np.random.default_rng(32), d=2))
    entries = _entries(tmp_path_factory.mktemp("gm"), gm)
    assert entries["means_"].shape == (3, 2) and 1 < entries["n_iter_"] < 100
    GaussianMixture.load(_write(tmp_path_factory.mktemp("gm"), entries))  # loads unchanged
    return entries


@pytest.mark.parametrize("change, match", [c[1:] for c in BAD_GMM_FILES],
                         ids=[c[0] for c in BAD_GMM_FILES])
def test_load_refuses_bad_files_naming_the_file(tmp_path, good_file_entries, change, match):
    entries = good_file_entries
    path = _write(tmp_path, entries, **(change(entries) if callable(change) else change))
    with pytest.raises(ValueError, match=match) as info:
        GaussianMixture.load(path)
    assert str(info.value).startswith(f"{path}: ")


def test_load_refuses_other_kinds_and_non_model_files(tmp_path):
    from lvmref.vbgmm import BayesianGaussianMixture

    X = blobs(np.random.default_rng(33), d=2)
    vb = BayesianGaussianMixture(2, random_state=0).fit(X).save(tmp_path / "vb.npz")
    with pytest.raises(ValueError, match="holds a BayesianGaussianMixture, not a "
                                         "GaussianMixture") as info:
        GaussianMixture.load(vb)
    assert str(info.value).startswith(f"{vb}: ")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"not an \.npz") as info:
        GaussianMixture.load(bad)
    assert str(bad) in str(info.value)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="not an lvmref model file"):
        GaussianMixture.load(other)
    pick = tmp_path / "pickled.npz"
    np.savez(pick, format=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        GaussianMixture.load(pick)
    with pytest.raises(FileNotFoundError):
        GaussianMixture.load(tmp_path / "absent.npz")


@pytest.mark.parametrize("ct", TYPES)
def test_degenerate_data_needs_reg_covar(ct):
    X = np.repeat(np.array([[0.0, 1.0], [3.0, -2.0]]), 5, axis=0)  # 5 copies of 2 points
    with pytest.raises(ValueError, match="reg_covar"):
        GaussianMixture(3, covariance_type=ct, reg_covar=0.0, random_state=0).fit(X)
    gm = GaussianMixture(3, covariance_type=ct, random_state=0).fit(X)
    assert np.all(np.isfinite(gm.score_samples(X)))


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------


def test_bad_input_estimator():
    X = blobs(np.random.default_rng(18), n=30)
    Xbad = X.copy()
    Xbad[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        GaussianMixture(2).fit(Xbad)
    Xbad[0, 0] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or infinite"):
        GaussianMixture(2).fit(Xbad)
    with pytest.raises(ValueError, match="X must be 2-D"):
        GaussianMixture(2).fit(X[:, 0])
    with pytest.raises(ValueError, match=r"X has 0 sample\(s\) \(shape=\(0, 3\)\)"):
        GaussianMixture(2).fit(np.empty((0, 3)))
    with pytest.raises(ValueError, match=r"X has 0 feature\(s\) \(shape=\(30, 0\)\)"):
        GaussianMixture(2).fit(np.empty((30, 0)))
    with pytest.raises(ValueError, match="X has 1 sample; GaussianMixture needs at least 2"):
        GaussianMixture(1).fit(X[:1])
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixture(31).fit(X)
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixture(0).fit(X)
    with pytest.raises(ValueError, match="means_init"):
        GaussianMixture(2, means_init=np.zeros((3, 3))).fit(X)
    with pytest.raises(ValueError, match="weights_init"):
        GaussianMixture(2, weights_init=[0.7, 0.7]).fit(X)
    with pytest.raises(ValueError, match="precisions_init"):
        GaussianMixture(2, precisions_init=-np.ones((2, 3)), covariance_type="diag").fit(X)
    with pytest.raises(ValueError, match="precisions_init"):
        GaussianMixture(2, precisions_init=np.zeros((2, 3, 3))).fit(X)
    with pytest.raises(ValueError, match="reg_covar"):
        GaussianMixture(2, reg_covar=-1e-3).fit(X)
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMixture(2, covariance_type="banana").fit(X)
    with pytest.raises(ValueError, match="init_params"):
        GaussianMixture(2, init_params="nope").fit(X)
    with pytest.raises(TypeError, match="random_state"):
        GaussianMixture(2, random_state="seed").fit(X)
    with pytest.raises(NotFittedError, match="fit"):
        GaussianMixture(2).predict(X)
    gm = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3 "
                                         "features as input"):
        gm.predict(X[:, :2])
    with pytest.raises(ValueError, match="X contains NaN"):
        gm.score_samples(Xbad)
    with pytest.raises(ValueError, match="n_samples"):
        gm.sample(0)


def test_inputs_not_mutated_and_other_dtypes():
    X = blobs(np.random.default_rng(19), n=40)
    X32 = X.astype(np.float32)
    keep = X32.copy()
    means_init = X[:2].copy()
    gm = GaussianMixture(2, means_init=means_init, random_state=0).fit(X32)
    assert np.array_equal(X32, keep)
    assert np.array_equal(means_init, X[:2])
    gm.predict_proba(X32)
    gm.score_samples(np.round(X).astype(int))
    assert np.array_equal(X32, keep)


def test_bad_input_functions():
    rng = np.random.default_rng(20)
    p = random_params(rng, "full", 2, 3)
    X = rng.normal(size=(10, 3))
    q = np.full((10, 2), 0.5)
    with pytest.raises(ValueError, match="X contains NaN"):
        e_step(p, np.where(X > 1, np.nan, X))
    with pytest.raises(ValueError, match="X must be 2-D"):
        log_likelihood(p, X[0])
    with pytest.raises(ValueError, match="precisions_cholesky.*covariance_type"):
        e_step(p, X, "diag")
    with pytest.raises(ValueError, match="upper triangular"):
        e_step({**p, "precisions_cholesky": np.swapaxes(p["precisions_cholesky"], 1, 2)}, X)
    with pytest.raises(ValueError, match="weights"):
        e_step({**p, "weights": np.array([0.9, 0.9])}, X)
    with pytest.raises(ValueError, match="missing the key 'means'"):
        e_step({"weights": p["weights"], "precisions_cholesky": p["precisions_cholesky"]}, X)
    with pytest.raises(ValueError, match="q must be row-stochastic"):
        elbo(p, X, q * 1.5)
    with pytest.raises(ValueError, match="q must be non-negative"):
        kl_to_posterior(p, X, np.tile([1.5, -0.5], (10, 1)))
    with pytest.raises(ValueError, match="q must have shape"):
        elbo(p, X, q[:, :1])
    with pytest.raises(ValueError, match="resp must have 10 rows"):
        m_step(X, q[:5])
    with pytest.raises(ValueError, match="reg_covar"):
        m_step(X, q, "full", -1.0)
    with pytest.raises(ValueError, match="covariance_type"):
        m_step(X, q, "round")
    with pytest.raises(ValueError, match="resp contains NaN"):
        m_step(X, np.full((10, 2), np.nan))


# ---------------------------------------------------------------- finite input never gives NaN

COV_TYPES_EDGE = ("full", "tied", "diag", "spherical")


def _fitted(ct, seed=0):
    X = np.random.default_rng(seed).normal(size=(60, 2))
    return GaussianMixture(2, covariance_type=ct, random_state=seed).fit(X)


@pytest.mark.parametrize("ct", COV_TYPES_EDGE)
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
        gmm.e_step(params, np.vstack([near[:1], far]), ct)


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
    resp, log_norm = gmm.e_step(params, X, "diag")
    for i, x in enumerate(X[:, 0]):
        with mpmath.workdps(60):
            a = [mpmath.log(w) + _mp_log_normal(x, m, s)
                 for w, m, s in zip((0.3, 0.7), means[:, 0], sd)]
            lse = mpmath.log(sum(mpmath.exp(t) for t in a))
            post = [float(mpmath.exp(t - lse)) for t in a]
        assert abs(log_norm[i] - float(lse)) <= 1e-13 * abs(float(lse))
        np.testing.assert_allclose(resp[i], post, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("ct", COV_TYPES_EDGE)
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


@pytest.mark.parametrize("ct", COV_TYPES_EDGE)
@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_gmm_fit_on_overflowing_data_is_a_clear_error(ct, init):
    X = np.random.default_rng(4).normal(size=(30, 2)) * 1e160
    # "X values too large" (overflowing distances or scatter), or for one-point initial
    # components the degenerate-covariance message; both say to rescale the data
    with pytest.raises(ValueError, match="X values too large|rescale the data"):
        GaussianMixture(2, covariance_type=ct, init_params=init, random_state=0).fit(X)


# ----------------------------------------------------------------------------------------
# Step by step equal to scikit-learn (a test dependency; skipped without it)
# ----------------------------------------------------------------------------------------
#
# From the same initial parameters (weights_init, means_init, precisions_init) and tol=0,
# both are advanced one EM iteration at a time (warm_start=True, max_iter=1) for 20
# iterations; after every iteration the weights, means, covariances and lower_bound_ must
# agree to <= 1e-10 relative (normwise: max|a - b| / max|b| per array). Our own
# fit(max_iter=20) is then checked to equal the stepped run exactly. Differences are pure
# round-off (we centre data in the M-step, scikit-learn expands E[x^2] - mu^2 for
# diag/tied/spherical); they stay ~1e-14 here.

SK_STEPS = 20
SK_RTOL = 1e-10


def _sk_synthetic():
    rng = np.random.default_rng(2024)
    centers = rng.normal(size=(3, 4)) * 3.0
    lab = rng.integers(3, size=400)
    return centers[lab] + rng.normal(size=(400, 4)) @ rng.normal(size=(4, 4)) * 0.7


def _sk_data(name):
    import sklearn.datasets as datasets
    if name == "iris":
        return datasets.load_iris().data, 3
    if name == "wine":
        return datasets.load_wine().data, 3
    return _sk_synthetic(), 4


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("ct", TYPES)
@pytest.mark.parametrize("name", ["iris", "synthetic", "wine"])
def test_stepwise_equal_to_sklearn(name, ct):
    import sklearn.mixture as sk_mixture
    from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning

    X, k = _sk_data(name)
    # initial parameters from our own k-means initialisation (max_iter=0: no EM step)
    init = GaussianMixture(k, covariance_type=ct, max_iter=0, random_state=1).fit(X)
    inits = {
        "weights_init": init.weights_,
        "means_init": init.means_,
        "precisions_init": init.precisions_,
    }
    ours = GaussianMixture(k, covariance_type=ct, tol=0.0, max_iter=1, warm_start=True,
                           **inits)
    sk = sk_mixture.GaussianMixture(k, covariance_type=ct, tol=0.0, max_iter=1,
                                    warm_start=True, init_params="random_from_data",
                                    random_state=0, **inits)
    worst = 0.0
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", SkConvergenceWarning)
        for step in range(1, SK_STEPS + 1):
            ours.fit(X)
            with np.errstate(under="ignore"):  # scikit-learn's own E-step underflows
                sk.fit(X)
            errs = {
                "weights": _rel(ours.weights_, sk.weights_),
                "means": _rel(ours.means_, sk.means_),
                "covariances": _rel(ours.covariances_, sk.covariances_),
                "precisions_cholesky": _rel(ours.precisions_cholesky_, sk.precisions_cholesky_),
                "lower_bound": _rel(ours.lower_bound_, sk.lower_bound_),
            }
            bad = {key: v for key, v in errs.items() if not v <= SK_RTOL}
            assert not bad, f"{name}/{ct} step {step}: {bad}"
            worst = max(worst, *errs.values())
            bounds.append(ours.lower_bound_)
        # a full fit with max_iter = 20 is the same computation as 20 warm-started steps
        full = GaussianMixture(k, covariance_type=ct, tol=0.0, max_iter=SK_STEPS,
                               **inits).fit(X)
    np.testing.assert_array_equal(full.means_, ours.means_)
    np.testing.assert_array_equal(full.covariances_, ours.covariances_)
    assert full.lower_bounds_ == bounds and full.n_iter_ == SK_STEPS
    # inference and model selection on the final parameters
    with np.errstate(under="ignore"):  # scikit-learn's own E-step underflows
        sk_out = (sk.score_samples(X), sk.predict_proba(X), sk.bic(X), sk.aic(X))
    assert _rel(ours.score_samples(X), sk_out[0]) <= SK_RTOL
    assert _rel(ours.predict_proba(X), sk_out[1]) <= SK_RTOL
    assert _rel(ours.bic(X), sk_out[2]) <= SK_RTOL
    assert _rel(ours.aic(X), sk_out[3]) <= SK_RTOL
    assert worst <= SK_RTOL


@pytest.mark.parametrize("ct", TYPES)
def test_n_parameters_match_sklearn(ct):
    import sklearn.mixture as sk_mixture
    X = _sk_synthetic()[:, :3]
    ours = GaussianMixture(2, covariance_type=ct, random_state=0).fit(X)
    sk = sk_mixture.GaussianMixture(2, covariance_type=ct, random_state=0).fit(X)
    # BIC - AIC = p (log n - 2) for both, so the parameter counts agree
    p_ours = (ours.bic(X) - ours.aic(X)) / (np.log(X.shape[0]) - 2)
    p_sk = (sk.bic(X) - sk.aic(X)) / (np.log(X.shape[0]) - 2)
    assert round(p_ours) == round(p_sk) == sk._n_parameters()


@pytest.mark.parametrize("ct", TYPES)
def test_fit_from_sklearns_random_start_equals_sklearn(ct):
    """The class docstring's recipe: scikit-learn's init_params="random" start is
    RandomState(seed).uniform(size=(n, K)), rows normalised; given as resp_init, lvmref's
    fit is scikit-learn's fit with that seed (n_init=1)."""
    import sklearn.mixture as sk_mixture
    X, k = _sk_data("synthetic")
    seed = 4
    resp = np.random.RandomState(seed).uniform(size=(len(X), k))
    resp /= resp.sum(axis=1, keepdims=True)
    common = dict(covariance_type=ct, tol=0.0, max_iter=SK_STEPS)
    with warnings.catch_warnings(), np.errstate(under="ignore"):  # sklearn's own E-step
        warnings.simplefilter("ignore")
        sk = sk_mixture.GaussianMixture(k, init_params="random", random_state=seed,
                                        **common).fit(X)
        ours = GaussianMixture(k, **common).fit(X, resp_init=resp)
    for attr in ("weights_", "means_", "covariances_", "lower_bound_"):
        assert _rel(getattr(ours, attr), getattr(sk, attr)) <= SK_RTOL, attr


# ----------------------------------------------------------------------------------------
# Sample weights: weighted EM, eq. (15w)
# ----------------------------------------------------------------------------------------


def _weighted_problem(ct, seed=0, n=60):
    rng = np.random.default_rng(seed)
    X = blobs(rng, n=n, d=3, k=3)
    # the same start for every fit compared: the fitted parameters of a short k-means fit
    start = GaussianMixture(3, covariance_type=ct, max_iter=0, random_state=seed).fit(X)
    inits = {"weights_init": start.weights_, "means_init": start.means_,
             "precisions_init": start.precisions_}
    return rng, X, inits


def _fit_fixed(X, ct, inits, sample_weight=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed number of iterations
        return GaussianMixture(3, covariance_type=ct, tol=0.0, max_iter=20, **inits).fit(
            X, sample_weight=sample_weight)


def _assert_same_fit(a, b, tol=1e-10):
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=0, atol=tol,
                                   err_msg=attr)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=tol, atol=0)


@pytest.mark.parametrize("ct", TYPES)
def test_integer_weights_equal_repeated_rows(ct):
    rng, X, inits = _weighted_problem(ct)
    w = rng.integers(1, 5, size=len(X))
    weighted = _fit_fixed(X, ct, inits, w)
    repeated = _fit_fixed(np.repeat(X, w, axis=0), ct, inits)
    _assert_same_fit(weighted, repeated)
    # and the weights matter: the unweighted fit is elsewhere
    assert np.max(np.abs(_fit_fixed(X, ct, inits).means_ - weighted.means_)) > 1e-3


@pytest.mark.parametrize("ct", TYPES)
def test_zero_weights_equal_dropped_rows(ct):
    rng, X, inits = _weighted_problem(ct, seed=1)
    w = rng.integers(0, 3, size=len(X)).astype(float)
    w[:3] = 0.0
    _assert_same_fit(_fit_fixed(X, ct, inits, w), _fit_fixed(X[w > 0], ct, inits, w[w > 0]))
    # 0/1 weights: the same seed draws the same start as the dropped data (W4), so even a
    # k-means-initialised fit is the fit of the remaining rows
    keep = np.ones(len(X))
    keep[::4] = 0.0
    a = GaussianMixture(3, covariance_type=ct, random_state=5).fit(X, sample_weight=keep)
    b = GaussianMixture(3, covariance_type=ct, random_state=5).fit(X[keep > 0])
    _assert_same_fit(a, b, tol=0.0)


@pytest.mark.parametrize("ct", TYPES)
@pytest.mark.parametrize("c", [0.37, 3.0, 1e3])
def test_constant_weight_leaves_the_fit_unchanged(ct, c):
    rng, X, inits = _weighted_problem(ct, seed=2)
    _assert_same_fit(_fit_fixed(X, ct, inits, np.full(len(X), c)), _fit_fixed(X, ct, inits))
    # with a seed too: constant weights draw the unweighted start (W4)
    a = GaussianMixture(3, covariance_type=ct, random_state=6, max_iter=30).fit(
        X, sample_weight=np.full(len(X), c))
    b = GaussianMixture(3, covariance_type=ct, random_state=6, max_iter=30).fit(X)
    _assert_same_fit(a, b)


def test_weighted_m_step_is_the_weighted_moments():
    """(15w): one weighted step from given responsibilities equals NumPy's weighted mean
    and covariance (np.average, np.cov with aweights) -- an independent oracle."""
    rng = np.random.default_rng(3)
    X = blobs(rng, n=50, d=3, k=2)
    w = rng.uniform(0.0, 4.0, size=50)
    resp = rng.dirichlet(np.ones(2), size=50)
    gm = GaussianMixture(2, max_iter=0, reg_covar=0.0).fit(X, sample_weight=w,
                                                           resp_init=resp)
    for k in range(2):
        a = w * resp[:, k]
        np.testing.assert_allclose(gm.means_[k], np.average(X, axis=0, weights=a), rtol=1e-13)
        np.testing.assert_allclose(gm.covariances_[k], np.cov(X.T, aweights=a, bias=True),
                                   rtol=1e-12)
    np.testing.assert_allclose(gm.weights_, (w @ resp) / w.sum(), rtol=1e-13)


def test_bad_sample_weight_names_it():
    X = blobs(np.random.default_rng(4), n=20)
    bad = [(np.full(20, -1.0), ValueError, "sample_weight must be >= 0"),
           (np.full(20, np.nan), ValueError, "sample_weight contains NaN"),
           (np.full(20, np.inf), ValueError, "sample_weight contains NaN"),
           (np.ones(19), ValueError, r"sample_weight must have shape \(20,\)"),
           (np.ones((20, 1)), ValueError, "sample_weight must be 1-D"),
           (np.zeros(20), ValueError, "sample_weight must not be all zero"),
           ("heavy", TypeError, "sample_weight must be a numeric array")]
    for w, exc, match in bad:
        with pytest.raises(exc, match=match):
            GaussianMixture(2, random_state=0).fit(X, sample_weight=w)
    one = np.zeros(20)
    one[3] = 1.0
    with pytest.raises(ValueError, match="X has 1 sample of positive sample_weight"):
        GaussianMixture(1).fit(X, sample_weight=one)
    with pytest.raises(ValueError, match="n_components=3 must be <= n_samples=2"):
        GaussianMixture(3).fit(X, sample_weight=np.r_[1.0, 1.0, np.zeros(18)])
    with pytest.raises(ValueError, match="resp_init must have shape"):
        GaussianMixture(2).fit(X, resp_init=np.ones((20, 3)))
    w = np.ones(20)
    GaussianMixture(2, random_state=0).fit(X, sample_weight=w)
    np.testing.assert_array_equal(w, 1.0)  # not mutated


# ----------------------------------------------------------------------------------------
# EM on sufficient statistics (eqs. 23-25): chunked, memory-mapped, array-like input
# ----------------------------------------------------------------------------------------
#
# Issue 17's requirement, used as the tolerance below: from the same initial parameters
# a chunked fit equals the in-memory fit to <= 1e-10 relative (max |a - b| / max |b| per
# fitted array), only the order of summation differing. The measured differences are
# ~1e-15 to 4e-13 (each EM step is a contraction near the optimum, so rounding does not
# grow); any mistake in the statistics (a missing cross term of (24), a wrong chunk
# offset, a dropped or repeated chunk) changes the fit by far more.

RTOL_CHUNKED = 1e-10
FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_")


class RowReader:
    """An array-like (h5py/zarr-like: shape, dtype, row slices) that never hands out more
    than ``max_rows`` rows at once and refuses to be converted whole."""

    def __init__(self, a, max_rows):
        self.a, self.max_rows = np.asarray(a), max_rows
        self.shape, self.dtype = self.a.shape, self.a.dtype
        self.largest = 0

    def __getitem__(self, key):
        start, stop, step = key.indices(self.shape[0])
        assert step == 1 and stop - start <= self.max_rows, key
        self.largest = max(self.largest, stop - start)
        return self.a[key].copy()

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was requested")


def assert_same_fit(a, b, rtol=RTOL_CHUNKED, attrs=FITTED):
    for name in attrs:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert x.shape == y.shape, name
        assert np.max(np.abs(x - y)) <= rtol * np.max(np.abs(y)), name
    assert (a.n_iter_, a.converged_) == (b.n_iter_, b.converged_)


def _mapped(tmp_path, X, name="X.npy", dtype=None):
    np.save(tmp_path / name, X if dtype is None else X.astype(dtype))
    return np.load(tmp_path / name, mmap_mode="r")


def _start(X, ct, k=3):
    """Initial parameters (a few EM steps from a seed): the same start for both fits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g = GaussianMixture(k, covariance_type=ct, random_state=0, max_iter=2).fit(X)
    return {"weights_init": g.weights_, "means_init": g.means_,
            "precisions_init": g.precisions_}


@pytest.mark.parametrize("ct", TYPES)
def test_statistics_give_the_m_step_and_the_log_likelihood(ct):
    """(23) then (25) is the M-step (15)-(20) on all rows; the extra scalar is L."""
    rng = np.random.default_rng(30)
    X = blobs(rng, n=400)
    w = rng.uniform(0.0, 3.0, size=400)
    g = GaussianMixture(3, covariance_type=ct, random_state=1, max_iter=3, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        p = g.fit(X)._get_params()
    resp, log_norm = e_step(p, X, ct)
    stats = gmm.sufficient_statistics(p, X, ct, sample_weight=w)
    assert stats.total == pytest.approx(w.sum(), rel=1e-15 * 400)
    assert stats.extra == pytest.approx(w @ log_norm, rel=1e-12)
    ref = m_step(X, resp * w[:, None], ct, 1e-6)
    got = gmm.m_step_statistics(stats, ct, 1e-6)
    for key in ("weights", "means", "covariances", "precisions_cholesky"):
        assert np.max(np.abs(got[key] - ref[key])) <= RTOL_CHUNKED * np.max(np.abs(ref[key]))
    # statistics of two halves merged by (24): the same M-step
    from lvmref.mixture_stats import merge_moments

    halves = merge_moments(gmm.sufficient_statistics(p, X[:150], ct, sample_weight=w[:150]),
                           gmm.sufficient_statistics(p, X[150:], ct, sample_weight=w[150:]))
    got = gmm.m_step_statistics(halves, ct, 1e-6)
    for key in ("weights", "means", "covariances"):
        assert np.max(np.abs(got[key] - ref[key])) <= RTOL_CHUNKED * np.max(np.abs(ref[key]))


@pytest.mark.parametrize("ct", TYPES)
@pytest.mark.parametrize("source", ["memmap", "float32-memmap", "array-like", "chunk_size"])
def test_chunked_fit_equals_the_in_memory_fit(tmp_path, ct, source):
    rng = np.random.default_rng(31)
    X = blobs(rng, n=900)
    w = rng.integers(0, 4, size=900).astype(float)
    if source == "float32-memmap":
        X = X.astype(np.float32).astype(float)  # the values the map holds
    data = {"memmap": lambda: _mapped(tmp_path, X),
            "float32-memmap": lambda: _mapped(tmp_path, X, dtype=np.float32),
            "array-like": lambda: RowReader(X, 128),
            "chunk_size": lambda: X}[source]()
    for sw in (None, w):
        kw = dict(covariance_type=ct, max_iter=25, tol=0.0, **_start(X, ct))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            a = GaussianMixture(3, **kw).fit(X, sample_weight=sw)
            b = GaussianMixture(3, chunk_size=128, **kw).fit(data, sample_weight=sw)
        assert_same_fit(b, a)
        assert b.n_features_in_ == 3
    if source == "array-like":
        assert data.largest == 128


@pytest.mark.parametrize("init", INIT_PARAMS)
def test_chunked_fit_from_the_same_seed_equals_the_in_memory_fit(tmp_path, init):
    """With no more rows than INIT_SAMPLE_SIZE the chunked start is the in-memory start
    (mixture I1-I3), so the whole fit agrees -- restarts included."""
    rng = np.random.default_rng(32)
    X = blobs(rng, n=700)
    w = rng.integers(0, 3, size=700).astype(float)
    Xm = _mapped(tmp_path, X)
    for sw in (None, w):
        a = GaussianMixture(3, init_params=init, n_init=2, random_state=4).fit(X, sample_weight=sw)
        b = GaussianMixture(3, init_params=init, n_init=2, random_state=4,
                            chunk_size=101).fit(Xm, sample_weight=sw)
        assert_same_fit(b, a)
        # default chunk size for a memory map: one chunk here
        c = GaussianMixture(3, init_params=init, n_init=2, random_state=4).fit(
            Xm, sample_weight=sw)
        assert_same_fit(c, a)


def test_chunked_warm_start_and_resp_init(tmp_path):
    rng = np.random.default_rng(33)
    X = blobs(rng, n=500)
    R = rng.random((500, 3))
    Xm, Rm = _mapped(tmp_path, X), _mapped(tmp_path, R, "R.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = GaussianMixture(3, max_iter=4, warm_start=True).fit(X, resp_init=R)
        b = GaussianMixture(3, max_iter=4, warm_start=True, chunk_size=64).fit(Xm, resp_init=Rm)
        assert_same_fit(b, a)
        a.fit(X)
        b.fit(Xm)  # continues from the fitted parameters
    assert_same_fit(b, a)
    with pytest.raises(ValueError, match=r"resp_init must have shape \(500, 3\)"):
        GaussianMixture(3, chunk_size=64).fit(Xm, resp_init=Rm[:, :2])
    with pytest.raises(ValueError, match="X has 3 features, but the warm-started model has 2"):
        b2 = GaussianMixture(3, warm_start=True).fit(X[:, :2])
        b2.fit(Xm)


@pytest.mark.parametrize("ct", TYPES)
def test_chunked_predictions_equal_the_in_memory_ones(tmp_path, fitted, ct):
    gm, X = fitted[ct]
    Xm = _mapped(tmp_path, X)
    chunked = GaussianMixture(**{**gm.get_params(), "chunk_size": 37})
    chunked.__dict__.update({k: v for k, v in gm.__dict__.items() if k.endswith("_")})
    for est in (gm, chunked):  # the memory map alone triggers chunking; chunk_size too
        for data in (Xm, X if est is chunked else Xm):
            np.testing.assert_array_equal(est.predict(data), gm.predict(X))
            np.testing.assert_allclose(est.predict_proba(data), gm.predict_proba(X),
                                       rtol=0, atol=16 * EPS)
            np.testing.assert_array_equal(est.score_samples(data), gm.score_samples(X))
            assert est.score(data) == pytest.approx(gm.score(X), rel=1e-13)
            assert est.bic(data) == pytest.approx(gm.bic(X), rel=1e-13)
            assert est.aic(data) == pytest.approx(gm.aic(X), rel=1e-13)
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3"):
        gm.predict(_mapped(tmp_path, X[:, :2], "X2.npy"))


def test_chunked_fit_reads_one_chunk_at_a_time(monkeypatch):
    """Working memory is that of a chunk: no read of more rows (k-means included, on a
    subsample of INIT_SAMPLE_SIZE rows), and the data are never converted whole."""
    from lvmref import mixture

    monkeypatch.setattr(mixture, "INIT_SAMPLE_SIZE", 300)
    X = blobs(np.random.default_rng(34), n=2000)
    reader = RowReader(X, 250)
    for init in INIT_PARAMS:
        g = GaussianMixture(3, init_params=init, random_state=0, chunk_size=250).fit(reader)
        g.predict(reader)
        g.score(reader)
        # deterministic for a random_state (the subsample too)
        h = GaussianMixture(3, init_params=init, random_state=0, chunk_size=250).fit(reader)
        assert_same_fit(h, g, rtol=0)
    assert reader.largest == 250


def test_chunked_fit_refuses_bad_data_naming_it(tmp_path):
    X = blobs(np.random.default_rng(35), n=300)
    bad = X.copy()
    bad[211, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or infinite values \(first in row 211"):
        GaussianMixture(2, chunk_size=50, random_state=0).fit(_mapped(tmp_path, bad))
    for value, exc in ((0, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(exc, match="chunk_size"):
            GaussianMixture(2, chunk_size=value).fit(X)
    with pytest.raises(ValueError, match=r"X must be 2-D"):
        GaussianMixture(2).fit(_mapped(tmp_path, X[:, 0], "one.npy"))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(300,\)"):
        GaussianMixture(2, chunk_size=50).fit(X, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="X has 1 sample of positive sample_weight"):
        GaussianMixture(1, chunk_size=50).fit(X, sample_weight=np.r_[1.0, np.zeros(299)])
    far = X.copy()
    far[123] = 1e200
    with pytest.raises(ValueError, match="X (row 123 is too far|values too large)"):
        GaussianMixture(2, chunk_size=50, random_state=0).fit(_mapped(tmp_path, far, "f.npy"))
    Xm = _mapped(tmp_path, X, "ok.npy")
    GaussianMixture(2, chunk_size=50, random_state=0).fit(Xm)
    np.testing.assert_array_equal(np.load(tmp_path / "ok.npy"), X)  # not written to


# ----------------------------------------------------------------------------------------
# Online (stepwise) EM, eqs. (26)-(28)
# ----------------------------------------------------------------------------------------


def _one_step_bound(p_ref, X, resp, ct):
    """How far two float64 evaluations of one M-step may differ (derived): the batch step
    and the stepwise step with rho_1 = 1 share the E-step and the sums N_k, S_k bit for
    bit; they differ in (a) the 10 eps guard of (15), added to N_k in one and to N_k / n in
    the other (a relative change of the means and covariances <= 10 eps n / N_k), (b) the
    scatter kernel's sums about mu_k versus about S_k / N_k, each within gamma_n sum_i
    r_ik |x_i - mu_k| |x_i - mu_k|^T / N_k of exact, and (c) <= 16 further roundings."""
    from support import SLACK, gamma

    nk = resp.sum(axis=0)
    n = X.shape[0]
    guard = 10 * EPS * n / nk.min() + 16 * EPS
    dev = np.abs(X[:, None, :] - p_ref["means"][None])  # (n, K, d)
    spread = np.einsum("nk,nki,nkj->kij", resp, dev, dev) / nk[:, None, None]
    cov = np.asarray(p_ref["covariances"])
    if ct == "tied":
        spread = np.einsum("k,kij->ij", nk, spread) / n
    elif ct == "diag":
        spread = np.diagonal(spread, axis1=1, axis2=2)
    elif ct == "spherical":
        spread = np.diagonal(spread, axis1=1, axis2=2).mean(axis=1)
    return {"weights": guard * (1 + 10 * EPS * n / nk.min()),
            "means": guard * np.abs(p_ref["means"]),
            "covariances": guard * np.abs(cov) + 2 * SLACK * gamma(n) * spread}


@pytest.mark.parametrize("ct", TYPES)
def test_partial_fit_with_rho_one_is_a_batch_em_step(tmp_path, ct):
    """kappa = 1, t0 = 0: rho_1 = 1, so one partial_fit on all n rows reproduces one
    batch EM step (7)-(8) from the same start -- exactly, up to rounding (bound derived
    in _one_step_bound); also from a memory map."""
    X = blobs(np.random.default_rng(36), n=600)
    kw = _start(X, ct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        batch = GaussianMixture(3, covariance_type=ct, max_iter=1, **kw).fit(X)
    start = {"weights": kw["weights_init"], "means": kw["means_init"],
             "precisions_cholesky": precision_cholesky_from_precisions(kw["precisions_init"],
                                                                       ct)}
    resp = e_step(start, X, ct)[0]
    bound = _one_step_bound(batch._get_params(), X, resp, ct)
    for data in (X, _mapped(tmp_path, X)):
        online = GaussianMixture(3, covariance_type=ct, learning_decay=1.0, learning_offset=0.0,
                                 **kw).partial_fit(data)
        assert online.n_batch_iter_ == 1 and online.n_iter_ == 1 and not online.converged_
        assert online.lower_bound_ == pytest.approx(batch.lower_bound_, rel=1e-13)
        for key in ("weights", "means", "covariances"):
            diff = np.abs(getattr(online, key + "_") - getattr(batch, key + "_"))
            assert np.all(diff <= bound[key]), key


def test_partial_fit_follows_the_stepwise_recursion():
    """Steps (26)-(28) against an independent evaluation: the recursion (27) run on the
    raw (uncentred) per-row moments E[r], E[r x], E[r x x^T] in long double, with
    s_0 = (pi, pi mu, pi (Sigma + mu mu^T)) and theta = (N / sum N, S / N, Q / N - mu mu^T
    + c I). Tolerance 1e-9 relative: float64 rounding carried through four steps is
    ~1e-14; a wrong step size (e.g. t counted from 0) or a wrong s_0 moves the parameters
    by ~1e-2."""
    rng = np.random.default_rng(37)
    X = blobs(rng, n=1200)
    kw = _start(X[:300], "full")
    kappa, t0, reg = 0.7, 2.0, 1e-6
    online = GaussianMixture(3, learning_decay=kappa, learning_offset=t0, reg_covar=reg, **kw)
    LD = np.longdouble
    pi, mu = kw["weights_init"].astype(LD), kw["means_init"].astype(LD)
    sigma = np.linalg.inv(kw["precisions_init"]).astype(LD)
    s = [pi, pi[:, None] * mu, pi[:, None, None] * (sigma + mu[:, :, None] * mu[:, None, :])]
    for t, lo in enumerate(range(0, 1200, 300), start=1):
        B = X[lo:lo + 300]
        params = {"weights": pi.astype(float), "means": mu.astype(float),
                  "precisions_cholesky": compute_precision_cholesky(sigma.astype(float),
                                                                    "full")}
        r = e_step(params, B, "full")[0].astype(LD)
        Bl = B.astype(LD)
        hat = [r.mean(axis=0), r.T @ Bl / 300, np.einsum("nk,ni,nj->kij", r, Bl, Bl) / 300]
        rho = LD((t + t0) ** -kappa)
        s = [(1 - rho) * a + rho * b for a, b in zip(s, hat)]
        pi = s[0] / s[0].sum()
        mu = s[1] / s[0][:, None]
        sigma = s[2] / s[0][:, None, None] - mu[:, :, None] * mu[:, None, :] + reg * np.eye(3)
        online.partial_fit(B)
        assert online.n_batch_iter_ == t
        for got, ref in ((online.weights_, pi), (online.means_, mu),
                         (online.covariances_, sigma)):
            ref = ref.astype(float)
            assert np.max(np.abs(got - ref)) <= 1e-9 * np.max(np.abs(ref))


def _mixture_draw(rng, n):
    """The known 3-component mixture of the stream test."""
    w = np.array([0.5, 0.3, 0.2])
    mu = np.array([[0.0, 0.0], [4.0, 1.0], [-1.0, 4.0]])
    cov = np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 2.0]],
                    [[1.5, -0.6], [-0.6, 0.8]]])
    z = rng.choice(3, size=n, p=w)
    return mu[z] + np.einsum("nij,nj->ni", np.linalg.cholesky(cov)[z],
                             rng.standard_normal((n, 2)))


def test_online_em_on_a_stream_matches_batch_em():
    """Issue 17: a stream of 2e5 points from a known 3-component mixture in batches of
    500; the held-out mean log-likelihood of the online fit ends within 0.01 nats of a
    batch EM fit. Tested on 1e5 held-out points with the paired standard error of the
    per-point difference: |mean| + 3 se < 0.01 (the expected gap is ~p / (2 n_eff) ~
    1e-4 nats, p = 17 parameters, n_eff ~ batch / rho_T ~ 3e4).

    Both start from the same parameters (an EM fit with 4 restarts on the first batch):
    EM and stepwise EM are local methods, and the test is about the update, not the
    start (k-means on 500 points split a cluster for 2 of 5 seeds tried, and both then
    stop in that local optimum)."""
    rng = np.random.default_rng(38)
    X, H = _mixture_draw(rng, 200_000), _mixture_draw(rng, 100_000)
    first = GaussianMixture(3, n_init=4, random_state=0).fit(X[:500])
    kw = {"weights_init": first.weights_, "means_init": first.means_,
          "precisions_init": first.precisions_}
    batch = GaussianMixture(3, tol=1e-8, max_iter=500, **kw).fit(X)
    online = GaussianMixture(3, **kw)  # kappa = 0.7, t0 = 0 (the defaults)
    for lo in range(0, 200_000, 500):
        online.partial_fit(X[lo:lo + 500])
    assert online.n_batch_iter_ == 400
    d = online.score_samples(H) - batch.score_samples(H)
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert abs(d.mean()) + 3 * se < 0.01


def test_partial_fit_bookkeeping_persistence_and_errors(tmp_path):
    X = blobs(np.random.default_rng(39), n=400)
    g = GaussianMixture(3, random_state=0)
    g.partial_fit(X[:200])
    theta = g._get_params()
    g.partial_fit(X[200:])
    assert g.n_batch_iter_ == 2 and g.lower_bounds_ == [g.lower_bound_]
    assert g.lower_bound_ == pytest.approx(gmm.log_likelihood(theta, X[200:]) / 200, rel=1e-13)
    path = g.save(tmp_path / "online.npz")
    h = GaussianMixture.load(path)
    assert not hasattr(h, "n_batch_iter_")
    h.partial_fit(X[:100])  # continues from the loaded parameters, a new count
    assert h.n_batch_iter_ == 1
    g.fit(X)
    assert not hasattr(g, "n_batch_iter_")  # fit starts anew
    g.partial_fit(X[:50])
    assert g.n_batch_iter_ == 1
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3"):
        g.partial_fit(X[:, :2])
    with pytest.raises(ValueError, match="covariance_type changed since the model was fitted"):
        g.set_params(covariance_type="diag").partial_fit(X)
    g.set_params(covariance_type="full")
    for kappa in (0.5, 1.01, 0.0):
        with pytest.raises(ValueError, match="learning_decay"):
            GaussianMixture(2, learning_decay=kappa).partial_fit(X)
    with pytest.raises(ValueError, match="learning_offset must be >= 0"):
        GaussianMixture(2, learning_offset=-1.0).partial_fit(X)
    with pytest.raises(TypeError, match="learning_decay must be a real number"):
        GaussianMixture(2, learning_decay="fast").fit(X)
    with pytest.raises(ValueError, match="n_components=3 must be <= n_samples=2"):
        GaussianMixture(3).partial_fit(X[:2])


def test_stepwise_functions_refuse_bad_input():
    X = blobs(np.random.default_rng(40), n=50)
    g = GaussianMixture(2, random_state=0).fit(X)
    s = gmm.sufficient_statistics(g._get_params(), X)
    for a, b in zip(gmm.stepwise_statistics(s, s, 1.0), s):
        np.testing.assert_array_equal(a, b)
    half = gmm.stepwise_statistics(s, gmm.statistics_from_params(g._get_params()), 0.5)
    assert half.total == pytest.approx(0.5 * 50 + 0.5)
    for rho in (0.0, 1.5):
        with pytest.raises(ValueError, match="rho"):
            gmm.stepwise_statistics(s, s, rho)
    with pytest.raises(ValueError, match="previous and batch must have the same shapes"):
        gmm.stepwise_statistics(s, gmm.sufficient_statistics(g._get_params(), X, "full")
                                ._replace(scatter=s.scatter[:, 0]), 0.5)
    with pytest.raises(ValueError, match=r"stats.scatter must be diagonal \(K, D\) for "
                                          "covariance_type='diag'"):
        gmm.m_step_statistics(s, "diag")
    with pytest.raises(TypeError, match="stats must be a lvmref.mixture_stats.Moments"):
        gmm.m_step_statistics({"nk": 1}, "full")
    with pytest.raises(TypeError, match="params must be a dict"):
        gmm.statistics_from_params([1, 2])
    with pytest.raises(ValueError, match="sample_weight must be >= 0"):
        gmm.sufficient_statistics(g._get_params(), X, sample_weight=-np.ones(50))
    # s_0 maps back to its parameters (plus reg_covar) under the M-step (25)
    back = gmm.m_step_statistics(gmm.statistics_from_params(g._get_params()), "full", 0.0)
    np.testing.assert_allclose(back["means"], g.means_, rtol=1e-13)
    np.testing.assert_allclose(back["covariances"], g.covariances_, rtol=1e-12)


# ------------------------------------------------------------ issue 15: hardening (appended)

def _two_blobs(seed=3):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0, 1, (20, 2)), rng.normal(4, 1, (20, 2))])


def _fitted_params(X, ct="full"):
    g = gmm.GaussianMixture(2, covariance_type=ct, random_state=0).fit(X)
    return {"weights": g.weights_, "means": g.means_,
            "precisions_cholesky": g.precisions_cholesky_}


def test_reduce_flags_and_q_are_checked_by_name():
    X = _two_blobs()
    p = _fitted_params(X)
    q, _ = gmm.e_step(p, X)
    for fn, args in ((gmm.elbo, (p, X, q)), (gmm.kl_to_posterior, (p, X, q)),
                     (gmm.log_likelihood, (p, X))):
        with pytest.raises(TypeError, match="reduce must be True or False"):
            fn(*args, reduce="no")
    # entries above 1 (here 1e308, whose row sums overflow) are not a distribution
    with pytest.raises(ValueError, match="q must be row-stochastic"):
        gmm.elbo(p, X, np.full_like(q, 1e308))
    bad = dict(p, weights=np.array([np.nan, 1.0]))  # checked although log_gaussian_prob
    with pytest.raises(ValueError, match=r"params\['weights'\] contains NaN"):  # ignores it
        gmm.log_gaussian_prob(bad, X, "full")


def test_far_rows_give_minus_inf_elbo_and_a_clear_kl_error():
    X = _two_blobs()
    p = _fitted_params(X)
    far = np.vstack([X[:3], np.full((1, 2), 1e308)])
    q = np.full((4, 2), 0.5)
    per_row = gmm.elbo(p, far, q, reduce=False)
    # log N(1e308 | mu, Sigma) ~ -0.5 * 1e616: below the float64 range, so -inf exactly
    assert per_row[3] == -np.inf
    np.testing.assert_array_equal(per_row[:3], gmm.elbo(p, X[:3], q[:3], reduce=False))
    with pytest.raises(ValueError, match="X row 3 is too far from every component"):
        gmm.kl_to_posterior(p, far, q)


def test_one_point_cluster_duplicates_collinear_and_float32():
    # one-point cluster: mean = the point x N/(N + 10 eps) (eq. 15's guard, N = 1) and
    # covariance = reg_covar I plus the guard's scatter (x - mean)^2 ~ (2e-15 x)^2
    eps = np.finfo(float).eps
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [7.0, 3.0]])
    resp = np.zeros((4, 2))
    resp[:3, 0] = resp[3, 1] = 1.0
    out = gmm.m_step(X, resp, "full", reg_covar=1e-3)
    np.testing.assert_allclose(out["means"][1], X[3] / (1.0 + 10 * eps), rtol=2 * eps)
    np.testing.assert_allclose(out["covariances"][1], 1e-3 * np.eye(2), rtol=2 * eps,
                               atol=(20 * eps * 7.0) ** 2)
    # duplicated points, diag: the variance of {a, a, b, b} per feature is ((a-b)/2)^2
    D = np.repeat(np.array([[1.0, 2.0], [3.0, 6.0]]), 2, axis=0)
    out = gmm.m_step(D, np.ones((4, 1)), "diag", reg_covar=0.0)
    np.testing.assert_allclose(out["covariances"][0], [1.0, 4.0], rtol=1e-15)
    # collinear data: singular without reg_covar (named), regularised with it
    t = np.linspace(-1, 1, 9)
    L = np.stack([t, 2 * t], axis=1)
    with pytest.raises(ValueError, match=r"reg_covar=0\b.*increase reg_covar"):
        gmm.m_step(L, np.ones((9, 1)), "full", reg_covar=0.0)
    out = gmm.m_step(L, np.ones((9, 1)), "full", reg_covar=1e-6)
    ref = np.cov(L, rowvar=False, bias=True) + 1e-6 * np.eye(2)
    np.testing.assert_allclose(out["covariances"][0], ref, rtol=1e-12, atol=1e-18)
    # float32 input is converted on a copy: the same numbers as its float64 values
    X32 = _two_blobs().astype(np.float32)
    r = np.random.default_rng(0).dirichlet(np.ones(2), size=40)
    a, b = gmm.m_step(X32, r), gmm.m_step(X32.astype(np.float64), r)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_overflowing_weights_and_statistics_name_the_argument():
    X = _two_blobs()
    p = _fitted_params(X)
    w = np.full(40, 1e308)  # each weight is finite, their total is not
    with pytest.raises(ValueError, match="sample_weight too large"):
        gmm.sufficient_statistics(p, X, sample_weight=w)
    with pytest.raises(ValueError, match="sample_weight too large"):
        gmm.GaussianMixture(2, random_state=0).fit(X, sample_weight=w)
    # weights scaled by a power of two: the same fit (frequency weights are relative)
    a = gmm.GaussianMixture(2, random_state=0).fit(X, sample_weight=np.arange(1.0, 41.0))
    b = gmm.GaussianMixture(2, random_state=0).fit(X, sample_weight=np.arange(1.0, 41.0)
                                                   * 2.0**1000)
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-12)
    stats = gmm.sufficient_statistics(p, X)
    huge = stats._replace(sums=np.full_like(stats.sums, 1e308), nk=np.full(2, 1e-10))
    with pytest.raises(ValueError, match=r"stats\.sums too large for stats\.nk"):
        gmm.m_step_statistics(huge)
    with pytest.raises(ValueError, match=r"stats\.nk too large"):
        gmm.m_step_statistics(stats._replace(nk=np.full(2, 1e308)))
    with pytest.raises(ValueError, match="^stats: "):  # rank one: singular, named
        gmm.m_step_statistics(stats._replace(scatter=np.full_like(stats.scatter, 1e300)))


def test_huge_data_fit_names_X():
    X = _two_blobs()
    for cls in (gmm.GaussianMixture,):
        with pytest.raises(ValueError, match="X values too large"):
            cls(2, random_state=0).fit(np.full((40, 2), 1e308))
        with pytest.raises(ValueError, match="X values too large"):
            cls(2, random_state=0).fit(X * 1e200)


def _one_iteration_vs_separate(ct, rng):
    """(fit with max_iter=1 from given parameters, e_step then m_step from them)."""
    X = blobs(rng, n=2600, d=4, k=3)
    fitted = GaussianMixture(3, covariance_type=ct, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted.fit(X)
    p0 = {"weights": fitted.weights_, "means": fitted.means_,
          "precisions_cholesky": fitted.precisions_cholesky_}
    resp, log_norm = gmm.e_step(p0, X, ct)
    want = gmm.m_step(X, resp, ct, 1e-6)
    gm = GaussianMixture(3, covariance_type=ct, max_iter=1, tol=0.0, reg_covar=1e-6,
                         weights_init=p0["weights"], means_init=p0["means"],
                         precisions_init=precisions_from_cholesky(
                             p0["precisions_cholesky"], ct))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    return gm, want, float(np.mean(log_norm))


def _assert_equals_separate(gm, want, bound):
    for key, attr in (("weights", "weights_"), ("means", "means_"),
                      ("covariances", "covariances_"),
                      ("precisions_cholesky", "precisions_cholesky_")):
        assert np.array_equal(getattr(gm, attr), want[key]), key
    assert gm.lower_bounds_[-1] == bound


@pytest.mark.parametrize("ct", TYPES)
def test_fit_iteration_is_bitwise_e_step_then_m_step(ct):
    """fit runs each unweighted EM iteration as one pass over X (E-step and M-step
    statistics fused, lvmref.kernels.gmm.em_partials); the result must be bitwise the
    public e_step followed by m_step. 2600 rows: a partial last block of each kernel."""
    _assert_equals_separate(*_one_iteration_vs_separate(ct, np.random.default_rng(31)))


@pytest.mark.parametrize("ct", ["full", "diag"])
def test_fit_iteration_falls_back_when_a_row_is_too_far(ct, monkeypatch):
    """If the fused kernel's log p(x_i) is not finite (a row too far from every component
    for its arithmetic), the iteration runs the separate E-step (with its half-scale
    treatment of far rows) and M-step instead: same result as that path."""
    fused = gmm.kg.em_partials

    def far_row(*args):
        log_norm, parts = fused(*args)
        log_norm[5] = -np.inf  # as the kernel reports a row whose distances overflow
        return log_norm, parts

    monkeypatch.setattr(gmm.kg, "em_partials", far_row)
    _assert_equals_separate(*_one_iteration_vs_separate(ct, np.random.default_rng(32)))
