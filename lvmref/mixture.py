r"""What the Gaussian mixture (:mod:`lvmref.gmm`) and the Bayesian Gaussian mixture
(:mod:`lvmref.vbgmm`) share: one implementation of each, used by both.

Equation numbers "(n)" refer to the derivation in :mod:`lvmref.gmm`.

Contents
--------
* Names: ``COVARIANCE_TYPES``, ``INIT_PARAMS``; ``ConvergenceWarning``, ``NotFittedError``.
* Cholesky factors of the precision, eq. (13): Sigma_k = L_k L_k^T, U_k = L_k^{-T} upper
  triangular, Lambda_k = U_k U_k^T; :func:`compute_precision_cholesky` (from covariances),
  :func:`precision_cholesky_from_precisions` (from precisions, U = J chol(J Lambda J) J),
  :func:`covariances_from_cholesky`, :func:`precisions_from_cholesky`,
  :func:`log_det_cholesky` (log|Lambda_k|^{1/2} = sum_j log U_k,jj, eq. 14),
  :func:`triangular_inverse`, and :func:`check_covariances` (a covariance / factor pair
  read from a file).
* Input checks: :func:`check_X` (with scikit-learn's messages where its estimator checks
  look for them: sparse, complex, object, 1-D and empty input), :func:`check_resp` (on top
  of :mod:`lvmref.kernels.checks`).
* Initial responsibilities: :func:`kmeans_plusplus`, :func:`kmeans` (our own; they differ
  from scikit-learn's ``KMeans``) and :func:`initial_resp`, all optionally weighted by
  ``sample_weight`` (W4 below).
* Initial statistics of data read chunk by chunk (:mod:`lvmref.chunked`):
  :func:`initial_moments` (I1-I4 below), without loading the data.
* The EM driver :func:`run_em`: ``n_init`` restarts, convergence on ``tol`` within
  ``max_iter`` iterations, warm starts, the bound history, the ``ConvergenceWarning``,
  keeping the best restart. What the bound *means* is the model's: the Gaussian mixture
  reports the mean log-likelihood at the E-step of each iteration (eq. 21 of
  :mod:`lvmref.gmm`, scikit-learn's definition), the Bayesian mixture its evidence lower
  bound after the M-step (eq. 19 of :mod:`lvmref.vbgmm`).
* :class:`MixtureBase`, the frame of both estimators: scikit-learn's estimator protocol
  (``get_params`` / ``set_params`` derived from the constructor signature, nested
  ``a__b`` names as scikit-learn does, ``__repr__``, ``__sklearn_tags__``,
  ``__sklearn_is_fitted__``) *without importing scikit-learn at run time* -- the tags
  import it lazily, only when scikit-learn itself asks for them; hyper-parameter checks
  both share; ``X`` validation against ``n_features_in_``; ``sample_weight`` and
  ``resp_init`` checks; ``predict`` / ``predict_proba`` / ``score_samples`` / ``score`` /
  ``fit_predict`` / ``sample``; and ``save`` / ``load`` in the one ``.npz`` format of
  :mod:`lvmref.persistence`. For data read chunk by chunk (``chunk_size``, memory maps,
  array-likes, Dask arrays) the predictions and ``score`` run chunk by chunk.

Sample weights (both mixtures)
------------------------------
A weight w_i >= 0 per row is a *frequency* weight: the weighted fit is the fit of the
data in which row i occurs w_i times, extended to real w_i. Everything the two models
compute from the data is a sum over rows, so

(W1) every sum over rows sum_i f(x_i) becomes sum_i w_i f(x_i): in the M-steps the
     responsibilities r_ik are replaced by w_i r_ik (N_k, the first moments and the
     scatter matrices of eqs. 15-20 of :mod:`lvmref.gmm` and 13-18 of :mod:`lvmref.vbgmm`
     are linear in r_ik), and the objective's data term sum_i ELBO_i becomes
     sum_i w_i ELBO_i;
(W2) hence integer weights give the fit of the repeated rows and zero weights that of
     the remaining rows (rows of weight 0 are removed before anything is computed, so
     they neither need a defined posterior nor draw initial centres);
(W3) the maximum-likelihood fit (:mod:`lvmref.gmm`, whose reported bound is the weighted
     *mean* log-likelihood) does not change when every weight is multiplied by c > 0;
     the Bayesian fit does -- c scales the amount of data the prior is weighed against
     (c = 2 is every row counted twice).
(W4) Initialisation: k-means++ draws its first centre with probability w_i / sum_j w_j
     and each next one with probability proportional to w_i D_i^2 (D_i the distance to
     the nearest chosen centre), the distribution of k-means++ on the repeated rows;
     Lloyd's centres are weighted means; ``"random_from_data"`` draws distinct rows with
     probabilities proportional to w_i. Constant weights draw exactly as no weights (the
     draws depend on the weights only through their ratios), so for the Gaussian mixture
     ``sample_weight=c`` repeats the unweighted fit with the same ``random_state``.

Initialisation of data read chunk by chunk (both mixtures)
----------------------------------------------------------
A memory map, an array-like or a Dask array is never loaded whole, also not to start
EM. :func:`initial_moments` returns the statistics (eq. 23 of :mod:`lvmref.gmm`) of the
initial responsibilities, on which the models' M-steps run, and draws from
``random_state`` deterministically:

(I1) ``"random"``: the uniform responsibilities are drawn row by row in the order of
     the in-memory draw (``rng.uniform(size=(n, K))`` over the rows of positive weight;
     a Generator's doubles are a stream, so drawing chunk by chunk gives the same
     numbers). Dask blocks position a copy of a PCG64/PCG64DXSM generator at their first
     row with ``bit_generator.advance`` (one step per double), so they draw the same
     numbers too; other bit generators seed each block from ``rng`` (deterministic for
     the chunking, not the in-memory draw).
(I2) ``"kmeans"`` and ``"k-means++"``: our k-means++ seeding (and for "kmeans" Lloyd's
     iterations) of :func:`kmeans` run on a seeded uniform subsample of
     ``INIT_SAMPLE_SIZE`` rows of positive weight (sorted indices drawn by
     ``rng.choice(n, m, replace=False)``; weighted by W4 within the subsample); "kmeans"
     then gives every row the label of its nearest centre in one pass -- the labels
     :func:`kmeans` gives in memory -- and "k-means++" puts responsibility 1 on the
     chosen rows. With no more rows than ``INIT_SAMPLE_SIZE`` the subsample is all rows
     and nothing is drawn for it, so the start is the in-memory one. (k-means||,
     Bahmani et al. 2012, would need several passes over the data; one pass over a
     subsample of 10^5 rows estimates K <= a few hundred centres well, and EM refines
     them on all rows.)
(I3) ``"random_from_data"``: the K rows are drawn as in memory and read by index.
(I4) ``resp_init`` (an array-like of n rows) is read chunk by chunk like ``X``.

So for up to ``INIT_SAMPLE_SIZE`` rows every ``init_params`` starts where the in-memory
fit starts (to rounding), and the chunked fit equals the in-memory one.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
import sys
import time
import warnings
from typing import Any, NamedTuple

import numpy as np
from scipy import linalg, sparse
from scipy.linalg import lapack

from lvmref.chunked import DaskRows, RowChunks, check_chunk_size, is_in_memory, row_source
from lvmref.kernels.checks import (
    as_float_array,
    check_choice,
    check_finite_sum,
    check_flag,
    check_nonnegative_float,
    check_path,
    check_positive_int,
    check_rng,
    check_sample_weight,
)
from lvmref.kernels.fpenv import benign_underflow
from lvmref.mixture_stats import chunk_moments, merge_moments
from lvmref.persistence import read_model, save_model

__all__ = [
    "COVARIANCE_TYPES",
    "INIT_PARAMS",
    "SINGULAR_HINT",
    "ConvergenceWarning",
    "NotFittedError",
    "covariance_shape",
    "triangular_inverse",
    "cholesky_stack",
    "precision_factors_from_cholesky",
    "compute_precision_cholesky",
    "precision_cholesky_from_precisions",
    "covariances_from_cholesky",
    "precisions_from_cholesky",
    "log_det_cholesky",
    "PAIR_RTOL",
    "check_covariances",
    "check_X",
    "check_resp",
    "kmeans_plusplus",
    "kmeans",
    "initial_resp",
    "INIT_SAMPLE_SIZE",
    "initial_moments",
    "EMResult",
    "run_em",
    "FORMAT_VERSION",
    "MixtureBase",
]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")

#: What to tell a user whose covariance is singular (the M-step and the factor helpers).
SINGULAR_HINT = (
    "the covariance is singular or numerically degenerate (components collapsed onto "
    "fewer distinct points than dimensions, e.g. duplicated samples or more components "
    "than distinct points); increase reg_covar, reduce n_components, or rescale the data"
)


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the lower bound changed by less than ``tol``.

    When scikit-learn is already imported, the warning issued is of a subclass of this
    class and of ``sklearn.exceptions.ConvergenceWarning``, so filters on either apply.
    """


class NotFittedError(ValueError, AttributeError):
    """An estimator method that needs fitted parameters was called before ``fit``.

    Like scikit-learn's, it subclasses both ``ValueError`` and ``AttributeError``. When
    scikit-learn is already imported, the error raised is of a subclass of this class and
    of ``sklearn.exceptions.NotFittedError``, so ``except`` clauses for either catch it
    (scikit-learn's ``check_estimator`` requires its own class).
    """


_TWINS = {}


def _with_sklearn_twin(cls):
    """``cls``, or -- if scikit-learn is already imported (never imported here) -- a
    subclass of ``cls`` and of scikit-learn's class of the same name."""
    exceptions = sys.modules.get("sklearn.exceptions")
    peer = getattr(exceptions, cls.__name__, None)
    if peer is None or not isinstance(peer, type):
        return cls
    if cls not in _TWINS:
        _TWINS[cls] = type(cls.__name__, (cls, peer), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__})
    return _TWINS[cls]


# ----------------------------------------------------------------------------------------
# Cholesky factors of the precision, eq. (13)
# ----------------------------------------------------------------------------------------

_COV_NDIM = {"full": 3, "tied": 2, "diag": 2, "spherical": 1}


def _check_factor(u, covariance_type, name="precisions_cholesky"):
    """Precision factors of ``covariance_type`` as float64 (not copied: the callers only
    read them), or an error naming ``name``: full ``(K, d, d)`` / tied ``(d, d)`` square,
    upper triangular with a positive diagonal; diag ``(K, d)`` / spherical ``(K,)``
    positive; finite, not empty."""
    u = as_float_array(u, name, ndim=_COV_NDIM[covariance_type], copy=False)
    if covariance_type in ("full", "tied"):
        if u.shape[-1] != u.shape[-2]:
            raise ValueError(f"{name} must hold square (d, d) matrices for covariance_type="
                             f"{covariance_type!r}, got shape {u.shape}")
        if np.any(np.tril(u, -1) != 0.0):
            raise ValueError(f"{name} must be upper triangular (Lambda = U U^T)")
        diag = np.diagonal(u, axis1=-2, axis2=-1)
    else:
        diag = u
    if np.any(diag <= 0.0):
        raise ValueError(f"{name} must have a positive diagonal" if covariance_type in (
            "full", "tied") else f"{name} must be > 0")
    return u


@benign_underflow
def covariance_shape(covariance_type, n_components, n_features):
    """Shape of ``covariances`` / ``precisions_cholesky`` for a covariance type.

    full ``(K, d, d)``, tied ``(d, d)``, diag ``(K, d)``, spherical ``(K,)``.
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    k = check_positive_int(n_components, "n_components")
    d = check_positive_int(n_features, "n_features")
    return {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[
        covariance_type
    ]


@benign_underflow
def triangular_inverse(t, lower):
    """Inverse of a non-singular triangular matrix (LAPACK ``dtrtri``).

    Used instead of ``scipy.linalg.solve_triangular(t, I)``: same result, but for the
    small matrices of a mixture the multi-threaded BLAS ``trsm`` behind the latter can
    cost milliseconds per call on a busy machine (thread wake-ups), ``dtrtri`` microseconds.

    Parameters
    ----------
    t : ndarray of shape (d, d)
        Lower (``lower=True``) or upper triangular, non-singular.
    lower : bool

    Returns
    -------
    ndarray of shape (d, d), triangular like ``t`` (exact zeros in the other triangle).

    Raises
    ------
    ValueError
        Naming ``t``: not a finite square triangular matrix, singular, or an inverse that
        overflows float64.
    """
    lower = check_flag(lower, "lower")
    t = as_float_array(t, "t", ndim=2, copy=False)
    if t.shape[0] != t.shape[1]:
        raise ValueError(f"t must be a square matrix, got shape {t.shape}")
    if np.any((np.triu(t, 1) if lower else np.tril(t, -1)) != 0.0):
        which = "lower" if lower else "upper"
        raise ValueError(f"t must be {which} triangular (lower={lower})")
    return _triangular_inverse(t, lower)


def _triangular_inverse(t, lower, name="t"):
    """:func:`triangular_inverse` of a validated float64 triangular ``t`` (errors name
    ``name``)."""
    inv, info = lapack.dtrtri(t, lower=int(lower))
    if info != 0:
        raise ValueError(f"{name}: triangular factor is singular ({SINGULAR_HINT})")
    if not np.all(np.isfinite(inv)):
        raise ValueError(f"{name}: the inverse of the triangular factor overflows float64 "
                         f"({SINGULAR_HINT})")
    return np.tril(inv) if lower else np.triu(inv)


@benign_underflow
def cholesky_stack(mats):
    """Lower Cholesky factors of a stack of symmetric matrices (LAPACK ``dpotrf``).

    One call per stack, as in each full-covariance M-step: the input is checked once,
    then ``dpotrf`` runs per matrix (``scipy.linalg.cholesky`` spends ~11 us in checks
    per 10 x 10 matrix, ``dpotrf`` itself ~1.5 us).

    Parameters
    ----------
    mats : array_like of shape (K, d, d)
        Finite, symmetric (only the lower triangle is read).

    Returns
    -------
    low : ndarray of shape (K, d, d)
        ``L_k`` with ``L_k L_k^T = mats[k]`` (exact zeros above the diagonal) for
        ``k < failed``; zeros from ``failed`` on.
    failed : int
        The first k whose matrix is not positive definite (``dpotrf`` info != 0), or K.
    """
    mats = as_float_array(mats, "mats", ndim=3, copy=False)
    if mats.shape[1] != mats.shape[2]:
        raise ValueError(f"mats must be a stack of square matrices (K, d, d), got shape "
                         f"{mats.shape}")
    low = np.zeros_like(mats)
    for k in range(mats.shape[0]):
        fac, info = lapack.dpotrf(mats[k], lower=1, clean=1)
        if info != 0:
            return low, k
        low[k] = fac
    return low, mats.shape[0]


@benign_underflow
def precision_factors_from_cholesky(low):
    """``U_k = L_k^{-T}`` (upper triangular, ``U_k U_k^T = (L_k L_k^T)^{-1}``, eq. (13)).

    Parameters
    ----------
    low : array_like of shape (K, d, d)
        Finite, non-singular, lower triangular (exact zeros above the diagonal), as from
        :func:`cholesky_stack`.

    Returns
    -------
    ndarray of shape (K, d, d), upper triangular (LAPACK ``dtrtri`` per matrix).

    Raises
    ------
    ValueError
        If ``low`` is not such a stack, a factor is singular or an inverse overflows
        float64 (message suggests raising ``reg_covar``).
    """
    low = as_float_array(low, "low", ndim=3, copy=False)
    if low.shape[1] != low.shape[2]:
        raise ValueError(f"low must be a stack of square matrices (K, d, d), got shape "
                         f"{low.shape}")
    if np.any(np.triu(low, 1) != 0.0):
        raise ValueError("low must be lower triangular (exact zeros above the diagonal)")
    u = np.empty_like(low)
    for k in range(low.shape[0]):
        u[k] = _triangular_inverse(low[k], True, f"low[{k}]").T
    return u


@benign_underflow
def compute_precision_cholesky(covariances, covariance_type):
    """Upper-triangular precision factors U with U U^T = Sigma^{-1}, eq. (13).

    Parameters
    ----------
    covariances : ndarray
        full ``(K, d, d)``, tied ``(d, d)``, diag ``(K, d)``, spherical ``(K,)``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    precisions_cholesky : ndarray, same shape as ``covariances``
        full/tied: ``U = L^{-T}`` for the lower Cholesky factor ``L`` of the covariance;
        diag/spherical: ``1 / sqrt(covariances)``.

    Raises
    ------
    ValueError
        If a covariance is not positive definite (message suggests raising ``reg_covar``).
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    cov = as_float_array(covariances, "covariances", ndim=_COV_NDIM[covariance_type])
    if covariance_type in ("full", "tied"):
        mats = cov if covariance_type == "full" else cov[None]
        if mats.shape[-1] != mats.shape[-2]:
            raise ValueError(f"covariances must be square matrices, got shape {cov.shape}")
        low, failed = cholesky_stack(mats)
        if failed < mats.shape[0]:
            label = "covariances" if covariance_type == "tied" else f"covariances[{failed}]"
            raise ValueError(f"{label} (component {failed}): {SINGULAR_HINT}")
        out = precision_factors_from_cholesky(low)
        return out if covariance_type == "full" else out[0]
    if np.any(cov <= 0.0):
        raise ValueError(f"covariances must be > 0: {SINGULAR_HINT}")
    return 1.0 / np.sqrt(cov)


@benign_underflow
def precision_cholesky_from_precisions(precisions, covariance_type):
    """Upper-triangular U with U U^T = Lambda from precision matrices, eq. (13).

    Uses U = J chol(J Lambda J) J (J reverses rows and columns), so that the same
    convention holds whether the model was specified by covariances or precisions.

    Parameters
    ----------
    precisions : ndarray
        full ``(K, d, d)``, tied ``(d, d)``, diag ``(K, d)``, spherical ``(K,)``;
        symmetric positive definite (full/tied) or positive (diag/spherical).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    precisions_cholesky : ndarray, same shape as ``precisions``
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    prec = as_float_array(precisions, "precisions", ndim=_COV_NDIM[covariance_type])
    if covariance_type in ("full", "tied"):
        mats = prec if covariance_type == "full" else prec[None]
        if mats.shape[-1] != mats.shape[-2]:
            raise ValueError(f"precisions must be square matrices, got shape {prec.shape}")
        out = np.empty_like(mats)
        for k, p in enumerate(mats):
            if not np.allclose(p, p.T, rtol=1e-12, atol=0.0):
                raise ValueError(f"precisions[{k}] must be symmetric")
            try:
                low = linalg.cholesky(p[::-1, ::-1], lower=True)
            except linalg.LinAlgError:
                raise ValueError(f"precisions[{k}] must be positive definite") from None
            out[k] = low[::-1, ::-1]
        return out if covariance_type == "full" else out[0]
    if np.any(prec <= 0.0):
        raise ValueError("precisions must be > 0")
    return np.sqrt(prec)


@benign_underflow
def covariances_from_cholesky(precisions_cholesky, covariance_type):
    """Sigma = (U U^T)^{-1} from the precision factors, eq. (13).

    Parameters
    ----------
    precisions_cholesky : ndarray
        full ``(K, d, d)`` / tied ``(d, d)`` upper triangular with a non-zero diagonal,
        diag ``(K, d)`` / spherical ``(K,)`` non-zero (already validated).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    covariances : ndarray, same shape

    Raises
    ------
    ValueError
        Naming ``precisions_cholesky`` if a covariance overflows float64 (a factor too
        close to singular).
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    u = _check_factor(precisions_cholesky, covariance_type)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # refused below
        if covariance_type in ("full", "tied"):
            mats = u if covariance_type == "full" else u[None]
            out = np.empty_like(mats)
            for k, uk in enumerate(mats):
                try:
                    inv = _triangular_inverse(uk, lower=False)  # U^{-1}
                except ValueError:
                    inv = np.full_like(uk, np.inf)
                out[k] = inv.T @ inv
            out = out if covariance_type == "full" else out[0]
        else:
            out = 1.0 / u**2
    if not np.all(np.isfinite(out)):
        raise ValueError("precisions_cholesky is numerically singular: the covariances "
                         "(U U^T)^-1 overflow float64")
    return out


@benign_underflow
def precisions_from_cholesky(precisions_cholesky, covariance_type):
    """Lambda = U U^T from the precision factors, eq. (13); same shape as the factors.

    ``ValueError`` naming ``precisions_cholesky`` if a precision overflows float64.
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    u = _check_factor(precisions_cholesky, covariance_type)
    with np.errstate(over="ignore", invalid="ignore"):  # refused just below
        if covariance_type == "full":
            out = u @ np.swapaxes(u, 1, 2)
        elif covariance_type == "tied":
            out = u @ u.T
        else:
            out = u**2
    if not np.all(np.isfinite(out)):
        raise ValueError("precisions_cholesky too large: the precisions U U^T overflow "
                         "float64")
    return out


@benign_underflow
def log_det_cholesky(precisions_cholesky, covariance_type, n_features):
    """log|Lambda_k|^{1/2} = sum_j log U_k,jj for each component, eq. (14).

    Parameters
    ----------
    precisions_cholesky : ndarray
        full ``(K, d, d)``, tied ``(d, d)``, diag ``(K, d)``, spherical ``(K,)``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    n_features : int
        ``d`` (needed for spherical).

    Returns
    -------
    ndarray of shape ``(K,)`` (a 0-d array for tied, which broadcasts over K)
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    u = _check_factor(precisions_cholesky, covariance_type)
    d = check_positive_int(n_features, "n_features")
    if covariance_type != "spherical" and u.shape[-1] != d:
        raise ValueError(f"n_features={d} does not match precisions_cholesky of shape "
                         f"{u.shape} (covariance_type={covariance_type!r})")
    return _log_det_cholesky(u, covariance_type, d)


def _log_det_cholesky(u, covariance_type, n_features):
    """:func:`log_det_cholesky` of validated factors."""
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(u, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return np.asarray(np.sum(np.log(np.diag(u))))
    if covariance_type == "diag":
        return np.sum(np.log(u), axis=1)
    return n_features * np.log(u)


#: Largest relative residual :func:`check_covariances` accepts between a covariance and
#: its precision factor (round-off of the triangular inverse and the products is ~1e-15;
#: any real inconsistency is far larger).
PAIR_RTOL = 1e-6


@benign_underflow
def check_covariances(covariances, precisions_cholesky, covariance_type, *,
                      name="covariances", factor_name="precisions_cholesky"):
    """Validate covariances against their (already validated) precision factors.

    The covariances must have the factors' shape, be finite, symmetric (to 1e-8 on the
    correlation scale), positive definite, and form an inverse pair with the factors, eq.
    (13). lvmref computes one of the pair from the other -- U from Sigma after an M-step,
    Sigma from U when starting from ``precisions_init`` -- and whichever was derived
    carries the round-off, so the pair is accepted when either direction agrees to
    ``PAIR_RTOL``: full/tied, with Sigma_k = L_k L_k^T (Cholesky), ``max |L_k^T U_k - I|``
    or ``max |Sigma_k - (U_k U_k^T)^{-1}|_ij / sqrt(Sigma_k,ii Sigma_k,jj)``; diag and
    spherical, ``max |U^2 Sigma - 1|``.

    Parameters
    ----------
    covariances : array_like
        Same shape as ``precisions_cholesky`` (see :func:`covariance_shape`).
    precisions_cholesky : ndarray
        Validated factors (upper triangular with a positive diagonal, or positive).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    name, factor_name : str
        Names used in error messages.

    Returns
    -------
    ndarray
        ``covariances`` as float64.
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    u = _check_factor(precisions_cholesky, covariance_type, factor_name)
    cov = as_float_array(covariances, name, shape=u.shape)
    if covariance_type not in ("full", "tied"):
        if np.any(cov <= 0.0):
            raise ValueError(f"{name} must be > 0")
        with np.errstate(over="ignore"):  # an overflow is a mismatch
            residual = np.max(np.abs(u * u * cov - 1.0))
        if not residual <= PAIR_RTOL:
            raise ValueError(f"{name} is not the inverse of {factor_name}**2 (eq. 13)")
        return cov
    mats = cov if covariance_type == "full" else cov[None]
    facs = u if covariance_type == "full" else u[None]
    eye = np.eye(mats.shape[-1])
    with np.errstate(over="ignore", invalid="ignore"):  # overflow: refused as a mismatch
        _check_pairs(mats, facs, eye, covariance_type, name, factor_name)
    return cov


def _check_pairs(mats, facs, eye, covariance_type, name, factor_name):
    """The full/tied part of :func:`check_covariances`."""
    for k, (s, uk) in enumerate(zip(mats, facs)):
        label = name if covariance_type == "tied" else f"{name}[{k}]"
        diag = np.diag(s)
        if np.any(diag <= 0.0):
            raise ValueError(f"{label} is not positive definite (non-positive diagonal)")
        root = np.sqrt(diag)
        scale = np.outer(root, root)  # sqrt(S_ii S_jj) without overflow
        if np.any(np.abs(s - s.T) > 1e-8 * scale):
            raise ValueError(f"{label} is not symmetric")
        try:
            low = linalg.cholesky(s, lower=True)
        except linalg.LinAlgError:
            raise ValueError(f"{label} is not positive definite") from None
        inv = _triangular_inverse(uk, lower=False)
        if not min(np.max(np.abs(low.T @ uk - eye)),
                   np.max(np.abs(s - inv.T @ inv) / scale)) <= PAIR_RTOL:
            raise ValueError(f"{label} is not the inverse of {factor_name} "
                             "(Sigma^-1 = U U^T, eq. 13)")


# ----------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------


@benign_underflow
def check_X(X, name="X"):
    """``X`` as a 2-D finite float64 copy of shape (n, d), or an error naming ``name``.

    Besides :func:`lvmref.kernels.checks.as_float_array`'s checks, the messages say what
    scikit-learn's estimator checks look for: a sparse matrix is a ``TypeError``
    ("sparse"); complex data a ``ValueError`` ("Complex data not supported"); an object
    array is converted when every entry is a number (else ``TypeError``); 1-D input is a
    ``ValueError`` that says how to reshape; no rows / no columns say "0 sample(s)" /
    "0 feature(s)".
    """
    if sparse.issparse(X):
        raise TypeError(f"{name} is a sparse matrix ({type(X).__name__}), but the mixtures "
                        f"need dense data: pass {name}.toarray()")
    if not isinstance(X, (str, bytes)):
        try:
            probe = np.asarray(X)
        except (TypeError, ValueError):  # ragged input: as_float_array reports it
            probe = None
        if probe is not None:
            if np.iscomplexobj(probe):
                raise ValueError(f"{name}: Complex data not supported (dtype {probe.dtype}); "
                                 "pass real and imaginary parts as separate columns")
            if probe.dtype == object:
                try:
                    X = probe.astype(np.float64)
                except (TypeError, ValueError) as exc:
                    raise TypeError(f"{name} must be numeric: {exc}") from None
            if probe.ndim != 2:
                raise ValueError(
                    f"{name} must be 2-D (rows are samples), got shape {probe.shape}. "
                    f"Reshape your data: {name}.reshape(-1, 1) if it has a single feature, "
                    f"{name}.reshape(1, -1) if it is a single sample"
                )
            for axis, what in ((0, "sample(s)"), (1, "feature(s)")):
                if probe.shape[axis] == 0:
                    raise ValueError(f"{name} has 0 {what} (shape={probe.shape}) while a "
                                     "minimum of 1 is required.")
    return as_float_array(X, name, ndim=2)


@benign_underflow
def check_resp(X, resp):
    """Validate data and responsibilities for an M-step; float64 copies ``(X, resp)``.

    Parameters
    ----------
    X : array_like of shape (n, d)
    resp : array_like of shape (n, K)
        Non-negative, finite (rows normally sum to 1).
    """
    X = check_X(X)
    resp = as_float_array(resp, "resp", ndim=2)
    if resp.shape[0] != X.shape[0]:
        raise ValueError(f"resp must have {X.shape[0]} rows (one per sample), got {resp.shape}")
    if np.any(resp < 0.0):
        raise ValueError("resp must be non-negative")
    return X, resp


# ----------------------------------------------------------------------------------------
# Initialisation: k-means++ seeding, k-means, initial responsibilities
# ----------------------------------------------------------------------------------------


def _sq_dists(X, centers):
    """Squared Euclidean distances (n, K) from centred differences (no expansion).

    ``ValueError`` naming X if a distance overflows float64 (k-means cannot rank them).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # refused just below
        d2 = np.stack([np.einsum("ij,ij->i", X - c, X - c) for c in centers], axis=1)
    if not np.all(np.isfinite(d2)):
        raise ValueError(
            "X values too large: squared distances between rows overflow float64 "
            f"(max |X| = {np.max(np.abs(X)):.3g}); rescale X"
        )
    return d2


def _check_total_weight(w, name="sample_weight"):
    """``w`` unless its total overflows float64 (then a ``ValueError`` naming ``name``)."""
    return w if w is None else check_finite_sum(w, name)


#: float64's largest finite value
_DBL_MAX = float(np.finfo(np.float64).max)


def _check_fit_scale(X, total, name="X"):
    """Refuse data whose EM sums can overflow float64: every mean is a convex combination
    of rows, so |x_i - mu_k| <= 2 max|X| and each scatter sum sum_i w_i r_ik (x_i - mu_k)^2
    is at most 4 W max|X|^2 (W the total weight; ``total`` = max(W, n), since the
    unweighted k-means sums run over the n rows); ``ValueError`` naming ``name`` unless
    that is finite (max|X| <= sqrt(DBL_MAX / (4 total)), ~6.7e153 / sqrt(total))."""
    limit = math.sqrt(_DBL_MAX / (4.0 * total))
    big = float(np.max(np.abs(X), initial=0.0))
    if big > limit:
        raise ValueError(f"{name} values too large for EM in float64: max |{name}| = "
                         f"{big:.3g} > sqrt(DBL_MAX / (4 W)) = {limit:.3g} (W = {total:.6g}, "
                         f"the number or total weight of the rows), beyond which the squared "
                         f"deviations can overflow; rescale {name}")


def _init_weights(sample_weight, n):
    """Weights for the initial draws: ``None`` for none or constant weights (W4)."""
    w = check_sample_weight(sample_weight, n)
    if w is None or np.all(w == w[0]):
        return None
    return w


@benign_underflow
def kmeans_plusplus(X, n_clusters, rng=None, sample_weight=None):
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): indices of ``n_clusters`` rows.

    The first index is uniform; each next one is drawn with probability proportional
    to the squared distance to the nearest chosen centre (uniform over the not-yet-chosen
    rows if all distances are zero, e.g. duplicated data). With ``sample_weight`` (W4 of
    the module docstring) the first is drawn with probability proportional to w_i and the
    next ones proportional to w_i D_i^2 (w_i over the free rows of positive weight if
    those are all zero); rows of weight 0 are never chosen. Constant weights draw exactly
    as no weights.

    Parameters
    ----------
    X : array_like of shape (n, d)
    n_clusters : int, <= n (<= the number of rows of positive weight)
    rng : numpy.random.Generator, int or None
    sample_weight : array_like of shape (n,), optional
        Non-negative row weights.

    Returns
    -------
    ndarray of int, shape (n_clusters,)
    """
    X = check_X(X)
    k = check_positive_int(n_clusters, "n_clusters")
    n = X.shape[0]
    w = _init_weights(sample_weight, n)
    if k > X.shape[0]:
        raise ValueError(f"n_clusters={k} must be <= n_samples={X.shape[0]}")
    if w is not None and k > np.count_nonzero(w):
        raise ValueError(f"n_clusters={k} must be <= the {np.count_nonzero(w)} rows of "
                         "positive sample_weight")
    rng = check_rng(rng)
    if w is None:
        idx = [int(rng.integers(n))]
    else:
        idx = [int(rng.choice(n, p=w / w.sum()))]
    d2 = _sq_dists(X, X[idx])[:, 0]
    for _ in range(1, k):
        p = d2.copy() if w is None else w * d2
        p[idx] = 0.0
        with np.errstate(over="ignore"):  # refused just below
            total = p.sum()
        if not np.isfinite(total):
            raise ValueError("X values too large: the squared distances of the rows to the "
                             f"chosen centres sum beyond float64 (max |X| = "
                             f"{np.max(np.abs(X)):.3g}); rescale X")
        if total > 0.0:
            nxt = int(rng.choice(n, p=p / total))
        elif w is None:
            free = np.setdiff1d(np.arange(n), idx)
            nxt = int(rng.choice(free))
        else:
            free = np.setdiff1d(np.flatnonzero(w > 0.0), idx)
            nxt = int(rng.choice(free, p=w[free] / w[free].sum()))
        idx.append(nxt)
        d2 = np.minimum(d2, _sq_dists(X, X[nxt][None])[:, 0])
    return np.asarray(idx)


@benign_underflow
def kmeans(X, n_clusters, rng=None, n_iter=10, sample_weight=None):
    """k-means++ seeding then at most ``n_iter`` Lloyd iterations; returns labels (n,).

    Empty clusters keep their previous centre. This is the ``init_params='kmeans'``
    initialiser; it is deliberately simple and differs from scikit-learn's ``KMeans``.
    With ``sample_weight`` (W4) the seeding is weighted and each centre is the weighted
    mean of its rows (a cluster whose rows all have weight 0 keeps its centre); every row,
    whatever its weight, gets the label of its nearest centre.
    """
    X = check_X(X)
    n_iter = check_positive_int(n_iter, "n_iter", minimum=0)
    return _lloyd(X, n_clusters, rng, n_iter, _init_weights(sample_weight, X.shape[0]))[0]


def _lloyd(X, n_clusters, rng, n_iter, w):
    """:func:`kmeans` on validated input: ``(labels (n,), centres (K, d))``; every label
    is that of the nearest of the returned centres."""
    centers = X[kmeans_plusplus(X, n_clusters, rng, sample_weight=w)]
    labels = np.argmin(_sq_dists(X, centers), axis=1)
    for _ in range(n_iter):
        for c in range(centers.shape[0]):
            members = labels == c
            with np.errstate(over="ignore", invalid="ignore"):  # refused just below
                if w is None:
                    if members.any():
                        centers[c] = X[members].mean(axis=0)
                elif w[members].sum() > 0.0:
                    centers[c] = w[members] @ X[members] / w[members].sum()
            if not np.all(np.isfinite(centers[c])):
                raise ValueError("X values too large: the sum of a cluster's rows overflows "
                                 f"float64 (max |X| = {np.max(np.abs(X)):.3g}); rescale X")
        new = np.argmin(_sq_dists(X, centers), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels, centers


@benign_underflow
def initial_resp(X, n_components, init_params, rng, sample_weight=None):
    """Initial responsibilities (n, K) for ``init_params`` (scikit-learn's meanings).

    * ``"kmeans"``: one-hot labels of :func:`kmeans`;
    * ``"k-means++"``: one row per component, chosen by :func:`kmeans_plusplus`, has
      responsibility 1 for it (all other rows 0);
    * ``"random"``: uniform(0, 1) entries, rows normalised;
    * ``"random_from_data"``: like ``"k-means++"`` with ``n_components`` distinct rows
      drawn uniformly (with probabilities proportional to ``sample_weight``, W4).

    The draws come from a ``numpy.random.Generator``; scikit-learn draws from a legacy
    ``RandomState``, so the same int seed gives a different start (see the estimators'
    docstrings for how to reproduce scikit-learn's start with ``resp_init``).

    Parameters
    ----------
    X : array_like of shape (n, d)
    n_components : int, <= n (<= the number of rows of positive weight)
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}
    rng : numpy.random.Generator, int or None
    sample_weight : array_like of shape (n,), optional
        Non-negative row weights (W4); constant weights draw exactly as none.

    Returns
    -------
    ndarray of shape (n, n_components)
    """
    X = check_X(X)
    k = check_positive_int(n_components, "n_components")
    check_choice(init_params, "init_params", INIT_PARAMS)
    rng = check_rng(rng)
    n = X.shape[0]
    w = _init_weights(sample_weight, n)
    if k > n:
        raise ValueError(f"n_components={k} must be <= n_samples={n}")
    if w is not None and k > np.count_nonzero(w):
        raise ValueError(f"n_components={k} must be <= the {np.count_nonzero(w)} rows of "
                         "positive sample_weight")
    resp = np.zeros((n, k))
    if init_params == "kmeans":
        resp[np.arange(n), kmeans(X, k, rng, sample_weight=w)] = 1.0
    elif init_params == "k-means++":
        resp[kmeans_plusplus(X, k, rng, sample_weight=w), np.arange(k)] = 1.0
    elif init_params == "random":
        resp = rng.uniform(size=(n, k))
        resp /= resp.sum(axis=1, keepdims=True)
    elif w is None:  # "random_from_data"
        resp[rng.choice(n, size=k, replace=False), np.arange(k)] = 1.0
    else:
        resp[rng.choice(n, size=k, replace=False, p=w / w.sum()), np.arange(k)] = 1.0
    return resp


#: Rows of the seeded subsample on which "kmeans" and "k-means++" start data that are
#: read chunk by chunk (I2 of the module docstring).
INIT_SAMPLE_SIZE = 100_000


def _positive_rows(x, w, r):
    """The rows of a chunk with positive weight (W2): ``(x, w, r)``."""
    if w is None or np.all(w > 0.0):
        return x, w, r
    keep = w > 0.0
    return x[keep], w[keep], None if r is None else r[keep]


def _weighted_moments(x, resp, w, full):
    """Moments (gmm eq. 23) of one chunk's responsibilities, weighted by ``w`` (W1)."""
    rw = resp if w is None else resp * w[:, None]
    total = x.shape[0] if w is None else w.sum()
    return chunk_moments(x, np.ascontiguousarray(rw), full, total, 0.0)


def _chunk_generators(source, rng, k, pos_before):
    """For the "random" start of Dask blocks (I1): ``start -> Generator`` positioned where
    the in-memory draw would be at that block's first row, and ``rng`` moved past all
    draws. PCG64 and PCG64DXSM move by ``advance`` (one step per double), so the draws
    equal the in-memory ones; other bit generators seed each block from ``rng``."""
    n_pos = int(pos_before[-1])
    if type(rng.bit_generator).__name__ in ("PCG64", "PCG64DXSM"):
        snapshot = copy.deepcopy(rng)
        steps = {int(s): int(p) * k for s, p in zip(source.starts, pos_before[:-1])}
        rng.bit_generator.advance(n_pos * k)

        def generator(start):
            g = copy.deepcopy(snapshot)
            g.bit_generator.advance(steps[start])
            return g
        return generator
    seeds = dict(zip((int(s) for s in source.starts),
                     rng.integers(2**63, size=len(source.starts)).tolist()))
    return lambda start: np.random.default_rng(seeds[start])


@benign_underflow
def initial_moments(source, n_components, init_params, rng, *, sample_weight=None,
                    resp_init=None, full=True, sample_size=None):
    """Statistics (eq. 23 of :mod:`lvmref.gmm`) of the initial responsibilities of data
    read chunk by chunk, without loading them (I1-I4 of the module docstring).

    Parameters
    ----------
    source : lvmref.chunked.RowChunks, lvmref.chunked.DaskRows, or data
        The data: a source of :func:`lvmref.chunked.row_source`, or anything it wraps
        (an array, memory map, array-like or Dask array of shape (n, d)).
    n_components : int
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}
    rng : numpy.random.Generator, int or None
    sample_weight : array_like of shape (n,), optional
        Frequency weights (W1-W4); rows of weight 0 take no part.
    resp_init : array-like of shape (n, n_components), optional
        Given initial responsibilities (non-negative), read chunk by chunk; then
        ``init_params`` and ``rng`` are not used.
    full : bool
        Full scatter matrices (for "full"/"tied" covariances) or their diagonals.
    sample_size : int, optional
        Rows of the seeded subsample for "kmeans" and "k-means++" (I2); default
        ``INIT_SAMPLE_SIZE`` (read when called).

    Returns
    -------
    lvmref.mixture_stats.Moments
        ``extra`` is 0; ``total`` is the total weight of the rows.
    """
    if not isinstance(source, (RowChunks, DaskRows)):
        source = row_source(source)
    k = check_positive_int(n_components, "n_components")
    check_choice(init_params, "init_params", INIT_PARAMS)
    rng = check_rng(rng)
    sample_size = check_positive_int(INIT_SAMPLE_SIZE if sample_size is None else sample_size,
                                     "sample_size")
    full = check_flag(full, "full")
    w = _check_total_weight(check_sample_weight(sample_weight, source.n))
    pos = None if w is None or np.all(w > 0.0) else np.flatnonzero(w > 0.0)
    n_pos = source.n if pos is None else pos.size
    if k > n_pos:
        raise ValueError(f"n_components={k} must be <= n_samples={n_pos}")
    total = float(source.n) if w is None else float(w.sum())

    def streamed(resp_of):
        def fn(start, x, wc, r):
            x, wc, r = _positive_rows(x, wc, r)
            return _weighted_moments(x, resp_of(start, x, r), wc, full)
        return source.map_reduce(fn, merge_moments, weight=w, resp=resp_init)

    if resp_init is not None:
        def given(start, x, r):
            if np.any(r < 0.0):
                raise ValueError("resp_init must be non-negative")
            return r
        return streamed(given)
    if init_params == "random":  # I1: the in-memory stream of draws, row by row
        if isinstance(source, DaskRows):
            keep = np.ones(source.n, bool) if w is None else w > 0.0
            before = np.concatenate(([0], np.cumsum(keep)))[np.append(source.starts, source.n)]
            generator = _chunk_generators(source, rng, k, before)
        else:
            generator = lambda start: rng  # noqa: E731 - chunks come in row order

        def uniform(start, x, r):
            resp = generator(start).uniform(size=(x.shape[0], k))
            resp /= resp.sum(axis=1, keepdims=True)
            return resp
        return streamed(uniform)
    w_pos = None if w is None else (w if pos is None else w[pos])
    w_draw = _init_weights(w_pos, n_pos) if w_pos is not None else None
    if init_params == "random_from_data":  # I3: the in-memory draw of K rows
        if w_draw is None:
            idx = rng.choice(n_pos, size=k, replace=False)
        else:
            idx = rng.choice(n_pos, size=k, replace=False, p=w_draw / w_draw.sum())
        return _one_hot_moments(source, idx, pos, w_pos, total, full)
    # I2: k-means++ / k-means on a seeded subsample of the rows of positive weight
    if n_pos <= sample_size:
        sub = np.arange(n_pos)
    else:
        sub = np.sort(rng.choice(n_pos, size=sample_size, replace=False))
    Xs = source.take(sub if pos is None else pos[sub])
    ws = None if w_pos is None else w_pos[sub]
    if init_params == "k-means++":
        idx = sub[kmeans_plusplus(Xs, k, rng, sample_weight=ws)]
        return _one_hot_moments(source, idx, pos, w_pos, total, full)
    centers = _lloyd(Xs, k, rng, 10, _init_weights(ws, Xs.shape[0]))[1]

    def nearest(start, x, r):  # I2: each row to its nearest centre (Lloyd's labels)
        resp = np.zeros((x.shape[0], k))
        resp[np.arange(x.shape[0]), np.argmin(_sq_dists(x, centers), axis=1)] = 1.0
        return resp
    return streamed(nearest)


def _one_hot_moments(source, idx, pos, w_pos, total, full):
    """Moments of responsibility 1 of row ``idx[j]`` (among the rows of positive weight)
    for component j, all other responsibilities 0."""
    k = len(idx)
    order = np.argsort(idx)
    rows = source.take(np.asarray(idx)[order] if pos is None else pos[np.asarray(idx)[order]])
    resp = np.zeros((k, k))
    resp[np.arange(k), order] = 1.0 if w_pos is None else w_pos[np.asarray(idx)[order]]
    return chunk_moments(rows, resp, full, total, 0.0)


# ----------------------------------------------------------------------------------------
# The EM driver
# ----------------------------------------------------------------------------------------


class EMResult(NamedTuple):
    """The kept restart of :func:`run_em`."""

    state: Any
    """The model state after the last iteration (the start if ``max_iter`` is 0)."""
    lower_bound: float
    """The last bound of the kept restart (its starting bound if it ran no iteration)."""
    lower_bounds: list
    """One bound per iteration of the kept restart."""
    n_iter: int
    converged: bool


def _stacklevel_outside_lvmref():
    """``stacklevel`` for ``warnings.warn`` in the caller that names the first frame
    outside lvmref (the user's ``fit`` call, whatever wrappers lie in between)."""
    level, frame = 1, sys._getframe(1)  # the frame that calls warnings.warn
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == (
        "lvmref"
    ):
        frame, level = frame.f_back, level + 1
    return level


@benign_underflow
def run_em(initialize, iterate, *, n_init, max_iter, tol, verbose=0, verbose_interval=10):
    """Run ``n_init`` restarts of an EM-type iteration; keep the one with the best bound.

    Restart ``i`` starts from ``state, bound = initialize(i)`` and repeats ``state, bound
    = iterate(state)`` until ``|bound - previous bound| < tol`` (converged) or
    ``max_iter`` iterations have run. The "previous bound" of the first iteration is the
    starting bound: ``-inf`` for a fresh start (so one iteration never converges), or
    whatever the model's warm start defines. A restart replaces the kept one if its last
    bound is larger (or the kept one's is ``-inf``); ties keep the earlier restart. If
    the kept restart did not converge (and ``max_iter > 0``), a
    :class:`ConvergenceWarning` names it and the other restarts that did not converge.

    Parameters
    ----------
    initialize : callable ``i -> (state, bound)``
        Starting state of restart ``i`` (``0 <= i < n_init``) and its starting bound.
    iterate : callable ``state -> (state, bound)``
        One iteration and the bound it reports (a float).
    n_init : int, >= 1
    max_iter : int, >= 0
    tol : float, >= 0
    verbose : int, >= 0
        0 prints nothing; 1 prints the start and end of each restart and every
        ``verbose_interval``-th iteration number; 2 adds the time since the last report
        and the change of the bound (scikit-learn's levels).
    verbose_interval : int, >= 1

    Returns
    -------
    EMResult
    """
    n_init = check_positive_int(n_init, "n_init")
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    tol = check_nonnegative_float(tol, "tol")
    verbose = check_positive_int(verbose, "verbose", minimum=0)
    verbose_interval = check_positive_int(verbose_interval, "verbose_interval")
    best = None
    not_converged = []
    for i in range(n_init):
        if verbose:
            print(f"Initialization {i}")
            start = last = time.perf_counter()
        state, bound = initialize(i)
        bound = float(bound)
        history = []
        converged = False
        for t in range(1, max_iter + 1):
            previous = bound
            state, bound = iterate(state)
            bound = float(bound)
            history.append(bound)
            change = bound - previous
            if verbose and t % verbose_interval == 0:
                if verbose == 1:
                    print(f"  Iteration {t}")
                else:
                    now = time.perf_counter()
                    print(f"  Iteration {t}\t time lapse {now - last:.5f}s\t "
                          f"bound change {change:.5f}")
                    last = now
            if abs(change) < tol:
                converged = True
                break
        if verbose:
            status = "converged" if converged else "did not converge"
            if verbose == 1:
                print(f"Initialization {status}.")
            else:
                print(f"Initialization {status}. time lapse "
                      f"{time.perf_counter() - start:.5f}s\t lower bound {bound:.5f}.")
        if max_iter > 0 and not converged:
            not_converged.append(i)
        if best is None or bound > best[0].lower_bound or best[0].lower_bound == -np.inf:
            best = (EMResult(state, bound, history, len(history), converged), i)
    result, kept = best
    if max_iter > 0 and not result.converged:
        others = [i for i in not_converged if i != kept]
        extra = f"; initializations {others} did not converge either" if others else ""
        warnings.warn(
            f"Initialization {kept} of n_init={n_init} (the one kept, lower bound "
            f"{result.lower_bound:.6g}) did not converge within max_iter={max_iter} "
            f"iterations (tol={tol:g}){extra}. Increase max_iter or tol, try other "
            "init_params, or check for degenerate data.",
            _with_sklearn_twin(ConvergenceWarning),
            stacklevel=_stacklevel_outside_lvmref(),
        )
    return result


# ----------------------------------------------------------------------------------------
# The estimator frame
# ----------------------------------------------------------------------------------------

#: Format version of the mixture model files written by :meth:`MixtureBase.save`.
FORMAT_VERSION = 1


def _hyper_entry(value, kind):
    """A constructor argument as stored in a model file (see :meth:`MixtureBase.save`)."""
    if value is None:
        return None
    if kind == "seed":  # an int seed is stored; a Generator cannot be (recorded as None)
        if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
            return int(value)
        return None
    if kind == "array":
        return np.asarray(value, dtype=np.float64)
    return {"int": int, "float": float, "str": str, "bool": bool}[kind](value)


def _add(a, b):
    return a + b


def _same_value(value, default):
    """Whether a constructor argument still has its default (for ``__repr__``)."""
    if value is default:
        return True
    if default is None or isinstance(value, np.ndarray) or type(value) is not type(default):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return False


@benign_underflow
class MixtureBase:
    """The frame shared by :class:`lvmref.gmm.GaussianMixture` and
    :class:`lvmref.vbgmm.BayesianGaussianMixture` (not used on its own).

    scikit-learn's estimator protocol, without importing scikit-learn at run time:
    :meth:`get_params` / :meth:`set_params` come from the constructor signature (the
    constructor stores every argument unmodified under its own name and validates
    nothing; ``fit`` does), ``__repr__`` lists the arguments that differ from their
    defaults, and ``__sklearn_tags__`` (a density estimator on dense 2-D float input)
    imports scikit-learn only when scikit-learn calls it. ``clone``, ``Pipeline``,
    ``GridSearchCV`` and ``check_estimator`` work with both classes
    (``tests/test_sklearn_protocol.py``).

    Subclasses provide: ``_HYPER`` (constructor argument -> stored kind: ``"int"``,
    ``"float"``, ``"str"``, ``"bool"``, ``"array"`` or ``"seed"``), ``_check_hyper()``
    (validate, return ``n_components``), ``_posterior(X)`` and ``_log_norm(X)`` on
    validated ``X``, ``_fitted_entries()`` and ``_load_fitted(f, n_components,
    n_features)`` for persistence, and ``fit``, which ends with :meth:`_set_em_result`.
    """

    _HYPER: dict = {}
    #: constructor arguments added after format 1 files were first written, with the
    #: value a file without them stands for (display-only settings)
    _HYPER_ADDED = {"verbose": 0, "verbose_interval": 10, "chunk_size": None,
                    "learning_decay": 0.7, "learning_offset": 0.0}
    #: smallest accepted ``max_iter`` (0: ``fit`` only initialises)
    _MIN_MAX_ITER = 0

    # -- scikit-learn's estimator protocol ------------------------------------------------

    def get_params(self, deep=True):
        """The constructor arguments as a dict (scikit-learn's ``get_params``).

        With ``deep=True``, an argument that is itself an estimator (has ``get_params``)
        also contributes its own parameters as ``"<argument>__<name>"``.
        """
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{key}", v) for key, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set constructor arguments (``name=value``, or ``"<argument>__<name>"`` for an
        argument that is an estimator); returns ``self``. Nothing is validated here:
        ``fit`` validates, as in scikit-learn."""
        valid = self._param_names()
        nested = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub in nested.items():
            getattr(self, name).set_params(**sub)
        return self

    def __repr__(self):
        # scikit-learn's layout: the arguments that differ from their defaults, by name
        sig = inspect.signature(type(self).__init__)
        params = sorted((p for p in sig.parameters.values() if p.name != "self"),
                        key=lambda p: p.name)
        parts = [f"{p.name}={getattr(self, p.name)!r}" for p in params
                 if not _same_value(getattr(self, p.name), p.default)]
        return f"{type(self).__name__}({', '.join(parts)})"

    def __sklearn_tags__(self):
        # Called by scikit-learn only, so it is installed; importing it here keeps it out
        # of lvmref's run-time dependencies.
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type="density_estimator",
            target_tags=TargetTags(required=False),
            transformer_tags=None,
            classifier_tags=None,
            regressor_tags=None,
            input_tags=InputTags(two_d_array=True, sparse=False, allow_nan=False),
        )

    def __sklearn_is_fitted__(self):
        return self._is_fitted()

    # -- validation ---------------------------------------------------------------------

    def _check_common_hyper(self):
        """Checks shared by both mixtures; returns ``n_components``."""
        k = check_positive_int(self.n_components, "n_components")
        check_nonnegative_float(self.tol, "tol")
        check_nonnegative_float(self.reg_covar, "reg_covar")
        check_positive_int(self.max_iter, "max_iter", minimum=self._MIN_MAX_ITER)
        check_positive_int(self.n_init, "n_init")
        check_choice(self.init_params, "init_params", INIT_PARAMS)
        check_flag(self.warm_start, "warm_start")
        check_rng(self.random_state, name="random_state")
        check_positive_int(self.verbose, "verbose", minimum=0)
        check_positive_int(self.verbose_interval, "verbose_interval")
        check_chunk_size(self.chunk_size)
        return k

    def _is_fitted(self):
        return hasattr(self, "converged_")

    def _check_fitted(self):
        if not self._is_fitted():
            raise _with_sklearn_twin(NotFittedError)(
                f"This {type(self).__name__} is not fitted yet; call fit(X) first (or load())."
            )

    def _validate_X(self, X, name="X"):
        """``X`` as float64 (2-D, finite), with ``n_features_in_`` columns once fitted."""
        X = check_X(X, name)
        if hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (the number it was fitted with)"
            )
        return X

    def _fit_data(self, X, sample_weight, resp_init, n_components, min_rows=1):
        """Validated ``(X, w, resp_init)`` for ``fit``, rows of weight 0 removed (W2).

        ``w`` is ``None`` without weights or when all remaining weights are 1.
        ``resp_init`` (``None`` or ``(n, K)``, non-negative) loses the same rows. At
        least ``min_rows`` rows (of positive weight) and ``n_components`` of them must
        remain.
        """
        X = check_X(X)
        n = X.shape[0]
        w = _check_total_weight(check_sample_weight(sample_weight, n))
        _check_fit_scale(X, n if w is None else max(float(w.sum()), float(n)))
        if resp_init is not None:
            resp_init = as_float_array(resp_init, "resp_init", shape=(n, n_components))
            if np.any(resp_init < 0):
                raise ValueError("resp_init must be non-negative")
        if w is not None and not np.all(w > 0.0):
            keep = w > 0.0
            X, w = X[keep], w[keep]
            resp_init = None if resp_init is None else resp_init[keep]
        of = "" if w is None else " of positive sample_weight"
        if w is not None and np.all(w == 1.0):
            w = None  # unit weights are no weights: the unweighted computation, bit for bit
        rows = X.shape[0]
        self._check_row_count(rows, of, n_components, min_rows)
        return X, w, resp_init

    def _check_row_count(self, rows, of, n_components, min_rows):
        """Refuse fewer than ``min_rows`` rows, or fewer rows than components (``of``
        qualifies the rows counted, e.g. " of positive sample_weight")."""
        what = "sample" if rows == 1 else "samples"
        if rows < min_rows:
            raise ValueError(f"X has {rows} {what}{of}; {type(self).__name__} needs at least "
                             f"{min_rows}")
        if n_components > rows:
            raise ValueError(f"n_components={n_components} must be <= n_samples={rows} "
                             f"(X has {rows} {what}{of})")

    # -- data read chunk by chunk (lvmref.chunked) ---------------------------------------

    def _chunked(self, X):
        """Whether ``X`` is processed chunk by chunk: ``chunk_size`` is set, or ``X`` is a
        memory map, an array-like read by rows or a Dask array."""
        return self.chunk_size is not None or not is_in_memory(X)

    def _rows(self, X):
        """``X`` as a chunked source with ``n_features_in_`` columns (fitted model)."""
        src = row_source(X, self.chunk_size, n_components=self.means_.shape[0])
        if src.d != self.n_features_in_:
            raise ValueError(
                f"X has {src.d} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (the number it was fitted with)"
            )
        return src

    def _chunked_fit_data(self, X, sample_weight, resp_init, n_components, min_rows=1):
        """``(source, w, resp_init)`` for a chunked ``fit``: the checks of
        :meth:`_fit_data` without loading ``X``.

        ``w`` (in memory, one float per row) keeps its zeros -- the chunks drop those
        rows (W2) -- and is ``None`` without weights or when all are 1. ``resp_init`` is
        checked for its shape here and for its values chunk by chunk.
        """
        src = row_source(X, self.chunk_size, n_components=n_components)
        n = src.n
        w = _check_total_weight(check_sample_weight(sample_weight, n))
        if resp_init is not None:
            if is_in_memory(resp_init):
                resp_init = as_float_array(resp_init, "resp_init", shape=(n, n_components))
                if np.any(resp_init < 0):
                    raise ValueError("resp_init must be non-negative")
            elif tuple(resp_init.shape) != (n, n_components):
                raise ValueError(f"resp_init must have shape ({n}, {n_components}), got "
                                 f"{tuple(resp_init.shape)}")
        rows = n if w is None else int(np.count_nonzero(w > 0.0))
        of = "" if w is None or rows == n else " of positive sample_weight"
        if w is not None and np.all(w == 1.0):
            w = None
        self._check_row_count(rows, of, n_components, min_rows)
        return src, w, resp_init

    def _validate_or_count(self, X):
        """``(X, n)``: validated in-memory ``X``, or ``X`` as given with its row count."""
        if self._chunked(X):
            return X, self._rows(X).n
        X = self._validate_X(X)
        return X, X.shape[0]

    def _continues(self, X, n_components):
        """Whether this ``fit`` continues from the fitted state (``warm_start``)."""
        if not (self.warm_start and self._is_fitted()):
            return False
        d = X.shape[1]
        if d != self.n_features_in_:
            raise ValueError(
                f"X has {d} features, but the warm-started model has {self.n_features_in_}"
            )
        if self.means_.shape[0] != n_components or np.shape(
            self.precisions_cholesky_
        ) != covariance_shape(self.covariance_type, n_components, d):
            raise ValueError("warm_start: n_components/covariance_type changed since the last fit")
        return True

    def _run_em(self, initialize, iterate, n_init):
        return run_em(initialize, iterate, n_init=n_init, max_iter=self.max_iter,
                      tol=self.tol, verbose=self.verbose,
                      verbose_interval=self.verbose_interval)

    def _set_em_result(self, result, n_features):
        self.converged_ = bool(result.converged)
        self.n_iter_ = int(result.n_iter)
        self.lower_bound_ = float(result.lower_bound)
        self.lower_bounds_ = [float(b) for b in result.lower_bounds]
        self.n_features_in_ = int(n_features)

    # -- inference ----------------------------------------------------------------------

    def predict_proba(self, X):
        """Posterior responsibilities of each row; shape (n_samples, n_components).

        Chunk by chunk for data read by rows (a lazy Dask array for Dask input)."""
        self._check_fitted()
        if self._chunked(X):
            return self._rows(X).map_rows(self._posterior, self.means_.shape[0])
        return self._posterior(self._validate_X(X))

    def predict(self, X):
        """Most probable component of each row (argmax of :meth:`predict_proba`); (n,)."""
        self._check_fitted()
        if self._chunked(X):
            return self._rows(X).map_rows(self._labels, dtype=np.intp)
        return np.argmax(self.predict_proba(X), axis=1)

    def _labels(self, X, start=0):
        return np.argmax(self._posterior(X, start), axis=1)

    def score_samples(self, X):
        """Per-row log normaliser of the responsibilities; shape (n_samples,).

        Chunk by chunk for data read by rows (a lazy Dask array for Dask input)."""
        self._check_fitted()
        if self._chunked(X):
            return self._rows(X).map_rows(self._log_norm)
        return self._log_norm(self._validate_X(X))

    def score(self, X, y=None):
        """Mean of :meth:`score_samples` over the rows (float; computed chunk by chunk,
        also for Dask input, for data read by rows)."""
        self._check_fitted()
        if self._chunked(X):
            src = self._rows(X)
            total = src.map_reduce(self._chunk_score, _add)
            return float(total / src.n)
        return float(np.mean(self.score_samples(X)))

    def _chunk_score(self, start, x, w, r):
        return float(np.sum(self._log_norm(x, start)))

    def fit_predict(self, X, y=None, *, sample_weight=None, resp_init=None):
        """``fit(X, sample_weight=..., resp_init=...)``, then the component labels of
        ``X`` (a final E-step); shape (n,)."""
        return self.fit(X, sample_weight=sample_weight, resp_init=resp_init).predict(X)

    def sample(self, n_samples=1, rng=None):
        """Draw from the mixture with the fitted ``weights_``, ``means_`` and
        ``covariances_`` (for the Bayesian mixture: the plug-in mixture of those point
        estimates, as scikit-learn's ``sample``, not the posterior predictive).

        Parameters
        ----------
        n_samples : int, >= 1
        rng : numpy.random.Generator, int or None
            (scikit-learn draws from ``random_state``; lvmref takes the randomness
            explicitly.)

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Grouped by component (component 0 first).
        labels : ndarray of int, shape (n_samples,)
        """
        self._check_fitted()
        n = check_positive_int(n_samples, "n_samples")
        rng = check_rng(rng)
        counts = rng.multinomial(n, self.weights_ / self.weights_.sum())
        d = self.means_.shape[1]
        ct = self.covariance_type
        out = []
        for k, c in enumerate(counts):
            eps = rng.standard_normal((c, d))
            if ct == "full":
                low = linalg.cholesky(self.covariances_[k], lower=True)
                out.append(self.means_[k] + eps @ low.T)
            elif ct == "tied":
                low = linalg.cholesky(self.covariances_, lower=True)
                out.append(self.means_[k] + eps @ low.T)
            else:
                out.append(self.means_[k] + eps * np.sqrt(self.covariances_[k]))
        labels = np.repeat(np.arange(len(counts)), counts)
        return np.vstack(out), labels

    # -- persistence --------------------------------------------------------------------

    def save(self, path):
        """Write the model to an ``.npz`` file (:mod:`lvmref.persistence`); returns its path.

        Kind: the class name; format version 1. Entries: the constructor arguments under
        their names (``None`` listed as unset; ``random_state`` only if it is an int
        seed -- a ``Generator`` is recorded as ``None``), the fitted arrays under their
        attribute names, and ``n_features_in_``, ``converged_``, ``n_iter_``,
        ``lower_bound_``, ``lower_bounds_``. (Files written by 0.2.0 lack ``verbose`` and
        ``verbose_interval``; :meth:`load` reads them with the defaults 0 and 10.)
        """
        check_path(path)
        self._check_fitted()
        self._check_hyper()
        entries = {name: _hyper_entry(getattr(self, name), kind)
                   for name, kind in self._HYPER.items()}
        entries.update(self._fitted_entries())
        entries.update(n_features_in_=int(self.n_features_in_),
                       converged_=bool(self.converged_), n_iter_=int(self.n_iter_),
                       lower_bound_=float(self.lower_bound_),
                       lower_bounds_=np.asarray(self.lower_bounds_, dtype=np.float64))
        return save_model(path, type(self).__name__, FORMAT_VERSION, entries)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`, validated as strictly as ``fit`` would.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            Anything else: not a model file of this class or format, a missing entry, an
            entry of the wrong type or shape, non-finite values, covariances that are not
            positive definite or not the inverse pair of the precision factors, weights
            off the simplex, inconsistent ``n_iter_`` / ``lower_bounds_``; the message
            names the file.
        """
        f = read_model(check_path(path), cls.__name__, versions=(FORMAT_VERSION,))
        try:
            # None where recorded as unset; _check_hyper refuses it where None is invalid
            getters = {"array": f.array, "seed": f.int, "int": f.int, "float": f.float,
                       "str": f.str, "bool": f.bool}
            model = cls(**{name: getters[kind](name, optional=True)
                           for name, kind in cls._HYPER.items()
                           if name in f or name not in cls._HYPER_ADDED})
            k = model._check_hyper()
            d = check_positive_int(f.int("n_features_in_"), "n_features_in_")
            model._load_fitted(f, k, d)
            model._load_em_result(f)
            model.n_features_in_ = d
        except (TypeError, ValueError, NotImplementedError) as exc:
            if str(exc).startswith(f"{f.path}: "):
                raise
            raise f.error(str(exc)) from None
        return model

    def _load_em_result(self, f):
        converged = f.bool("converged_")
        n_iter = f.int("n_iter_")
        bound = f.float("lower_bound_")
        bounds = as_float_array(f.array("lower_bounds_"), "lower_bounds_", ndim=1,
                                allow_empty=True)
        if not self._MIN_MAX_ITER <= n_iter <= self.max_iter:
            raise ValueError(f"n_iter_ must lie in [{self._MIN_MAX_ITER}, max_iter="
                             f"{self.max_iter}], got {n_iter}")
        if bounds.shape != (n_iter,):
            raise ValueError(f"lower_bounds_ must hold n_iter_={n_iter} values, got "
                             f"{bounds.shape[0]}")
        if math.isnan(bound) or bound == math.inf or (n_iter and bound != bounds[-1]):
            raise ValueError("lower_bound_ must be the last of lower_bounds_ (or, with no "
                             "iteration, a number or -inf)")
        if converged and n_iter == 0:
            raise ValueError("converged_ is True but n_iter_ is 0")
        self.converged_ = converged
        self.n_iter_ = n_iter
        self.lower_bound_ = bound
        self.lower_bounds_ = [float(b) for b in bounds]

    @classmethod
    def _param_names(cls):
        """The constructor's argument names (``_HYPER`` must list exactly these)."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self"]
