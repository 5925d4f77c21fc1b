"""The mixtures are scikit-learn estimators (the protocol lives in lvmref.mixture.MixtureBase).

Oracles: scikit-learn itself (a test dependency) -- its estimator checks run on its own
classes and on ours in the same process, its tags, parameter names, defaults and repr;
``clone``/``Pipeline``/``GridSearchCV`` results are compared with the same computation
done by hand. ``import lvmref.gmm`` must not import scikit-learn (checked in a fresh
interpreter).
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn import mixture as skm  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import get_tags  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

from lvmref import mixture
from lvmref.gmm import GaussianMixture
from lvmref.vbgmm import BayesianGaussianMixture

PAIRS = [(GaussianMixture, skm.GaussianMixture),
         (BayesianGaussianMixture, skm.BayesianGaussianMixture)]
IDS = ["GaussianMixture", "BayesianGaussianMixture"]

#: Checks that fail for our class although scikit-learn's passes, or fail for both: none.
#: Checks that only run for ours (scikit-learn's mixtures have no ``sample_weight``) and
#: fail, with the reason:
ONLY_OURS_FAILING = {
    "BayesianGaussianMixture": {
        # 15 rows, 30 features: the default covariance_prior (sample covariance) is
        # singular, so the prior Wishart and the bound's ln B(W0, nu0) are undefined;
        # lvmref refuses it (scikit-learn drops that constant and regularises with
        # reg_covar). Passing covariance_prior explicitly fits both sides alike.
        "check_sample_weight_equivalence_on_dense_data",
    },
}


def _blobs(seed=0, n=40):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(size=(n, 2)) + c for c in ([0, 0], [6, 0], [0, 6])])


def _run_checks(estimator):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # scikit-learn's checks do their own arithmetic (and expect warnings); lvmref's
        # floating-point contract is tested everywhere else under errstate(all="raise").
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, on_fail=None)
    return {r["check_name"]: r["status"] for r in results}


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_every_check_sklearns_class_passes_ours_passes(ours, theirs):
    sk = _run_checks(theirs())
    lv = _run_checks(ours())
    sk_passed = {name for name, status in sk.items() if status == "passed"}
    lv_passed = {name for name, status in lv.items() if status == "passed"}
    assert len(sk_passed) >= 38  # scikit-learn 1.9 runs 40 checks here (one is skipped)
    assert sk_passed - lv_passed == set()
    failing_both = {n for n in sk if sk[n] == "failed" and lv.get(n) == "failed"}
    assert failing_both == set()
    only_ours = {n for n, status in lv.items() if status == "failed" and n not in sk}
    assert only_ours == ONLY_OURS_FAILING.get(ours.__name__, set())
    # ours runs the sample_weight checks too (its fit takes sample_weight)
    assert {"check_sample_weights_shape", "check_all_zero_sample_weights_error",
            "check_sample_weights_not_overwritten"} <= lv_passed


def test_bayesian_sample_weight_equivalence_with_a_proper_prior():
    """The check excluded above passes once the prior scale is non-singular."""
    from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data

    check_sample_weight_equivalence_on_dense_data(
        "BayesianGaussianMixture", BayesianGaussianMixture(covariance_prior=np.eye(30)))


#: Constructor arguments scikit-learn's mixtures lack (issue 17: chunked and online EM).
OURS_ONLY = {"GaussianMixture": {"chunk_size", "learning_decay", "learning_offset"},
             "BayesianGaussianMixture": {"chunk_size"}}


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_parameter_names_defaults_tags_and_repr_are_sklearns(ours, theirs):
    extra = OURS_ONLY[ours.__name__]
    assert ours().get_params().keys() - extra == theirs().get_params().keys()
    assert extra <= ours().get_params().keys()
    for name, value in theirs().get_params().items():
        assert ours().get_params()[name] == value, name
    assert get_tags(ours()) == get_tags(theirs())
    for kwargs in ({}, {"n_components": 3, "covariance_type": "diag", "tol": 1e-4},
                   {"random_state": 0, "verbose": 2, "warm_start": True}):
        assert (re.sub(r"\s+", " ", repr(ours(**kwargs)))
                == re.sub(r"\s+", " ", repr(theirs(**kwargs))))


@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture], ids=IDS)
def test_get_set_params_and_clone(cls):
    est = cls(2, covariance_type="tied", random_state=3)
    assert est.set_params(n_components=4, tol=0.5) is est
    assert (est.n_components, est.tol) == (4, 0.5)
    with pytest.raises(ValueError, match="Invalid parameter 'n_clusters' for estimator"):
        est.set_params(n_clusters=2)
    # nested parameters as scikit-learn handles them: an argument that is an estimator
    inner = StandardScaler()
    est.set_params(random_state=inner)  # any estimator-valued argument nests
    deep = est.get_params(deep=True)
    assert deep["random_state__with_mean"] is True and deep["random_state"] is inner
    est.set_params(random_state__with_mean=False)
    assert inner.with_mean is False
    assert "random_state__with_mean" not in est.get_params(deep=False)
    twin = clone(cls(3, covariance_type="diag", random_state=5))
    assert twin.get_params() == cls(3, covariance_type="diag", random_state=5).get_params()
    assert not hasattr(twin, "n_features_in_")


def test_import_does_not_import_sklearn():
    code = (
        "import sys, numpy as np\n"
        "import lvmref.gmm, lvmref.vbgmm, lvmref.mixture\n"
        "X = np.random.default_rng(0).normal(size=(50, 2))\n"
        "for cls in (lvmref.gmm.GaussianMixture, lvmref.vbgmm.BayesianGaussianMixture):\n"
        "    est = cls(2, random_state=0).fit(X)\n"
        "    est.set_params(**est.get_params()); repr(est)\n"
        "    try:\n"
        "        cls(2).predict(X)\n"
        "    except lvmref.mixture.NotFittedError:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture], ids=IDS)
def test_errors_and_warnings_are_also_sklearns(cls):
    from sklearn.exceptions import ConvergenceWarning, NotFittedError

    for exc in (NotFittedError, mixture.NotFittedError, ValueError, AttributeError):
        with pytest.raises(exc, match="is not fitted yet"):
            cls(2).predict(_blobs())
    for category in (ConvergenceWarning, mixture.ConvergenceWarning):
        with pytest.warns(category, match="did not converge"):
            cls(3, max_iter=1, tol=0.0, random_state=0).fit(_blobs())


def test_pipeline_with_a_scaler_and_sample_weight():
    X = _blobs(1) * [1.0, 50.0] + [0.0, 300.0]
    w = np.random.default_rng(2).integers(1, 4, size=len(X)).astype(float)
    for cls in (GaussianMixture, BayesianGaussianMixture):
        name = cls.__name__.lower()
        pipe = make_pipeline(StandardScaler(), cls(3, random_state=0)).fit(
            X, **{f"{name}__sample_weight": w})
        Z = StandardScaler().fit_transform(X)
        alone = cls(3, random_state=0).fit(Z, sample_weight=w)
        np.testing.assert_array_equal(pipe.predict(X), alone.predict(Z))
        np.testing.assert_array_equal(pipe.score_samples(X), alone.score_samples(Z))
        assert pipe.score(X) == alone.score(Z)


def _bic_score(estimator, X, y=None):
    return -estimator.bic(X)


def test_grid_search_with_a_bic_scorer():
    X = _blobs(3)
    grid = {"n_components": [1, 2, 3, 4], "covariance_type": ["full", "spherical"]}
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(GaussianMixture(random_state=0), grid, scoring=_bic_score, cv=cv)
    search.fit(X)
    assert search.best_params_ == {"covariance_type": "spherical", "n_components": 3}
    # the same numbers computed by hand: refit on each training fold, BIC on its test fold
    for params, got in zip(search.cv_results_["params"],
                           search.cv_results_["mean_test_score"]):
        scores = [-GaussianMixture(random_state=0, **params).fit(X[tr]).bic(X[te])
                  for tr, te in cv.split(X)]
        assert got == pytest.approx(np.mean(scores), rel=1e-12)
    assert search.best_estimator_.n_components == 3
    # default scoring: the mean log-likelihood (score)
    default = GridSearchCV(GaussianMixture(random_state=0), {"n_components": [1, 3]}, cv=cv)
    assert default.fit(X).best_params_ == {"n_components": 3}
    # the Bayesian mixture works in the same search (its score is its own score_samples)
    vb = GridSearchCV(BayesianGaussianMixture(random_state=0, max_iter=200),
                      {"covariance_type": ["full", "diag"]}, cv=cv).fit(X)
    assert vb.best_estimator_.covariance_type in ("full", "diag")


@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture], ids=IDS)
def test_verbose_levels(cls, capsys):
    X = _blobs(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mixture.ConvergenceWarning)
        cls(3, random_state=0, tol=0.0, max_iter=25, verbose=1, n_init=2).fit(X)
    lines = capsys.readouterr().out.splitlines()
    per_init = ["Initialization {}", "  Iteration 10", "  Iteration 20",
                "Initialization did not converge."]
    assert lines == [t.format(i) for i in range(2) for t in per_init]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mixture.ConvergenceWarning)
        cls(3, random_state=0, tol=0.0, max_iter=6, verbose=2, verbose_interval=3).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Initialization 0" and len(lines) == 4
    for t, line in zip((3, 6), lines[1:3]):
        assert re.fullmatch(rf"  Iteration {t}\t time lapse \d+\.\d{{5}}s\t bound change "
                            r"-?\d+\.\d{5}", line), line
    assert re.fullmatch(r"Initialization did not converge\. time lapse \d+\.\d{5}s\t "
                        r"lower bound -?\d+\.\d{5}\.", lines[3]), lines[3]
    cls(3, random_state=0).fit(X)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture], ids=IDS)
def test_verbose_settings_are_checked_and_persisted(cls, tmp_path):
    with pytest.raises(ValueError, match="verbose must be >= 0"):
        cls(2, verbose=-1).fit(_blobs())
    with pytest.raises(TypeError, match="verbose_interval must be an integer"):
        cls(2, verbose_interval=2.5).fit(_blobs())
    est = cls(2, random_state=0, verbose_interval=3).fit(_blobs())
    assert cls.load(est.save(tmp_path / "m")).verbose_interval == 3
    # a file written before these two arguments existed (0.2.0) loads with the defaults
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        entries = {k: v for k, v in f.items() if k not in ("verbose", "verbose_interval")}
    np.savez(tmp_path / "old.npz", **entries)
    old = cls.load(tmp_path / "old.npz")
    assert (old.verbose, old.verbose_interval) == (0, 10)
    defaults = inspect.signature(cls).parameters
    assert (defaults["verbose"].default, defaults["verbose_interval"].default) == (0, 10)
