"""lvmref.mixture: the layer shared by the Gaussian mixture and the Bayesian mixture.

Precision factors (eq. 13 of lvmref.gmm), initialisation, input checks, the EM driver and
the estimator frame. Expected values are derived independently (NumPy inverses, explicit
loops, hand-written restarts), never by calling the function under test.
"""

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
