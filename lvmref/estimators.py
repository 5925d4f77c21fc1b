r"""Log-marginal-likelihood estimators and variational bounds for latent variable models.

Notation: data row :math:`x` (D features), latent :math:`z` (K units), model
:math:`p(x, z) = p(z) p(x \mid z)`, variational / recognition distribution
:math:`q(z \mid x)`. Everything is per data row; functions return shape ``(n,)``.

Derivation
----------
Exact quantities, by enumeration of the latent space (binary :math:`z \in \{0,1\}^K`,
:math:`2^K` configurations; or categorical :math:`z \in \{0, \dots, C-1\}`):

.. math::

   \log p(x) &= \log \sum_z p(x, z)                                          \tag{1} \\
   p(z \mid x) &= \exp\{\log p(x, z) - \log p(x)\}                           \tag{2} \\
   \mathrm{KL}(q \,\|\, p(\cdot \mid x)) &= \sum_z q(z \mid x)
        \left[\log q(z \mid x) - \log p(x, z) + \log p(x)\right]             \tag{3} \\
   \mathrm{ELBO}(q) &= \mathbb{E}_q[\log p(x, z) - \log q(z \mid x)]
        = \log p(x) - \mathrm{KL}(q \,\|\, p(\cdot \mid x)) \le \log p(x)   \tag{4}

(1) is evaluated as a streaming max-split log-sum-exp over chunks of configurations
(:mod:`lvmref.kernels.lse`), so memory stays bounded for K up to
``MAX_ENUMERATION_K`` = 24. (3) is computed in a second pass after (1), term by term as
:math:`q (\log q - \log p(z \mid x))`, which avoids the cancellation of
:math:`\mathbb{E}_q[\log q - \log p(x,z)] + \log p(x)` when q is close to the posterior.
For the single-layer sigmoid belief net (factorised Bernoulli prior, decoder logits
``z @ W + b``), :func:`sbn_exact_log_marginal` evaluates (1) straight from the parameters
(fused enumeration kernels in :mod:`lvmref.kernels.estimators`).

Monte Carlo, from S samples :math:`z_s` of a proposal :math:`r(z)` with *log weights*

.. math:: \log w_s = \log p(x, z_s) - \log r(z_s)                             \tag{5}

(importance sampling: :math:`r = q(\cdot \mid x)`; naive Monte Carlo: :math:`r = p(z)`,
so :math:`\log w_s = \log p(x \mid z_s)`):

.. math::

   \hat p &= \frac1S \sum_s w_s, \quad \mathbb{E}\,\hat p = p(x), \quad
   \log \hat p = \operatorname{logmeanexp}_s \log w_s                        \tag{6} \\
   \frac{\mathrm{se}(\hat p)}{\hat p} &= \frac{1}{\sqrt S}
        \sqrt{\frac{1}{S-1} \sum_s (\rho_s - 1)^2}, \quad
        \rho_s = \frac{w_s}{\hat p} = e^{\log w_s - \log \hat p} \in [0, S]   \tag{7}

(7) is the usual standard error of a mean, divided by the mean, computed without leaving
log space (:math:`\rho_s` cannot overflow). By the delta method it is also the standard
error of :math:`\log \hat p`, which is what :class:`Estimate` reports for the log-marginal
estimators; ``exp(value) * stderr`` is *exactly* the standard error of :math:`\hat p`.
:math:`\log \hat p` is biased low (Jensen) but consistent.

.. math::

   \widehat{\mathrm{ELBO}} &= \frac1S \sum_s \log w_s, \quad
   \mathrm{se} = \frac{\operatorname{sd}_s(\log w_s)}{\sqrt S}               \tag{8} \\
   \mathcal L_k &= \mathbb{E}_{z_1..z_k \sim q}
        \Big[\log \frac1k \sum_{i=1}^k w_i\Big]                              \tag{9}

(9) is the importance-weighted bound of Burda, Grosse & Salakhutdinov (2015, "Importance
Weighted Autoencoders", eq. 8). Their Theorem 1: :math:`\mathcal L_1 = \mathrm{ELBO}`,
:math:`\mathcal L_k \le \mathcal L_m \le \log p(x)` for :math:`k \le m`, and
:math:`\mathcal L_k \to \log p(x)` when the weights are bounded. It is estimated from
``R = n_repeats`` independent sets of k samples:

.. math:: \hat{\mathcal L}_k = \frac1R \sum_{r=1}^R \operatorname{logmeanexp}_{i \in
          \text{set } r} \log w_i, \qquad \mathrm{se} = \frac{\operatorname{sd}_r}{\sqrt R}
          \tag{10}

(an unbiased estimate of :math:`\mathcal L_k`, with the plain standard error of a mean of
R i.i.d. terms). For every single sample set, Jensen gives exactly
:math:`\frac1k\sum \log w_i \le \operatorname{logmeanexp} \log w_i`.            (11)

Standard errors that cannot be estimated are ``nan``, by rule: fewer than 2 samples
(S = 1 in (7)/(8), R = 1 in (10)), or a value of ``-inf`` (all weights zero in (6), or a
zero weight in (8)).

Model protocol (duck-typed)
---------------------------
A model is any object with::

    model.n_latent : int                       K, number of latent units (columns of z)
    model.latent_type : "binary" | "continuous" | "categorical"
    model.n_categories : int                   only for "categorical" (then K = 1 and the
                                               single column holds the category index)
    model.log_joint(x, z) -> (n, k)            log p(x, z); x (n, D); z (n, k, K), or
                                               (1, k, K) broadcast over the rows of x
    model.sample_prior(n, k, rng) -> (n, k, K) z ~ p(z); rng a numpy Generator
    model.log_q(x, z) -> (n, k)                log q(z | x); z (n, k, K) or (1, k, K)
    model.sample_q(x, k, rng) -> (n, k, K)     z ~ q(z | x)

Naive Monte Carlo (:func:`naive_mc_log_marginal`) needs :math:`\log p(x \mid z)`, which
the joint alone does not give; the model must *also* have one of (first found is used)::

    model.log_likelihood(x, z) -> (n, k)       log p(x | z), same broadcasting as log_joint
    model.log_prior(z) -> (m, k)               log p(z), m = z.shape[0]; then
                                               log p(x | z) = log_joint - log_prior

Which methods each function calls: the exact functions call ``log_joint`` (and ``log_q``
for the KL) with ``z`` of shape ``(1, c, K)`` holding a chunk of configurations in
:func:`enumerate_binary` order (categorical: ``0..C-1``); the Monte Carlo functions call
``sample_prior``/``sample_q`` only when ``z`` is not given. Model outputs are checked: wrong
shape, NaN or ``+inf`` raise ``ValueError`` naming the method. ``-inf`` is allowed
(zero probability).

Oracle use: every Monte Carlo function accepts the samples themselves (``z=``) instead of
an ``rng``, so its result is a deterministic function of (parameters, x, z). The
log-weight-level functions (:func:`log_marginal_from_log_weights`,
:func:`elbo_from_log_weights`, :func:`iwae_from_log_weights`) take log weights computed by
any implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvmref.kernels import log_mean_exp, logsumexp
from lvmref.kernels.checks import (
    as_float_array,
    check_choice,
    check_flag,
    check_positive_int,
    check_rng,
)
from lvmref.kernels.estimators import sbn_log_marginal, sbn_log_marginal_np
from lvmref.kernels.fpenv import benign_underflow
from lvmref.kernels.lse import lse_stream_finalize, lse_stream_init, lse_stream_update

__all__ = [
    "MAX_ENUMERATION_K",
    "Estimate",
    "enumerate_binary",
    "exact_log_marginal",
    "exact_posterior",
    "exact_kl_to_posterior",
    "kl_data_model",
    "sbn_exact_log_marginal",
    "naive_mc_log_marginal",
    "importance_log_marginal",
    "elbo",
    "iwae_bound",
    "importance_log_weights",
    "prior_log_weights",
    "log_marginal_from_log_weights",
    "elbo_from_log_weights",
    "iwae_from_log_weights",
]

#: Largest K for which the exact functions enumerate 2**K binary configurations.
MAX_ENUMERATION_K = 24

#: Default number of independent sample sets for :func:`iwae_bound` when sampling.
DEFAULT_IWAE_REPEATS = 10

_LATENT_TYPES = ("binary", "continuous", "categorical")

# Target number of float64 entries of the largest per-chunk intermediate a model is
# likely to build (n rows x c configurations x max(D, K)): 2**22 entries = 32 MiB.
_CHUNK_BUDGET = 2**22


@dataclass(frozen=True, eq=False)
class Estimate:
    """A per-row Monte Carlo estimate with its standard error.

    Attributes
    ----------
    value : ndarray, shape (n,)
        The estimate for each data row.
    stderr : ndarray, shape (n,)
        Its standard error (see the module docstring, eqs. 7, 8, 10); ``nan`` where it
        cannot be estimated (fewer than 2 samples or sample sets, or ``value = -inf``).
    n_draws : int
        Number of samples drawn per row (for :func:`iwae_bound`: ``k * n_repeats``).
    log_weights : ndarray, shape (n, n_draws)
        The log weights the estimate was computed from (eq. 5).
    """

    value: np.ndarray
    stderr: np.ndarray
    n_draws: int
    log_weights: np.ndarray

    def __repr__(self) -> str:
        return (f"Estimate(value={np.array2string(self.value, precision=6)}, "
                f"stderr={np.array2string(self.stderr, precision=3)}, "
                f"n_draws={self.n_draws})")


# --------------------------------------------------------------------------- checks


def _check_x(x) -> np.ndarray:
    return as_float_array(x, "x", ndim=2)


def _model_attr(model, name: str):
    if not hasattr(model, name):
        raise TypeError(f"model must have attribute {name!r} (see lvmref.estimators protocol)")
    return getattr(model, name)


def _model_info(model):
    """Return (K, latent_type, n_categories or None), validated."""
    k_lat = _model_attr(model, "n_latent")
    k_lat = check_positive_int(k_lat, "model.n_latent")
    ltype = check_choice(_model_attr(model, "latent_type"), "model.latent_type", _LATENT_TYPES)
    n_cat = None
    if ltype == "categorical":
        n_cat = check_positive_int(_model_attr(model, "n_categories"), "model.n_categories")
        if k_lat != 1:
            raise ValueError(
                f"model.n_latent must be 1 for categorical latents (one index column), "
                f"got {k_lat}"
            )
    return k_lat, ltype, n_cat


def _check_z(z, model, n: int, k, name: str = "z"):
    """Validate given samples: shape (n or 1, k, K), values in the latent domain."""
    k_lat, ltype, n_cat = _model_info(model)
    z = as_float_array(z, name, ndim=3)
    if z.shape[0] not in (1, n):
        raise ValueError(f"{name} must have shape (n, k, K) or (1, k, K) with n = {n}, "
                         f"got {z.shape}")
    if z.shape[2] != k_lat:
        raise ValueError(f"{name} must have K = model.n_latent = {k_lat} columns in its last "
                         f"axis, got shape {z.shape}")
    if k is not None and z.shape[1] != k:
        raise ValueError(f"{name} has {z.shape[1]} samples per row (axis 1) but k = {k}")
    if ltype == "binary" and not np.all((z == 0) | (z == 1)):
        raise ValueError(f"{name} must be binary (0/1 entries) for model.latent_type 'binary'")
    if ltype == "categorical" and not np.all((z == np.round(z)) & (z >= 0) & (z < n_cat)):
        raise ValueError(
            f"{name} must hold integer category indices in [0, {n_cat}) for "
            f"model.latent_type 'categorical'"
        )
    return z


def _check_sampled(z, model, n: int, s: int, method: str):
    k_lat = _model_info(model)[0]
    z = np.asarray(z)
    if z.shape != (n, s, k_lat):
        raise ValueError(f"{method} must return shape (n, k, K) = {(n, s, k_lat)}, "
                         f"got {z.shape}")
    return _check_z(z, model, n, s, name=f"{method} output")


def _call(model, method: str, *args, shape) -> np.ndarray:
    fn = _model_attr(model, method)
    out = np.asarray(fn(*args), dtype=np.float64)
    if out.shape != shape:
        raise ValueError(f"model.{method} must return shape {shape}, got {out.shape}")
    if np.isnan(out).any() or np.isposinf(out).any():
        raise ValueError(f"model.{method} returned NaN or +inf")
    return out


def _check_rng_or_z(rng, z):
    if z is not None and rng is not None:
        raise ValueError("pass either rng (to sample) or z (given samples), not both")


def _check_log_w(log_w, name: str = "log_w") -> np.ndarray:
    log_w = as_float_array(log_w, name, ndim=2, finite=False)
    if np.isnan(log_w).any() or np.isposinf(log_w).any():
        raise ValueError(f"{name} contains NaN or +inf (log weights must be < +inf)")
    return log_w


# --------------------------------------------------------------------- enumeration


@benign_underflow
def enumerate_binary(K: int) -> np.ndarray:
    """All 2**K binary vectors, in the order of ``itertools.product((0, 1), repeat=K)``.

    Row ``j`` holds the binary expansion of ``j`` with the most significant bit in
    column 0: ``out[j, i] = (j >> (K - 1 - i)) & 1``.

    Parameters
    ----------
    K : int
        Number of binary units, ``1 <= K <= MAX_ENUMERATION_K``. The result has
        ``2**K * K`` float64 entries (K = 20: 160 MiB); the exact functions never build it
        whole, they enumerate in chunks.

    Returns
    -------
    ndarray, shape (2**K, K), float64 with entries 0.0 / 1.0
    """
    K = _check_enum_k(K, "K")
    return _binary_rows(0, 2**K, K)


def _check_enum_k(K, name):
    K = check_positive_int(K, name)
    if K > MAX_ENUMERATION_K:
        raise ValueError(
            f"{name} = {K} is too large to enumerate 2**{K} configurations exactly "
            f"(limit MAX_ENUMERATION_K = {MAX_ENUMERATION_K}); use importance sampling "
            f"(importance_log_marginal / iwae_bound) instead"
        )
    return K


def _binary_rows(start: int, stop: int, K: int) -> np.ndarray:
    j = np.arange(start, stop, dtype=np.int64)
    shifts = np.arange(K - 1, -1, -1, dtype=np.int64)
    return ((j[:, None] >> shifts[None, :]) & 1).astype(np.float64)


def _enumeration(model):
    """(K, number of configurations, chunk maker(start, stop) -> (c, K))."""
    k_lat, ltype, n_cat = _model_info(model)
    if ltype == "continuous":
        raise ValueError("model.latent_type 'continuous' cannot be enumerated exactly; "
                         "use importance_log_marginal / iwae_bound")
    if ltype == "categorical":
        return k_lat, n_cat, lambda a, b: np.arange(a, b, dtype=np.float64)[:, None]
    k_lat = _check_enum_k(k_lat, "model.n_latent")
    return k_lat, 2**k_lat, lambda a, b: _binary_rows(a, b, k_lat)


def _chunk_size(chunk_size, n, d, k_lat, total):
    if chunk_size is None:
        return int(max(1, min(total, _CHUNK_BUDGET // (n * max(d, k_lat, 1)))))
    return check_positive_int(chunk_size, "chunk_size")


def _chunks(model, x, chunk_size):
    k_lat, total, make = _enumeration(model)
    n, d = x.shape
    c = _chunk_size(chunk_size, n, d, k_lat, total)
    for start in range(0, total, c):
        stop = min(start + c, total)
        yield start, stop, make(start, stop)[None, :, :]


def _exact_log_marginal(model, x, chunk_size):
    n = x.shape[0]
    m, r = lse_stream_init(n)
    for start, stop, z in _chunks(model, x, chunk_size):
        lj = _call(model, "log_joint", x, z, shape=(n, stop - start))
        m, r = lse_stream_update(m, r, lj)
    return lse_stream_finalize(m, r)


@benign_underflow
def exact_log_marginal(model, x, *, chunk_size=None) -> np.ndarray:
    """Exact log p(x) by enumerating every latent configuration, eq. (1).

    Parameters
    ----------
    model : model following the protocol (module docstring), ``latent_type`` "binary"
        (``n_latent <= MAX_ENUMERATION_K``) or "categorical". Calls ``log_joint``.
    x : array_like, shape (n, D)
    chunk_size : int, optional
        Configurations per ``log_joint`` call. Default: as many as keep
        ``n * chunk_size * max(D, K)`` near 2**22 entries (32 MiB). The result does not
        depend on it beyond floating-point summation order.

    Returns
    -------
    ndarray, shape (n,)
        ``log p(x)``; ``-inf`` for a row with p(x) = 0.
    """
    x = _check_x(x)
    return _exact_log_marginal(model, x, chunk_size)


@benign_underflow
def exact_posterior(model, x, *, log: bool = False, chunk_size=None) -> np.ndarray:
    """Exact posterior p(z | x) over all configurations, eq. (2).

    Parameters
    ----------
    model : model following the protocol, enumerable ("binary" or "categorical").
    x : array_like, shape (n, D)
    log : bool
        Return ``log p(z | x)`` instead of probabilities.
    chunk_size : int, optional
        As in :func:`exact_log_marginal`. The output itself is ``(n, 2**K)``.

    Returns
    -------
    ndarray, shape (n, 2**K) (binary; columns in :func:`enumerate_binary` order) or
    (n, n_categories) (categorical; column c is category c). Rows sum to 1.

    Raises
    ------
    ValueError
        If p(x) = 0 for some row (the posterior is undefined there).
    """
    x = _check_x(x)
    log = check_flag(log, "log")
    n = x.shape[0]
    blocks = []
    for start, stop, z in _chunks(model, x, chunk_size):
        blocks.append(_call(model, "log_joint", x, z, shape=(n, stop - start)))
    lj = np.concatenate(blocks, axis=1)
    log_px = logsumexp(lj, axis=1)
    if np.isneginf(log_px).any():
        rows = np.flatnonzero(np.isneginf(log_px))[:5].tolist()
        raise ValueError(f"p(x) = 0 for rows {rows} of x: the posterior is undefined there")
    log_post = lj - log_px[:, None]
    return log_post if log else np.exp(log_post)


@benign_underflow
def exact_kl_to_posterior(model, x, *, chunk_size=None) -> np.ndarray:
    """Exact KL(q(z|x) || p(z|x)) by enumeration, eq. (3).

    Two passes over the configurations: first log p(x) (eq. 1), then
    ``sum_z q (log q - log p(x, z) + log p(x))``; terms with q(z|x) = 0 contribute 0.

    Parameters
    ----------
    model : model following the protocol, enumerable. Calls ``log_joint`` and ``log_q``.
    x : array_like, shape (n, D)
    chunk_size : int, optional
        As in :func:`exact_log_marginal`.

    Returns
    -------
    ndarray, shape (n,)
        KL >= 0 up to round-off; ``+inf`` where q puts mass on a z with p(x, z) = 0.

    Raises
    ------
    ValueError
        If p(x) = 0 for a row, or if ``log_q`` does not normalise over the enumerated
        configurations (|sum_z q - 1| > 1e-8).
    """
    x = _check_x(x)
    n = x.shape[0]
    log_px = _exact_log_marginal(model, x, chunk_size)
    if np.isneginf(log_px).any():
        rows = np.flatnonzero(np.isneginf(log_px))[:5].tolist()
        raise ValueError(f"p(x) = 0 for rows {rows} of x: KL to the posterior is undefined")
    kl = np.zeros(n)
    q_mass = np.zeros(n)
    for start, stop, z in _chunks(model, x, chunk_size):
        c = stop - start
        lq = _call(model, "log_q", x, z, shape=(n, c))
        lj = _call(model, "log_joint", x, z, shape=(n, c))
        q = np.exp(lq)
        support = q > 0
        with np.errstate(invalid="ignore"):
            log_ratio = np.where(support, lq - (lj - log_px[:, None]), 0.0)
        kl += np.sum(q * log_ratio, axis=1)
        q_mass += q.sum(axis=1)
    bad = np.abs(q_mass - 1.0) > 1e-8
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"model.log_q does not normalise over the enumerated configurations: "
            f"sum_z q(z|x) = {q_mass[i]!r} for row {i}"
        )
    return kl


@benign_underflow
def kl_data_model(table, model) -> float:
    """KL(data || model) in bits, by exact enumeration of the model's latents.

    ``KL = sum_x p_data(x) (log2 p_data(x) - log2 p_model(x))`` over the table's
    images, with ``log p_model(x)`` from :func:`exact_log_marginal`
    (a sum over all ``2**model.n_latent`` latent configurations).

    Parameters
    ----------
    table : tuple (images, probs)
        As returned by :func:`lvmref.datasets.bars_table`: images (m, D), probs (m,).
    model : object
        A binary latent-variable model following the estimators protocol
        (``n_latent``, ``latent_type = "binary"``, ``log_joint``).

    Returns
    -------
    float
        The divergence in bits (>= 0).
    """

    if not isinstance(table, tuple) or len(table) != 2:
        raise TypeError("table must be a tuple (images, probs) as returned by bars_table")
    images = as_float_array(table[0], "table images", ndim=2)
    probs = as_float_array(table[1], "table probs", shape=(images.shape[0],))
    if np.any(probs < 0) or abs(probs.sum() - 1.0) > 1e-9:
        raise ValueError("table probs must be non-negative and sum to 1")
    log_pm = exact_log_marginal(model, images)
    nz = probs > 0
    return float(np.sum(probs[nz] * (np.log(probs[nz]) - log_pm[nz])) / np.log(2.0))


@benign_underflow
def sbn_exact_log_marginal(x, prior_logits, W, b, *, method="block", chunk_size=None):
    """Exact log p(x) of a single-layer sigmoid belief net from its parameters, eq. (1).

    Model: :math:`p(z) = \\prod_k \\mathrm{Bern}(z_k \\mid \\sigma(a_k))`,
    :math:`p(x \\mid z) = \\prod_d \\mathrm{Bern}(x_d \\mid \\sigma((zW + b)_d))`, with
    :math:`\\log \\mathrm{Bern}(x \\mid \\sigma(\\ell)) = x \\ell - \\mathrm{softplus}(\\ell)`.
    Same value as :func:`exact_log_marginal` on a protocol model of this form, without
    the model object; see :mod:`lvmref.kernels.estimators` for the two algorithms.

    Parameters
    ----------
    x : array_like, shape (n, D)
        Entries in [0, 1] (binary data; fractional values give the cross-entropy form).
    prior_logits : array_like, shape (K,)
        a, logits of the factorised Bernoulli prior; ``K <= MAX_ENUMERATION_K``.
    W : array_like, shape (K, D)
    b : array_like, shape (D,)
    method : {"block", "gray"}
        "block" (default): chunked BLAS evaluation (NumPy). "gray": fused Numba kernel,
        Gray-code walk over the configurations (no large temporaries). Measured in
        validation/estimators_table.py (1 thread): "gray" takes ~0.6-0.8x the time of
        "block" for 1-4 rows with D = 20, but 1.3-3.6x for n >= 16 or D >= 100 (scalar
        exp/log1p in Numba vs NumPy's vectorised ones; x @ L.T through BLAS), so
        "block" is the default. Under ``NUMBA_DISABLE_JIT=1`` "gray" runs as slow Python.
    chunk_size : int, optional
        Configurations per block for "block".

    Returns
    -------
    ndarray, shape (n,)
    """
    x = _check_x(x)
    if np.any((x < 0) | (x > 1)):
        raise ValueError("x must have entries in [0, 1] for a Bernoulli likelihood")
    a = as_float_array(prior_logits, "prior_logits", ndim=1)
    k_lat = _check_enum_k(a.shape[0], "len(prior_logits)")
    d = x.shape[1]
    W = as_float_array(W, "W", ndim=2)
    if W.shape != (k_lat, d):
        raise ValueError(f"W must have shape (K, D) = ({k_lat}, {d}) to match prior_logits "
                         f"(K = {k_lat}) and x (D = {d}), got {W.shape}")
    b = as_float_array(b, "b", ndim=1)
    if b.shape != (d,):
        raise ValueError(f"b must have shape (D,) = ({d},) to match x, got {b.shape}")
    # every logit is bounded by sum_k |W_kd| + |b_d| (and |a_k|); keep their sums finite
    with np.errstate(over="ignore"):  # an overflow here is exactly what is refused
        bound = max(np.abs(a).max(initial=0.0) * k_lat,
                    (np.abs(W).sum(axis=0) + np.abs(b)).max(initial=0.0))
    if bound > 1e300:
        raise ValueError("prior_logits, W or b too large: the logits (sums of up to K "
                         "weights) would overflow float64")
    check_choice(method, "method", ("block", "gray"))
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    if method == "gray":
        return sbn_log_marginal(x, a, W, b)
    return sbn_log_marginal_np(x, a, W, b, chunk_size)


# ------------------------------------------------------------ log-weight reductions


@benign_underflow
def log_marginal_from_log_weights(log_w) -> Estimate:
    """log p_hat = logmeanexp(log w) with its delta-method standard error, eqs. (6)-(7).

    Parameters
    ----------
    log_w : array_like, shape (n, k)
        Log importance weights (eq. 5), k >= 1 per row. ``-inf`` (zero weight) is
        allowed; NaN and ``+inf`` are refused.

    Returns
    -------
    Estimate
        ``value`` (n,) = log p_hat; ``stderr`` (n,) = se(p_hat) / p_hat (eq. 7), which is
        the delta-method standard error of log p_hat; ``nan`` if k = 1 or p_hat = 0.
    """
    log_w = _check_log_w(log_w)
    n, s = log_w.shape
    value = np.asarray(log_mean_exp(log_w, axis=1), dtype=np.float64).reshape(n)
    stderr = np.full(n, np.nan)
    ok = np.isfinite(value)
    if s >= 2 and ok.any():
        rho = np.exp(log_w[ok] - value[ok, None])  # w_s / p_hat, in [0, k]
        stderr[ok] = np.sqrt(np.sum((rho - 1.0) ** 2, axis=1) / (s - 1)) / np.sqrt(s)
    return Estimate(value=value, stderr=stderr, n_draws=s, log_weights=log_w)


def _mean_and_stderr(v, ok):
    """Row means of ``v`` (n, m) and sd / sqrt(m) of the rows in ``ok`` (nan elsewhere).

    Rows whose entries reach 1e150 in magnitude (a sum or a square could overflow
    although the mean and sd are finite) are computed on ``v / scale`` and scaled back;
    every other row is the plain ``mean``/``std``, unchanged.
    """
    n, m = v.shape
    with np.errstate(invalid="ignore"):
        scale = np.max(np.where(np.isfinite(v), np.abs(v), 0.0), axis=1, initial=0.0)
    big = scale > 1e150
    mean = np.empty(n)
    sd = np.full(n, np.nan)
    plain = ~big
    mean[plain] = v[plain].mean(axis=1)
    if m >= 2:
        sd[plain & ok] = v[plain & ok].std(axis=1, ddof=1)
    if big.any():
        w = v[big] / scale[big, None]
        mean[big] = w.mean(axis=1) * scale[big]
        if m >= 2:
            sub = ok[big]
            sd_big = np.full(w.shape[0], np.nan)
            sd_big[sub] = w[sub].std(axis=1, ddof=1) * scale[big][sub]
            sd[big] = sd_big
    return mean, sd / np.sqrt(m)


@benign_underflow
def elbo_from_log_weights(log_w) -> Estimate:
    """ELBO estimate mean(log w) with standard error sd(log w)/sqrt(k), eq. (8).

    Parameters
    ----------
    log_w : array_like, shape (n, k)
        Log weights ``log p(x, z_s) - log q(z_s | x)`` with ``z_s ~ q(z | x)``.

    Returns
    -------
    Estimate
        ``stderr`` is ``nan`` if k = 1 or the value is ``-inf``.
    """
    log_w = _check_log_w(log_w)
    n, s = log_w.shape
    value, stderr = _mean_and_stderr(log_w, np.all(np.isfinite(log_w), axis=1))
    return Estimate(value=value, stderr=stderr, n_draws=s, log_weights=log_w)


@benign_underflow
def iwae_from_log_weights(log_w, k: int) -> Estimate:
    """Importance-weighted bound L_k from R consecutive sets of k log weights, eq. (10).

    Parameters
    ----------
    log_w : array_like, shape (n, R * k)
        Columns ``[r*k, (r+1)*k)`` are sample set ``r`` (each set i.i.d. from q(z|x)).
    k : int
        Samples per set.

    Returns
    -------
    Estimate
        ``value`` = mean over sets of logmeanexp within the set; ``stderr`` = sd over
        sets / sqrt(R) (``nan`` if R = 1 or the value is ``-inf``); ``n_draws = R*k``.
    """
    log_w = _check_log_w(log_w)
    k = check_positive_int(k, "k")
    n, s = log_w.shape
    if s % k:
        raise ValueError(f"log_w has {s} columns, not a multiple of k = {k}")
    reps = s // k
    per_set = np.asarray(log_mean_exp(log_w.reshape(n * reps, k), axis=1)).reshape(n, reps)
    value, stderr = _mean_and_stderr(per_set, np.all(np.isfinite(per_set), axis=1))
    return Estimate(value=value, stderr=stderr, n_draws=s, log_weights=log_w)


# ------------------------------------------------------------------ log weights


@benign_underflow
def importance_log_weights(model, x, z) -> np.ndarray:
    """log w = log p(x, z) - log q(z | x) for given samples, eq. (5) with r = q.

    Parameters
    ----------
    model : model following the protocol. Calls ``log_joint`` and ``log_q``.
    x : array_like, shape (n, D)
    z : array_like, shape (n, k, K) or (1, k, K)

    Returns
    -------
    ndarray, shape (n, k)
    """
    x = _check_x(x)
    n = x.shape[0]
    z = _check_z(z, model, n, None)
    return _importance_log_w(model, x, z)


def _importance_log_w(model, x, z):
    n, s = x.shape[0], z.shape[1]
    lj = _call(model, "log_joint", x, z, shape=(n, s))
    lq = _call(model, "log_q", x, z, shape=(n, s))
    if np.isneginf(lq).any():
        raise ValueError("model.log_q returned -inf for a given sample (z outside the "
                         "support of q)")
    return lj - lq


@benign_underflow
def prior_log_weights(model, x, z) -> np.ndarray:
    """log w = log p(x | z) for given samples z ~ p(z), eq. (5) with r = p(z).

    Uses ``model.log_likelihood(x, z)`` if present, else ``log_joint - log_prior``.

    Parameters
    ----------
    model : model following the protocol plus ``log_likelihood`` or ``log_prior``.
    x : array_like, shape (n, D)
    z : array_like, shape (n, k, K) or (1, k, K)

    Returns
    -------
    ndarray, shape (n, k)
    """
    x = _check_x(x)
    n = x.shape[0]
    z = _check_z(z, model, n, None)
    return _prior_log_w(model, x, z)


def _prior_log_w(model, x, z):
    n, s = x.shape[0], z.shape[1]
    if hasattr(model, "log_likelihood"):
        return _call(model, "log_likelihood", x, z, shape=(n, s))
    if hasattr(model, "log_prior"):
        lj = _call(model, "log_joint", x, z, shape=(n, s))
        lp = _call(model, "log_prior", z, shape=(z.shape[0], s))
        if np.isneginf(lp).any():
            raise ValueError("model.log_prior returned -inf for a given sample (z outside "
                             "the support of p(z))")
        return lj - lp
    raise TypeError("naive Monte Carlo needs model.log_likelihood(x, z) or "
                    "model.log_prior(z) in addition to the protocol")


# ----------------------------------------------------------- Monte Carlo estimators


def _samples(model, x, k, rng, z, sampler):
    """Validated (k, z) from given z or by calling the model's sampler."""
    _check_rng_or_z(rng, z)
    n = x.shape[0]
    if z is not None:
        if k is not None:
            k = check_positive_int(k, "k")
        z = _check_z(z, model, n, k)
        if z.shape[1] == 0:
            raise ValueError("z must have at least one sample per row (axis 1)")
        return z.shape[1], z
    if k is None:
        raise ValueError("k (samples per row) is required when z is not given")
    k = check_positive_int(k, "k")
    gen = check_rng(rng)
    if sampler == "sample_prior":
        out = _model_attr(model, "sample_prior")(n, k, gen)
    else:
        out = _model_attr(model, "sample_q")(x, k, gen)
    return k, _check_sampled(out, model, n, k, f"model.{sampler}")


@benign_underflow
def naive_mc_log_marginal(model, x, k=None, rng=None, *, z=None) -> Estimate:
    """Naive Monte Carlo log p(x): samples from the prior, weights p(x | z), eqs. (5)-(7).

    Parameters
    ----------
    model : model following the protocol plus ``log_likelihood`` or ``log_prior``.
    x : array_like, shape (n, D)
    k : int, optional
        Samples per row (required unless ``z`` is given; must match it if both are).
    rng : numpy.random.Generator, int or None
        Passed (as a Generator) to ``model.sample_prior(n, k, rng)``.
    z : array_like, shape (n, k, K) or (1, k, K), optional
        Prior samples to use instead of sampling (then ``rng`` must be None).

    Returns
    -------
    Estimate
        See :func:`log_marginal_from_log_weights`.
    """
    x = _check_x(x)
    _, z = _samples(model, x, k, rng, z, "sample_prior")
    return log_marginal_from_log_weights(_prior_log_w(model, x, z))


@benign_underflow
def importance_log_marginal(model, x, k=None, rng=None, *, z=None) -> Estimate:
    """Importance-sampling log p(x) with proposal q(z | x), eqs. (5)-(7).

    Parameters
    ----------
    model : model following the protocol. Calls ``log_joint``, ``log_q`` (and ``sample_q``
        unless ``z`` is given).
    x : array_like, shape (n, D)
    k : int, optional
        Samples per row (required unless ``z`` is given; must match it if both are).
    rng : numpy.random.Generator, int or None
    z : array_like, shape (n, k, K) or (1, k, K), optional
        Samples from q(z | x) to use instead of sampling.

    Returns
    -------
    Estimate
        See :func:`log_marginal_from_log_weights`. ``exp(value)`` is unbiased for p(x).
    """
    x = _check_x(x)
    _, z = _samples(model, x, k, rng, z, "sample_q")
    return log_marginal_from_log_weights(_importance_log_w(model, x, z))


@benign_underflow
def elbo(model, x, k=None, rng=None, *, z=None) -> Estimate:
    """Monte Carlo ELBO, mean of log p(x, z) - log q(z | x) over z ~ q(z | x), eq. (8).

    Parameters and samples as in :func:`importance_log_marginal`.

    Returns
    -------
    Estimate
        See :func:`elbo_from_log_weights`.
    """
    x = _check_x(x)
    _, z = _samples(model, x, k, rng, z, "sample_q")
    return elbo_from_log_weights(_importance_log_w(model, x, z))


@benign_underflow
def iwae_bound(model, x, k, rng=None, *, n_repeats=None, z=None) -> Estimate:
    """Importance-weighted bound L_k (Burda et al. 2015, eq. 8), estimated by eq. (10).

    Parameters
    ----------
    model : model following the protocol. Calls ``log_joint``, ``log_q`` (and
        ``sample_q(x, n_repeats * k, rng)`` unless ``z`` is given).
    x : array_like, shape (n, D)
    k : int
        Samples inside the log-mean (k = 1 gives the ELBO).
    rng : numpy.random.Generator, int or None
    n_repeats : int, optional
        R, independent sets of k samples; their spread gives the standard error.
        Default: ``DEFAULT_IWAE_REPEATS`` (10) when sampling, ``z.shape[1] // k`` when
        ``z`` is given (must match if both are given).
    z : array_like, shape (n, R * k, K) or (1, R * k, K), optional
        Samples from q(z | x); columns ``[r*k, (r+1)*k)`` of axis 1 form set r.

    Returns
    -------
    Estimate
        ``value`` = mean over sets of L_k estimates; ``stderr`` = their sd / sqrt(R)
        (``nan`` for R = 1); ``n_draws = R * k``.
    """
    x = _check_x(x)
    k = check_positive_int(k, "k")
    if n_repeats is not None:
        n_repeats = check_positive_int(n_repeats, "n_repeats")
    if z is not None:
        _check_rng_or_z(rng, z)
        z_arr = as_float_array(z, "z", ndim=3)
        if z_arr.shape[1] % k:
            raise ValueError(f"z has {z_arr.shape[1]} samples per row (axis 1), not a "
                             f"multiple of k = {k}")
        reps = z_arr.shape[1] // k
        if n_repeats is not None and reps != n_repeats:
            raise ValueError(f"z has {z_arr.shape[1]} samples per row = {reps} sets of "
                             f"k = {k}, but n_repeats = {n_repeats}")
        n_draws = None
    else:
        reps = DEFAULT_IWAE_REPEATS if n_repeats is None else n_repeats
        n_draws = reps * k
    _, z = _samples(model, x, n_draws, rng, z, "sample_q")
    return iwae_from_log_weights(_importance_log_w(model, x, z), k)
