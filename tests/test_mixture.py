"""lvmref.mixture: the layer shared by the Gaussian mixture and the Bayesian mixture.

Precision factors (eq. 13 of lvmref.gmm), initialisation, input checks, the EM driver and
the estimator frame. Expected values are derived independently (NumPy inverses, explicit
loops, hand-written restarts), never by calling the function under test.
"""

import warnings

import numpy as np
import pytest

from lvmref import mixture
from lvmref.mixture import (
    compute_precision_cholesky,
    precision_cholesky_from_precisions,
)

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


# ----------------------------------------------------------------------------------------
# Cholesky factors of the precision, eq. (13)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ct", TYPES)
def test_precision_cholesky_conventions(ct):
    rng = np.random.default_rng(3)
    k, d = 3, 4
    cov = random_covariances(rng, ct, k, d)
    u = compute_precision_cholesky(cov, ct)
    covs = dense_cov(cov, ct, k, d)
    prec = np.linalg.inv(covs)
    if ct in ("full", "tied"):
        uk = u if ct == "full" else u[None]
        prec = prec if ct == "full" else prec[:1]
        assert np.all(np.tril(uk, -1) == 0.0)  # upper triangular, eq. (13)
        np.testing.assert_allclose(uk @ np.swapaxes(uk, 1, 2), prec, rtol=1e-12, atol=1e-13)
        # from the precisions (flipped Cholesky): the same unique factor
        u2 = precision_cholesky_from_precisions(prec if ct == "full" else prec[0], ct)
        np.testing.assert_allclose(u2, u, rtol=1e-11, atol=1e-12)
    else:
        np.testing.assert_allclose(u**2, 1.0 / cov, rtol=1e-14)
        np.testing.assert_allclose(precision_cholesky_from_precisions(1.0 / cov, ct), u,
                                   rtol=1e-14)


def test_bad_input_factors_and_kmeans():
    X = np.random.default_rng(20).normal(size=(10, 3))
    with pytest.raises(ValueError, match="covariances"):
        compute_precision_cholesky(-np.ones((2, 3)), "diag")
    with pytest.raises(ValueError, match="component 0"):
        compute_precision_cholesky(np.zeros((1, 3, 3)), "full")
    with pytest.raises(ValueError, match="n_clusters"):
        mixture.kmeans_plusplus(X, 11, rng=0)


# ----------------------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------------------


def test_kmeans_init_recovers_separated_clusters():
    """Our k-means (k-means++ seeding + Lloyd) finds well-separated blobs exactly."""
    rng = np.random.default_rng(21)
    centers = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    truth = np.repeat(np.arange(3), 50)
    X = centers[truth] + rng.normal(size=(150, 2))
    lab = mixture.kmeans(X, 3, rng=0)
    # same partition up to relabelling: each true cluster maps to exactly one label
    pairs = {(t, p) for t, p in zip(truth, lab)}
    assert len(pairs) == 3 and len({p for _, p in pairs}) == 3
    idx = mixture.kmeans_plusplus(X, 3, rng=1)
    assert len(set(truth[idx])) == 3  # D^2 seeding picks one seed per blob here
    # duplicated data: seeding still returns distinct rows
    Xd = np.repeat(X[:2], 5, axis=0)
    assert len(set(mixture.kmeans_plusplus(Xd, 3, rng=2))) == 3


@pytest.mark.parametrize("ct", TYPES)
def test_covariances_precisions_and_log_det_from_the_factors(ct):
    """(U U^T)^{-1}, U U^T and log|Lambda|^{1/2} against NumPy inverses/slogdet."""
    rng = np.random.default_rng(4)
    k, d = 3, 4
    cov = random_covariances(rng, ct, k, d)
    u = compute_precision_cholesky(cov, ct)
    np.testing.assert_allclose(mixture.covariances_from_cholesky(u, ct), cov, rtol=1e-11,
                               atol=1e-13)
    prec = mixture.precisions_from_cholesky(u, ct)
    dense_prec = np.linalg.inv(dense_cov(cov, ct, k, d))
    np.testing.assert_allclose(dense_cov(prec, ct, k, d), dense_prec, rtol=1e-11, atol=1e-13)
    half_logdet = 0.5 * np.linalg.slogdet(dense_prec)[1]
    got = np.broadcast_to(mixture.log_det_cholesky(u, ct, d), (k,))
    np.testing.assert_allclose(got, half_logdet, rtol=1e-12)
    assert mixture.covariance_shape(ct, k, d) == u.shape == np.shape(cov)


def test_triangular_inverse():
    rng = np.random.default_rng(5)
    low = np.tril(rng.normal(size=(5, 5))) + 3 * np.eye(5)
    inv = mixture.triangular_inverse(low, lower=True)
    np.testing.assert_allclose(inv, np.linalg.inv(low), rtol=1e-13, atol=1e-15)
    assert np.all(np.triu(inv, 1) == 0.0)
    up = mixture.triangular_inverse(low.T, lower=False)
    np.testing.assert_allclose(up, np.linalg.inv(low.T), rtol=1e-13, atol=1e-15)
    singular = low.copy()
    singular[2, 2] = 0.0
    with pytest.raises(ValueError, match="singular"):
        mixture.triangular_inverse(singular, lower=True)


@pytest.mark.parametrize("ct", TYPES)
def test_check_covariances_accepts_pairs_and_refuses_inconsistent_ones(ct):
    rng = np.random.default_rng(6)
    k, d = 3, 3
    cov = random_covariances(rng, ct, k, d)
    u = compute_precision_cholesky(cov, ct)
    out = mixture.check_covariances(cov.tolist(), u, ct, name="covariances_")
    assert out.dtype == np.float64 and np.array_equal(out, cov)
    # the other direction of eq. (13): covariances derived from the factors
    mixture.check_covariances(mixture.covariances_from_cholesky(u, ct), u, ct)
    bad = {"scaled by 1.0001": (cov * 1.0001, "not the inverse"),
           "NaN": (np.where(np.arange(cov.size).reshape(cov.shape) == 0, np.nan, cov),
                   "NaN"),
           "wrong shape": (cov[..., :1], "shape")}
    if ct in ("full", "tied"):
        e = np.eye(d) if ct == "tied" else np.broadcast_to(np.eye(d), (k, d, d))
        bad["-I"] = (-e, "not positive definite")
        asym = cov.copy()
        asym[..., 0, 1] += 0.1
        bad["asymmetric"] = (asym, "not symmetric")
        indefinite = np.array(e)
        indefinite[..., 0, 1] = indefinite[..., 1, 0] = 2.0
        bad["indefinite"] = (indefinite, "not positive definite")
    else:
        bad["negative"] = (-cov, "> 0")
    for what, (c, match) in bad.items():
        with pytest.raises(ValueError, match=match) as info:
            mixture.check_covariances(c, u, ct, name="covariances_")
        assert "covariances_" in str(info.value), what


def test_check_covariances_accepts_ill_conditioned_pairs_from_either_direction():
    """A nearly singular covariance (cond ~ 1e14) and its factor, computed in either
    direction as lvmref does, are accepted; a 1e-4 relative change is not."""
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    cov = (q * np.array([1.0, 1e-3, 1e-8, 1e-14])) @ q.T
    cov = 0.5 * (cov + cov.T)
    u = compute_precision_cholesky(cov[None], "full")
    mixture.check_covariances(cov[None], u, "full")
    u2 = precision_cholesky_from_precisions(
        mixture.precisions_from_cholesky(u, "full"), "full")
    mixture.check_covariances(mixture.covariances_from_cholesky(u2, "full"), u2, "full")
    with pytest.raises(ValueError, match="not the inverse"):
        mixture.check_covariances(cov[None] * (1 + 1e-4), u, "full")


# ----------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------


def test_check_X_and_check_resp():
    X = np.arange(12).reshape(6, 2)
    out = mixture.check_X(X)
    assert out.dtype == np.float64 and np.array_equal(out, X) and out is not X
    with pytest.raises(ValueError, match="Y must be 2-D"):
        mixture.check_X(X[0], name="Y")
    with pytest.raises(ValueError, match="X contains NaN"):
        mixture.check_X([[1.0, np.nan]])
    with pytest.raises(TypeError, match="X must be a numeric array"):
        mixture.check_X("abc")
    resp = np.full((6, 3), 1 / 3)
    Xc, rc = mixture.check_resp(X, resp)
    assert rc is not resp and np.array_equal(rc, resp)
    with pytest.raises(ValueError, match="resp must have 6 rows"):
        mixture.check_resp(X, resp[:5])
    with pytest.raises(ValueError, match="resp must be non-negative"):
        mixture.check_resp(X, -resp)
    with pytest.raises(ValueError, match="resp must be 2-D"):
        mixture.check_resp(X, resp[:, 0])


@pytest.mark.parametrize("init", mixture.INIT_PARAMS)
def test_initial_resp_follows_its_definition(init):
    """Each option against the documented construction, replayed on a same-seeded
    generator (the draws are the same; the construction is written out here)."""
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 8.0])
    n, k = X.shape[0], 3
    resp = mixture.initial_resp(X, k, init, np.random.default_rng(1))
    assert resp.shape == (n, k)
    replay = np.random.default_rng(1)
    if init == "random":
        u = replay.uniform(size=(n, k))
        np.testing.assert_array_equal(resp, u / u.sum(axis=1, keepdims=True))
    elif init == "random_from_data":
        rows = replay.choice(n, size=k, replace=False)
        expected = np.zeros((n, k))
        expected[rows, np.arange(k)] = 1.0
        np.testing.assert_array_equal(resp, expected)
    elif init == "k-means++":
        rows = mixture.kmeans_plusplus(X, k, replay)
        assert len(set(rows.tolist())) == k
        assert np.array_equal(np.flatnonzero(resp.sum(axis=1)), np.sort(rows))
        np.testing.assert_array_equal(resp[rows, np.arange(k)], 1.0)
        assert resp.sum() == k
    else:
        labels = mixture.kmeans(X, k, replay)
        np.testing.assert_array_equal(resp, np.eye(k)[labels])
    # same seed, same result; the int seed and a Generator with that seed agree
    np.testing.assert_array_equal(resp, mixture.initial_resp(X, k, init, 1))


def test_initial_resp_bad_input():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="n_components=5 must be <= n_samples=4"):
        mixture.initial_resp(X, 5, "random", 0)
    with pytest.raises(ValueError, match="init_params"):
        mixture.initial_resp(X, 2, "kmeans++", 0)
    with pytest.raises(TypeError, match="rng"):
        mixture.initial_resp(X, 2, "random", "seed")
    with pytest.raises(ValueError, match="n_components"):
        mixture.initial_resp(X, 0, "random", 0)


# ----------------------------------------------------------------------------------------
# The EM driver
# ----------------------------------------------------------------------------------------


_UNCONVERGED_ON_PURPOSE = pytest.mark.filterwarnings(
    "ignore::lvmref.mixture.ConvergenceWarning")


def _halving(start=1.0):
    """A toy EM: state s -> s/2 with bound -s/2 (increases towards 0; steps 2^-t)."""
    return (lambda i: (start, -np.inf)), (lambda s: (s / 2, -s / 2))


def test_run_em_stops_on_tol_and_records_every_bound():
    init, step = _halving()
    res = mixture.run_em(init, step, n_init=1, max_iter=100, tol=0.01)
    # bounds -2^-t; the change 2^-t first drops below 0.01 at t = 7
    assert res.n_iter == 7 and res.converged
    assert res.lower_bounds == [-(2.0 ** -t) for t in range(1, 8)]
    assert res.lower_bound == -(2.0 ** -7) and res.state == 2.0 ** -7


@_UNCONVERGED_ON_PURPOSE
def test_run_em_first_iteration_compares_with_the_starting_bound():
    """A fresh start (-inf) never converges in one iteration; a warm start whose
    starting bound is close does."""
    _, step = _halving()
    fresh = mixture.run_em(lambda i: (1.0, -np.inf), step, n_init=1, max_iter=1, tol=1e9)
    assert not fresh.converged and fresh.n_iter == 1
    warm = mixture.run_em(lambda i: (1.0, -0.5 - 1e-3), step, n_init=1, max_iter=50,
                          tol=1e-2)
    assert warm.converged and warm.n_iter == 1 and warm.lower_bounds == [-0.5]


@_UNCONVERGED_ON_PURPOSE
def test_run_em_keeps_the_best_restart_and_the_first_of_equals():
    starts = [4.0, 1.0, 8.0, 1.0]
    seen = []

    def init(i):
        seen.append(i)
        return [starts[i], i], -np.inf

    def step(state):
        s, i = state
        return [s / 2, i], -s / 2

    res = mixture.run_em(init, step, n_init=4, max_iter=3, tol=0.0)
    assert seen == [0, 1, 2, 3]
    assert res.state == [1.0 / 8, 1] and res.lower_bound == -1.0 / 8  # restart 1, not 3
    assert res.lower_bounds == [-0.5, -0.25, -0.125]


@_UNCONVERGED_ON_PURPOSE
def test_run_em_minus_inf_bound_is_replaced_and_max_iter_zero_only_initialises():
    minus_inf = np.float64(-np.inf)  # NumPy scalars: -inf - -inf must not raise "invalid"
    res = mixture.run_em(lambda i: (i, minus_inf),
                         lambda s: (s, minus_inf if s == 0 else np.float64(-5.0)),
                         n_init=2, max_iter=2, tol=0.0)
    assert res.state == 1 and res.lower_bound == -5.0 and res.lower_bounds == [-5.0, -5.0]
    assert type(res.lower_bound) is float
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # max_iter = 0: no ConvergenceWarning
        res = mixture.run_em(lambda i: ("start", -np.inf), None, n_init=3, max_iter=0,
                             tol=1.0)
    assert res == ("start", -np.inf, [], 0, False)


def test_run_em_warning_names_the_kept_and_the_other_unconverged_restarts():
    starts = [4.0, 1.0, 8.0]
    with pytest.warns(mixture.ConvergenceWarning) as rec:
        mixture.run_em(lambda i: (starts[i], -np.inf), lambda s: (s / 2, -s / 2),
                       n_init=3, max_iter=2, tol=1e-9)
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert msg.startswith("Initialization 1 of n_init=3 (the one kept, lower bound -0.25)")
    assert "max_iter=2" in msg and "tol=1e-09" in msg
    assert "initializations [0, 2] did not converge either" in msg
    assert rec[0].filename == __file__  # points at the caller, not at lvmref


def test_run_em_bad_arguments():
    init, step = _halving()
    with pytest.raises(ValueError, match="n_init"):
        mixture.run_em(init, step, n_init=0, max_iter=1, tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        mixture.run_em(init, step, n_init=1, max_iter=-1, tol=0.0)
    with pytest.raises(ValueError, match="tol"):
        mixture.run_em(init, step, n_init=1, max_iter=1, tol=-1.0)


# ----------------------------------------------------------------------------------------
# The estimator frame, for both mixtures
# ----------------------------------------------------------------------------------------

ESTIMATORS = ["GaussianMixture", "BayesianGaussianMixture"]


def _cls(name):
    if name == "GaussianMixture":
        from lvmref.gmm import GaussianMixture

        return GaussianMixture
    from lvmref.vbgmm import BayesianGaussianMixture

    return BayesianGaussianMixture


def _blobs():
    rng = np.random.default_rng(9)
    return np.concatenate([rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 5.0])


@pytest.mark.parametrize("name", ESTIMATORS)
def test_constructor_arguments_are_stored_unmodified_and_all_persisted(name):
    cls = _cls(name)
    params = cls._param_names()
    assert list(cls._HYPER) == params  # save/load cover every constructor argument
    marker = {p: object() for p in params if p != "n_components"}
    est = cls(3, **marker)
    assert est.n_components == 3
    assert all(getattr(est, p) is v for p, v in marker.items())


@pytest.mark.parametrize("name", ESTIMATORS)
def test_not_fitted_error_and_random_state_messages(name):
    cls = _cls(name)
    X = _blobs()
    assert issubclass(mixture.NotFittedError, ValueError)
    assert issubclass(mixture.NotFittedError, AttributeError)
    for method in ("predict", "predict_proba", "score_samples", "score"):
        with pytest.raises(mixture.NotFittedError, match=f"This {name} is not fitted yet"):
            getattr(cls(2), method)(X)
    with pytest.raises(mixture.NotFittedError):
        cls(2).save("never_written.npz")
    with pytest.raises(TypeError, match="random_state must be"):
        cls(2, random_state="seed").fit(X)
    with pytest.raises(ValueError, match="random_state seed must be non-negative"):
        cls(2, random_state=-1).fit(X)
    with pytest.raises(TypeError, match="warm_start must be True or False"):
        cls(2, warm_start=1).fit(X)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_frame_methods_agree_and_warm_start_checks_the_data(name):
    cls = _cls(name)
    X = _blobs()
    est = cls(2, random_state=0).fit(X)
    assert est.n_features_in_ == 2
    proba = est.predict_proba(X)
    np.testing.assert_array_equal(est.predict(X), np.argmax(proba, axis=1))
    assert est.score(X) == float(np.mean(est.score_samples(X)))
    np.testing.assert_array_equal(cls(2, random_state=0).fit_predict(X), est.predict(X))
    with pytest.raises(ValueError, match=f"X has 3 features, but {name} is expecting 2 "
                                         "features as input"):
        est.predict(np.zeros((2, 3)))
    warm = cls(2, random_state=0, warm_start=True).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but the warm-started model has 2"):
        warm.fit(np.zeros((60, 3)))
    warm.n_components = 3
    with pytest.raises(ValueError, match="n_components/covariance_type changed"):
        warm.fit(X)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_estimator_convergence_warning_points_at_the_caller(name):
    with pytest.warns(mixture.ConvergenceWarning, match="max_iter=1") as rec:
        _cls(name)(2, tol=0.0, max_iter=1, random_state=0).fit(_blobs())
    assert rec[0].filename == __file__


# ----------------------------------------------------------------------------------------
# Weighted initialisation (W4)
# ----------------------------------------------------------------------------------------


def test_weighted_kmeans_plusplus_follows_its_distribution():
    """First index ~ w_i / Σ w, second ~ w_j D_ij^2 / Σ_l w_l D_il^2 (exact pair
    probabilities enumerated here), checked by Monte Carlo with a z-bound per pair."""
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [1.0, 1.0]])
    w = np.array([1.0, 3.0, 0.0, 0.5, 2.0])
    n, draws = len(X), 6000
    d2 = ((X[:, None] - X[None]) ** 2).sum(axis=2)
    p = np.zeros((n, n))
    for i in range(n):
        q = w * d2[i]
        p[i] = w[i] / w.sum() * q / q.sum()
    rng = np.random.default_rng(0)
    counts = np.zeros((n, n))
    for _ in range(draws):
        i, j = mixture.kmeans_plusplus(X, 2, rng, sample_weight=w)
        counts[i, j] += 1
    freq = counts / draws
    se = np.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(freq - p) <= 4.5 * se + 1e-12), (freq, p)
    assert counts[2].sum() == 0 and counts[:, 2].sum() == 0  # weight 0: never chosen


def test_constant_weights_draw_as_no_weights_and_zero_weights_are_never_chosen():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    for init in mixture.INIT_PARAMS:
        a = mixture.initial_resp(X, 4, init, 7, sample_weight=np.full(30, 2.5))
        np.testing.assert_array_equal(a, mixture.initial_resp(X, 4, init, 7))
    np.testing.assert_array_equal(mixture.kmeans(X, 3, 2, sample_weight=np.full(30, 0.1)),
                                  mixture.kmeans(X, 3, 2))
    w = np.zeros(30)
    w[[3, 8, 11, 20, 27]] = [1.0, 2.0, 0.5, 4.0, 1.0]
    for seed in range(20):
        chosen = np.flatnonzero(mixture.initial_resp(X, 4, "random_from_data", seed,
                                                     sample_weight=w).any(axis=1))
        assert set(chosen) <= set(np.flatnonzero(w))
        assert set(mixture.kmeans_plusplus(X, 5, seed, sample_weight=w)) == set(
            np.flatnonzero(w))
    with pytest.raises(ValueError, match="n_components=6 must be <= the 5 rows of positive "
                                         "sample_weight"):
        mixture.initial_resp(X, 6, "k-means++", 0, sample_weight=w)
    with pytest.raises(ValueError, match="sample_weight must be >= 0"):
        mixture.kmeans(X, 2, 0, sample_weight=-np.ones(30))


def test_weighted_kmeans_ends_at_a_weighted_lloyd_fixed_point():
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + [4.0, 0.0]])
    w = rng.uniform(0.0, 5.0, size=80) ** 3
    labels = mixture.kmeans(X, 3, 0, n_iter=200, sample_weight=w)
    centres = np.stack([np.average(X[labels == c], axis=0, weights=w[labels == c])
                        for c in range(3)])
    d2 = ((X[:, None] - centres[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(np.argmin(d2, axis=1), labels)
    # the unweighted means are not a fixed point of these labels' weighted assignment
    plain = np.stack([X[labels == c].mean(axis=0) for c in range(3)])
    assert np.max(np.abs(plain - centres)) > 1e-3


# ----------------------------------------------------------------------------------------
# Initialisation of data read chunk by chunk (I1-I4)
# ----------------------------------------------------------------------------------------


def _init_data(n=900, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n // 3, 2)) + c for c in ([0, 0], [6, 0], [0, 6])])
    w = rng.integers(0, 4, size=n).astype(float)
    return X, w


def _assert_same_moments(m, X, resp, full=True):
    """m equals mixture_stats.moments of the responsibilities up to the summation order:
    two float64 sums of the same n terms (plus <= n/77 merges of chunks) differ by at most
    2 gamma_{2n} sum |term| (Higham), with |term| <= r (|x| + |xbar|)(|x| + |xbar|)^T for
    the scatter (tests/test_mixture_stats.py derives the same bound)."""
    from support import SLACK, gamma

    from lvmref.mixture_stats import moments

    ref = moments(X, resp, full=full)
    g = 2 * SLACK * gamma(2 * X.shape[0])
    a = np.abs(X)[None] + np.abs(ref.centres)[:, None]
    big = np.einsum("nk,kni,knj->kij", resp, a, a)
    if not full:
        big = np.diagonal(big, axis1=1, axis2=2)
    assert np.all(np.abs(m.nk - ref.nk) <= g * resp.sum(axis=0))
    assert np.all(np.abs(m.sums - ref.sums) <= g * resp.T @ np.abs(X))
    assert np.all(np.abs(m.scatter - ref.scatter) <= g * big)


@pytest.mark.parametrize("init", mixture.INIT_PARAMS)
@pytest.mark.parametrize("weighted", [False, True])
def test_chunked_initialisation_draws_what_memory_draws(init, weighted):
    """With no more rows than INIT_SAMPLE_SIZE, every init_params gives the statistics of
    initial_resp's responsibilities on the rows of positive weight (I1-I3), and leaves the
    generator where initial_resp leaves it."""
    X, w = _init_data()
    sw = w if weighted else None
    keep = w > 0 if weighted else np.ones(len(X), bool)
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    resp = mixture.initial_resp(X[keep], 3, init, rng_a, sample_weight=None if sw is None
                                else w[keep])
    m = mixture.initial_moments(X, 3, init, rng_b, sample_weight=sw, full=True)
    if weighted:
        resp = resp * w[keep][:, None]
    _assert_same_moments(m, X[keep], resp)
    assert m.total == (w.sum() if weighted else len(X))
    assert rng_a.random() == rng_b.random()
    from lvmref.chunked import row_source

    m2 = mixture.initial_moments(row_source(X, 77), 3, init, np.random.default_rng(5),
                                 sample_weight=sw, full=False)  # many chunks, diagonal
    _assert_same_moments(m2, X[keep], resp, full=False)


def test_subsample_initialisation_is_the_documented_draw():
    """I2 with more rows than the subsample: rebuilt here from its description."""
    X, w = _init_data(n=1500, seed=1)
    for init in ("kmeans", "k-means++"):
        for sw in (None, w):
            rng = np.random.default_rng(11)
            m = mixture.initial_moments(X, 3, init, rng, sample_weight=sw, sample_size=200)
            ref_rng = np.random.default_rng(11)
            pos = np.arange(len(X)) if sw is None else np.flatnonzero(w > 0)
            sub = np.sort(ref_rng.choice(pos.size, size=200, replace=False))
            Xs, ws = X[pos[sub]], None if sw is None else w[pos[sub]]
            rows = np.zeros((len(X), 3))
            if init == "k-means++":
                idx = mixture.kmeans_plusplus(Xs, 3, ref_rng, sample_weight=ws)
                rows[pos[sub[idx]], np.arange(3)] = 1.0
            else:
                labels = mixture.kmeans(Xs, 3, ref_rng, sample_weight=ws)
                # k-means converged on these clusters, so its centres are the means
                centres = np.array([np.average(Xs[labels == c], axis=0, weights=None if ws
                                               is None else ws[labels == c]) for c in range(3)])
                d2 = ((X[pos][:, None, :] - centres[None]) ** 2).sum(axis=2)
                rows[pos, np.argmin(d2, axis=1)] = 1.0
            resp = rows if sw is None else rows * w[:, None]
            _assert_same_moments(m, X, resp)
            assert rng.random() == ref_rng.random()


def test_given_resp_init_is_read_chunk_by_chunk():
    from lvmref.chunked import row_source

    X, w = _init_data()
    R = np.random.default_rng(3).random((len(X), 3))
    m = mixture.initial_moments(row_source(X, 100), 3, "kmeans", None, sample_weight=w,
                                resp_init=R)
    _assert_same_moments(m, X[w > 0], (R * w[:, None])[w > 0])
    R[5, 1] = -1.0
    with pytest.raises(ValueError, match="resp_init must be non-negative"):
        mixture.initial_moments(X, 3, "kmeans", None, resp_init=R)
    with pytest.raises(ValueError, match="n_components=4 must be <= n_samples=3"):
        mixture.initial_moments(X[:3], 4, "kmeans", 0)
    with pytest.raises(ValueError, match="init_params must be one of"):
        mixture.initial_moments(X, 3, "kmeans||", 0)
    with pytest.raises(ValueError, match="sample_size must be >= 1"):
        mixture.initial_moments(X, 3, "kmeans", 0, sample_size=0)


# ------------------------------------------------------------ issue 15: hardening (appended)

def test_covariance_shape_names_bad_arguments():
    assert mixture.covariance_shape("diag", 3, 2) == (3, 2)
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        mixture.covariance_shape("banana", 2, 3)
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        mixture.covariance_shape("full", 0, 3)
    with pytest.raises(TypeError, match="n_features must be an integer"):
        mixture.covariance_shape("full", 2, 2.5)


def test_cholesky_stack_matches_numpy_and_reports_the_first_failure():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 5, 7))
    mats = a @ a.transpose(0, 2, 1)
    low, failed = mixture.cholesky_stack(mats)
    assert failed == 4
    np.testing.assert_allclose(low, np.linalg.cholesky(mats), rtol=1e-13, atol=1e-13)
    assert np.all(np.triu(low, 1) == 0.0)
    bad = mats.copy()
    bad[2] = -np.eye(5)
    bad[3, 0, 0] = -1.0
    low, failed = mixture.cholesky_stack(bad)
    assert failed == 2
    np.testing.assert_allclose(low[:2], np.linalg.cholesky(mats[:2]), rtol=1e-13, atol=1e-13)
    assert np.all(low[2:] == 0.0)
    with pytest.raises(ValueError, match="mats"):
        mixture.cholesky_stack(mats[:, :, :4])
    with pytest.raises(ValueError, match="mats"):
        mixture.cholesky_stack(np.full((1, 2, 2), np.nan))


def test_precision_factors_from_cholesky_invert_the_covariances():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(3, 4, 9))
    mats = a @ a.transpose(0, 2, 1)
    u = mixture.precision_factors_from_cholesky(np.linalg.cholesky(mats))
    assert np.all(np.tril(u, -1) == 0.0)
    np.testing.assert_allclose(u @ u.transpose(0, 2, 1), np.linalg.inv(mats), rtol=1e-12,
                               atol=1e-12 * np.abs(np.linalg.inv(mats)).max())
    with pytest.raises(ValueError, match="lower triangular"):
        mixture.precision_factors_from_cholesky(np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match=r"low\[1\].*singular"):
        mixture.precision_factors_from_cholesky(np.stack([np.eye(2), np.diag([1.0, 0.0])]))
    with pytest.raises(ValueError, match="overflows"):
        mixture.precision_factors_from_cholesky(np.diag([1.0, 1e-310])[None])


def test_triangular_inverse_checks_and_inverts():
    rng = np.random.default_rng(0)
    t = np.triu(rng.normal(size=(4, 4))) + 3 * np.eye(4)
    inv = mixture.triangular_inverse(t, lower=False)
    np.testing.assert_array_equal(np.tril(inv, -1), 0.0)      # exact zeros below
    ref = np.linalg.inv(t)
    cond = np.linalg.cond(t)
    assert np.max(np.abs(inv - ref)) <= 16 * cond * np.finfo(float).eps * np.max(np.abs(ref))
    with pytest.raises(ValueError, match="t must be upper triangular"):
        mixture.triangular_inverse(t.T, lower=False)
    with pytest.raises(ValueError, match="t must be a square matrix"):
        mixture.triangular_inverse(t[:3], lower=False)
    with pytest.raises(ValueError, match="t contains NaN"):
        mixture.triangular_inverse(np.triu(np.full((2, 2), np.nan)), lower=False)
    with pytest.raises(TypeError, match="lower must be True or False"):
        mixture.triangular_inverse(t, lower=1)
    with pytest.raises(ValueError, match="t: triangular factor is singular"):
        mixture.triangular_inverse(np.diag([1.0, 0.0]), lower=True)
    # non-singular, but 1 / 1e-310 overflows float64
    with pytest.raises(ValueError, match="t: the inverse of the triangular factor overflows"):
        mixture.triangular_inverse(np.diag([1.0, 1e-310]), lower=True)


@pytest.mark.parametrize("ct", TYPES)
def test_factor_helpers_validate_and_agree_with_numpy(ct):
    rng = np.random.default_rng(1)
    k, d = 3, 2
    cov = random_covariances(rng, ct, k, d)
    u = compute_precision_cholesky(cov, ct)
    dense_u = dense_cov(u, ct, k, d) if ct in ("full", "tied") else None
    got_cov = mixture.covariances_from_cholesky(u, ct)
    got_prec = mixture.precisions_from_cholesky(u, ct)
    got_logdet = mixture.log_det_cholesky(u, ct, d)
    # independent: the dense precision matrices U U^T and NumPy's inverse / slogdet
    if ct in ("full", "tied"):
        lam = dense_u @ np.swapaxes(dense_u, 1, 2)
    else:
        lam = np.einsum("kd,de->kde", np.broadcast_to(
            (u**2)[:, None] if ct == "spherical" else u**2, (k, d)), np.eye(d))
    dense = dense_cov(cov, ct, k, d)
    np.testing.assert_allclose(dense_cov(got_cov, ct, k, d), dense, rtol=1e-12, atol=0)
    np.testing.assert_allclose(dense_cov(got_prec, ct, k, d) if ct != "diag" else
                               np.einsum("kd,de->kde", got_prec, np.eye(d)), lam,
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.broadcast_to(got_logdet, (k,)),
                               0.5 * np.linalg.slogdet(lam)[1], rtol=1e-12)
    for fn in (mixture.covariances_from_cholesky, mixture.precisions_from_cholesky):
        with pytest.raises(ValueError, match="covariance_type must be one of"):
            fn(u, "banana")
        bad = np.array(u, dtype=float)
        bad.flat[0] = np.nan
        with pytest.raises(ValueError, match="precisions_cholesky contains NaN"):
            fn(bad, ct)
        with pytest.raises(ValueError, match="precisions_cholesky must"):
            fn(-np.abs(u), ct)
    with pytest.raises(ValueError, match="n_features=3 does not match") if ct != "spherical" \
            else pytest.raises(ValueError, match="n_features must be >= 1"):
        mixture.log_det_cholesky(u, ct, 3 if ct != "spherical" else 0)


def test_log_det_cholesky_refuses_an_unknown_type():
    """Issue 15: log_det_cholesky(np.ones(2), "banana", 3) returned [0, 0]."""
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        mixture.log_det_cholesky(np.ones(2), "banana", 3)
    with pytest.raises(ValueError, match="precisions_cholesky must be 3-D"):
        mixture.log_det_cholesky(np.ones(2), "full", 2)


def test_factor_overflow_is_a_clear_error():
    with pytest.raises(ValueError, match="precisions_cholesky too large"):
        mixture.precisions_from_cholesky(np.array([1e200, 1.0]), "spherical")
    with pytest.raises(ValueError, match="precisions_cholesky is numerically singular"):
        mixture.covariances_from_cholesky(np.array([[1e-200, 1.0]]), "diag")
    # a rank-one matrix of huge entries: not positive definite, named, no FloatingPointError
    with pytest.raises(ValueError, match=r"covariances\[0\] \(component 0\)"):
        compute_precision_cholesky(np.full((1, 2, 2), 1e308), "full")
    u = compute_precision_cholesky(np.eye(2)[None], "full")
    with pytest.raises(ValueError, match=r"covariances\[0\] is not positive definite"):
        mixture.check_covariances(np.full((1, 2, 2), 1e308), u, "full")
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        mixture.check_covariances(np.eye(2)[None], u, "banana")
    with pytest.raises(ValueError, match="precisions_cholesky must be upper triangular"):
        mixture.check_covariances(np.eye(2)[None], np.ones((1, 2, 2)), "full")


def test_kmeans_on_huge_duplicates_names_X_and_on_moderate_scale_is_exact():
    X = np.full((3, 2), 1e308)  # the mean of a cluster overflows
    with pytest.raises(ValueError, match="X values too large"):
        mixture.kmeans(X, 1, rng=0)
    # Scaling by a power of two is exact: the same labels at 2^500 times the scale.
    rng = np.random.default_rng(2)
    Y = np.vstack([rng.normal(0, 1, (10, 2)), rng.normal(6, 1, (10, 2))])
    np.testing.assert_array_equal(mixture.kmeans(Y * 2.0**500, 2, rng=4),
                                  mixture.kmeans(Y, 2, rng=4))
    with pytest.raises(ValueError, match="X must be 2-D"):
        mixture.kmeans(Y[:, 0], 2, rng=0)


def test_kmeans_with_duplicate_points_labels_identical_rows_alike():
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 9.0]]), 4, axis=0)
    labels = mixture.kmeans(X, 3, rng=0)
    for g in range(3):  # each group of 4 identical rows: one label, a different one each
        assert len(set(labels[4 * g:4 * g + 4])) == 1
    assert len(set(labels)) == 3


def test_fit_scale_limit_is_sqrt_dblmax_over_4w():
    from lvmref.gmm import GaussianMixture

    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(-1, 0.5, (20, 2)), rng.normal(1, 0.5, (20, 2))])
    limit = np.sqrt(np.finfo(float).max / (4 * 40))
    e = int(np.floor(np.log2(limit / np.max(np.abs(X)))))  # largest exact scale below it
    base = GaussianMixture(2, random_state=0).fit(X)
    big = GaussianMixture(2, random_state=0, reg_covar=1e-6 * 4.0**e).fit(X * 2.0**e)
    # EM is equivariant under x -> c x (with reg_covar -> c^2 reg_covar); c = 2^e is exact
    # in binary, and only the log-determinant constants (shifted by d e log 2 for every
    # component alike) round differently: parameters agree to rounding (measured 1e-15;
    # 1e-12 leaves room for the rounding of the 2 iterations to compound).
    np.testing.assert_allclose(big.means_ / 2.0**e, base.means_, rtol=1e-12, atol=0)
    np.testing.assert_allclose(big.covariances_ / 4.0**e, base.covariances_, rtol=1e-12)
    np.testing.assert_allclose(big.weights_, base.weights_, rtol=1e-12)
    assert np.all(np.isfinite(big.precisions_cholesky_))
    with pytest.raises(ValueError, match=r"X values too large for EM.*sqrt\(DBL_MAX / \(4 W\)"):
        GaussianMixture(2, random_state=0).fit(X * 2.0 ** (e + 2))


@pytest.mark.parametrize("cls_name", ["GaussianMixture", "BayesianGaussianMixture"])
def test_estimators_repr_and_path_and_seed_errors(cls_name, tmp_path):
    from lvmref.gmm import GaussianMixture
    from lvmref.vbgmm import BayesianGaussianMixture

    cls = {"GaussianMixture": GaussianMixture,
           "BayesianGaussianMixture": BayesianGaussianMixture}[cls_name]
    m = cls(3, covariance_type="diag", tol=1e-4)
    text = repr(m)
    assert text.startswith(f"{cls_name}(") and "n_components=3" in text
    # scikit-learn style: only the non-default arguments, and it rebuilds the estimator
    assert eval(text, {cls_name: cls}).get_params() == m.get_params()
    assert repr(cls()) == f"{cls_name}()"
    X = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(TypeError, match="random_state must be"):
        cls(2, random_state="abc").fit(X)
    with pytest.raises(TypeError, match="random_state must be"):
        cls(2).set_params(random_state="abc").fit(X)
    fitted = cls(2, random_state=0, max_iter=200).fit(X)
    for bad in (None, 123, ["a"]):
        with pytest.raises(TypeError, match="path must be a str or path-like"):
            fitted.save(bad)
        with pytest.raises(TypeError, match="path must be a str or path-like"):
            cls.load(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fitted.save(tmp_path / "nodir" / "m.npz")
    with pytest.raises(ValueError, match="is a directory"):
        cls.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        cls.load(tmp_path / "missing.npz")


def test_kmeans_plusplus_distance_sum_overflow_names_X():
    # every distance is finite (< 1.8e308) but their sum over 40 rows is not
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2)) * 1e153
    with pytest.raises(ValueError, match="X values too large: the squared distances"):
        mixture.kmeans_plusplus(X, 2, rng=0)


@pytest.mark.parametrize("cls_name", ["GaussianMixture", "BayesianGaussianMixture"])
def test_chunked_fit_of_huge_data_names_X(cls_name):
    from lvmref.gmm import GaussianMixture
    from lvmref.vbgmm import BayesianGaussianMixture

    cls = {"GaussianMixture": GaussianMixture,
           "BayesianGaussianMixture": BayesianGaussianMixture}[cls_name]
    X = np.full((40, 2), 1e308)
    X[::2] *= -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way to the error either
        with pytest.raises(ValueError, match="^X (or resp )?values too large"):
            cls(2, random_state=0, chunk_size=7).fit(X)
