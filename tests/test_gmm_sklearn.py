"""lvmref.gmm.GaussianMixture reproduces sklearn.mixture.GaussianMixture step by step.

From the same initial parameters (``weights_init``, ``means_init``, ``precisions_init``)
and ``tol=0``, both are advanced one EM iteration at a time (``warm_start=True,
max_iter=1``) for 20 iterations; after every iteration the weights, means, covariances
and ``lower_bound_`` must agree to <= 1e-10 relative (normwise: max|a - b| / max|b| per
array). Our own ``fit(max_iter=20)`` is then checked to equal the stepped run exactly.
Differences are pure round-off (we centre data in the M-step, scikit-learn expands
E[x^2] - mu^2 for diag/tied/spherical); they stay ~1e-14 here.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGM

from lvmref.gmm import GaussianMixture
from lvmref.mixture import ConvergenceWarning

TYPES = ("full", "tied", "diag", "spherical")
N_STEPS = 20
RTOL = 1e-10


def _synthetic():
    rng = np.random.default_rng(2024)
    centers = rng.normal(size=(3, 4)) * 3.0
    lab = rng.integers(3, size=400)
    return centers[lab] + rng.normal(size=(400, 4)) @ rng.normal(size=(4, 4)) * 0.7


DATA = {
    "iris": (load_iris().data, 3),
    "wine": (load_wine().data, 3),
    "synthetic": (_synthetic(), 4),
}


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("ct", TYPES)
@pytest.mark.parametrize("name", sorted(DATA))
def test_stepwise_equal_to_sklearn(name, ct):
    X, k = DATA[name]
    # initial parameters from our own k-means initialisation (max_iter=0: no EM step)
    init = GaussianMixture(k, covariance_type=ct, max_iter=0, random_state=1).fit(X)
    inits = {
        "weights_init": init.weights_,
        "means_init": init.means_,
        "precisions_init": init.precisions_,
    }
    ours = GaussianMixture(k, covariance_type=ct, tol=0.0, max_iter=1, warm_start=True,
                           **inits)
    sk = SkGM(k, covariance_type=ct, tol=0.0, max_iter=1, warm_start=True,
              init_params="random_from_data", random_state=0, **inits)
    worst = 0.0
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", SkConvergenceWarning)
        for step in range(1, N_STEPS + 1):
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
            bad = {key: v for key, v in errs.items() if not v <= RTOL}
            assert not bad, f"{name}/{ct} step {step}: {bad}"
            worst = max(worst, *errs.values())
            bounds.append(ours.lower_bound_)
        # a full fit with max_iter = 20 is the same computation as 20 warm-started steps
        full = GaussianMixture(k, covariance_type=ct, tol=0.0, max_iter=N_STEPS, **inits).fit(X)
    np.testing.assert_array_equal(full.means_, ours.means_)
    np.testing.assert_array_equal(full.covariances_, ours.covariances_)
    assert full.lower_bounds_ == bounds and full.n_iter_ == N_STEPS
    # inference and model selection on the final parameters
    with np.errstate(under="ignore"):  # scikit-learn's own E-step underflows
        sk_out = (sk.score_samples(X), sk.predict_proba(X), sk.bic(X), sk.aic(X))
    assert _rel(ours.score_samples(X), sk_out[0]) <= RTOL
    assert _rel(ours.predict_proba(X), sk_out[1]) <= RTOL
    assert _rel(ours.bic(X), sk_out[2]) <= RTOL
    assert _rel(ours.aic(X), sk_out[3]) <= RTOL
    assert worst <= RTOL


@pytest.mark.parametrize("ct", TYPES)
def test_n_parameters_match_sklearn(ct):
    X = DATA["synthetic"][0][:, :3]
    ours = GaussianMixture(2, covariance_type=ct, random_state=0).fit(X)
    sk = SkGM(2, covariance_type=ct, random_state=0).fit(X)
    # BIC - AIC = p (log n - 2) for both, so the parameter counts agree
    p_ours = (ours.bic(X) - ours.aic(X)) / (np.log(X.shape[0]) - 2)
    p_sk = (sk.bic(X) - sk.aic(X)) / (np.log(X.shape[0]) - 2)
    assert round(p_ours) == round(p_sk) == sk._n_parameters()
