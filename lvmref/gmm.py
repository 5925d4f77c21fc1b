r"""Gaussian mixture model fitted by EM, derived as coordinate ascent on the ELBO.

Notation: data ``X`` of shape ``(n, d)`` with rows :math:`x_i`; :math:`K` components;
``r`` or ``q`` are ``(n, K)`` row-stochastic matrices; :math:`\epsilon` (``eps``) is
float64 machine epsilon.

Model
-----
.. math:: p(z_i = k) = \pi_k, \qquad \pi_k \ge 0, \quad \textstyle\sum_k \pi_k = 1     \tag{1}

.. math:: p(x_i \mid z_i = k) = \mathcal N(x_i \mid \mu_k, \Sigma_k)                    \tag{2}

.. math:: p(x_i) = \sum_k \pi_k \mathcal N(x_i \mid \mu_k, \Sigma_k)                     \tag{3}

.. math::
    \ell(\theta) = \sum_i \log p(x_i)
        = \sum_i \log \sum_k \pi_k \mathcal N(x_i \mid \mu_k, \Sigma_k)
        \quad \text{(log-likelihood)}                                                  \tag{4}

Evidence lower bound (Jensen)
-----------------------------
For any distribution :math:`q_i(k)` over the component of each row (a row-stochastic
``q``):

.. math::
    \log p(x_i) = \log \sum_k q_{ik} \frac{p(x_i, k)}{q_{ik}}
        \ge \sum_k q_{ik} [\log p(x_i, k) - \log q_{ik}]
        =: \mathrm{ELBO}_i(q, \theta)                                                 \tag{5}

because log is concave (Jensen); terms with :math:`q_{ik} = 0` contribute 0
(:math:`0 \log 0 = 0`). Writing :math:`p(x_i, k) = p(x_i)\, p(k \mid x_i)` inside (5)
gives the exact decomposition

.. math::
    \log p(x_i) = \mathrm{ELBO}_i(q, \theta) + \mathrm{KL}(q_i \,\|\, p(\cdot \mid x_i,
        \theta)), \qquad
    \mathrm{KL}(q_i \,\|\, p(\cdot \mid x_i)) = \sum_k q_{ik} [\log q_{ik}
        - \log p(k \mid x_i, \theta)] \ge 0.                                          \tag{6}

EM is coordinate ascent on :math:`\mathrm{ELBO}(q, \theta) = \sum_i \mathrm{ELBO}_i`.
The E-step maximises over q:

.. math::
    q \leftarrow \arg\max_q \mathrm{ELBO}(q, \theta_t) = p(z \mid x, \theta_t), \qquad
    r_{ik} = \frac{\pi_k \mathcal N(x_i \mid \mu_k, \Sigma_k)}
        {\sum_j \pi_j \mathcal N(x_i \mid \mu_j, \Sigma_j)}                           \tag{7}

(the responsibilities). By (6) the KL term is then 0 and the bound is tight:
:math:`\mathrm{ELBO}(r, \theta_t) = \ell(\theta_t)`. The M-step maximises over θ:

.. math::
    \theta_{t+1} = \arg\max_\theta \mathrm{ELBO}(r, \theta) = \arg\max_\theta Q(\theta),
    \qquad Q(\theta) = \sum_i \sum_k r_{ik} [\log \pi_k
        + \log \mathcal N(x_i \mid \mu_k, \Sigma_k)]                                  \tag{8}

(the entropy :math:`-\sum r \log r` does not depend on θ). Monotonicity:

.. math::
    \ell(\theta_{t+1}) \ge \mathrm{ELBO}(r, \theta_{t+1}) \ge \mathrm{ELBO}(r, \theta_t)
        = \ell(\theta_t),                                                              \tag{9}

the first by (5), the second by (8), the equality by (7). It holds exactly for
``reg_covar = 0``; ``reg_covar = c > 0`` replaces the maximiser (17)-(20) by a
regularised one and the guarantee no longer applies.

Computation of the E-step (log space)
-------------------------------------
.. math::
    a_{ik} = \log \pi_k + \log \mathcal N(x_i \mid \mu_k, \Sigma_k)
        \quad \text{(weighted log density)}                                            \tag{10}

.. math::
    \mathrm{lse}_i = m_i + \operatorname{log1p}\Big(\sum_{k \ne k^*} e^{a_{ik} - m_i}\Big),
    \qquad m_i = a_{ik^*} = \max_k a_{ik}                                             \tag{11}

.. math:: \log p(x_i) = \mathrm{lse}_i, \qquad r_{ik} = e^{a_{ik} - \mathrm{lse}_i}       \tag{12}

Gaussian log density through Cholesky factors of the precision
---------------------------------------------------------------
.. math::
    \Sigma_k = L_k L_k^\top \ \text{(lower Cholesky)}, \qquad
    U_k = L_k^{-\top} \ \text{(upper triangular)}, \qquad
    \Lambda_k = \Sigma_k^{-1} = U_k U_k^\top.                                         \tag{13}

When a precision is given instead, :math:`U_k = J \operatorname{chol}(J \Lambda_k J) J`
with :math:`J` the exchange (reversal) matrix.

.. math::
    \log \mathcal N(x \mid \mu_k, \Sigma_k) = -\frac d2 \log(2\pi)
        + \sum_j \log U_{k,jj} - \frac12 \|(x - \mu_k) U_k\|^2                         \tag{14}

(:math:`\log|\Lambda_k|^{1/2} = \sum_j \log U_{k,jj}`). ``tied``: one U for all k;
``diag``: :math:`U_k = \operatorname{diag}(1/\sigma_{kj})`; ``spherical``:
:math:`U_k = I / \sigma_k`.

Closed-form M-step (setting the gradient of Q to zero)
------------------------------------------------------
.. math:: N_k = \sum_i r_{ik} + 10\epsilon, \qquad \pi_k = N_k \Big/ \sum_j N_j         \tag{15}

(Lagrange multiplier for :math:`\sum \pi = 1`; the :math:`10\epsilon` guard keeps an
empty component finite, as in scikit-learn).

.. math::
    \mu_k = \frac1{N_k} \sum_i r_{ik} x_i
        \qquad (\partial Q / \partial \mu_k = 0)                                       \tag{16}

.. math::
    \text{full:}\quad \Sigma_k = \frac1{N_k} \sum_i r_{ik} (x_i - \mu_k)(x_i - \mu_k)^\top
        + c I                                                                          \tag{17}

from :math:`\partial Q / \partial \Lambda_k = \frac{N_k}2 \Sigma_k - \frac12 \sum_i r_{ik}
(x_i - \mu_k)(x_i - \mu_k)^\top = 0`;

.. math::
    \text{diag:}\quad \sigma_{kj}^2 = \frac1{N_k} \sum_i r_{ik} (x_{ij} - \mu_{kj})^2 + c
                                                                                       \tag{18}

.. math::
    \text{tied:}\quad \Sigma = \frac1{\sum_k N_k} \sum_k \sum_i r_{ik}
        (x_i - \mu_k)(x_i - \mu_k)^\top + c I                                          \tag{19}

.. math::
    \text{spherical:}\quad \sigma_k^2 = \frac1d \sum_j \frac1{N_k} \sum_i r_{ik}
        (x_{ij} - \mu_{kj})^2 + c                                                      \tag{20}

with :math:`c` = ``reg_covar``. Scatter matrices are always formed from centred data
:math:`(x_i - \mu_k)`, never as :math:`E[x x^\top] - \mu \mu^\top`.

Sample weights (weighted EM)
----------------------------
With frequency weights :math:`w_i \ge 0` (:mod:`lvmref.mixture`, W1-W4) the
log-likelihood (4) becomes :math:`\ell_w(\theta) = \sum_i w_i \log p(x_i)` and the ELBO
(5) :math:`\sum_i w_i \mathrm{ELBO}_i(q, \theta)`. The E-step (7) is unchanged (each
:math:`q_i` is still the posterior of row i: the weight multiplies the whole row term),
and Q of (8) becomes :math:`\sum_i \sum_k w_i r_{ik} [\log \pi_k + \log \mathcal N(x_i
\mid \mu_k, \Sigma_k)]`, which is Q with :math:`r_{ik}` replaced by

.. math:: \tilde r_{ik} = w_i r_{ik},                                                   \tag{15w}

so the maximiser is (15)-(20) evaluated on :math:`\tilde r`:
:math:`N_k = \sum_i w_i r_{ik}\ (+\, 10\epsilon)`, :math:`\mu_k` the w r-weighted mean,
the scatters w r-weighted about :math:`\mu_k`. (9) holds for :math:`\ell_w`. Multiplying
every :math:`w_i` by :math:`c > 0` multiplies Q by c and leaves its maximiser unchanged
(up to the :math:`10\epsilon` guard, a relative change below
:math:`10^{-15} N_k^{-1}`).

Reported quantities
-------------------
``lower_bound_`` (scikit-learn's definition): after iteration t, the mean
log-likelihood computed in the E-step of iteration t, i.e. of the parameters *before*
that iteration's M-step,

.. math:: \texttt{lower_bound_}_t = \frac1n \ell(\theta_{t-1}).                         \tag{21}

By (7) it equals the (mean) ELBO at that E-step. ``lower_bounds_`` holds it for every
iteration; by (9) it never decreases (for c = 0). With weights it is the weighted mean
:math:`\ell_w(\theta_{t-1}) / \sum_i w_i`, the mean over the repeated rows. Free
parameters and the information criteria:

.. math::
    p = (K - 1) + K d + \begin{cases} K d(d+1)/2 & \text{full} \\ d(d+1)/2 & \text{tied}
        \\ K d & \text{diag} \\ K & \text{spherical} \end{cases}, \qquad
    \mathrm{BIC} = -2 \ell + p \log n, \quad \mathrm{AIC} = -2 \ell + 2 p              \tag{22}

EM on sufficient statistics: chunks, clusters and streams
---------------------------------------------------------
Everything the M-step (15)-(20) and the bound (21) read from the data is a sum over
rows. For a set B of rows and weighted responsibilities :math:`\tilde r_{ik} = w_i r_{ik}`
(:math:`w_i = 1` without weights) under the current θ, let

.. math::
    N_k^B = \sum_{i \in B} \tilde r_{ik}, \quad
    S_k^B = \sum_{i \in B} \tilde r_{ik} x_i, \quad \bar x_k^B = S_k^B / N_k^B, \quad
    M_k^B = \sum_{i \in B} \tilde r_{ik} (x_i - \bar x_k^B)(x_i - \bar x_k^B)^\top, \quad
    W^B = \sum_{i \in B} w_i, \quad L^B = \sum_{i \in B} w_i \log p(x_i \mid \theta)     \tag{23}

(diag/spherical: the diagonal of :math:`M_k^B`). For disjoint sets A and B, with
:math:`\delta_k = \bar x_k^A - \bar x_k^B` and :math:`N_k = N_k^A + N_k^B`,

.. math::
    N_k = N_k^A + N_k^B, \quad S_k = S_k^A + S_k^B, \quad W, L \text{ add}, \quad
    M_k^{A+B} = M_k^A + M_k^B + \frac{N_k^A N_k^B}{N_k} \delta_k \delta_k^\top.          \tag{24}

Proof: :math:`x_i - \bar x^{A+B} = (x_i - \bar x^A) + (\bar x^A - \bar x^{A+B})` for
:math:`i \in A`; the cross terms vanish because
:math:`\sum_{i \in A} \tilde r_{ik} (x_i - \bar x_k^A) = 0`, and
:math:`\bar x^A - \bar x^{A+B} = (N^B / N) \delta`, so A contributes
:math:`M^A + N^A (N^B / N)^2 \delta \delta^\top`, B likewise
:math:`M^B + N^B (N^A / N)^2 \delta \delta^\top`, and
:math:`N^A (N^B)^2 / N^2 + N^B (N^A)^2 / N^2 = N^A N^B / N` (Chan, Golub & LeVeque 1979).
Every term added is positive semi-definite: no cancellation of the kind
:math:`E[x x^\top] - \mu \mu^\top` suffers; a set with :math:`N_k^B = 0` adds nothing to
component k. For any points :math:`c_k`,

.. math::
    \sum_i \tilde r_{ik} (x_i - c_k)(x_i - c_k)^\top
        = M_k + N_k (\bar x_k - c_k)(\bar x_k - c_k)^\top                               \tag{25}

(the same expansion), so the M-step is a function of the statistics of all rows: with
:math:`N'_k = N_k + 10\epsilon`, :math:`\mu_k = S_k / N'_k` and (17)-(20) take the scatter
(25) about :math:`c_k = \mu_k` divided by :math:`N'_k`; the bound (21) is L / W.
**Chunked EM** computes (23) for each chunk of rows (an E-step (10)-(12) and the kernels'
sums), combines the chunks by (24) and maximises by (25): the iteration (7)-(8) on all
rows, up to the order of summation, in working memory O(chunk_size (D + K) + K D^2)
whatever n. **On Dask**, each block's (23) is computed where the block lives and (24) is
applied in a tree reduction; the M-step runs on the client (Spark MLlib distributes EM the
same way).

**Online (stepwise) EM** (Cappe & Moulines 2009, JRSS-B 71:593-613; Liang & Klein 2009,
NAACL). Write s for the statistics (23) per unit weight -- (N, S, M-with-x̄) / W, the
per-row averages of the complete-data sufficient statistics
:math:`(\tilde r, \tilde r x, \tilde r x x^\top)` in centred form -- and θ(s) for the
M-step (25) on them (scaling s leaves θ(s) unchanged up to the 10 eps guard). Batch EM is
:math:`\theta_{t+1} = \theta(s(\text{all rows}; \theta_t))`. Stepwise EM replaces the
average over all rows by a stochastic approximation from the t-th batch :math:`B_t` of a
stream:

.. math::
    \hat s_t = (23)(B_t; \theta_{t-1}) / W^{B_t} \quad \text{(the batch's average)}        \tag{26}

.. math::
    s_t = (1 - \rho_t) s_{t-1} + \rho_t \hat s_t, \qquad \rho_t = (t + t_0)^{-\kappa},
    \quad t = 1, 2, \dots                                                              \tag{27}

.. math:: \theta_t = \theta(s_t).                                                         \tag{28}

Multiplying (N, S, M) by c keeps x̄ and multiplies M by c, so (27) is the merge (24) of
:math:`s_{t-1}` scaled by :math:`1 - \rho_t` and :math:`\hat s_t` scaled by
:math:`\rho_t`: it stays in centred form. For :math:`\kappa \in (0.5, 1]` the steps
satisfy :math:`\sum_t \rho_t = \infty` and :math:`\sum_t \rho_t^2 < \infty`, and
:math:`s_t` converges to a stationary point of the expected log-likelihood (Cappe &
Moulines 2009, Thm. 1); :math:`t_0 \ge 0` damps the early steps. The initial statistics
:math:`s_0` are those of :math:`\theta_0` as if it were data (:math:`N_k = \pi_k`,
:math:`S_k = \pi_k \mu_k`, :math:`M_k = \pi_k \Sigma_k`). With :math:`t_0 = 0`,
:math:`\rho_1 = 1` for every κ: :math:`s_0` drops out and the first step is exactly one
batch EM step (7)-(8) on :math:`B_1` (with one batch = all n rows, that of
:meth:`GaussianMixture.fit` with ``max_iter=1``). With κ = 1 and :math:`t_0 = 0`,
:math:`\rho_t = 1/t` and :math:`s_t` is the plain average of
:math:`\hat s_1, \dots, \hat s_t`.

Parameter layout (plain dict, interchangeable with scikit-learn's fitted attributes):
``weights (K,)``, ``means (K, d)``, ``covariances`` (full ``(K, d, d)``, tied ``(d, d)``,
diag ``(K, d)``, spherical ``(K,)``), ``precisions_cholesky`` (same shapes; full/tied are
the *upper*-triangular U of (13)).

The functions below take ``(params, X, ...)`` then ``covariance_type`` (the M-step, which
produces parameters, takes ``(X, resp, ...)``). What this model shares with the Bayesian
mixture -- the factors of (13), initialisation, input checks, the EM driver with
``n_init`` restarts and ``warm_start``, warnings and errors -- is in
:mod:`lvmref.mixture`.

Initialisation. ``init_params='kmeans'`` runs our own k-means (k-means++ seeding from the
given ``random_state`` plus a few Lloyd iterations, :func:`lvmref.mixture.kmeans`); its
result differs from scikit-learn's ``KMeans``, so equality with scikit-learn is tested
from the *same initial parameters* (``weights_init``, ``means_init``,
``precisions_init``) or the same initial responsibilities (``fit(X, resp_init=R)``), not
from the same seed (see the class docstring for reproducing scikit-learn's start).

References: Dempster, Laird & Rubin (1977), JRSS-B 39:1-38; Neal & Hinton (1998),
"A view of the EM algorithm that justifies incremental, sparse, and other variants";
Bishop (2006), *Pattern Recognition and Machine Learning*, sections 9.2-9.4.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from lvmref.kernels import LOG_2PI, logsumexp
from lvmref.kernels import gmm as kg
from lvmref.kernels.checks import (
    as_float_array,
    check_choice,
    check_finite_sum,
    check_flag,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_rng,
    check_sample_weight,
)
from lvmref.kernels.constants import EPS
from lvmref.kernels.fpenv import benign_underflow
from lvmref.mixture import (
    COVARIANCE_TYPES,
    SINGULAR_HINT,
    MixtureBase,
    check_covariances,
    check_resp,
    check_X,
    cholesky_stack,
    covariance_shape,
    covariances_from_cholesky,
    initial_moments,
    initial_resp,
    log_det_cholesky,
    precision_cholesky_from_precisions,
    precision_factors_from_cholesky,
    precisions_from_cholesky,
)
from lvmref.mixture_stats import (
    Moments,
    check_moments,
    chunk_moments,
    merge_moments,
    scale_moments,
    scatter_about,
)

__all__ = [
    "log_gaussian_prob",
    "log_gaussian_prob_full",
    "log_gaussian_prob_tied",
    "log_gaussian_prob_diag",
    "log_gaussian_prob_spherical",
    "weighted_log_prob",
    "e_step",
    "elbo",
    "kl_to_posterior",
    "log_likelihood",
    "m_step",
    "m_step_full",
    "m_step_tied",
    "m_step_diag",
    "m_step_spherical",
    "sufficient_statistics",
    "m_step_statistics",
    "stepwise_statistics",
    "statistics_from_params",
    "n_parameters",
    "GaussianMixture",
]


# ----------------------------------------------------------------------------------------
# Parameter validation (the layout in the module docstring)
# ----------------------------------------------------------------------------------------


def _params_label(key):
    return f"params[{key!r}]"


def _check_params(params, covariance_type, n_features, *, need_weights=True,
                  label=_params_label):
    """Validate a parameter dict; return float64 copies (weights, means, prec_chol).

    ``label(key)`` names an entry in messages (``params['means']``; ``means_`` on load).
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict, got {type(params).__name__}")
    for key in (("weights",) if need_weights else ()) + ("means", "precisions_cholesky"):
        if key not in params:
            raise ValueError(f"params is missing the key {key!r}")
    means = as_float_array(params["means"], label("means"), ndim=2)
    k = means.shape[0]
    if means.shape[1] != n_features:
        raise ValueError(
            f"{label('means')} has {means.shape[1]} features but X has {n_features}"
        )
    name_u = label("precisions_cholesky")
    u = as_float_array(params["precisions_cholesky"], name_u)
    want = covariance_shape(covariance_type, k, n_features)
    if u.shape != want:
        raise ValueError(
            f"{name_u} has shape {u.shape}, but covariance_type={covariance_type!r} with "
            f"{k} components and {n_features} features needs {want}; pass the matching "
            "covariance_type"
        )
    if covariance_type in ("full", "tied"):
        if np.any(np.tril(u, -1) != 0.0):
            raise ValueError(f"{name_u} must be upper triangular (Lambda = U U^T)")
        diag = np.diagonal(u, axis1=-2, axis2=-1)
    else:
        diag = u
    if np.any(diag <= 0.0):
        raise ValueError(f"{name_u} must have a positive diagonal")
    weights = None
    if need_weights or "weights" in params:  # a given entry is checked even where unused
        weights = as_float_array(params["weights"], label("weights"), shape=(k,))
        if np.any(weights < 0.0) or abs(weights.sum() - 1.0) > 1e-8:
            raise ValueError(f"{label('weights')} must be non-negative and sum to 1")
    return weights, means, u


def _check_q(q, n, k, name="q"):
    q = as_float_array(q, name, shape=(n, k))
    if np.any(q < 0.0):
        raise ValueError(f"{name} must be non-negative")
    if np.any(q > 1.0 + 1e-10):  # (and the row sums below cannot overflow)
        raise ValueError(f"{name} must be row-stochastic (entries <= 1, rows sum to 1)")
    if np.any(np.abs(q.sum(axis=1) - 1.0) > 1e-10):
        raise ValueError(f"{name} must be row-stochastic (each row sums to 1)")
    return q


def _log_weights(w):
    """log pi_k (-inf for an empty component)."""
    with np.errstate(divide="ignore"):
        return np.log(w)


# ----------------------------------------------------------------------------------------
# Log densities, eq. (14), and the fused E-step, eqs. (10)-(12)
# ----------------------------------------------------------------------------------------


def _kernel_args(means, u, log_weights, covariance_type):
    """Arguments for the full/diag kernels: (factor array, const (K,), is_full)."""
    k, d = means.shape
    const = log_weights + log_det_cholesky(u, covariance_type, d) - 0.5 * d * LOG_2PI
    const = np.ascontiguousarray(np.broadcast_to(const, (k,)), dtype=np.float64)
    if covariance_type == "full":
        return np.ascontiguousarray(u), const, True
    if covariance_type == "tied":
        return np.ascontiguousarray(np.broadcast_to(u, (k, d, d))), const, True
    if covariance_type == "diag":
        return np.ascontiguousarray(u), const, False
    return np.ascontiguousarray(np.broadcast_to(u[:, None], (k, d))), const, False


def _weighted_log_prob(means, u, log_weights, X, covariance_type):
    """(n, K) matrix a_ik of eq. (10) (validated input)."""
    fac, const, full = _kernel_args(means, u, log_weights, covariance_type)
    if full:
        return kg.weighted_log_prob_full(X, means, fac, const)
    return kg.weighted_log_prob_diag(X, means, fac, const)


def _e_step(means, u, log_weights, X, covariance_type, *, need_resp=True, row_offset=0,
            out=None):
    """Fused eqs. (10)-(12) on validated input: (resp (n, K), log_norm (n,)).

    ``out``: output buffers (:func:`lvmref.kernels.gmm.estep_buffers`) reused by the EM
    loop; the results are then views of them.

    Far rows. If ``x_i - mu_k`` or the squared Mahalanobis distance overflows float64
    (|x| beyond ~1e154 in units of the covariance), the kernel's log-sum-exp of row i is
    -inf or NaN. Such rows are recomputed at half scale, ``a_ik = c_k - 2 ||(x_i/2 -
    mu_k/2) U_k||^2``, which is exact up to rounding wherever a_ik is finite; a distance
    beyond float64 gives a_ik = -inf (the correctly rounded value of -d^2/2 < -8.9e307).
    If that holds for every component, log p(x_i) = -inf and the posterior of row i is
    undefined: a ``ValueError`` naming X when ``need_resp`` (resp row NaN otherwise);
    ``row_offset`` is the global index of the first row of ``X`` (a chunk), for it.
    """
    fac, const, full = _kernel_args(means, u, log_weights, covariance_type)
    estep = kg.estep_full if full else kg.estep_diag
    with np.errstate(over="ignore", invalid="ignore"):  # far rows (NumPy twin path)
        resp, log_norm = estep(X, means, fac, const, out=out)
    far = ~np.isfinite(log_norm)
    if far.any():
        twin = kg.weighted_log_prob_full_np if full else kg.weighted_log_prob_diag_np
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> -inf, see above
            half = twin(0.5 * X[far], 0.5 * means, fac, np.zeros_like(const))
            a = const + 4.0 * np.where(np.isnan(half), -np.inf, half)
        lse = logsumexp(a, axis=1)
        log_norm[far] = lse
        with np.errstate(invalid="ignore"):  # rows with lse = -inf: NaN, refused below
            resp[far] = np.exp(a - lse[:, None])
        if need_resp and np.isneginf(lse).any():
            i = row_offset + int(np.flatnonzero(far)[np.argmax(np.isneginf(lse))])
            raise ValueError(
                f"X row {i} is too far from every component: its squared Mahalanobis "
                "distances overflow float64, so its posterior is undefined; rescale X"
            )
    return resp, log_norm


@benign_underflow
def log_gaussian_prob(params, X, covariance_type):
    """log N(x_i | mu_k, Sigma_k) for every row and component, eq. (14).

    Parameters
    ----------
    params : dict
        ``means (K, d)`` and ``precisions_cholesky``: full ``(K, d, d)`` / tied ``(d, d)``
        upper-triangular U (Lambda = U U^T), diag ``(K, d)`` / spherical ``(K,)`` =
        1/sigma. Other keys (``weights``) are ignored.
    X : array_like of shape (n, d)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    ndarray of shape (n, K)
    """
    X = check_X(X)
    _, means, u = _check_params(params, covariance_type, X.shape[1], need_weights=False)
    return _weighted_log_prob(means, u, 0.0, X, covariance_type)


@benign_underflow
def log_gaussian_prob_full(params, X):
    """Full-covariance log densities, eq. (14); U has shape (K, d, d). Returns (n, K)."""
    return log_gaussian_prob(params, X, "full")


@benign_underflow
def log_gaussian_prob_tied(params, X):
    """Tied-covariance log densities, eq. (14); U has shape (d, d). Returns (n, K)."""
    return log_gaussian_prob(params, X, "tied")


@benign_underflow
def log_gaussian_prob_diag(params, X):
    """Diagonal log densities, eq. (14); 1/sigma has shape (K, d). Returns (n, K)."""
    return log_gaussian_prob(params, X, "diag")


@benign_underflow
def log_gaussian_prob_spherical(params, X):
    """Spherical log densities, eq. (14); 1/sigma has shape (K,). Returns (n, K)."""
    return log_gaussian_prob(params, X, "spherical")


@benign_underflow
def weighted_log_prob(params, X, covariance_type="full"):
    """a_ik = log pi_k + log N(x_i | mu_k, Sigma_k), eq. (10).

    Parameters
    ----------
    params : dict
        ``weights (K,)``, ``means (K, d)``, ``precisions_cholesky`` (see module docstring).
    X : array_like of shape (n, d)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    ndarray of shape (n, K)
    """
    X = check_X(X)
    w, means, u = _check_params(params, covariance_type, X.shape[1])
    return _weighted_log_prob(means, u, _log_weights(w), X, covariance_type)


@benign_underflow
def e_step(params, X, covariance_type="full"):
    """E-step, eq. (7): responsibilities q = p(z | x, theta) and log p(x_i), eqs. (10)-(12).

    Parameters
    ----------
    params : dict
        ``weights (K,)``, ``means (K, d)``, ``precisions_cholesky``.
    X : array_like of shape (n, d)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    resp : ndarray of shape (n, K)
        Row-stochastic posterior p(z_i = k | x_i, theta).
    log_norm : ndarray of shape (n,)
        log p(x_i | theta).
    """
    X = check_X(X)
    w, means, u = _check_params(params, covariance_type, X.shape[1])
    return _e_step(means, u, _log_weights(w), X, covariance_type)


# ----------------------------------------------------------------------------------------
# ELBO, KL to the posterior, log-likelihood: eqs. (4)-(6)
# ----------------------------------------------------------------------------------------


def _xlogy_rows(q, v):
    """sum_k q_ik v_ik with the convention 0 * anything = 0 (row sums, shape (n,))."""
    return np.where(q > 0.0, q * np.where(q > 0.0, v, 0.0), 0.0).sum(axis=1)


@benign_underflow
def elbo(params, X, q, covariance_type="full", reduce=True):
    """ELBO(q, theta) = sum_i sum_k q_ik [log pi_k + log N(x_i|k) - log q_ik], eq. (5).

    Parameters
    ----------
    params : dict
        ``weights (K,)``, ``means (K, d)``, ``precisions_cholesky``.
    X : array_like of shape (n, d)
    q : array_like of shape (n, K)
        Any row-stochastic matrix (entries >= 0, rows sum to 1); zeros allowed.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    reduce : bool
        Return the sum over rows (float) or the per-row values ``(n,)``.
    """
    X = check_X(X)
    reduce = check_flag(reduce, "reduce")
    a = weighted_log_prob(params, X, covariance_type)
    q = _check_q(q, *a.shape)
    with np.errstate(divide="ignore", invalid="ignore"):  # q_ik = 0 terms are dropped
        logq = np.log(q)
        diff = a - logq
    per_row = _xlogy_rows(q, diff)  # -inf for a row too far from a component it weighs
    return float(per_row.sum()) if reduce else per_row


@benign_underflow
def kl_to_posterior(params, X, q, covariance_type="full", reduce=True):
    """KL(q_i || p(z | x_i, theta)) = sum_k q_ik [log q_ik - log p(k | x_i)], eq. (6).

    Computed directly from log q and log p(k | x_i) = a_ik - lse_i (not as a difference
    of :func:`log_likelihood` and :func:`elbo`), so the identity (6) is a real check.

    Parameters and return as in :func:`elbo`.
    """
    X = check_X(X)
    reduce = check_flag(reduce, "reduce")
    w, means, u = _check_params(params, covariance_type, X.shape[1])
    q = _check_q(q, X.shape[0], means.shape[0])
    a = _weighted_log_prob(means, u, _log_weights(w), X, covariance_type)
    lse = logsumexp(a, axis=1, keepdims=True)
    far = ~np.isfinite(lse[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):  # q_ik = 0 terms are dropped
        log_post = a - lse
        if far.any():  # far rows: _e_step's rescaled posterior, or a ValueError naming X
            resp, _ = _e_step(means, u, _log_weights(w), X, covariance_type)
            log_post[far] = np.log(resp[far])
        logq = np.log(q)
        diff = logq - log_post
    per_row = _xlogy_rows(q, diff)
    return float(per_row.sum()) if reduce else per_row


@benign_underflow
def log_likelihood(params, X, covariance_type="full", reduce=True):
    """log p(X | theta) = sum_i log sum_k pi_k N(x_i | mu_k, Sigma_k), eq. (4).

    Parameters
    ----------
    params : dict
    X : array_like of shape (n, d)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    reduce : bool
        Sum over rows (float) or per-row ``log p(x_i)`` of shape ``(n,)``.
    """
    reduce = check_flag(reduce, "reduce")
    per_row = logsumexp(weighted_log_prob(params, X, covariance_type), axis=1)
    return float(per_row.sum()) if reduce else per_row


# ----------------------------------------------------------------------------------------
# M-step, eqs. (15)-(20)
# ----------------------------------------------------------------------------------------


def _partials(X, resp, covariance_type):
    """Block partials (M1)-(M2) of ``resp`` over the rows of X: one pass over X and resp.

    Block-centred partial sums, combined exactly with the block means about mu_k by
    :func:`_m_step_partials` (Chan, Golub & LeVeque 1979; derivation (M1)-(M3) in
    :mod:`lvmref.kernels.gmm`), so the scatter is still formed from centred data.
    """
    if covariance_type in ("full", "tied"):
        return kg.moment_partials_full(X, resp)
    return kg.moment_partials_diag(X, resp)


def _m_step_partials(parts, covariance_type, reg_covar, X=None):
    """Eqs. (15)-(20) from the block partials (M1)-(M2) of the responsibilities: N_k (with
    the 10 eps guard), mu_k and the centred scatter ((K, d, d) for full/tied, (K, d) for
    diag/spherical), then (17)-(20). Data whose squared deviations overflow float64
    cannot give a finite covariance: ``ValueError`` naming X (with max |X| if given)."""
    with np.errstate(over="ignore", invalid="ignore"):  # refused just below
        nk, means, scatter = kg.combine_moments(*parts, 10.0 * EPS)
    if not (np.all(np.isfinite(means)) and np.all(np.isfinite(scatter))):
        size = "" if X is None else f" (max |X| = {np.max(np.abs(X)):.3g})"
        raise ValueError("X values too large: the weighted squared deviations from the means "
                         f"overflow float64{size}; rescale X")
    return _finish_m_step(nk, means, scatter, covariance_type, reg_covar)


def _em_step(means, u, log_weights, X, covariance_type, reg_covar):
    """One EM iteration on validated, unweighted data: (new parameters, mean log p(x_i)).

    The E-step (10)-(12) and the M-step statistics run in one pass over X
    (:func:`lvmref.kernels.gmm.em_partials`: bitwise what :func:`_e_step` followed by
    :func:`_m_step` computes, without storing the (N, K) responsibilities). If a row is
    too far from every component for the fused kernel (non-finite log p), the separate
    path with its far-row treatment runs instead.
    """
    fac, const, full = _kernel_args(means, u, log_weights, covariance_type)
    with np.errstate(over="ignore", invalid="ignore"):  # far rows: handled below
        log_norm, parts = kg.em_partials(X, means, fac, const, full)
    if not np.all(np.isfinite(log_norm)):
        resp, log_norm = _e_step(means, u, log_weights, X, covariance_type)
        return (_m_step(X, resp, covariance_type, reg_covar, normalized=True),
                float(np.mean(log_norm)))
    return _m_step_partials(parts, covariance_type, reg_covar, X), float(np.mean(log_norm))


def _degenerate(cov_diag, floor):
    """Boolean mask of variances at or below the round-off floor."""
    return cov_diag <= floor


def _roundoff_floor(means, nk):
    """Variance that centring alone can produce for a collapsed component, (K, d).

    A component whose points are all identical gets mu_k off by ~ (d + 10/N_k) eps |mu_k|
    (the 10 eps guard of eq. 15 plus summation round-off), hence a spurious variance of
    that size squared. Anything at or below 16x this floor is numerically zero.
    """
    d = means.shape[1]
    return (16.0 * EPS * (d + 10.0 / nk[:, None]) * np.abs(means)) ** 2


def _finish_full(covs, means, nk, reg_covar, tied=False):
    d = means.shape[1]
    mats = covs[None] if tied else covs
    idx = np.arange(d)
    mats[:, idx, idx] += reg_covar
    floor = _roundoff_floor(means, nk)
    if tied:
        floor = floor.max(axis=0, keepdims=True)
    diag = mats[:, idx, idx]
    fail = _degenerate(diag, floor).any(axis=1)
    low, n_ok = cholesky_stack(mats)
    fail[n_ok:] = True  # not positive definite (and not factored after the first such)
    # Rank test on the correlation scale: a pivot L_jj^2 that is a round-off fraction of
    # Sigma_jj means Sigma is numerically singular.
    fail[:n_ok] |= np.any(low[:n_ok, idx, idx] ** 2 <= 16.0 * d * EPS * diag[:n_ok], axis=1)
    if fail.any():  # the first component that fails any of the three tests
        _raise_singular(int(np.argmax(fail)), reg_covar, tied)
    u = precision_factors_from_cholesky(low)
    return (mats[0], u[0]) if tied else (mats, u)


def _raise_singular(k, reg_covar, tied):
    which = "the tied covariance" if tied else f"component {k}"
    raise ValueError(f"EM failed at {which} (reg_covar={reg_covar:g}): {SINGULAR_HINT}")


def _params(nk, means, covs, u):
    return {
        "weights": nk / nk.sum(),
        "means": means,
        "covariances": covs,
        "precisions_cholesky": u,
    }


@benign_underflow
def m_step_full(X, resp, reg_covar=1e-6):
    """M-step for full covariances, eqs. (15)-(17).

    Parameters
    ----------
    X : array_like of shape (n, d)
    resp : array_like of shape (n, K)
        Non-negative responsibilities (normally row-stochastic).
    reg_covar : float, >= 0
        c added to the diagonal of each covariance.

    Returns
    -------
    dict
        ``weights (K,)``, ``means (K, d)``, ``covariances (K, d, d)``,
        ``precisions_cholesky (K, d, d)`` (upper triangular).
    """
    X, resp = check_resp(X, resp)
    return _m_step(X, resp, "full", check_nonnegative_float(reg_covar, "reg_covar"))


@benign_underflow
def m_step_tied(X, resp, reg_covar=1e-6):
    """M-step for one shared covariance, eqs. (15), (16), (19); covariances (d, d)."""
    X, resp = check_resp(X, resp)
    return _m_step(X, resp, "tied", check_nonnegative_float(reg_covar, "reg_covar"))


@benign_underflow
def m_step_diag(X, resp, reg_covar=1e-6):
    """M-step for diagonal covariances, eqs. (15), (16), (18); covariances (K, d)."""
    X, resp = check_resp(X, resp)
    return _m_step(X, resp, "diag", check_nonnegative_float(reg_covar, "reg_covar"))


@benign_underflow
def m_step_spherical(X, resp, reg_covar=1e-6):
    """M-step for spherical covariances, eqs. (15), (16), (20); covariances (K,)."""
    X, resp = check_resp(X, resp)
    return _m_step(X, resp, "spherical", check_nonnegative_float(reg_covar, "reg_covar"))


@benign_underflow
def m_step(X, resp, covariance_type="full", reg_covar=1e-6):
    """M-step, eq. (8): closed-form maximiser of Q for the given covariance type.

    Parameters
    ----------
    X : array_like of shape (n, d)
    resp : array_like of shape (n, K)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    reg_covar : float, >= 0

    Returns
    -------
    dict with ``weights``, ``means``, ``covariances``, ``precisions_cholesky``.
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    X, resp = check_resp(X, resp)
    return _m_step(X, resp, covariance_type, check_nonnegative_float(reg_covar, "reg_covar"))


def _m_step(X, resp, covariance_type, reg_covar, *, normalized=False):
    """Eqs. (15)-(20) on validated, C-contiguous float64 input.

    The maximiser (15)-(20) does not change when every r_ik is multiplied by the same
    c > 0, so responsibilities above 1 (allowed by :func:`m_step`, e.g. 1e308, whose sums
    would overflow) are first scaled by a power of two to a maximum in (1/2, 1] (exact in
    binary floating point). ``normalized=True`` says that ``resp`` comes from the E-step
    (every entry in [0, 1]) and skips that pass over it (about 1 ms per EM iteration at
    N = 1e5, K = 16). Data whose squared deviations overflow float64 cannot give a
    finite covariance: ``ValueError`` naming X.
    """
    big = 0.0 if normalized else float(resp.max(initial=0.0))
    if big > 1.0:
        resp = np.ldexp(resp, -math.frexp(big)[1])
    with np.errstate(over="ignore", invalid="ignore"):  # refused in _m_step_partials
        parts = _partials(X, resp, covariance_type)
    return _m_step_partials(parts, covariance_type, reg_covar, X)


def _finish_m_step(nk, means, scatter, covariance_type, reg_covar):
    """(17)-(20) from N'_k, mu_k and the scatter about mu_k (full or diagonal)."""
    if covariance_type == "full":
        covs, u = _finish_full(scatter / nk[:, None, None], means, nk, reg_covar)
    elif covariance_type == "tied":
        covs, u = _finish_full(scatter.sum(axis=0) / nk.sum(), means, nk, reg_covar,
                               tied=True)
    else:
        var = scatter / nk[:, None]
        floor = _roundoff_floor(means, nk)
        if covariance_type == "spherical":
            var = var.mean(axis=1)
            floor = floor.mean(axis=1)
        covs = var + reg_covar
        bad = np.nonzero(_degenerate(covs, floor).reshape(covs.shape[0], -1).any(axis=1))[0]
        if bad.size:
            _raise_singular(int(bad[0]), reg_covar, False)
        u = 1.0 / np.sqrt(covs)
    return _params(nk, means, covs, u)


# ----------------------------------------------------------------------------------------
# EM on sufficient statistics, eqs. (23)-(28)
# ----------------------------------------------------------------------------------------


def _full_stats(covariance_type):
    return covariance_type in ("full", "tied")


def _chunk_statistics(means, u, log_weights, covariance_type, start, X, w):
    """(23) of one validated chunk under theta; ``extra`` = L (rows of weight 0 dropped)."""
    if w is not None and not np.all(w > 0.0):
        X, w = X[w > 0.0], w[w > 0.0]
    resp, log_norm = _e_step(means, u, log_weights, X, covariance_type, row_offset=start)
    if w is None:
        return chunk_moments(X, resp, _full_stats(covariance_type), X.shape[0],
                             float(np.sum(log_norm)))
    return chunk_moments(X, resp * w[:, None], _full_stats(covariance_type), float(w.sum()),
                         float(w @ log_norm))


def _m_step_moments(stats, covariance_type, reg_covar):
    """Eq. (25): the M-step (15)-(20) from the statistics of all rows."""
    nk = stats.nk + 10.0 * EPS
    means = stats.sums / nk[:, None]
    with np.errstate(over="ignore", invalid="ignore"):  # refused just below
        scatter = scatter_about(stats, means)
    if not (np.all(np.isfinite(means)) and np.all(np.isfinite(scatter))):
        raise ValueError("X values too large: the weighted squared deviations from the means "
                         "overflow float64; rescale X")
    return _finish_m_step(nk, means, scatter, covariance_type, reg_covar)


def _check_stats(stats, covariance_type, name="stats"):
    stats = check_moments(stats, name)
    want = 3 if _full_stats(covariance_type) else 2
    if stats.scatter.ndim != want:
        kind = "full (K, D, D)" if want == 3 else "diagonal (K, D)"
        raise ValueError(f"{name}.scatter must be {kind} for covariance_type="
                         f"{covariance_type!r}, got shape {stats.scatter.shape}")
    return stats


@benign_underflow
def sufficient_statistics(params, X, covariance_type="full", sample_weight=None):
    """E-step (7) and the statistics (23) of the rows of ``X``.

    Parameters
    ----------
    params : dict
        ``weights (K,)``, ``means (K, d)``, ``precisions_cholesky``.
    X : array_like of shape (n, d)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    sample_weight : array_like of shape (n,), optional
        Frequency weights w_i (rows of weight 0 are dropped).

    Returns
    -------
    lvmref.mixture_stats.Moments
        N_k, S_k, M_k (full ``(K, d, d)`` for full/tied, diagonal ``(K, d)`` for
        diag/spherical), W = sum_i w_i and ``extra`` = L = sum_i w_i log p(x_i | theta).
        Statistics of disjoint row sets combine by
        :func:`lvmref.mixture_stats.merge_moments`, eq. (24).
    """
    X = check_X(X)
    w = check_sample_weight(sample_weight, X.shape[0])
    if w is not None:
        check_finite_sum(w, "sample_weight")
    weights, means, u = _check_params(params, covariance_type, X.shape[1])
    return _chunk_statistics(means, u, _log_weights(weights), covariance_type, 0, X, w)


@benign_underflow
def m_step_statistics(stats, covariance_type="full", reg_covar=1e-6):
    """M-step (15)-(20) from the statistics of all rows, eq. (25).

    Parameters
    ----------
    stats : lvmref.mixture_stats.Moments
        As from :func:`sufficient_statistics` (merged over chunks), or per unit weight
        (26)-(27): the result does not depend on the scale (up to the 10 eps guard).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    reg_covar : float, >= 0

    Returns
    -------
    dict with ``weights``, ``means``, ``covariances``, ``precisions_cholesky``.
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    stats = _check_stats(stats, covariance_type)
    reg_covar = check_nonnegative_float(reg_covar, "reg_covar")
    try:
        return _m_step_moments(stats, covariance_type, reg_covar)
    except ValueError as exc:  # overflow or a singular covariance: caused by stats
        raise ValueError(f"stats: {exc}") from None


def _stepwise(previous, batch, rho):
    if rho == 1.0:
        return batch
    return merge_moments(scale_moments(previous, 1.0 - rho), scale_moments(batch, rho))


@benign_underflow
def stepwise_statistics(previous, batch, rho):
    """The stepwise update (27): (1 - rho) s_{t-1} + rho s^_t in centred form.

    Parameters
    ----------
    previous, batch : lvmref.mixture_stats.Moments
        s_{t-1} and the batch's statistics per unit weight s^_t (26) (``W = 1``).
    rho : float in (0, 1]
        The step rho_t = (t + t0)^(-kappa).

    Returns
    -------
    lvmref.mixture_stats.Moments
        s_t (equal to ``batch`` when ``rho = 1``).
    """
    previous, batch = check_moments(previous, "previous"), check_moments(batch, "batch")
    if previous.scatter.shape != batch.scatter.shape:
        raise ValueError(f"previous and batch must have the same shapes, got scatter "
                         f"{previous.scatter.shape} and {batch.scatter.shape}")
    rho = check_positive_float(rho, "rho")
    if rho > 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    return _stepwise(previous, batch, rho)


def _params_moments(weights, means, covariances, covariance_type):
    k, d = means.shape
    if covariance_type == "full":
        scatter = weights[:, None, None] * covariances
    elif covariance_type == "tied":
        scatter = weights[:, None, None] * np.broadcast_to(covariances, (k, d, d))
    elif covariance_type == "diag":
        scatter = weights[:, None] * covariances
    else:
        scatter = weights[:, None] * np.broadcast_to(covariances[:, None], (k, d))
    return Moments(weights.copy(), weights[:, None] * means, np.array(scatter), 1.0, 0.0)


@benign_underflow
def statistics_from_params(params, covariance_type="full"):
    """s_0 of the stepwise update (27): the statistics per unit weight of theta as if it
    were data, N_k = pi_k, S_k = pi_k mu_k, M_k = pi_k Sigma_k, W = 1 (so that the M-step
    (25) returns theta, plus ``reg_covar`` on the covariances).

    Parameters
    ----------
    params : dict
        ``weights (K,)``, ``means (K, d)``, ``precisions_cholesky`` (the covariances are
        computed from the factors, eq. 13).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    lvmref.mixture_stats.Moments
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict, got {type(params).__name__}")
    if "means" not in params:
        raise ValueError("params is missing the key 'means'")
    d = as_float_array(params["means"], _params_label("means"), ndim=2).shape[1]
    weights, means, u = _check_params(params, covariance_type, d)
    cov = covariances_from_cholesky(u, covariance_type)
    return _params_moments(weights, means, cov, covariance_type)


@benign_underflow
def n_parameters(n_components, n_features, covariance_type):
    """Number of free parameters, eq. (22) (spherical 13, diag 21, tied 26, full 41 for
    K=2, d=5)."""
    k = check_positive_int(n_components, "n_components")
    d = check_positive_int(n_features, "n_features")
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    cov = {
        "full": k * d * (d + 1) // 2,
        "tied": d * (d + 1) // 2,
        "diag": k * d,
        "spherical": k,
    }[covariance_type]
    return cov + k * d + k - 1


# ----------------------------------------------------------------------------------------
# Estimator
# ----------------------------------------------------------------------------------------


@benign_underflow
class GaussianMixture(MixtureBase):
    """Gaussian mixture fitted by EM; scikit-learn's constructor names and attributes.

    Parameters
    ----------
    n_components : int, default 1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
    tol : float, default 1e-3
        Stop when the lower bound (21) changes by less than ``tol``.
    reg_covar : float, default 1e-6
        c in eqs. (17)-(20).
    max_iter : int, default 100
        0 only initialises.
    n_init : int, default 1
        Restarts; the one with the largest final lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default 'kmeans'
        How initial responsibilities are formed (:func:`lvmref.mixture.initial_resp`).
    weights_init : array_like of shape (K,), optional
    means_init : array_like of shape (K, d), optional
    precisions_init : array_like, optional
        full ``(K, d, d)``, tied ``(d, d)``, diag ``(K, d)``, spherical ``(K,)``.
    random_state : numpy.random.Generator, int or None
        Source of all randomness (``None``: fresh entropy). An int gives identical fits.
    warm_start : bool, default False
        Continue from the fitted parameters (one initialisation) on the next ``fit``.
    verbose : int, default 0
        0 silent; 1 prints each initialisation and every ``verbose_interval``-th
        iteration; 2 also the time and the change of the bound (scikit-learn's levels).
    verbose_interval : int, default 10
    chunk_size : int or None, default None
        Rows per chunk (not in scikit-learn). ``None``: an in-memory ``X`` is processed
        whole, as always; an ``np.memmap``, an array-like with ``.shape``, ``.dtype``
        and row slicing (``h5py``, ``zarr``) or a ``dask.array.Array`` is read in chunks
        of about 64 MiB of working memory (:func:`lvmref.chunked.default_chunk_size`;
        a Dask array in its own row blocks). An int makes every ``fit``, ``predict``,
        ``predict_proba``, ``score_samples`` and ``score`` work chunk by chunk, eqs.
        (23)-(25) (a Dask array is re-chunked to it).
    learning_decay : float in (0.5, 1], default 0.7
        kappa of the step size rho_t = (t + t0)^(-kappa) of :meth:`partial_fit`, eq.
        (27) (scikit-learn's ``LatentDirichletAllocation`` uses these two names).
    learning_offset : float >= 0, default 0.0
        t0 of the step size; 0 makes the first step rho_1 = 1 a batch EM step.

    Attributes
    ----------
    weights_ : ndarray (K,)
    means_ : ndarray (K, d)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shapes as in the module docstring.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Eq. (21).
    lower_bounds_ : list of float
        One per iteration of the kept initialisation.
    n_features_in_ : int
    n_batch_iter_ : int
        The number of :meth:`partial_fit` steps t since the last ``fit`` (only after
        ``partial_fit``).

    Data beyond memory
    ------------------
    ``fit`` accepts, besides in-memory arrays, an ``np.memmap``, any array-like with
    ``.shape``, ``.dtype`` and row slicing, and a ``dask.array.Array``; these are read
    chunk by chunk (``chunk_size``), never loaded whole, and each EM iteration is one
    pass: an E-step and the statistics (23) per chunk, merged by (24), the M-step (25).
    From the same initial parameters the fit equals the in-memory one up to the order
    of summation (``tests/test_chunked_em.py`` checks <= 1e-10 relative). Dask blocks
    are processed where they live -- by the active ``dask.distributed`` ``Client`` if
    there is one -- and predictions of a Dask array are lazy Dask arrays. Initial
    responsibilities on such data are drawn without loading it
    (:func:`lvmref.mixture.initial_moments`, I1-I4 of :mod:`lvmref.mixture`): "random"
    and "random_from_data" draw what the in-memory fit draws; "kmeans" and "k-means++"
    run on a seeded subsample of ``INIT_SAMPLE_SIZE`` rows (all rows, hence the
    in-memory start, when there are no more). ``sample_weight`` is read into memory
    (one float per row); ``resp_init`` is read chunk by chunk.
    :meth:`partial_fit` is online (stepwise) EM, eqs. (26)-(28).

    Notes
    -----
    ``predict_proba`` is the posterior (12), ``score_samples`` is log p(x_i | theta) (12):
    -inf for a row so far from every component that its squared Mahalanobis distances
    overflow float64 (log p(x_i) < -8.9e307), whose posterior is then refused.
    ``save(path)`` / ``GaussianMixture.load(path)``: :meth:`MixtureBase.save`. It is a
    scikit-learn estimator (``get_params``/``set_params``, tags, ``clone``, ``Pipeline``,
    ``GridSearchCV``, :class:`lvmref.mixture.MixtureBase`) without importing scikit-learn.

    Randomness differs from scikit-learn. With an int ``random_state``, lvmref draws from
    ``numpy.random.default_rng(seed)`` (a ``Generator``), scikit-learn from the legacy
    ``numpy.random.RandomState(seed)``, and lvmref's ``"kmeans"`` / ``"k-means++"`` are
    its own (:func:`lvmref.mixture.kmeans`), so the same seed gives a different start and
    in general a different fit. To reproduce scikit-learn's fit exactly (``n_init=1``),
    give lvmref scikit-learn's start:

    * ``init_params="random"``: ``R = np.random.RandomState(seed).uniform(size=(n, K));
      R /= R.sum(axis=1, keepdims=True)``, then ``fit(X, resp_init=R)``;
    * ``init_params="random_from_data"``: ``i = np.random.RandomState(seed).choice(n, K,
      replace=False)``, ``R = np.zeros((n, K)); R[i, np.arange(K)] = 1``;
    * ``"kmeans"`` / ``"k-means++"``: the one-hot labels of ``sklearn.cluster.KMeans(K,
      n_init=1, random_state=seed).fit(X).labels_`` / the indices of
      ``sklearn.cluster.kmeans_plusplus(X, K, random_state=seed)``, as ``resp_init``;
    * or pass the fitted start itself: ``weights_init``, ``means_init``,
      ``precisions_init`` (``tests/test_gmm.py`` checks both routes against scikit-learn).
    """

    _HYPER = {"n_components": "int", "covariance_type": "str", "tol": "float",
              "reg_covar": "float", "max_iter": "int", "n_init": "int",
              "init_params": "str", "weights_init": "array", "means_init": "array",
              "precisions_init": "array", "random_state": "seed", "warm_start": "bool",
              "verbose": "int", "verbose_interval": "int", "chunk_size": "int",
              "learning_decay": "float", "learning_offset": "float"}

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        chunk_size=None,
        learning_decay=0.7,
        learning_offset=0.0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.chunk_size = chunk_size
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    def _check_hyper(self):
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        kappa = check_positive_float(self.learning_decay, "learning_decay")
        if not 0.5 < kappa <= 1.0:
            raise ValueError(f"learning_decay must be in (0.5, 1] (the step sizes of eq. 27 "
                             f"must sum to infinity, their squares not), got {kappa}")
        check_nonnegative_float(self.learning_offset, "learning_offset")
        return self._check_common_hyper()

    def _check_inits(self, k, d):
        ct = self.covariance_type
        w = m = u = None
        if self.weights_init is not None:
            w = as_float_array(self.weights_init, "weights_init", shape=(k,))
            if np.any(w < 0.0) or np.any(w > 1.0) or abs(w.sum() - 1.0) > 1e-6:
                raise ValueError("weights_init must lie in [0, 1] and sum to 1")
        if self.means_init is not None:
            m = as_float_array(self.means_init, "means_init", shape=(k, d))
        if self.precisions_init is not None:
            p = as_float_array(self.precisions_init, "precisions_init",
                               shape=covariance_shape(ct, k, d))
            try:
                u = precision_cholesky_from_precisions(p, ct)
            except ValueError as exc:
                raise ValueError(f"precisions_init: {exc}") from None
        return w, m, u

    def _initialize(self, X, rng, inits, w, resp_init):
        """Initial parameters: the M-step (8) -- weighted, (15w) -- on the initial
        responsibilities (``resp_init`` or :func:`initial_resp`), then the user's."""
        w0, m0, u0 = inits
        ct = self.covariance_type
        if w0 is not None and m0 is not None and u0 is not None:
            p = {"weights": w0, "means": m0, "precisions_cholesky": u0}
        else:
            resp = resp_init if resp_init is not None else initial_resp(
                X, self.n_components, self.init_params, rng, sample_weight=w)
            p = _m_step(X, resp if w is None else resp * w[:, None], ct, self.reg_covar)
            if w0 is not None:
                p["weights"] = w0
            if m0 is not None:
                p["means"] = m0
            if u0 is not None:
                p["precisions_cholesky"] = u0
        if u0 is not None:
            p["covariances"] = covariances_from_cholesky(u0, ct)
        return p

    def fit(self, X, y=None, *, sample_weight=None, resp_init=None):
        """Fit by EM (eqs. 7, 8) with ``n_init`` restarts; returns ``self``.

        Each iteration is an E-step (10)-(12) and an M-step (15)-(20); its bound (21) is
        the mean log-likelihood at the E-step. A warm start continues from the fitted
        parameters and compares its first bound with the ``lower_bound_`` it ended with.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features); not modified.
        y : ignored
        sample_weight : array_like of shape (n_samples,), optional
            Frequency weights w_i >= 0, not all zero: weighted EM, (15w); the bound (21)
            becomes the weighted mean log-likelihood. Rows of weight 0 are dropped first.
        resp_init : array_like of shape (n_samples, n_components), optional
            Initial responsibilities (non-negative); the first M-step runs on them
            instead of on ``init_params``' draw, and ``n_init`` is 1. ``weights_init``,
            ``means_init``, ``precisions_init`` still override what that M-step gives.
        """
        k = self._check_hyper()
        self._end_stream()
        if self._chunked(X):
            return self._fit_chunked(X, k, sample_weight, resp_init)
        X, w, resp_init = self._fit_data(X, sample_weight, resp_init, k, min_rows=2)
        d = X.shape[1]
        warm = self._continues(X, k)
        inits = None if warm else self._check_inits(k, d)
        rng = check_rng(self.random_state, name="random_state")
        ct, reg_covar = self.covariance_type, self.reg_covar
        total = None if w is None else w.sum()

        def initialize(_):
            if warm:
                return self._get_params(), self.lower_bound_
            return self._initialize(X, rng, inits, w, resp_init), -np.inf

        bufs = None if w is None else kg.estep_buffers(X.shape[0], k)  # reused

        def iterate(p):
            if w is None:  # one pass over X per iteration
                return _em_step(p["means"], p["precisions_cholesky"],
                                _log_weights(p["weights"]), X, ct, reg_covar)
            resp, log_norm = _e_step(p["means"], p["precisions_cholesky"],
                                     _log_weights(p["weights"]), X, ct, out=bufs)
            return _m_step(X, resp * w[:, None], ct, reg_covar), float(w @ log_norm / total)

        n_init = 1 if (warm or resp_init is not None) else self.n_init
        result = self._run_em(initialize, iterate, n_init)
        self._set_params(result.state)
        self._set_em_result(result, d)
        return self

    def _fit_chunked(self, X, k, sample_weight, resp_init):
        """``fit`` on data read chunk by chunk: eqs. (23)-(25) per iteration."""
        src, w, resp_init = self._chunked_fit_data(X, sample_weight, resp_init, k, min_rows=2)
        warm = self._continues(src, k)
        inits = None if warm else self._check_inits(k, src.d)
        rng = check_rng(self.random_state, name="random_state")
        ct, reg_covar = self.covariance_type, self.reg_covar

        def initialize(_):
            if warm:
                return self._get_params(), self.lower_bound_
            return self._initial_params(src, w, k, rng, inits, resp_init), -np.inf

        def iterate(p):
            stats = self._statistics(src, p, w)
            return _m_step_moments(stats, ct, reg_covar), stats.extra / stats.total  # (25), (21)

        n_init = 1 if (warm or resp_init is not None) else self.n_init
        result = self._run_em(initialize, iterate, n_init)
        self._set_params(result.state)
        self._set_em_result(result, src.d)
        return self

    def _statistics(self, src, p, w=None):
        """(23) of all rows of ``src`` under ``p``, merged by (24)."""
        fn = partial(_chunk_statistics, p["means"], p["precisions_cholesky"],
                     _log_weights(p["weights"]), self.covariance_type)
        return src.map_reduce(lambda start, x, wc, r: fn(start, x, wc), merge_moments,
                              weight=w)

    def partial_fit(self, X, y=None, *, sample_weight=None):
        """One step of online (stepwise) EM on the batch ``X``, eqs. (26)-(28).

        The first call (or the first after ``fit`` with nothing fitted) initialises the
        parameters from this batch as ``fit`` would (``init_params``, ``*_init``,
        ``random_state``); a fitted model (by ``fit``, ``load`` or ``partial_fit``)
        continues from its parameters. Step t (counted in ``n_batch_iter_`` since the
        last ``fit``) computes the batch's statistics per unit weight s^_t under the
        current parameters (26), s_t = (1 - rho_t) s_{t-1} + rho_t s^_t with rho_t =
        (t + learning_offset)^(-learning_decay) (27), and the parameters theta(s_t)
        (28); s_0 are the statistics of the starting parameters
        (:func:`statistics_from_params`; with ``learning_offset=0``, rho_1 = 1 and they
        drop out). ``lower_bound_`` is the batch's (weighted) mean log-likelihood under
        the parameters entering the step, ``n_iter_`` 1 and ``converged_`` False. The
        running statistics live in memory only: ``save`` keeps the parameters, and a
        loaded model continues with s_0 from them.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            A batch of the stream (also a memory map, array-like or Dask array, read
            chunk by chunk).
        y : ignored
        sample_weight : array_like of shape (n_samples,), optional
            Frequency weights of the batch's rows.

        Returns
        -------
        self
        """
        k = self._check_hyper()
        src, w, _ = self._chunked_fit_data(X, sample_weight, None, k, min_rows=1)
        if self._is_fitted():
            if src.d != self.n_features_in_:
                raise ValueError(f"X has {src.d} features, but GaussianMixture is expecting "
                                 f"{self.n_features_in_} features as input (the number it "
                                 "was fitted with)")
            if self.means_.shape[0] != k or np.shape(self.precisions_cholesky_) != (
                    covariance_shape(self.covariance_type, k, src.d)):
                raise ValueError("partial_fit: n_components/covariance_type changed since "
                                 "the model was fitted; call fit")
            p = self._get_params()
        else:
            rng = check_rng(self.random_state, name="random_state")
            p = self._initial_params(src, w, k, rng, self._check_inits(k, src.d))
        ct = self.covariance_type
        t = getattr(self, "n_batch_iter_", 0) + 1
        rho = float((t + self.learning_offset) ** -self.learning_decay)
        batch = self._statistics(src, p, w)
        batch = scale_moments(batch, 1.0 / batch.total)  # (26)
        previous = getattr(self, "_stream_stats", None)
        if previous is None and rho < 1.0:
            previous = _params_moments(p["weights"], p["means"], p["covariances"], ct)
        stats = batch if rho == 1.0 else _stepwise(previous, batch, rho)  # (27)
        self._set_params(_m_step_moments(stats, ct, self.reg_covar))  # (28)
        self._stream_stats = stats
        self.n_batch_iter_ = t
        self.converged_, self.n_iter_ = False, 1
        self.lower_bound_ = float(batch.extra)
        self.lower_bounds_ = [self.lower_bound_]
        self.n_features_in_ = int(src.d)
        return self

    def _initial_params(self, src, w, k, rng, inits, resp_init=None):
        """Starting parameters on the rows of ``src``, as :meth:`_initialize` forms them
        in memory: the M-step (25) on the statistics of the initial responsibilities
        (:func:`lvmref.mixture.initial_moments`), then the user's ``*_init``."""
        ct = self.covariance_type
        w0, m0, u0 = inits
        if w0 is not None and m0 is not None and u0 is not None:
            return {"weights": w0, "means": m0, "precisions_cholesky": u0,
                    "covariances": covariances_from_cholesky(u0, ct)}
        stats = initial_moments(src, k, self.init_params, rng, sample_weight=w,
                                resp_init=resp_init, full=_full_stats(ct))
        p = _m_step_moments(stats, ct, self.reg_covar)
        for key, given in (("weights", w0), ("means", m0), ("precisions_cholesky", u0)):
            if given is not None:
                p[key] = given
        if u0 is not None:
            p["covariances"] = covariances_from_cholesky(u0, ct)
        return p

    def _end_stream(self):
        """Forget the running statistics of :meth:`partial_fit` (``fit`` starts anew)."""
        self._stream_stats = None
        if hasattr(self, "n_batch_iter_"):
            del self.n_batch_iter_

    def _get_params(self):
        return {
            "weights": self.weights_,
            "means": self.means_,
            "covariances": self.covariances_,
            "precisions_cholesky": self.precisions_cholesky_,
        }

    def _set_params(self, p):
        ct = self.covariance_type
        self.weights_ = np.asarray(p["weights"], dtype=np.float64)
        self.means_ = np.asarray(p["means"], dtype=np.float64)
        self.precisions_cholesky_ = np.asarray(p["precisions_cholesky"], dtype=np.float64)
        cov = p.get("covariances")
        if cov is None:
            cov = covariances_from_cholesky(self.precisions_cholesky_, ct)
        self.covariances_ = np.asarray(cov, dtype=np.float64)
        self.precisions_ = precisions_from_cholesky(self.precisions_cholesky_, ct)

    def _e_step_fitted(self, X, need_resp=True, start=0):
        return _e_step(self.means_, self.precisions_cholesky_, _log_weights(self.weights_),
                       X, self.covariance_type, need_resp=need_resp, row_offset=start)

    def _posterior(self, X, start=0):
        return self._e_step_fitted(X, start=start)[0]

    def _log_norm(self, X, start=0):
        return self._e_step_fitted(X, need_resp=False, start=start)[1]

    def _n_parameters(self):
        return n_parameters(self.means_.shape[0], self.means_.shape[1], self.covariance_type)

    def bic(self, X):
        """Bayesian information criterion -2 l + p log n, eq. (22) (lower is better)."""
        X, n = self._validate_or_count(X)
        return -2.0 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion -2 l + 2 p, eq. (22) (lower is better)."""
        X, n = self._validate_or_count(X)
        return -2.0 * self.score(X) * n + 2.0 * self._n_parameters()

    # -- persistence (the frame is MixtureBase.save / load) -----------------------------

    def _fitted_entries(self):
        return {"weights_": self.weights_, "means_": self.means_,
                "covariances_": self.covariances_,
                "precisions_cholesky_": self.precisions_cholesky_}

    def _load_fitted(self, f, k, d):
        """Fitted arrays of a file, checked as ``fit`` checks its parameters."""
        ct = self.covariance_type
        means = as_float_array(f.array("means_"), "means_", shape=(k, d))
        self._check_inits(k, d)
        w, means, u = _check_params(
            {"weights": f.array("weights_"), "means": means,
             "precisions_cholesky": f.array("precisions_cholesky_")},
            ct, d, label=lambda key: key + "_")
        cov = check_covariances(f.array("covariances_"), u, ct, name="covariances_",
                                factor_name="precisions_cholesky_")
        self._set_params({"weights": w, "means": means, "covariances": cov,
                          "precisions_cholesky": u})
