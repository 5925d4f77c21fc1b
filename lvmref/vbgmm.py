r"""Variational Bayes for the Gaussian mixture (mean field, conjugate priors).

Bishop, *Pattern Recognition and Machine Learning* (2006), §10.2; equation numbers
"(B10.xx)" refer to that book, "(n)" to this docstring. ``D`` is ``n_features``, ``K``
``n_components``, ``N`` ``n_samples``; ``ψ`` is the digamma function and ``Γ_D`` the
multivariate gamma function (``scipy.special.multigammaln``).

Model
-----
For data ``X = (x_1, ..., x_N)`` with one-hot latent assignments ``z_n``:

.. math:: p(z_n \mid \pi) = \prod_k \pi_k^{z_{nk}}                                     \tag{1}

.. math::
    p(x_n \mid z_n, \mu, \Lambda) = \prod_k \mathcal N(x_n \mid \mu_k, \Lambda_k^{-1})^{z_{nk}}
                                                                                       \tag{2}

.. math::
    p(\pi) &= \mathrm{Dir}(\pi \mid \alpha_0) = C(\alpha_0) \prod_k \pi_k^{\alpha_0 - 1}, \\
    \ln C(\alpha) &= \ln \Gamma\Big(\sum_k \alpha_k\Big) - \sum_k \ln \Gamma(\alpha_k)   \tag{3}

.. math::
    p(\mu_k, \Lambda_k) = \mathcal N(\mu_k \mid m_0, (\beta_0 \Lambda_k)^{-1})\,
        \mathcal W(\Lambda_k \mid W_0, \nu_0)                                          \tag{4}

.. math::
    \mathcal W(\Lambda \mid W, \nu) &= B(W, \nu)\, |\Lambda|^{(\nu - D - 1)/2}
        \exp\big(-\operatorname{Tr}(W^{-1} \Lambda) / 2\big), \\
    \ln B(W, \nu) &= -\frac\nu2 \ln|W| - \frac{\nu D}2 \ln 2 - \ln \Gamma_D(\nu/2)      \tag{5}

Priors (scikit-learn's names in brackets): ``α0`` [``weight_concentration_prior``],
``β0`` [``mean_precision_prior``], ``m0`` [``mean_prior``], ``ν0``
[``degrees_of_freedom_prior``, must exceed ``D - 1``] and ``W0^{-1}``
[``covariance_prior``: the *inverse* scale matrix of the Wishart].

Variational family and bound
----------------------------
Mean field over latents and parameters:

.. math::
    q(Z, \pi, \mu, \Lambda) &= q(Z)\, q(\pi) \prod_k q(\mu_k, \Lambda_k), \\
    q(Z) &= \prod_n \mathrm{Cat}(z_n \mid r_n), \qquad q(\pi) = \mathrm{Dir}(\pi \mid \alpha), \\
    q(\mu_k, \Lambda_k) &= \mathcal N(\mu_k \mid m_k, (\beta_k \Lambda_k)^{-1})\,
        \mathcal W(\Lambda_k \mid W_k, \nu_k)                                          \tag{6}

(the forms of the optimal factors follow from conjugacy, B10.54-B10.59), and the bound

.. math::
    \mathcal L(q) = E_q[\ln p(X, Z, \pi, \mu, \Lambda)] - E_q[\ln q(Z, \pi, \mu, \Lambda)]
        \le \ln p(X).                                                                  \tag{7}

Expectations under q used by every step (B10.64-B10.66):

.. math::
    \ln \tilde\pi_k = E[\ln \pi_k] = \psi(\alpha_k) - \psi\Big(\sum_j \alpha_j\Big)      \tag{8}

.. math::
    \ln \tilde\Lambda_k = E[\ln|\Lambda_k|]
        = \sum_{i=1}^{D} \psi\Big(\frac{\nu_k + 1 - i}2\Big) + D \ln 2 + \ln|W_k|      \tag{9}

.. math::
    E[(x_n - \mu_k)^\top \Lambda_k (x_n - \mu_k)]
        = D / \beta_k + \nu_k (x_n - m_k)^\top W_k (x_n - m_k)                          \tag{10}

Variational E-step (update of q(Z), B10.46-B10.49); the last term of (11) is (10) / 2:

.. math::
    \ln \rho_{nk} = \ln \tilde\pi_k + \frac12 \ln \tilde\Lambda_k - \frac D2 \ln 2\pi
        - \frac12 E[(x_n - \mu_k)^\top \Lambda_k (x_n - \mu_k)]                         \tag{11}

.. math::
    r_{nk} = \rho_{nk} \Big/ \sum_j \rho_{nj} \qquad \text{(a log-softmax over } k\text{)}
                                                                                       \tag{12}

Variational M-step (update of q(π) and q(μ_k, Λ_k), B10.51, B10.58, B10.60-B10.63):

.. math:: N_k = \sum_n r_{nk}                                                           \tag{13}

.. math:: \alpha_k = \alpha_0 + N_k                                                     \tag{14}

.. math:: \beta_k = \beta_0 + N_k                                                       \tag{15}

.. math:: m_k = \Big(\beta_0 m_0 + \sum_n r_{nk} x_n\Big) \Big/ \beta_k                 \tag{16}

.. math::
    W_k^{-1} = W_0^{-1} + \sum_n r_{nk} (x_n - m_k)(x_n - m_k)^\top
        + \beta_0 (m_k - m_0)(m_k - m_0)^\top                                          \tag{17}

.. math:: \nu_k = \nu_0 + N_k                                                           \tag{18}

(17) is B10.62 rewritten around ``m_k``: with ``x̄_k = Σ_n r_nk x_n / N_k`` and
``S_k`` the r-weighted scatter about ``x̄_k``, ``x̄_k - m_k = β0 (x̄_k - m0) / β_k`` and
``m_k - m0 = N_k (x̄_k - m0) / β_k``, so ``Σ_n r_nk (x_n - m_k)(x_n - m_k)^T +
β0 (m_k - m0)(m_k - m0)^T = N_k S_k + (β0 N_k / β_k)(x̄_k - m0)(x̄_k - m0)^T``. The form
used here stays centred (no ``E[x x^T] - x̄ x̄^T``) and needs no division by ``N_k``, so
components whose responsibilities underflow to 0 are handled exactly (they return to
the prior). ``ν_k = ν0 + N_k`` is the correct form of B10.63 (the first printing has
``ν0 + N_k + 1``). With ``reg_covar > 0``, ``reg_covar * N_k`` is added to the diagonal
of (17), as scikit-learn does (it adds ``reg_covar`` to ``S_k``); (17) is then no longer
the exact maximiser of (19), so use ``reg_covar = 0`` when the bound must be monotone
to the last digit.

Every term of the lower bound (B10.70-B10.77), grouped into three numbered pieces:

.. math::
    \mathcal L = \sum_{nk} r_{nk} (\ln \rho_{nk} - \ln r_{nk})
        - \mathrm{KL}[q(\pi) \,\|\, p(\pi)]
        - \sum_k \mathrm{KL}[q(\mu_k, \Lambda_k) \,\|\, p(\mu_k, \Lambda_k)]           \tag{19}

.. math::
    \sum_{nk} r_{nk} (\ln \rho_{nk} - \ln r_{nk})
        = E[\ln p(X \mid Z, \mu, \Lambda)] + E[\ln p(Z \mid \pi)] - E[\ln q(Z)]        \tag{20}

(B10.71 + B10.72 - B10.75; B10.71 is Σ_nk r_nk (ln ρ_nk - ln π~_k) after expanding N_k
S_k and x̄_k)

.. math::
    \mathrm{KL}[q(\pi) \,\|\, p(\pi)] = \ln C(\alpha) - \ln C(\alpha_0)
        + \sum_k (\alpha_k - \alpha_0) \ln \tilde\pi_k                                  \tag{21}

(= B10.76 - B10.73)

.. math::
    \mathrm{KL}[q(\mu_k, \Lambda_k) \,\|\, p(\mu_k, \Lambda_k)]
        &= \frac D2 \Big(\frac{\beta_0}{\beta_k} - 1 - \ln \frac{\beta_0}{\beta_k}\Big)
        + \frac{\beta_0 \nu_k}2 (m_k - m_0)^\top W_k (m_k - m_0) \\
        &\quad + \ln B(W_k, \nu_k) - \ln B(W_0, \nu_0)
        + \frac{\nu_k - \nu_0}2 \ln \tilde\Lambda_k \\
        &\quad + \frac{\nu_k}2 \big(\operatorname{Tr}(W_0^{-1} W_k) - D\big)            \tag{22}

(= B10.77 - B10.74: the expected Gaussian KL between precisions β_k Λ_k and β0 Λ_k,
plus the Wishart KL; the Wishart entropy is B.82).

Each update is a coordinate-ascent step: (12) maximises L over q(Z) given the rest;
(14) over q(π); (15)-(18) over q(μ, Λ). The bound therefore never decreases. With
``K = 1``, (6) contains the exact posterior (the Gauss-Wishart prior is conjugate), so
after one M-step L equals ln p(X) exactly.

Covariance types: one model, four variational families
-------------------------------------------------------
``covariance_type`` does not change the model (1)-(5) -- every component has its own
Gauss-Wishart pair (μ_k, Λ_k) -- only the prior scale and the family of q(Λ_k):

.. math::
    \text{prior scale } W_0^{-1}:\quad
        &\text{full, tied: any SPD } (D, D) \text{ matrix}; \\
        &\text{diag: } \operatorname{diag}(c_0),\ c_0 \in \mathbb R^D,\ c_0 > 0; \\
        &\text{spherical: } c_0 I,\ c_0 > 0                                            \tag{23}

[``covariance_prior``: the matrix, the vector c0 or the number c0]

.. math::
    \text{family of } q(\Lambda_k) = \mathcal W(\Lambda_k \mid W_k, \nu_k):\quad
        &\text{full: } W_k \text{ any SPD}; \\
        &\text{tied: } W_k = W \text{ and } \nu_k = \nu \text{ for all } k; \\
        &\text{diag: } W_k = \operatorname{diag}(w_k); \\
        &\text{spherical: } W_k = w_k I                                                \tag{24}

(q(μ_k | Λ_k) = N(m_k, (β_k Λ_k)^{-1}) and q(π), q(Z) as in (6) for all four).

Every member of every family is a Wishart, so the expectations (8)-(10), the E-step
(11)-(12) and every term of the bound (19)-(22) hold unchanged, with W_k diagonal,
isotropic or shared; (13)-(16) are unchanged. Only the maximiser over (W_k, ν_k) changes.
Collecting the terms of (19) that contain W_k and ν_k (B10.71, B10.74, B10.77; the data
term contributes N_k/2 E[ln|Λ_k|] - (ν_k/2) Σ_n r_nk (x_n - m_k)^T W_k (x_n - m_k)):

.. math::
    L_k(W, \nu) &= \frac{\nu_0 + N_k - \nu}2 E[\ln|\Lambda|](W, \nu)
        - \frac\nu2 \operatorname{Tr}(W A_k) + \frac{\nu D}2 - \ln B(W, \nu) + \text{const}, \\
    A_k &= W_0^{-1} + \sum_n r_{nk} (x_n - m_k)(x_n - m_k)^\top
        + \beta_0 (m_k - m_0)(m_k - m_0)^\top                                          \tag{25}

(A_k is the right side of (17)). With E[ln|Λ|] = Σ_i ψ((ν+1-i)/2) + D ln 2 + ln|W| and
(5), ln|W| enters (25) as ((ν0 + N_k)/2) ln|W|, and ∂L_k/∂ν = ((ν0 + N_k - ν)/2)
∂E[ln|Λ|]/∂ν - Tr(W A_k)/2 + D/2. Setting the gradients to zero within each family:

.. math::
    \text{full:}\quad W_k^{-1} = A_k, \qquad \nu_k = \nu_0 + N_k
        \qquad (= \text{(17), (18)})                                                   \tag{26}

.. math::
    \text{diag:}\quad w_{kj}^{-1} = (A_k)_{jj}, \qquad \nu_k = \nu_0 + N_k
        \qquad \Big(\text{maximise } \frac{\nu_0 + N_k}2 \sum_j \ln w_j
        - \frac\nu2 \sum_j w_j (A_k)_{jj}\Big)                                         \tag{27}

.. math::
    \text{spherical:}\quad w_k^{-1} = \operatorname{Tr}(A_k) / D, \qquad
        \nu_k = \nu_0 + N_k                                                            \tag{28}

.. math::
    \text{tied:}\quad W^{-1} = W_0^{-1} + \frac1K \sum_k (A_k - W_0^{-1}), \qquad
        \nu = \nu_0 + N / K                                                            \tag{29}

(Σ_k L_k(W, ν) is K times (25) with N_k -> N/K and A_k -> (1/K) Σ_k A_k)

In each case the W-stationarity gives Tr(W A) = D (ν0 + N_k)/ν (tied: (ν0 + N/K)/ν),
so ∂L/∂ν = ((ν0 + N_k - ν)/2)(∂E[ln|Λ|]/∂ν - D/ν), which vanishes only at the ν
stated (ψ' (x) > 1/x makes the second factor positive). Thus every update of every family
is an exact coordinate-ascent step and the bound never decreases. ``reg_covar * N_k`` is
added to the diagonal of A_k (scikit-learn's convention; 0 keeps the steps exact).

These are scikit-learn's updates for ``covariance_type`` "tied", "diag" and "spherical"
(its ``_estimate_wishart_*``, its E-step with the Wishart's E[ln|Λ|] for every type, and
its bound with K copies of the tied Wishart term), so the trajectories agree to
rounding. A "Gaussian-Gamma" reading of diag/spherical: under (27) the diagonal
precisions are marginally Gamma, Λ_k,jj ~ Gamma(ν_k/2, rate (A_k)_jj/2) (a Wishart's
diagonal entries are scaled χ²_ν), but E[ln|Λ_k|] is the Wishart's
Σ_i ψ((ν_k+1-i)/2) + ..., not the Σ_j E[ln Λ_k,jj] = D ψ(ν_k/2) + ... of independent
Gamma factors; a mean-field Gaussian-Gamma model would give other trajectories.

K = 1. With full or tied covariances (one component: tied is full) the family contains
the exact posterior, so after one M-step L = ln p(X) exactly. With diag (spherical) it
contains the exact posterior iff A_1 is diagonal (a multiple of I), e.g. centred data with
orthogonal (and equal-norm) columns and m0 = x̄; otherwise L < ln p(X) strictly.

Sample weights
--------------
Frequency weights w_n >= 0 (:mod:`lvmref.mixture`, W1-W4) multiply the likelihood terms:
p(X | Z, μ, Λ) p(Z | π) becomes Π_n [p(x_n | z_n) p(z_n | π)]^{w_n}. The optimal q(z_n)
is unchanged (12) (the weight multiplies the whole row term), the data term (20) becomes
Σ_n w_n Σ_k r_nk (ln ρ_nk - ln r_nk), and (13)-(18), (26)-(29) hold with r_nk replaced
by w_n r_nk (everything in them is a sum over rows of r_nk times a function of x_n):

.. math::
    N_k &= \sum_n w_n r_{nk}, \qquad \sum_n r_{nk} x_n \to \sum_n w_n r_{nk} x_n, \\
    \sum_n r_{nk} (x_n - m_k)(x_n - m_k)^\top
        &\to \sum_n w_n r_{nk} (x_n - m_k)(x_n - m_k)^\top.                            \tag{30}

Integer weights give exactly the posterior of the repeated rows; unlike maximum
likelihood, scaling all weights by c changes the fit (c is more data against the same
prior). The data-dependent default priors of :func:`make_prior` use the same frequency
weights: m0 the weighted mean, W0^{-1} the weighted sample covariance with divisor
Σ_n w_n - 1 (``ddof=1`` of the repeated rows).

Data beyond memory: the updates and the bound from sufficient statistics
------------------------------------------------------------------------
Everything the updates read from the data is a sum over rows, so the chunked, Dask and
in-memory fits are one computation (eqs. (23)-(25) of :mod:`lvmref.gmm`; statistics of
r~_nk = w_n r_nk under the E-step (12) of the current q, merged over chunks by
eq. (24) of :mod:`lvmref.gmm`): (13)-(16) need N_k and S_k = Σ_n r~_nk x_n, and the
scatter of (17), (25)-(29) about the *new* m_k is eq. (25) of :mod:`lvmref.gmm` with c_k = m_k:

.. math::
    C_k = \sum_n \tilde r_{nk} (x_n - m_k)(x_n - m_k)^\top
        = M_k + N_k (\bar x_k - m_k)(\bar x_k - m_k)^\top.                             \tag{31}

The bound (19) after the M-step needs the data term (20) of the *old* responsibilities
under the *new* state. By (11), ln ρ_nk = c_k - ½ ||(x_n - m_k)^T P_k||^2 with
c_k = ln π~_k + ½ ln Λ~_k - (D/2) ln 2π - D/(2 β_k) and P_k P_k^T = ν_k W_k, and
Σ_n r~_nk ||(x_n - m_k)^T P_k||^2 = Tr(P_k^T C_k P_k), so

.. math::
    \sum_n w_n \sum_k r_{nk} (\ln \rho_{nk} - \ln r_{nk})
        = \sum_k \Big[N_k c_k - \frac12 \operatorname{Tr}(P_k^\top C_k P_k)\Big]
        - \sum_n w_n \sum_k r_{nk} \ln r_{nk}                                          \tag{32}

(diag: Tr = Σ_j P_kj^2 (C_k)_jj; spherical: P_k^2 Tr C_k); the entropy sum is
accumulated with the statistics, chunk by chunk. The data-dependent default prior is
the statistics of one component with r_n = 1: m0 = S / N and W0^{-1} = M / (N - 1)
(its diagonal, or the mean of its diagonal).

Truncated Dirichlet-process (stick-breaking) prior on the weights
-----------------------------------------------------------------
``weight_concentration_prior_type="dirichlet_process"`` replaces (3) by stick breaking
truncated at K (Blei & Jordan, "Variational inference for Dirichlet process mixtures",
Bayesian Analysis 1(1), 2006, §3-§5; scikit-learn's variant, which keeps a Beta factor
for the K-th stick too):

.. math::
    \pi_k &= v_k \prod_{j<k} (1 - v_j), \qquad
        p(v_k) = \mathrm{Beta}(v_k \mid 1, \alpha_0), \\
    q(v_k) &= \mathrm{Beta}(v_k \mid \gamma_{k1}, \gamma_{k2})
        \qquad \text{(replaces } q(\pi) \text{ in (6))}                                \tag{3'}

.. math::
    E[\ln \pi_k] = \psi(\gamma_{k1}) - \psi(\gamma_{k1} + \gamma_{k2})
        + \sum_{j<k} \big(\psi(\gamma_{j2}) - \psi(\gamma_{j1} + \gamma_{j2})\big)      \tag{8'}

.. math::
    \gamma_{k1} = 1 + N_k, \qquad \gamma_{k2} = \alpha_0 + \sum_{j>k} N_j
        \qquad \text{(replaces (14))}                                                  \tag{14'}

.. math::
    \mathrm{KL}[q(v) \,\|\, p(v)] = \sum_k \Big[ &\ln B(1, \alpha_0)
        - \ln B(\gamma_{k1}, \gamma_{k2}) \\
        &+ (\gamma_{k1} - 1)\big(\psi(\gamma_{k1}) - \psi(\gamma_{k1} + \gamma_{k2})\big) \\
        &+ (\gamma_{k2} - \alpha_0)\big(\psi(\gamma_{k2}) - \psi(\gamma_{k1} + \gamma_{k2})\big)
        \Big] \qquad \text{(replaces (21))}                                            \tag{21'}

with ``ln B`` the log Beta function. (8') enters the E-step (11) in place of (8); the
rest of (9)-(22) is unchanged. The posterior mean of π is
``E[π_k] = γ_k1/(γ_k1+γ_k2) Π_{j<k} γ_j2/(γ_j1+γ_j2)``; with a Beta factor on the last
stick these sum to less than 1, and ``weights_`` renormalises them (as scikit-learn does).

Parameter layout (the "state" dict)
-----------------------------------
The same names, shapes and conventions as scikit-learn's fitted attributes, so states can
be exchanged with ``sklearn.mixture.BayesianGaussianMixture`` of the same
``covariance_type`` (shapes below for "full"; "tied", "diag", "spherical" use the shapes
of :func:`lvmref.mixture.covariance_shape` -- ``(D, D)``, ``(K, D)``, ``(K,)`` -- for
``covariances`` and ``precisions_cholesky``, and ``degrees_of_freedom`` is a 0-d array
for "tied"):

``weight_concentration`` (K,) or (2, K)
    α_k for the Dirichlet distribution; for the Dirichlet process, row 0 is γ_k1 and
    row 1 is γ_k2 (scikit-learn stores the tuple ``(γ_1, γ_2)``).
``mean_precision`` (K,)
    β_k.
``means`` (K, D)
    m_k.
``degrees_of_freedom`` (K,)
    ν_k.
``covariances`` (K, D, D)
    ``W_k^{-1} / ν_k = E[Λ_k]^{-1}`` (scikit-learn's normalisation; *not* the posterior
    mean of the covariance, which is ``W_k^{-1} / (ν_k - D - 1)``).
``precisions_cholesky`` (K, D, D)
    Upper-triangular ``P_k`` with ``P_k P_k^T = ν_k W_k = E[Λ_k]``; then
    ``ν_k (x - m_k)^T W_k (x - m_k) = ||(x - m_k)^T P_k||^2`` and
    ``ln|W_k| = 2 Σ_i ln (P_k)_ii - D ln ν_k``. diag: ``P_kj = sqrt(ν_k w_kj)``;
    spherical: ``P_k = sqrt(ν_k w_k)`` (``ln|W_k| = 2 D ln P_k - D ln ν_k``).

The prior dict has keys ``weight_concentration_prior_type`` ("dirichlet_distribution"
if absent, or "dirichlet_process"), ``weight_concentration_prior`` (scalar α0),
``mean_precision_prior`` (scalar β0), ``mean_prior`` (D,), ``degrees_of_freedom_prior``
(scalar ν0) and ``covariance_prior`` = W0^{-1}: (D, D) for full and tied, the vector c0
(D,) for diag, the number c0 for spherical (23); :func:`make_prior` fills in
scikit-learn's data-dependent defaults (the sample covariance, its diagonal, or the mean
of its diagonal).

The functions take the state first -- ``estimate_log_rho(state, X, covariance_type)``,
``e_step(state, X, covariance_type)``, ``expected_mahalanobis(state, X,
covariance_type)``, ``lower_bound(state, X, log_resp, prior, covariance_type)`` -- and the
M-step, which produces a state, ``(X, resp, prior, covariance_type, reg_covar)``;
``covariance_type`` defaults to "full" everywhere. Initialisation,
input checks, the EM driver (restarts, ``tol``, ``warm_start``, the bound history) and
the estimator frame are shared with :mod:`lvmref.gmm` in :mod:`lvmref.mixture`.

No Numba kernel: the work per iteration is BLAS. The Mahalanobis terms of (10) are
``(X - m_k) @ P_k`` per component; measured single-threaded against :mod:`lvmref.gmm`'s
jitted full-covariance log-density kernel (same quantity up to per-component constants),
this path took 0.23 vs 0.33 ms (N=2000, D=3, K=6), 5.2 vs 5.0 ms (N=20000, D=5, K=10),
1.0 vs 2.2 ms (N=5000, D=10, K=8) and 2.5 vs 6.2 ms (N=5000, D=20, K=8). The M-step is
``r^T X`` and one rank-N update ``w^T w`` per component.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
from scipy.linalg import LinAlgError, cholesky
from scipy.special import betaln, digamma, gammaln, multigammaln

from lvmref.kernels import LOG_2PI, log_softmax, logsumexp
from lvmref.kernels.checks import (
    as_float_array,
    check_choice,
    check_finite_sum,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_rng,
    check_sample_weight,
)
from lvmref.kernels.fpenv import benign_underflow
from lvmref.mixture import (
    COVARIANCE_TYPES,
    MixtureBase,
    check_covariances,
    check_resp,
    check_X,
    compute_precision_cholesky,
    covariance_shape,
    initial_moments,
    initial_resp,
    log_det_cholesky,
    precisions_from_cholesky,
)
from lvmref.mixture_stats import check_moments, chunk_moments, merge_moments, scatter_about

__all__ = [
    "make_prior",
    "make_state",
    "expected_log_weights",
    "expected_log_det_precision",
    "expected_mahalanobis",
    "estimate_log_rho",
    "e_step",
    "m_step",
    "kl_dirichlet",
    "kl_stick_breaking",
    "kl_gauss_wishart",
    "lower_bound",
    "sufficient_statistics",
    "m_step_statistics",
    "lower_bound_statistics",
    "BayesianGaussianMixture",
]

_STATE_KEYS = (
    "weight_concentration",
    "mean_precision",
    "means",
    "degrees_of_freedom",
    "covariances",
    "precisions_cholesky",
)
_PRIOR_KEYS = (
    "weight_concentration_prior",
    "mean_precision_prior",
    "mean_prior",
    "degrees_of_freedom_prior",
    "covariance_prior",
)
_LOG_2 = math.log(2.0)
_PRIOR_TYPES = ("dirichlet_distribution", "dirichlet_process")


# ---------------------------------------------------------------------------
# Cholesky helpers and validation
# ---------------------------------------------------------------------------


def _cholesky_lower(a: np.ndarray, name: str) -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive-definite (D, D) matrix, or ValueError."""
    try:
        return cholesky(a, lower=True, check_finite=False)
    except LinAlgError:
        raise ValueError(f"{name} must be symmetric positive definite") from None


def _log_wishart_norm(log_det_w: np.ndarray, dof: np.ndarray, n_features: int) -> np.ndarray:
    """``ln B(W, ν)`` of eq. (5) from ``ln|W|`` and ``ν`` (arrays of equal shape)."""
    return (
        -0.5 * dof * log_det_w
        - 0.5 * dof * n_features * _LOG_2
        - multigammaln(0.5 * dof, n_features)
    )


def _check_state_X(state, X, covariance_type):
    X = check_X(X)
    return _check_state(state, X.shape[1], covariance_type=covariance_type), X


def _state_label(key):
    return f"state[{key!r}]"


def _dof_shape(covariance_type, n_components):
    return () if covariance_type == "tied" else (n_components,)


def _check_state(state, n_features: int | None = None, label=_state_label,
                 covariance_type="full") -> dict:
    """Validate a state dict (see the module docstring); return float64 copies.

    ``label(key)`` names an entry in messages (``state['means']``; ``means_`` on load).
    """
    ct = check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"state is missing keys {missing}")
    means = as_float_array(state["means"], label("means"), ndim=2)
    n_components, d = means.shape
    if n_features is not None and d != n_features:
        raise ValueError(
            f"{label('means')} has {d} features but X has {n_features}"
        )
    out = {"means": means}
    for key in ("weight_concentration", "mean_precision", "degrees_of_freedom"):
        out[key] = as_float_array(state[key], label(key), ndim=(0, 1, 2))
        if key == "degrees_of_freedom":
            shapes = [_dof_shape(ct, n_components)]
        else:
            shapes = [(n_components,)] + (
                [(2, n_components)] if key == "weight_concentration" else [])
        if out[key].shape not in shapes:
            want = " or ".join(str(sh) for sh in shapes)
            raise ValueError(f"{label(key)} must have shape {want}, got {out[key].shape}")
        if np.any(out[key] <= 0):
            raise ValueError(f"{label(key)} must be > 0")
    if np.any(out["degrees_of_freedom"] <= d - 1):
        raise ValueError(f"{label('degrees_of_freedom')} must exceed n_features - 1 = {d - 1}")
    shape = covariance_shape(ct, n_components, d)
    for key in ("covariances", "precisions_cholesky"):
        out[key] = as_float_array(state[key], label(key), shape=shape)
    u = out["precisions_cholesky"]
    diag = np.diagonal(u, axis1=-2, axis2=-1) if ct in ("full", "tied") else u
    if np.any(diag <= 0):
        raise ValueError(f"{label('precisions_cholesky')} must have a positive diagonal")
    return out


def _check_covariance_prior(cov0, d, covariance_type, name):
    """W0^{-1} of (23): SPD (d, d) for full/tied, a positive (d,) vector for diag, a
    positive number for spherical; float64 copy."""
    if covariance_type in ("full", "tied"):
        cov0 = as_float_array(cov0, name, shape=(d, d))
        if not np.allclose(cov0, cov0.T, rtol=1e-12, atol=0.0):
            raise ValueError(f"{name} must be symmetric")
        _cholesky_lower(cov0, name)
        return cov0
    shape = (d,) if covariance_type == "diag" else ()
    kind = "a vector of shape" if covariance_type == "diag" else "a number, shape"
    try:
        cov0 = as_float_array(cov0, name, shape=shape)
    except ValueError as exc:
        if "shape" not in str(exc):
            raise
        raise ValueError(f"{name} must be {kind} {shape} for covariance_type="
                         f"{covariance_type!r} (the diagonal of W0^-1, eq. 23), got "
                         f"shape {np.shape(cov0)}") from None
    if np.any(cov0 <= 0):
        raise ValueError(f"{name} must be > 0")
    return cov0


def _check_prior(prior, n_features: int | None = None, suffix: str = "",
                 covariance_type="full") -> dict:
    """Validate a prior dict (see :func:`make_prior`); return float64 copies.

    Messages name the keys with ``suffix`` appended (``"_"`` for the fitted attributes).
    """
    ct = check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    if not isinstance(prior, dict):
        raise TypeError(f"prior must be a dict, got {type(prior).__name__}")
    missing = [k for k in _PRIOR_KEYS if k not in prior]
    if missing:
        raise ValueError(f"prior is missing keys {missing}")
    prior_type = check_choice(
        prior.get("weight_concentration_prior_type", _PRIOR_TYPES[0]),
        "weight_concentration_prior_type" + suffix,
        _PRIOR_TYPES,
    )
    m0 = as_float_array(prior["mean_prior"], "mean_prior" + suffix, ndim=1)
    d = m0.shape[0]
    if n_features is not None and d != n_features:
        raise ValueError(f"mean_prior{suffix} must have shape ({n_features},), got {m0.shape}")
    cov0 = _check_covariance_prior(prior["covariance_prior"], d, ct, "covariance_prior" + suffix)
    name = "degrees_of_freedom_prior" + suffix
    nu0 = check_positive_float(prior["degrees_of_freedom_prior"], name)
    if nu0 <= d - 1:
        raise ValueError(f"{name} must be > n_features - 1 = {d - 1}, got {nu0}")
    return {
        "weight_concentration_prior_type": prior_type,
        "weight_concentration_prior": check_positive_float(
            prior["weight_concentration_prior"], "weight_concentration_prior" + suffix
        ),
        "mean_precision_prior": check_positive_float(
            prior["mean_precision_prior"], "mean_precision_prior" + suffix
        ),
        "mean_prior": m0,
        "degrees_of_freedom_prior": nu0,
        "covariance_prior": cov0,
    }


def _check_log_resp(log_resp, n_samples: int) -> np.ndarray:
    r = as_float_array(log_resp, "log_resp", ndim=2, shape=(n_samples, None), finite=False)
    if np.any(np.isnan(r)) or np.any(r == np.inf):
        raise ValueError("log_resp contains NaN or +inf values")
    if np.any(np.abs(logsumexp(r, axis=1)) > 1e-8):
        raise ValueError("log_resp rows must be normalised (logsumexp over a row = 0)")
    return r


# ---------------------------------------------------------------------------
# Prior and state construction
# ---------------------------------------------------------------------------


def _default_covariance_prior(X, w, covariance_type):
    """scikit-learn's default W0^{-1}: the sample covariance of X (ddof=1), its diagonal
    (diag) or the mean of its diagonal (spherical); frequency-weighted with ``w``."""
    n_samples = X.shape[0]
    if w is None:
        if n_samples < 2:
            raise ValueError(
                "X has 1 sample; the default covariance_prior (the sample covariance of X) "
                "needs at least 2 samples: pass covariance_prior explicitly"
            )
        with np.errstate(over="ignore"):  # refused below
            mean, scale, divisor = X.mean(axis=0), None, n_samples - 1
    else:
        total = w.sum()
        if not total > 1.0:
            raise ValueError(
                f"sample_weight sums to {total:.6g} <= 1: the default covariance_prior (the "
                "weighted sample covariance, divisor sum(sample_weight) - 1) needs a sum "
                "above 1; pass covariance_prior explicitly"
            )
        with np.errstate(over="ignore", invalid="ignore"):  # refused below
            mean, scale, divisor = w @ X / total, np.sqrt(w)[:, None], total - 1.0
    with np.errstate(over="ignore", invalid="ignore"):  # refused just below
        centred = X - mean
        if scale is not None:
            centred = scale * centred  # sqrt(w_n) (x_n - x̄): w-weighted sums of products
        if covariance_type in ("full", "tied"):
            cov = centred.T @ centred / divisor
        else:
            cov = np.einsum("ij,ij->j", centred, centred) / divisor
            if covariance_type == "spherical":
                cov = cov.mean()
    if not np.all(np.isfinite(cov)):
        raise ValueError(
            "X values too large: its sample covariance (the default covariance_prior) "
            f"overflows float64 (max |X| = {np.max(np.abs(X)):.3g}); rescale X"
        )
    singular = False
    if covariance_type in ("full", "tied"):
        try:
            _cholesky_lower(cov, "covariance_prior")
        except ValueError:
            singular = True
    else:
        singular = bool(np.any(cov <= 0))
    if singular:
        raise ValueError(
            "the default covariance_prior (sample covariance of X) is singular; "
            "pass covariance_prior explicitly"
        )
    return cov, mean


@benign_underflow
def make_prior(
    X,
    n_components: int,
    *,
    weight_concentration_prior=None,
    mean_precision_prior=None,
    mean_prior=None,
    degrees_of_freedom_prior=None,
    covariance_prior=None,
    weight_concentration_prior_type="dirichlet_distribution",
    covariance_type="full",
    sample_weight=None,
) -> dict:
    """Prior hyperparameters of eqs. (3)-(4) and (23), or eq. (3'), with scikit-learn's defaults
    for ``None``.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Data (used only for the defaults).
    n_components : int
        K.
    weight_concentration_prior : float, optional
        α0 > 0; default ``1 / n_components``.
    mean_precision_prior : float, optional
        β0 > 0; default 1.
    mean_prior : array_like of shape (n_features,), optional
        m0; default the mean of ``X`` (weighted with ``sample_weight``).
    degrees_of_freedom_prior : float, optional
        ν0 > n_features - 1; default ``n_features``.
    covariance_prior : array_like, optional
        W0^{-1} of (23): a symmetric positive definite (n_features, n_features) matrix
        for "full" and "tied", a positive (n_features,) vector for "diag", a positive
        number for "spherical". Default: the sample covariance of ``X`` (``ddof=1``; with
        ``sample_weight`` the frequency-weighted one, divisor ``sum(w) - 1``), its
        diagonal, or the mean of its diagonal; it must be non-singular.
    weight_concentration_prior_type : {"dirichlet_distribution", "dirichlet_process"}
        Dirichlet prior (3) or truncated stick-breaking prior (3') on the weights.
    covariance_type : {"full", "tied", "diag", "spherical"}
    sample_weight : array_like of shape (n_samples,), optional
        Frequency weights (eq. 30) for the data-dependent defaults.

    Returns
    -------
    dict
        Keys as the parameter names above, float64 values.
    """
    X = check_X(X)
    n_components = check_positive_int(n_components, "n_components")
    ct = check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    w = check_sample_weight(sample_weight, X.shape[0])
    n_features = X.shape[1]
    data_mean = None
    if covariance_prior is None:
        covariance_prior, data_mean = _default_covariance_prior(X, w, ct)
    if mean_prior is None:
        if data_mean is None:
            with np.errstate(over="ignore", invalid="ignore"):  # refused just below
                data_mean = X.mean(axis=0) if w is None else w @ X / w.sum()
            if not np.all(np.isfinite(data_mean)):
                raise ValueError("X values too large: its mean (the default mean_prior) "
                                 f"overflows float64 (max |X| = {np.max(np.abs(X)):.3g}); "
                                 "rescale X")
        mean_prior = data_mean
    prior = {
        "weight_concentration_prior_type": weight_concentration_prior_type,
        "weight_concentration_prior": 1.0 / n_components
        if weight_concentration_prior is None
        else weight_concentration_prior,
        "mean_precision_prior": 1.0 if mean_precision_prior is None else mean_precision_prior,
        "mean_prior": mean_prior,
        "degrees_of_freedom_prior": float(n_features)
        if degrees_of_freedom_prior is None
        else degrees_of_freedom_prior,
        "covariance_prior": covariance_prior,
    }
    return _check_prior(prior, n_features, covariance_type=ct)


def _scale_by_dof(a, dof, covariance_type, inverse=False):
    """``a / ν_k`` (or ``a * ν_k``) with ν broadcast over the shape of the type."""
    dof = np.asarray(dof)
    if covariance_type == "full":
        dof = dof[:, None, None]
    elif covariance_type == "diag":
        dof = dof[:, None]
    return a * dof if inverse else a / dof


@benign_underflow
def make_state(weight_concentration, mean_precision, means, degrees_of_freedom, scale_inv,
               covariance_type="full"):
    """Assemble a state dict from (α, β, m, ν, W^{-1}) (see the module docstring).

    Parameters
    ----------
    weight_concentration : array_like of shape (K,) or (2, K)
        α_k > 0, or the stick-breaking Beta parameters (γ_k1, γ_k2) > 0.
    mean_precision : array_like of shape (K,)
        β_k > 0.
    means : array_like of shape (K, D)
        m_k.
    degrees_of_freedom : array_like of shape (K,) (a number for "tied")
        ν_k > D - 1.
    scale_inv : array_like
        W_k^{-1} in the family of eq. (24): full ``(K, D, D)`` and tied ``(D, D)`` symmetric
        positive definite, diag ``(K, D)`` (the diagonals) and spherical ``(K,)`` (the
        multiples of I) positive.
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    dict
        With ``covariances = W^{-1} / ν`` and ``precisions_cholesky`` (``P P^T = ν W``;
        upper triangular for full/tied) derived from ``scale_inv``.
    """
    ct = check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    means = as_float_array(means, "means", ndim=2)
    n_components, d = means.shape
    scale_inv = as_float_array(scale_inv, "scale_inv")
    want = covariance_shape(ct, n_components, d)
    if scale_inv.shape != want:
        raise ValueError(f"scale_inv must have shape {want} for covariance_type={ct!r} and "
                         f"means of shape {means.shape} (K, D), got {scale_inv.shape}")
    if ct in ("full", "tied") and not np.allclose(
            scale_inv, np.swapaxes(scale_inv, -1, -2), rtol=1e-12, atol=0.0):
        raise ValueError("scale_inv must be symmetric")
    dof = as_float_array(degrees_of_freedom, "degrees_of_freedom",
                         shape=_dof_shape(ct, n_components))
    if np.any(dof <= d - 1):
        raise ValueError(f"degrees_of_freedom must exceed n_features - 1 = {d - 1}")
    covariances = _scale_by_dof(scale_inv, dof, ct)
    try:
        prec_chol = compute_precision_cholesky(covariances, ct)
    except ValueError:
        raise ValueError("scale_inv must be symmetric positive definite") from None
    state = {
        "weight_concentration": weight_concentration,
        "mean_precision": mean_precision,
        "means": means,
        "degrees_of_freedom": dof,
        "covariances": covariances,
        "precisions_cholesky": prec_chol,
    }
    return _check_state(state, covariance_type=ct)


# ---------------------------------------------------------------------------
# Expectations, E-step, M-step
# ---------------------------------------------------------------------------


def _check_concentration(conc, name="weight_concentration"):
    """Refuse concentrations whose sums (the Dirichlet's, or γ_k1 + γ_k2) overflow."""
    with np.errstate(over="ignore"):
        total = conc.sum() if conc.ndim == 1 else conc[0] + conc[1]
    if not np.all(np.isfinite(total)):
        raise ValueError(f"{name} too large: its sum overflows float64 (max "
                         f"{np.max(conc):.3g}); the expectations (8)/(8') need it finite")
    return conc


def _finite_kl(value, name="weight_concentration"):
    if not np.isfinite(value):
        raise ValueError(f"{name} too large: the terms of the KL divergence overflow float64")
    return float(value)


def _expected_log_weights(conc):
    if conc.ndim == 1:  # (8)
        return digamma(conc) - digamma(conc.sum())
    dig_sum = digamma(conc[0] + conc[1])  # (8')
    log_stick = digamma(conc[1]) - dig_sum
    return digamma(conc[0]) - dig_sum + np.concatenate(([0.0], np.cumsum(log_stick)[:-1]))


@benign_underflow
def expected_log_weights(weight_concentration) -> np.ndarray:
    """``E[ln π_k]``: eq. (8) for α of shape (K,), eq. (8') for (γ_1, γ_2) of shape (2, K).

    Parameters
    ----------
    weight_concentration : array_like of shape (K,) or (2, K)
        Dirichlet parameters α > 0, or stick-breaking Beta parameters (row 0 γ_k1,
        row 1 γ_k2) > 0.

    Returns
    -------
    ndarray of shape (K,)
    """
    conc = as_float_array(weight_concentration, "weight_concentration", ndim=(1, 2))
    if conc.ndim == 2 and conc.shape[0] != 2:
        raise ValueError(f"weight_concentration must have shape (K,) or (2, K), got {conc.shape}")
    if np.any(conc <= 0):
        raise ValueError("weight_concentration must be > 0")
    return _expected_log_weights(_check_concentration(conc))


def _log_det_w(dof, prec_chol, covariance_type, d):
    """ln|W_k| = 2 Σ ln diag P_k - D ln ν_k (all types; a 0-d array for tied)."""
    return 2.0 * log_det_cholesky(prec_chol, covariance_type, d) - d * np.log(dof)


def _expected_log_det_precision(dof, prec_chol, covariance_type="full", d=None):
    d = prec_chol.shape[-1] if d is None else d
    log_det_w = _log_det_w(dof, prec_chol, covariance_type, d)
    return (np.sum(digamma(0.5 * (np.asarray(dof)[..., None] - np.arange(d))), axis=-1)
            + d * _LOG_2 + log_det_w)


@benign_underflow
def expected_log_det_precision(degrees_of_freedom, precisions_cholesky, covariance_type="full",
                               n_features=None) -> np.ndarray:
    """``E[ln|Λ_k|]``, eq. (9), with ``ln|W_k| = 2 Σ ln diag P_k - D ln ν_k``.

    Parameters
    ----------
    degrees_of_freedom : array_like of shape (K,) (a number for "tied")
    precisions_cholesky : array_like
        full ``(K, D, D)``, tied ``(D, D)``, diag ``(K, D)``, spherical ``(K,)``.
    covariance_type : {"full", "tied", "diag", "spherical"}
    n_features : int, optional
        D; needed for "spherical" only (its factors do not show D).

    Returns
    -------
    ndarray of shape (K,) (0-d for "tied")
    """
    ct = check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    dof = as_float_array(degrees_of_freedom, "degrees_of_freedom",
                         ndim=0 if ct == "tied" else 1)
    ndim = {"full": 3, "tied": 2, "diag": 2, "spherical": 1}[ct]
    chol = as_float_array(precisions_cholesky, "precisions_cholesky", ndim=ndim)
    if ct == "spherical":
        if n_features is None:
            raise ValueError("n_features is needed for covariance_type='spherical'")
        d = check_positive_int(n_features, "n_features")
    else:
        d = chol.shape[-1]
        if ct in ("full", "tied") and chol.shape[-2] != d:
            raise ValueError(f"precisions_cholesky must be square, got {chol.shape}")
    if ct != "tied" and chol.shape[0] != dof.shape[0]:
        raise ValueError(f"precisions_cholesky has {chol.shape[0]} components but "
                         f"degrees_of_freedom {dof.shape[0]}")
    if np.any(dof <= d - 1):
        raise ValueError("degrees_of_freedom must exceed n_features - 1")
    diag = np.diagonal(chol, axis1=-2, axis2=-1) if ct in ("full", "tied") else chol
    if np.any(diag <= 0):
        raise ValueError("precisions_cholesky must have a positive diagonal")
    return _expected_log_det_precision(dof, chol, ct, d)


def _factor(prec_chol, covariance_type, k):
    """P_k of component k: (D, D) for full/tied, (D,) for diag, a number for spherical."""
    return prec_chol if covariance_type == "tied" else prec_chol[k]


def _whiten(diff, fac, covariance_type):
    """``diff @ P_k`` (full, tied) or ``diff * P_k`` (diag, spherical): rows whose squared
    norm is ν_k (x - m_k)^T W_k (x - m_k)."""
    return diff @ fac if covariance_type in ("full", "tied") else diff * fac


def _expected_mahalanobis(state, X, covariance_type="full"):
    n_features = X.shape[1]
    out = np.empty((X.shape[0], state["means"].shape[0]))
    chols = state["precisions_cholesky"]
    for k, mean in enumerate(state["means"]):
        chol = _factor(chols, covariance_type, k)
        with np.errstate(over="ignore", invalid="ignore"):  # far rows: handled below
            y = _whiten(X - mean, chol, covariance_type)
            out[:, k] = np.einsum("ij,ij->i", y, y)
        far = ~np.isfinite(out[:, k])
        if far.any():
            # x - m_k or the distance overflowed: recompute at half scale; a distance
            # beyond float64 is +inf, its correctly rounded value (ln rho = -inf)
            with np.errstate(over="ignore"):
                y = _whiten(0.5 * X[far] - 0.5 * mean, chol, covariance_type)
                out[far, k] = 4.0 * np.einsum("ij,ij->i", y, y)
    return out + n_features / state["mean_precision"]


def _check_defined_rows(log_rho, name="X", offset=0):
    """ValueError naming ``name`` for a row with ln rho = -inf for every component
    (``offset``: the global index of the first row, for a chunk)."""
    dead = np.all(np.isneginf(log_rho), axis=1)
    if dead.any():
        raise ValueError(
            f"{name} row {offset + int(np.argmax(dead))} is too far from every component: its "
            "expected squared Mahalanobis distances overflow float64, so its "
            "responsibilities are undefined; rescale X"
        )


@benign_underflow
def expected_mahalanobis(state, X, covariance_type="full") -> np.ndarray:
    """``E[(x_n - μ_k)^T Λ_k (x_n - μ_k)] = D/β_k + ||(x_n - m_k)^T P_k||^2``, eq. (10).

    Parameters
    ----------
    state : dict
        Variational state (module docstring).
    X : array_like of shape (N, D)
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    ndarray of shape (N, K)
    """
    state, X = _check_state_X(state, X, covariance_type)
    return _expected_mahalanobis(state, X, covariance_type)


def _log_rho(state, X, covariance_type="full"):
    d = X.shape[1]
    log_w = _expected_log_weights(state["weight_concentration"])
    log_lam = _expected_log_det_precision(state["degrees_of_freedom"],
                                          state["precisions_cholesky"], covariance_type, d)
    maha = _expected_mahalanobis(state, X, covariance_type)
    return log_w + 0.5 * log_lam - 0.5 * d * LOG_2PI - 0.5 * maha  # (11)


@benign_underflow
def estimate_log_rho(state, X, covariance_type="full") -> np.ndarray:
    """Unnormalised log responsibilities ``ln ρ_nk``, eq. (11).

    Parameters
    ----------
    state : dict
        Variational state (module docstring).
    X : array_like of shape (N, D)
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    ndarray of shape (N, K)
    """
    state, X = _check_state_X(state, X, covariance_type)
    return _log_rho(state, X, covariance_type)


@benign_underflow
def e_step(state, X, covariance_type="full") -> np.ndarray:
    """Variational E-step: ``ln r_nk``, eqs. (11)-(12).

    Parameters
    ----------
    state : dict
        Variational state (module docstring).
    X : array_like of shape (N, D)
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    log_resp : ndarray of shape (N, K)
        Rows log-sum-exp to 0.
    """
    log_rho = estimate_log_rho(state, X, covariance_type)
    _check_defined_rows(log_rho)
    return log_softmax(log_rho, axis=1)


def _too_large(X):
    return ValueError(
        "X values too large: the weighted squared deviations from the means "
        f"overflow float64 (max |X| = {np.max(np.abs(X)):.3g}); rescale X"
    )


def _m_step(X, resp, prior, reg_covar, covariance_type="full"):
    """(13)-(16) and (26)-(29) on validated input; ``resp`` already carries the sample
    weights (w_n r_nk, eq. 30)."""
    with np.errstate(over="ignore"):  # refused just below
        nk = resp.sum(axis=0)  # (13)
    if not np.all(np.isfinite(nk)):
        raise ValueError("resp too large: its column sums N_k overflow float64")

    def scatter(k, mean):  # Σ_n r_nk (x_n - m_k)(x_n - m_k)^T, or its diagonal
        if covariance_type in ("full", "tied"):
            # Σ_n r_nk d_n d_n^T as w^T w with w_n = sqrt(r_nk) d_n (BLAS takes A^T A as syrk).
            w = np.sqrt(resp[:, k, None]) * (X - mean)
            with np.errstate(over="ignore", invalid="ignore"):  # refused by the caller
                return w.T @ w
        dev = X - mean
        with np.errstate(over="ignore", invalid="ignore"):  # refused by the caller
            return resp[:, k] @ (dev * dev)

    with np.errstate(over="ignore", invalid="ignore"):  # refused just below
        sums = resp.T @ X
    if not np.all(np.isfinite(sums)):
        raise _too_large(X)
    return _state_from_scatter(nk, sums, scatter, prior, reg_covar, covariance_type,
                               lambda: _too_large(X))


def _state_from_scatter(nk, sums, scatter, prior, reg_covar, covariance_type, too_large):
    """(14)-(16) and (26)-(29) from N_k, Σ_n r_nk x_n and ``scatter(k, m_k)`` =
    Σ_n r_nk (x_n - m_k)(x_n - m_k)^T (its diagonal for diag/spherical); ``too_large()``
    is the error for a scatter that overflows."""
    n_components, n_features = sums.shape
    beta0 = prior["mean_precision_prior"]
    m0 = prior["mean_prior"]
    cov0 = prior["covariance_prior"]
    alpha0 = prior["weight_concentration_prior"]
    if prior["weight_concentration_prior_type"] == "dirichlet_process":
        tail = np.concatenate((np.cumsum(nk[::-1])[-2::-1], [0.0]))  # Σ_{j>k} N_j
        alpha = np.stack((1.0 + nk, alpha0 + tail))  # (14')
    else:
        alpha = alpha0 + nk  # (14)
    beta = beta0 + nk  # (15)
    means = (beta0 * m0 + sums) / beta[:, None]  # (16)
    if covariance_type == "tied":
        dof = np.asarray(prior["degrees_of_freedom_prior"] + nk.sum() / n_components)  # (29)
    else:
        dof = prior["degrees_of_freedom_prior"] + nk  # (18)
    if covariance_type in ("full", "tied"):
        scale_inv = np.empty((n_components, n_features, n_features))
        for k in range(n_components):  # (17) = A_k of (25)
            s_k = scatter(k, means[k])
            dm = means[k] - m0
            with np.errstate(over="ignore", invalid="ignore"):  # refused just below
                if covariance_type == "full":
                    scale_inv[k] = cov0 + s_k + beta0 * np.outer(dm, dm)
                else:  # A_k - W0^{-1}, summed below
                    scale_inv[k] = s_k + beta0 * np.outer(dm, dm)
            if not np.all(np.isfinite(scale_inv[k])):
                raise too_large()
            scale_inv[k].flat[:: n_features + 1] += reg_covar * nk[k]
            # Symmetrise away the round-off of the matrix product.
            scale_inv[k] = 0.5 * (scale_inv[k] + scale_inv[k].T)
        if covariance_type == "tied":  # (29)
            with np.errstate(over="ignore", invalid="ignore"):  # refused just below
                scale_inv = cov0 + scale_inv.sum(axis=0) / n_components
            if not np.all(np.isfinite(scale_inv)):
                raise too_large()
    else:
        diag = np.empty((n_components, n_features))  # diagonals of A_k - W0^{-1}
        for k in range(n_components):
            s_k = scatter(k, means[k])
            dm = means[k] - m0
            with np.errstate(over="ignore", invalid="ignore"):  # refused just below
                diag[k] = s_k + beta0 * dm * dm + reg_covar * nk[k]
        if not np.all(np.isfinite(diag)):
            raise too_large()
        if covariance_type == "diag":
            scale_inv = cov0 + diag  # (27)
        else:
            scale_inv = cov0 + diag.mean(axis=1)  # (28): Tr(A_k) / D
    covariances = _scale_by_dof(scale_inv, dof, covariance_type)
    return {
        "weight_concentration": alpha,
        "mean_precision": beta,
        "means": means,
        "degrees_of_freedom": dof,
        "covariances": covariances,
        "precisions_cholesky": compute_precision_cholesky(covariances, covariance_type),
    }


@benign_underflow
def m_step(X, resp, prior, covariance_type="full", reg_covar: float = 0.0) -> dict:
    """Variational M-step: the optimal q(π) and q(μ_k, Λ_k) given ``resp``, eqs. (13)-(18)
    and, per covariance type, eqs. (26)-(29); with the stick-breaking prior eq. (14')
    replaces (14).

    Parameters
    ----------
    X : array_like of shape (N, D)
    resp : array_like of shape (N, K)
        Non-negative responsibilities r_nk (rows normally sum to 1). For sample weights
        pass ``w[:, None] * resp`` (eq. 30).
    prior : dict
        Prior hyperparameters, see :func:`make_prior`.
    covariance_type : {"full", "tied", "diag", "spherical"}
    reg_covar : float
        Non-negative; ``reg_covar * N_k`` is added to the diagonal of A_k (25)
        (scikit-learn's convention). 0 gives the exact coordinate-ascent update.

    Returns
    -------
    dict
        The new variational state (module docstring).
    """
    ct = check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    X, resp = check_resp(X, resp)
    m0 = prior.get("mean_prior") if isinstance(prior, dict) else None
    if m0 is not None and np.ndim(m0) == 1 and np.shape(m0)[0] != X.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features but the prior was made for "
                         f"{np.shape(m0)[0]} (prior['mean_prior'] has shape {np.shape(m0)})")
    prior = _check_prior(prior, X.shape[1], covariance_type=ct)
    reg_covar = check_nonnegative_float(reg_covar, "reg_covar")
    return _m_step(X, resp, prior, reg_covar, ct)


# ---------------------------------------------------------------------------
# Lower bound
# ---------------------------------------------------------------------------


def _log_dirichlet_norm(alpha):
    """``ln C(α)`` of eq. (3)."""
    return gammaln(np.sum(alpha)) - np.sum(gammaln(alpha))


def _kl_dirichlet(alpha, alpha0):
    log_w = digamma(alpha) - digamma(alpha.sum())
    alpha0 = np.broadcast_to(alpha0, alpha.shape)
    return (
        _log_dirichlet_norm(alpha)
        - _log_dirichlet_norm(alpha0)
        + np.sum((alpha - alpha0) * log_w)
    )


@benign_underflow
def kl_dirichlet(weight_concentration, weight_concentration_prior) -> float:
    """``KL[Dir(α) || Dir(α0)]``, eq. (21).

    Parameters
    ----------
    weight_concentration : array_like of shape (K,)
        α > 0.
    weight_concentration_prior : float or array_like of shape (K,)
        α0 > 0.

    Returns
    -------
    float
    """
    alpha = as_float_array(weight_concentration, "weight_concentration", ndim=1)
    if isinstance(weight_concentration_prior, (bool, np.bool_)):
        raise TypeError("weight_concentration_prior must be a number or an array, got bool")
    alpha0 = as_float_array(weight_concentration_prior, "weight_concentration_prior", ndim=(0, 1))
    if np.any(alpha <= 0):
        raise ValueError("weight_concentration must be > 0")
    if np.any(alpha0 <= 0):
        raise ValueError("weight_concentration_prior must be > 0")
    if alpha0.ndim == 1 and alpha0.shape != alpha.shape:
        raise ValueError(
            f"weight_concentration_prior must be a scalar or shape {alpha.shape}, "
            f"got {alpha0.shape}"
        )
    _check_concentration(alpha)
    with np.errstate(over="ignore", invalid="ignore"):  # refused by _finite_kl
        return _finite_kl(_kl_dirichlet(alpha, alpha0))


def _kl_gauss_wishart(state, prior, covariance_type="full"):
    ct = covariance_type
    d = state["means"].shape[1]
    beta, dof = state["mean_precision"], state["degrees_of_freedom"]
    beta0, nu0 = prior["mean_precision_prior"], prior["degrees_of_freedom_prior"]
    chol = state["precisions_cholesky"]  # P_k, P_k P_k^T = ν_k W_k
    cov0 = prior["covariance_prior"]  # W0^{-1}, eq. (23)
    log_lam = _expected_log_det_precision(dof, chol, ct, d)
    log_det_w = _log_det_w(dof, chol, ct, d)
    dm = state["means"] - prior["mean_prior"]
    if ct == "full":
        cov0_chol = _cholesky_lower(cov0, "covariance_prior")  # W0^{-1} = L0 L0^T
        log_det_w0 = -2.0 * np.sum(np.log(np.diag(cov0_chol)))
        # ν_k (m_k - m0)^T W_k (m_k - m0) = ||(m_k - m0)^T P_k||^2
        maha = np.sum(np.einsum("ki,kij->kj", dm, chol) ** 2, axis=1)
        # ν_k Tr(W0^{-1} W_k) = ||L0^T P_k||_F^2 with W0^{-1} = L0 L0^T
        trace = np.sum(np.einsum("ji,kjl->kil", cov0_chol, chol) ** 2, axis=(1, 2))
    elif ct == "tied":
        cov0_chol = _cholesky_lower(cov0, "covariance_prior")
        log_det_w0 = -2.0 * np.sum(np.log(np.diag(cov0_chol)))
        maha = np.sum((dm @ chol) ** 2, axis=1)
        trace = np.sum((cov0_chol.T @ chol) ** 2)
    elif ct == "diag":  # W0^{-1} = diag(c0), P_k = sqrt(ν_k w_k)
        log_det_w0 = -np.sum(np.log(cov0))
        maha = np.sum((dm * chol) ** 2, axis=1)
        trace = (chol * chol) @ cov0
    else:  # spherical: W0^{-1} = c0 I, P_k = sqrt(ν_k w_k)
        log_det_w0 = -d * np.log(cov0)
        maha = np.sum(dm * dm, axis=1) * chol * chol
        trace = d * cov0 * chol * chol
    n = beta.shape[0]
    log_lam, log_det_w, dof_k = (np.broadcast_to(a, (n,)) for a in (log_lam, log_det_w, dof))
    trace = np.broadcast_to(trace, (n,))
    ratio = beta0 / beta
    kl_gauss = 0.5 * d * (ratio - 1.0 - np.log(ratio)) + 0.5 * beta0 * maha
    kl_wishart = (
        _log_wishart_norm(log_det_w, dof_k, d)
        - _log_wishart_norm(np.full_like(dof_k, log_det_w0), np.full_like(dof_k, nu0), d)
        + 0.5 * (dof_k - nu0) * log_lam
        + 0.5 * (trace - dof_k * d)
    )
    return kl_gauss + kl_wishart


def _kl_stick_breaking(gamma, alpha0):
    g1, g2 = gamma
    dig_sum = digamma(g1 + g2)
    return np.sum(
        betaln(1.0, alpha0)
        - betaln(g1, g2)
        + (g1 - 1.0) * (digamma(g1) - dig_sum)
        + (g2 - alpha0) * (digamma(g2) - dig_sum)
    )


@benign_underflow
def kl_stick_breaking(weight_concentration, weight_concentration_prior) -> float:
    """``Σ_k KL[Beta(γ_k1, γ_k2) || Beta(1, α0)]``, eq. (21').

    Parameters
    ----------
    weight_concentration : array_like of shape (2, K)
        Row 0 γ_k1 > 0, row 1 γ_k2 > 0.
    weight_concentration_prior : float
        α0 > 0.

    Returns
    -------
    float
    """
    gamma = as_float_array(weight_concentration, "weight_concentration", shape=(2, None))
    if np.any(gamma <= 0):
        raise ValueError("weight_concentration must be > 0")
    alpha0 = check_positive_float(weight_concentration_prior, "weight_concentration_prior")
    _check_concentration(gamma)
    with np.errstate(over="ignore", invalid="ignore"):  # refused by _finite_kl
        return _finite_kl(_kl_stick_breaking(gamma, alpha0))


@benign_underflow
def kl_gauss_wishart(state, prior, covariance_type="full") -> np.ndarray:
    """``KL[q(μ_k, Λ_k) || p(μ_k, Λ_k)]`` per component, eq. (22) (with the W_k of the
    family (24); "tied" repeats its shared W in every component's term).

    Parameters
    ----------
    state : dict
        Variational state (module docstring).
    prior : dict
        Prior hyperparameters, see :func:`make_prior`.
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    ndarray of shape (K,)
    """
    state = _check_state(state, covariance_type=covariance_type)
    prior = _check_prior(prior, state["means"].shape[1], covariance_type=covariance_type)
    return _kl_gauss_wishart(state, prior, covariance_type)


def _lower_bound(state, log_resp, log_rho, prior, covariance_type="full", w=None):
    resp = np.exp(log_resp)
    # r ln r -> 0 as r -> 0; where r == 0 exactly, log_resp may be -inf.
    with np.errstate(invalid="ignore"):  # resp = 0 where ln rho = -inf: masked below
        terms = resp * (log_rho - np.where(resp > 0, log_resp, 0.0))
    terms = np.where(resp > 0, terms, 0.0)
    data_term = np.sum(terms) if w is None else w @ terms.sum(axis=1)  # (20), (30)
    conc, alpha0 = state["weight_concentration"], prior["weight_concentration_prior"]
    kl_pi = _kl_dirichlet(conc, alpha0) if conc.ndim == 1 else _kl_stick_breaking(conc, alpha0)
    kl_gw = np.sum(_kl_gauss_wishart(state, prior, covariance_type))
    return float(data_term - kl_pi - kl_gw)  # (19)


def _check_prior_type(state, prior, label=_state_label):
    if (state["weight_concentration"].ndim == 2) != (
        prior["weight_concentration_prior_type"] == "dirichlet_process"
    ):
        raise ValueError(
            f"{label('weight_concentration')} must have shape (2, K) for the "
            "dirichlet_process prior and (K,) for the dirichlet_distribution prior"
        )


@benign_underflow
def lower_bound(state, X, log_resp, prior, covariance_type="full", sample_weight=None) -> float:
    """The evidence lower bound L(q), eqs. (19)-(22), for any q of the form (6) and (24).

    Parameters
    ----------
    state : dict
        Variational state of q(π) q(μ, Λ) (module docstring).
    X : array_like of shape (N, D)
    log_resp : array_like of shape (N, K)
        ``ln r_nk`` of q(Z); rows must log-sum-exp to 0 (entries may be -inf).
    prior : dict
        Prior hyperparameters, see :func:`make_prior`.
    covariance_type : {"full", "tied", "diag", "spherical"}
    sample_weight : array_like of shape (N,), optional
        Frequency weights: the data term (20) is Σ_n w_n Σ_k r_nk (ln ρ_nk - ln r_nk),
        eq. (30).

    Returns
    -------
    float
        L(q) <= ln p(X), including every constant.
    """
    state, X = _check_state_X(state, X, covariance_type)
    log_resp = _check_log_resp(log_resp, X.shape[0])
    w = check_sample_weight(sample_weight, X.shape[0])
    if log_resp.shape[1] != state["means"].shape[0]:
        raise ValueError(
            f"log_resp has {log_resp.shape[1]} columns but state has "
            f"{state['means'].shape[0]} components"
        )
    prior = _check_prior(prior, X.shape[1], covariance_type=covariance_type)
    _check_prior_type(state, prior)
    return _lower_bound(state, log_resp, _log_rho(state, X, covariance_type), prior,
                        covariance_type, w)


# ---------------------------------------------------------------------------
# Sufficient statistics: the chunked / Dask fit, eqs. (31)-(32)
# ---------------------------------------------------------------------------


def _full_stats(covariance_type):
    return covariance_type in ("full", "tied")


def _chunk_statistics(state, covariance_type, start, X, w):
    """gmm (23) of one validated chunk under q (E-step (12)); ``extra`` = Σ w r ln r."""
    if w is not None and not np.all(w > 0.0):
        X, w = X[w > 0.0], w[w > 0.0]
    log_rho = _log_rho(state, X, covariance_type)
    _check_defined_rows(log_rho, offset=start)
    log_resp = log_softmax(log_rho, axis=1)  # (12)
    resp = np.exp(log_resp)
    rlr = np.where(resp > 0.0, resp * np.where(resp > 0.0, log_resp, 0.0), 0.0).sum(axis=1)
    if w is None:
        return chunk_moments(X, resp, _full_stats(covariance_type), X.shape[0],
                             float(rlr.sum()))
    return chunk_moments(X, resp * w[:, None], _full_stats(covariance_type), float(w.sum()),
                         float(w @ rlr))


def _chunk_statistics_fn(state, covariance_type, start, X, w, r):
    """:func:`_chunk_statistics` in the ``map_reduce`` signature (``r`` unused)."""
    return _chunk_statistics(state, covariance_type, start, X, w)


def _m_step_moments(stats, prior, reg_covar, covariance_type):
    """(13)-(16), (26)-(29) from the statistics, with the scatter (31)."""
    nk = stats.nk
    if not np.all(np.isfinite(nk)):
        raise ValueError("resp too large: its column sums N_k overflow float64")
    cache = {}

    def scatter(k, mean):
        if "C" not in cache:
            cache["C"] = _scatter_about_means(stats, prior)
        return cache["C"][k]

    with np.errstate(over="ignore", invalid="ignore"):  # refused by _state_from_scatter
        return _state_from_scatter(nk, stats.sums, scatter, prior, reg_covar,
                                   covariance_type, _too_large_stats)


def _scatter_about_means(stats, prior):
    """(31) about the new means m_k of (16)."""
    beta0 = prior["mean_precision_prior"]
    means = (beta0 * prior["mean_prior"] + stats.sums) / (beta0 + stats.nk)[:, None]
    with np.errstate(over="ignore", invalid="ignore"):  # refused by the caller
        return scatter_about(stats, means)


def _too_large_stats():
    return ValueError("X values too large: the weighted squared deviations from the means "
                      "overflow float64; rescale X")


def _lower_bound_moments(state, stats, prior, covariance_type):
    """The bound (19) of the new state with the data term (32)."""
    ct = covariance_type
    d = state["means"].shape[1]
    beta, chol = state["mean_precision"], state["precisions_cholesky"]
    log_w = _expected_log_weights(state["weight_concentration"])
    log_lam = _expected_log_det_precision(state["degrees_of_freedom"], chol, ct, d)
    const = log_w + 0.5 * log_lam - 0.5 * d * LOG_2PI - 0.5 * d / beta  # c_k of (32)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is -inf, correctly
        C = scatter_about(stats, state["means"])  # (31)
        if ct == "full":
            quad = np.einsum("kij,kil,klj->k", chol, C, chol)
        elif ct == "tied":
            quad = np.einsum("ij,kil,lj->k", chol, C, chol)
        elif ct == "diag":
            quad = np.sum(chol * chol * C, axis=1)
        else:
            quad = chol * chol * C.sum(axis=1)
    keep = stats.nk > 0.0
    data_term = (np.sum(stats.nk[keep] * const[keep] - 0.5 * quad[keep])
                 - stats.extra)  # (32)
    conc, alpha0 = state["weight_concentration"], prior["weight_concentration_prior"]
    kl_pi = _kl_dirichlet(conc, alpha0) if conc.ndim == 1 else _kl_stick_breaking(conc, alpha0)
    kl_gw = np.sum(_kl_gauss_wishart(state, prior, ct))
    return float(data_term - kl_pi - kl_gw)  # (19)


def _check_stats(stats, covariance_type, n_components=None, name="stats"):
    stats = check_moments(stats, name)
    want = 3 if _full_stats(covariance_type) else 2
    if stats.scatter.ndim != want:
        kind = "full (K, D, D)" if want == 3 else "diagonal (K, D)"
        raise ValueError(f"{name}.scatter must be {kind} for covariance_type="
                         f"{covariance_type!r}, got shape {stats.scatter.shape}")
    if n_components is not None and stats.nk.shape[0] != n_components:
        raise ValueError(f"{name} has {stats.nk.shape[0]} components but state has "
                         f"{n_components}")
    return stats


@benign_underflow
def sufficient_statistics(state, X, covariance_type="full", sample_weight=None):
    """E-step (12) under ``state`` and the statistics of the rows
    (eq. 23 of :mod:`lvmref.gmm`), with ``extra`` = Σ_n w_n Σ_k r_nk ln r_nk (the entropy
    sum of (32)).

    Parameters
    ----------
    state : dict
        Variational state (module docstring).
    X : array_like of shape (N, D)
    covariance_type : {"full", "tied", "diag", "spherical"}
    sample_weight : array_like of shape (N,), optional
        Frequency weights (eq. 30); rows of weight 0 are dropped.

    Returns
    -------
    lvmref.mixture_stats.Moments
        Combine disjoint row sets with :func:`lvmref.mixture_stats.merge_moments`.
    """
    state, X = _check_state_X(state, X, covariance_type)
    w = check_sample_weight(sample_weight, X.shape[0])
    if w is not None:
        check_finite_sum(w, "sample_weight")
    return _chunk_statistics(state, covariance_type, 0, X, w)


@benign_underflow
def m_step_statistics(stats, prior, covariance_type="full", reg_covar: float = 0.0) -> dict:
    """Variational M-step, eqs. (13)-(18), (26)-(29) and (14'), from the statistics of
    all rows, with the scatter of eq. (31): equal to :func:`m_step` on the rows up to the
    order of summation.

    Parameters
    ----------
    stats : lvmref.mixture_stats.Moments
        As from :func:`sufficient_statistics`, merged over chunks.
    prior : dict
        See :func:`make_prior`.
    covariance_type : {"full", "tied", "diag", "spherical"}
    reg_covar : float, >= 0

    Returns
    -------
    dict
        The new variational state.
    """
    ct = check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    stats = _check_stats(stats, ct)
    prior = _check_prior(prior, stats.sums.shape[1], covariance_type=ct)
    reg_covar = check_nonnegative_float(reg_covar, "reg_covar")
    try:
        return _m_step_moments(stats, prior, reg_covar, ct)
    except ValueError as exc:  # overflow or a singular covariance: caused by stats
        raise ValueError(f"stats: {exc}") from None


@benign_underflow
def lower_bound_statistics(state, stats, prior, covariance_type="full") -> float:
    """The bound, eq. (19), of ``state`` for the responsibilities whose statistics are
    ``stats``, with the data term of eq. (32): equal to :func:`lower_bound` on the rows
    up to the order of summation.

    Parameters
    ----------
    state : dict
        Variational state of q(π) q(μ, Λ) (module docstring).
    stats : lvmref.mixture_stats.Moments
        Statistics of the responsibilities of q(Z) (``extra`` = Σ w r ln r), as from
        :func:`sufficient_statistics`.
    prior : dict
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    float
    """
    state = _check_state(state, covariance_type=covariance_type)
    stats = _check_stats(stats, covariance_type, state["means"].shape[0])
    if stats.sums.shape[1] != state["means"].shape[1]:
        raise ValueError(f"stats has {stats.sums.shape[1]} features but state has "
                         f"{state['means'].shape[1]}")
    prior = _check_prior(prior, stats.sums.shape[1], covariance_type=covariance_type)
    _check_prior_type(state, prior)
    with np.errstate(over="ignore", invalid="ignore"):  # refused just below
        value = _lower_bound_moments(state, stats, prior, covariance_type)
    if not np.isfinite(value):
        raise ValueError("stats too large: the data term (32) of the bound overflows float64 "
                         f"(it is {value}); rescale X")
    return value


def _streamed_prior(src, w, n_components, covariance_type, given):
    """:func:`make_prior` for data read chunk by chunk: the defaults from the statistics
    of one component with r_n = 1 (module docstring, after (32))."""
    given = dict(given)
    if given["covariance_prior"] is None or given["mean_prior"] is None:
        full = _full_stats(covariance_type)

        def fn(start, x, wc, r):
            if wc is not None and not np.all(wc > 0.0):
                x, wc = x[wc > 0.0], wc[wc > 0.0]
            ones = np.ones((x.shape[0], 1)) if wc is None else np.ascontiguousarray(wc[:, None])
            return chunk_moments(x, ones, full, x.shape[0] if wc is None else wc.sum(), 0.0)

        m = src.map_reduce(fn, merge_moments, weight=w)
        total = m.nk[0]
        mean = m.sums[0] / total
        if given["covariance_prior"] is None:
            divisor = total - 1.0
            if w is None and src.n < 2:
                raise ValueError("X has 1 sample; the default covariance_prior (the sample "
                                 "covariance of X) needs at least 2 samples: pass "
                                 "covariance_prior explicitly")
            if w is not None and not divisor > 0.0:
                raise ValueError(
                    f"sample_weight sums to {total:.6g} <= 1: the default covariance_prior "
                    "(the weighted sample covariance, divisor sum(sample_weight) - 1) needs a "
                    "sum above 1; pass covariance_prior explicitly")
            with np.errstate(over="ignore", invalid="ignore"):  # refused just below
                cov = m.scatter[0] / divisor
                if covariance_type == "spherical":
                    cov = cov.mean()
            if not np.all(np.isfinite(cov)):
                raise ValueError("X values too large: its sample covariance (the default "
                                 "covariance_prior) overflows float64; rescale X")
            if covariance_type in ("full", "tied"):
                try:
                    singular = _cholesky_lower(cov, "covariance_prior") is None
                except ValueError:
                    singular = True
            else:
                singular = bool(np.any(cov <= 0))
            if singular:
                raise ValueError("the default covariance_prior (sample covariance of X) is "
                                 "singular; pass covariance_prior explicitly")
            given["covariance_prior"] = cov
        if given["mean_prior"] is None:
            given["mean_prior"] = mean
    d = src.d
    prior = {
        "weight_concentration_prior_type": given["weight_concentration_prior_type"],
        "weight_concentration_prior": 1.0 / n_components
        if given["weight_concentration_prior"] is None else given["weight_concentration_prior"],
        "mean_precision_prior": 1.0 if given["mean_precision_prior"] is None
        else given["mean_precision_prior"],
        "mean_prior": given["mean_prior"],
        "degrees_of_freedom_prior": float(d) if given["degrees_of_freedom_prior"] is None
        else given["degrees_of_freedom_prior"],
        "covariance_prior": given["covariance_prior"],
    }
    return _check_prior(prior, d, covariance_type=covariance_type)


# ---------------------------------------------------------------------------
# Estimator
# ---------------------------------------------------------------------------


@benign_underflow
class BayesianGaussianMixture(MixtureBase):
    """Variational Bayesian Gaussian mixture, eqs. (1)-(30) (and (3')-(21') for the DP).

    Constructor names, fitted attributes and their conventions follow
    ``sklearn.mixture.BayesianGaussianMixture``; the differences are listed under Notes.
    It is a scikit-learn estimator (``get_params``/``set_params``, tags, ``clone``,
    ``Pipeline``, ``GridSearchCV``; :class:`lvmref.mixture.MixtureBase`) without
    importing scikit-learn.

    Parameters
    ----------
    n_components : int
        K, the (maximum) number of components.
    covariance_type : {"full", "tied", "diag", "spherical"}
        The family (24) of q(Λ_k) and the form (23) of ``covariance_prior``; updates
        (26)-(29).
    tol : float
        Stop when the bound changes by less than ``tol`` between iterations (>= 0; 0
        runs ``max_iter`` iterations).
    reg_covar : float
        ``reg_covar * N_k`` is added to the diagonal of A_k (25), as scikit-learn does.
        The conjugate prior already keeps W_k^{-1} ⪰ W0^{-1} ≻ 0, so 0 is safe and makes
        every update an exact coordinate-ascent step.
    max_iter : int
        Iterations (E-step + M-step) per initialisation, >= 1.
    n_init : int
        Initialisations; the run with the largest final bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}
        How the initial responsibilities are drawn (:func:`lvmref.mixture.initial_resp`;
        "kmeans" and "k-means++" are lvmref's own and do not reproduce scikit-learn's
        labels). ``fit(X, resp_init=...)`` bypasses it.
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}
        Truncated stick-breaking prior (3') (scikit-learn's default) or the Dirichlet
        distribution prior (3) on the weights.
    weight_concentration_prior, mean_precision_prior, mean_prior, \
degrees_of_freedom_prior, covariance_prior
        Prior hyperparameters α0, β0, m0 (n_features,), ν0 and W0^{-1} ((n_features,
        n_features) for full/tied, (n_features,) for diag, a number for spherical, eq.
        23); ``None`` takes the defaults of :func:`make_prior`.
    random_state : numpy.random.Generator, int or None
        Randomness for the initialisation.
    warm_start : bool
        If True and already fitted, ``fit`` continues from the fitted state (one run).
    verbose : int, default 0
        0 silent; 1 prints each initialisation and every ``verbose_interval``-th
        iteration; 2 also the time and the change of the bound (scikit-learn's levels).
    verbose_interval : int, default 10
    chunk_size : int or None, default None
        Rows per chunk (not in scikit-learn), as for
        :class:`lvmref.gmm.GaussianMixture`: ``None`` processes an in-memory ``X`` whole
        and reads an ``np.memmap``, array-like or Dask array in chunks of about 64 MiB
        of working memory (a Dask array in its own row blocks); an int makes ``fit`` and
        the predictions work chunk by chunk, eqs. (31)-(32).

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
        Posterior mean of π: α_k / Σ_j α_j; for the Dirichlet process the stick-breaking
        posterior mean, renormalised to sum to 1 (module docstring, after (21')).
    means_ : ndarray of shape (K, D)
        Posterior mean of μ_k: m_k.
    covariances_ : ndarray
        ``E[Λ_k]^{-1} = W_k^{-1} / ν_k`` (scikit-learn's definition); full (K, D, D),
        tied (D, D), diag (K, D), spherical (K,).
    covariance_posterior_means_ : ndarray, shape of ``covariances_``
        Posterior mean of the covariance ``E[Λ_k^{-1}] = W_k^{-1} / (ν_k - D - 1)``;
        ``inf`` for components with ``ν_k <= D + 1`` (the mean does not exist).
    precisions_ : ndarray, shape of ``covariances_``
        Posterior mean of Λ_k: ``ν_k W_k`` (its diagonal for diag, the multiple of I for
        spherical).
    precisions_cholesky_ : ndarray, shape of ``covariances_``
        P_k with ``P_k P_k^T = precisions_[k]`` (upper triangular for full/tied).
    weight_concentration_ : ndarray of shape (K,) or (2, K)
        α (Dirichlet distribution) or (γ_1, γ_2) (Dirichlet process; scikit-learn stores
        a tuple of two (K,) arrays).
    mean_precision_ : ndarray of shape (K,)
        β.
    degrees_of_freedom_ : ndarray of shape (K,) (0-d for tied)
        ν.
    weight_concentration_prior_, mean_precision_prior_, mean_prior_, \
degrees_of_freedom_prior_, covariance_prior_
        The priors used (defaults filled in).
    lower_bound_ : float
        Final value of the bound (19) of the kept run, with every constant (so unlike
        scikit-learn's value it is a lower bound on ln p(X)).
    lower_bounds_ : list of float
        The bound after every iteration of the kept run.
    converged_ : bool
    n_iter_ : int
    n_features_in_ : int

    Notes
    -----
    Differences from scikit-learn: the reported bound includes all constants (its
    *differences* between iterations equal scikit-learn's); the "kmeans" initialisation
    is lvmref's own; ``reg_covar`` enters (25) as scikit-learn does, but 0 is the exact
    update; ``fit`` takes ``sample_weight`` (frequency weights, eq. 30), which
    scikit-learn lacks.

    Randomness differs from scikit-learn. With an int ``random_state`` lvmref draws from
    ``numpy.random.default_rng(seed)`` (a ``Generator``), scikit-learn from the legacy
    ``numpy.random.RandomState(seed)``, so ``init_params="random"`` or
    ``"random_from_data"`` with the same seed start elsewhere. To reproduce
    scikit-learn's fit exactly (``n_init=1``), pass its start as ``resp_init``:
    ``R = np.random.RandomState(seed).uniform(size=(n, K)); R /= R.sum(axis=1,
    keepdims=True)`` for "random"; one-hot columns at ``np.random.RandomState(seed)
    .choice(n, K, replace=False)`` for "random_from_data"; the one-hot labels of
    ``sklearn.cluster.KMeans(K, n_init=1, random_state=seed).fit(X).labels_`` for
    "kmeans" (``tests/test_vbgmm.py`` checks the "random" route against scikit-learn).
    ``fit(X, resp_init=R)`` performs the M-step (13)-(18) on ``R`` and then iterates
    (E-step, M-step, bound), scikit-learn's ``_initialize(X, R)`` followed by its loop.

    ``predict_proba`` is the E-step (12) under the fitted q. ``score_samples`` is
    ``ln Σ_k ρ_nk`` of (11), scikit-learn's ``score_samples`` for this model: neither the
    plug-in density nor the posterior predictive, but a lower bound on the log posterior
    predictive density ln Σ_k E_q[π_k] E_q[N(x | μ_k, Λ_k^{-1})] (Jensen, E[ln f] <=
    ln E[f], in each term; the predictive is a mixture of Student-t, B10.81);
    ``sample`` draws from the plug-in mixture (``weights_``, ``means_``,
    ``covariances_``), as scikit-learn's does. ``save(path)`` /
    ``BayesianGaussianMixture.load(path)``: :meth:`MixtureBase.save` (the fitted state,
    the prior used, the hyper-parameters and the bound history).
    """

    _HYPER = {"n_components": "int", "covariance_type": "str", "tol": "float",
              "reg_covar": "float", "max_iter": "int", "n_init": "int",
              "init_params": "str", "weight_concentration_prior_type": "str",
              "weight_concentration_prior": "float", "mean_precision_prior": "float",
              "mean_prior": "array", "degrees_of_freedom_prior": "float",
              "covariance_prior": "array", "random_state": "seed", "warm_start": "bool",
              "verbose": "int", "verbose_interval": "int", "chunk_size": "int"}
    _MIN_MAX_ITER = 1

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
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        chunk_size=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.chunk_size = chunk_size

    def _check_hyper(self):
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_choice(
            self.weight_concentration_prior_type, "weight_concentration_prior_type", _PRIOR_TYPES
        )
        return self._check_common_hyper()

    def _prior_kwargs(self):
        return {key: getattr(self, key) for key in _PRIOR_KEYS}

    def fit(self, X, y=None, *, sample_weight=None, resp_init=None):
        """Fit q by coordinate ascent on the bound (19).

        Each iteration is the E-step (12), the M-step (13)-(18)/(26)-(29) and the bound
        (19) of the new state; a warm start continues from the fitted state.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array_like of shape (n_samples,), optional
            Frequency weights w_n >= 0, not all zero (eq. 30): integer weights fit the
            repeated rows; rows of weight 0 are dropped first. Scaling every weight by c
            is c times the data (it changes the posterior).
        resp_init : array_like of shape (n_samples, n_components), optional
            Initial responsibilities (non-negative); when given, ``init_params`` and
            ``n_init`` are not used.

        Returns
        -------
        self
        """
        k = self._check_hyper()
        if self._chunked(X):
            return self._fit_chunked(X, k, sample_weight, resp_init)
        X, w, resp_init = self._fit_data(X, sample_weight, resp_init, k)
        ct = self.covariance_type
        warm = self._continues(X, k)
        prior = make_prior(
            X, k, weight_concentration_prior_type=self.weight_concentration_prior_type,
            covariance_type=ct, sample_weight=w, **self._prior_kwargs(),
        )
        rng = check_rng(self.random_state, name="random_state")
        reg_covar = float(self.reg_covar)

        def weighted(resp):
            return resp if w is None else resp * w[:, None]  # (30)

        def initialize(_):
            if warm:
                state = self.state_
            else:
                resp = (resp_init if resp_init is not None
                        else initial_resp(X, k, self.init_params, rng, sample_weight=w))
                state = _m_step(X, weighted(resp), prior, reg_covar, ct)
            return (state, _log_rho(state, X, ct)), -np.inf

        def iterate(carry):
            state, log_rho = carry
            log_resp = log_softmax(log_rho, axis=1)  # (12)
            state = _m_step(X, weighted(np.exp(log_resp)), prior, reg_covar, ct)  # (13)-(18)
            log_rho = _log_rho(state, X, ct)  # (11), shared by the bound and the next E-step
            return (state, log_rho), _lower_bound(state, log_resp, log_rho, prior, ct, w)  # (19)

        n_init = 1 if (warm or resp_init is not None) else self.n_init
        result = self._run_em(initialize, iterate, n_init)
        self._set_state(result.state[0], prior)
        self._set_em_result(result, X.shape[1])
        return self

    def _fit_chunked(self, X, k, sample_weight, resp_init):
        """``fit`` on data read chunk by chunk: one pass per iteration, eqs. (31)-(32)."""
        src, w, resp_init = self._chunked_fit_data(X, sample_weight, resp_init, k)
        ct = self.covariance_type
        warm = self._continues(src, k)
        given = {"weight_concentration_prior_type": self.weight_concentration_prior_type,
                 **self._prior_kwargs()}
        prior = _streamed_prior(src, w, k, ct, given)
        rng = check_rng(self.random_state, name="random_state")
        reg_covar = float(self.reg_covar)

        def initialize(_):
            if warm:
                return self.state_, -np.inf
            stats = initial_moments(src, k, self.init_params, rng, sample_weight=w,
                                    resp_init=resp_init, full=_full_stats(ct))
            return _m_step_moments(stats, prior, reg_covar, ct), -np.inf

        def iterate(state):
            stats = src.map_reduce(partial(_chunk_statistics_fn, state, ct), merge_moments,
                                   weight=w)  # E-step (12) and gmm (23)-(24)
            new = _m_step_moments(stats, prior, reg_covar, ct)  # (13)-(18), (31)
            return new, _lower_bound_moments(new, stats, prior, ct)  # (19), (32)

        n_init = 1 if (warm or resp_init is not None) else self.n_init
        result = self._run_em(initialize, iterate, n_init)
        self._set_state(result.state, prior)
        self._set_em_result(result, src.d)
        return self

    def _set_state(self, state, prior):
        ct = self.covariance_type
        d = state["means"].shape[1]
        alpha = np.asarray(state["weight_concentration"])
        dof = np.asarray(state["degrees_of_freedom"])
        self.weight_concentration_ = alpha
        self.mean_precision_ = state["mean_precision"]
        self.means_ = state["means"]
        self.degrees_of_freedom_ = dof
        self.covariances_ = state["covariances"]
        self.precisions_cholesky_ = state["precisions_cholesky"]
        self.precisions_ = precisions_from_cholesky(self.precisions_cholesky_, ct)
        if alpha.ndim == 2:  # stick breaking: E[v_k] Π_{j<k} E[1 - v_j]
            stick = alpha[0] / alpha.sum(axis=0)
            weights = stick * np.concatenate(([1.0], np.cumprod(1.0 - stick)[:-1]))
        else:
            weights = alpha
        self.weights_ = weights / weights.sum()
        excess = dof - d - 1.0
        with np.errstate(divide="ignore"):
            scale = np.where(excess > 0, dof / np.where(excess > 0, excess, 1.0), np.inf)
        self.covariance_posterior_means_ = _scale_by_dof(self.covariances_, scale, ct,
                                                         inverse=True)
        self.weight_concentration_prior_type_ = prior["weight_concentration_prior_type"]
        self.weight_concentration_prior_ = prior["weight_concentration_prior"]
        self.mean_precision_prior_ = prior["mean_precision_prior"]
        self.mean_prior_ = prior["mean_prior"]
        self.degrees_of_freedom_prior_ = prior["degrees_of_freedom_prior"]
        self.covariance_prior_ = prior["covariance_prior"]

    @property
    def state_(self) -> dict:
        """The fitted variational state as a dict (module docstring layout; copies)."""
        self._check_fitted()
        return {key: getattr(self, key + "_").copy() for key in _STATE_KEYS}

    @property
    def prior_(self) -> dict:
        """The prior used by the last fit (see :func:`make_prior`)."""
        self._check_fitted()
        return {
            "weight_concentration_prior_type": self.weight_concentration_prior_type_,
            "weight_concentration_prior": self.weight_concentration_prior_,
            "mean_precision_prior": self.mean_precision_prior_,
            "mean_prior": self.mean_prior_.copy(),
            "degrees_of_freedom_prior": self.degrees_of_freedom_prior_,
            "covariance_prior": np.array(self.covariance_prior_, copy=True),
        }

    def _log_rho_fitted(self, X):
        return _log_rho(self.state_, X, self.covariance_type)

    def _posterior(self, X, start=0):
        log_rho = self._log_rho_fitted(X)
        _check_defined_rows(log_rho, offset=start)
        return np.exp(log_softmax(log_rho, axis=1))

    def _log_norm(self, X, start=0):
        return logsumexp(self._log_rho_fitted(X), axis=1)

    # -- persistence (the frame is MixtureBase.save / load) -----------------------------

    def _fitted_entries(self):
        out = {key + "_": getattr(self, key + "_") for key in _STATE_KEYS}
        out.update({key + "_": value for key, value in self.prior_.items()})
        return out

    def _load_fitted(self, f, k, d):
        """Fitted state and prior of a file, checked as ``fit`` and the functions check them."""
        ct = self.covariance_type
        as_float_array(f.array("means_"), "means_", shape=(k, d))
        prior = _check_prior({
            "weight_concentration_prior_type": f.str("weight_concentration_prior_type_"),
            "weight_concentration_prior": f.float("weight_concentration_prior_"),
            "mean_precision_prior": f.float("mean_precision_prior_"),
            "mean_prior": f.array("mean_prior_"),
            "degrees_of_freedom_prior": f.float("degrees_of_freedom_prior_"),
            "covariance_prior": f.array("covariance_prior_"),
        }, d, suffix="_", covariance_type=ct)
        if prior["weight_concentration_prior_type"] != self.weight_concentration_prior_type:
            raise ValueError("weight_concentration_prior_type_ differs from "
                             "weight_concentration_prior_type")
        given = {key: v for key, v in self._prior_kwargs().items() if v is not None}
        _check_prior({**prior, **given}, d, covariance_type=ct)  # the constructor's, as fit
        state = _check_state({key: f.array(key + "_") for key in _STATE_KEYS}, d,
                             label=lambda key: key + "_", covariance_type=ct)
        _check_prior_type(state, prior, label=lambda key: key + "_")
        u = state["precisions_cholesky"]
        if ct in ("full", "tied") and np.any(np.tril(u, -1) != 0.0):
            raise ValueError("precisions_cholesky_ must be upper triangular")
        check_covariances(state["covariances"], u, ct, name="covariances_",
                          factor_name="precisions_cholesky_")
        self._set_state(state, prior)
