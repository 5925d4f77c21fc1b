r"""Variational autoencoder (MLP encoder and decoder) with hand-derived gradients.

Amortized variational inference (Kingma & Welling 2014, "Auto-Encoding Variational
Bayes"; Rezende, Mohamed & Wierstra 2014). Everything is per data row ``x`` (D features)
with K latent units; ``n`` rows are processed at once.

Derivation
----------
Generative model: a standard-normal prior and a decoder network :math:`g_\theta`
(an :class:`lvmref.nn.MLP`) giving the parameters of :math:`p_\theta(x \mid z)`:

.. math::

   p(z) &= \mathcal N(z \mid 0, I_K), \qquad
   \log p(z) = -\tfrac12 \textstyle\sum_j (\log 2\pi + z_j^2)                    \tag{1} \\
   \text{Bernoulli:}\quad \log p_\theta(x \mid z) &= \textstyle\sum_d
        x_d\, l_d - \operatorname{softplus}(l_d), \quad l = g_\theta(z)          \tag{2a} \\
   \text{Gaussian:}\quad \log p_\theta(x \mid z) &= -\tfrac12 \textstyle\sum_d
        \left[\log 2\pi + v_d + (x_d - m_d)^2 e^{-v_d}\right], \quad
        (m, v) = g_\theta(z)                                                     \tag{2b}

(``v`` is a *log* variance.) Recognition model (encoder :math:`f_\lambda`, amortized
over data rows), with :math:`s = \log \sigma^2` — the same ``log_var`` everywhere:

.. math::  q_\lambda(z \mid x) = \mathcal N\big(z \mid \mu, \operatorname{diag} e^{s}\big),
           \quad (\mu, s) = f_\lambda(x), \quad
           \log q = -\tfrac12 \textstyle\sum_j \left[\log 2\pi + s_j
           + (z_j - \mu_j)^2 e^{-s_j}\right]                                      \tag{3}

Objective: the evidence lower bound (ELBO), the loss being its negative,

.. math::

   \mathcal L(x) = \mathbb E_q[\log p_\theta(x \mid z)] - \mathrm{KL}(q \,\|\, p(z))
       = \mathbb E_q[\log p(x, z) - \log q(z \mid x)]
       = \log p(x) - \mathrm{KL}(q \,\|\, p(z \mid x)) \le \log p(x)             \tag{4}

with the analytic Gaussian KL and its gradient

.. math::

   \mathrm{KL}(q \,\|\, p(z)) = \tfrac12 \textstyle\sum_j
        \left(e^{s_j} + \mu_j^2 - 1 - s_j\right) \ge 0, \qquad
   \frac{\partial \mathrm{KL}}{\partial \mu} = \mu, \quad
   \frac{\partial \mathrm{KL}}{\partial s} = \tfrac12 (e^{s} - 1).              \tag{5}

Reparameterization (the sampler uses :math:`\sigma = e^{s/2}`, the KL uses
:math:`e^{s}`; both come from the same ``log_var``):

.. math::  z_t = \mu + e^{s/2} \odot \varepsilon_t, \quad
           \varepsilon_t \sim \mathcal N(0, I_K), \ t = 1..S                      \tag{6}

Two estimators of (4), each a deterministic function of :math:`\varepsilon`:

.. math::

   \hat{\mathcal L}_{\text{analytic}} &= \tfrac1S \textstyle\sum_t
        \log p_\theta(x \mid z_t) - \mathrm{KL}(q \,\|\, p(z)),                 \tag{7a} \\
   \hat{\mathcal L}_{\text{mc}} &= \tfrac1S \textstyle\sum_t \left[
        \log p_\theta(x \mid z_t) + \log p(z_t) - \log q(z_t \mid x)\right], \quad
        \log q(z_t \mid x) = -\tfrac12 \textstyle\sum_j (\log 2\pi + s_j
        + \varepsilon_{tj}^2).                                                   \tag{7b}

Decoder gradients. With :math:`\ell = \log p_\theta(x \mid z)`, the derivative with
respect to the decoder output is

.. math::

   \text{Bernoulli: } \frac{\partial \ell}{\partial l} = x - \operatorname{sigmoid}(l);
   \qquad \text{Gaussian: } \frac{\partial \ell}{\partial m} = (x - m) e^{-v}, \quad
   \frac{\partial \ell}{\partial v} = \tfrac12\left[(x - m)^2 e^{-v} - 1\right],  \tag{8}

back-propagated through the decoder MLP (:mod:`lvmref.nn`, eq. 2) to give
:math:`\partial/\partial\theta` and :math:`g_t = \partial \ell / \partial z_t`.

Reparameterization gradient in :math:`\lambda` (pathwise, at fixed :math:`\varepsilon`):
since :math:`\partial z_t / \partial \mu = I` and
:math:`\partial z_t / \partial s = \tfrac12 e^{s/2} \odot \varepsilon_t = \tfrac12(z_t - \mu)`,

.. math::

   \frac{\partial \hat{\mathcal L}_{\text{analytic}}}{\partial \mu} =
        \tfrac1S \textstyle\sum_t g_t - \mu, \qquad
   \frac{\partial \hat{\mathcal L}_{\text{analytic}}}{\partial s} =
        \tfrac1S \textstyle\sum_t \tfrac12\, g_t \odot e^{s/2} \odot \varepsilon_t
        - \tfrac12 (e^{s} - 1);                                                  \tag{9a}

for (7b) replace :math:`g_t` by :math:`g_t - z_t` (from :math:`\log p(z_t)`, eq. 1), drop
the KL terms and add :math:`+\tfrac12` to :math:`\partial/\partial s` (from
:math:`-\log q`, whose dependence on :math:`s` at fixed :math:`\varepsilon` is
:math:`-\tfrac12 s`):

.. math::

   \frac{\partial \hat{\mathcal L}_{\text{mc}}}{\partial \mu} =
        \tfrac1S \textstyle\sum_t (g_t - z_t), \qquad
   \frac{\partial \hat{\mathcal L}_{\text{mc}}}{\partial s} =
        \tfrac1S \textstyle\sum_t \tfrac12 (g_t - z_t) \odot e^{s/2} \odot
        \varepsilon_t + \tfrac12.                                                \tag{9b}

:math:`(\partial/\partial\mu, \partial/\partial s)` are then back-propagated through the
encoder MLP (its output is :math:`[\mu, s]`).

REINFORCE (score function, Williams 1992; for VAEs e.g. Paisley, Blei & Jordan 2012,
Mnih & Gregor 2014). For any :math:`f` not depending on :math:`\lambda`,
:math:`\nabla_\lambda \mathbb E_q[f(z)] = \mathbb E_q[f(z) \nabla_\lambda \log q(z \mid x)]`,
and :math:`\mathbb E_q[\nabla_\lambda \log q] = 0`, so a baseline :math:`b` that does not
depend on :math:`z_t` leaves the estimator unbiased:

.. math::

   \widehat{\nabla_\lambda} = \tfrac1S \textstyle\sum_t (f_t - b_t)\,
        \nabla_\lambda \log q(z_t \mid x), \qquad
   \frac{\partial \log q}{\partial \mu} = (z - \mu) e^{-s}, \quad
   \frac{\partial \log q}{\partial s} = \tfrac12\left[(z - \mu)^2 e^{-s} - 1\right]  \tag{10}

with :math:`f_t = \log p_\theta(x \mid z_t)` and the analytic KL gradient (5) subtracted
(``kl="analytic"``), or :math:`f_t = \log p(x, z_t) - \log q(z_t \mid x)` (``kl="mc"``;
the term :math:`-\mathbb E_q[\nabla_\lambda \log q] = 0` is dropped). Baselines: a
constant per row, or leave-one-out :math:`b_t = \frac{1}{S-1}\sum_{u \ne t} f_u` (Mnih &
Rezende 2016; Kool, van Hoof & Welling 2019), which is independent of :math:`z_t`. The
samples :math:`z_t` are held fixed: no pathwise derivative flows through them. The
decoder gradient is the ordinary one, (8), at those :math:`z_t`.

Importance-weighted bound (Burda, Grosse & Salakhutdinov 2016), computed by
:func:`lvmref.estimators.iwae_bound` through :meth:`VAE.as_model`:

.. math:: \mathcal L_k = \mathbb E\Big[\log \tfrac1k \textstyle\sum_{i=1}^k
          \frac{p(x, z_i)}{q(z_i \mid x)}\Big], \quad
          \mathcal L_1 = \mathcal L \le \mathcal L_k \le \mathcal L_{k+1} \le \log p(x). \tag{11}

Amortization. Non-amortized (per-data-point) inference gives each row its own
:math:`\phi^{(i)} = (\mu^{(i)}, s^{(i)})` and maximizes (4) over it for a fixed decoder,
using (9) with the encoder back-propagation omitted. The amortization gap of row i is
(Cremer, Li & Duvenaud 2018)

.. math:: \Delta^{(i)} = \max_\phi \mathcal L(x_i; \phi) - \mathcal L(x_i; f_\lambda(x_i))
          \ge 0.                                                                 \tag{12}

Linear-Gaussian special case (probabilistic PCA; Tipping & Bishop 1999): decoder
:math:`x = Wz + b + \text{noise}`, noise :math:`\mathcal N(0, \sigma^2 I_D)`, W of shape
(D, K). Then, with :math:`M = W^\top W + \sigma^2 I_K`,

.. math::

   p(x) = \mathcal N(x \mid b, W W^\top + \sigma^2 I_D), \qquad
   p(z \mid x) = \mathcal N\big(z \mid M^{-1} W^\top (x - b), \ \sigma^2 M^{-1}\big). \tag{13}

The posterior covariance is diagonal when W has orthogonal columns; then a VAE with no
hidden layers represents it exactly (encoder weights :math:`W_\text{enc} = [W M^{-1}, 0]`,
bias :math:`[-M^{-1} W^\top b, \log \operatorname{diag}(\sigma^2 M^{-1})]`), and (4) equals
:math:`\log p(x)` for every :math:`\varepsilon` in (7b). For any linear VAE (no hidden
layers, Gaussian likelihood: :math:`m = A^\top z + a`, :math:`v = C^\top z + c`) the ELBO is
analytic: with :math:`T = \operatorname{diag} e^{s}` and the Gaussian identity
:math:`\mathcal N(z \mid \mu, T)\, e^{-c_d^\top z} = e^{-c_d^\top\mu + \frac12 c_d^\top T
c_d}\, \mathcal N(z \mid \mu - T c_d, T)`,

.. math::

   \mathbb E_q[\log p(x \mid z)] = -\tfrac12 \textstyle\sum_d \Big[\log 2\pi
      + c_d^\top \mu + c_d + e^{-c_d^\top \mu - c_d + \frac12 c_d^\top T c_d}
      \big((x_d - a_d - a_d^\top(\mu - T c_d))^2 + a_d^\top T a_d\big)\Big]       \tag{14}

(:math:`a_d, c_d` the d-th columns of the mean and log-variance blocks of the decoder
weight), and (4) follows with the KL (5).

Parameter layout
----------------
``params`` is a plain dict ``name -> float64 array`` (all dense layers ``y = h @ W + b``,
``W`` of shape ``(n_in, n_out)``). With ``hidden = (h_1, ..., h_L)``:

* encoder, keys ``"enc.W{i}"``, ``"enc.b{i}"`` for ``i = 0..L``; layer sizes
  ``D -> h_1 -> ... -> h_L -> 2K``; activation ``activation`` on hidden layers, identity
  on the output. Output columns ``[:K]`` are the mean :math:`\mu`, ``[K:]`` the log
  variance :math:`s` (eq. 3).
* decoder, keys ``"dec.W{i}"``, ``"dec.b{i}"``; sizes ``K -> h_L -> ... -> h_1 -> D_out``
  (hidden widths reversed); identity output. Bernoulli: ``D_out = D`` logits.
  Gaussian: ``D_out = 2D``, columns ``[:D]`` the mean, ``[D:]`` the log variance (eq. 2b).

E.g. ``VAE(64, 10, hidden=(200,))``: ``enc.W0 (64, 200)``, ``enc.b0 (200,)``,
``enc.W1 (200, 20)``, ``enc.b1 (20,)``, ``dec.W0 (10, 200)``, ``dec.b0 (200,)``,
``dec.W1 (200, 64)``, ``dec.b1 (64,)``. A PyTorch ``nn.Linear`` stores the transpose:
``linear.weight = W.T``, ``linear.bias = b``.

Noise layout: ``eps`` of shape ``(n, K)`` (one sample per row) or ``(n, S, K)`` (S samples
per row, as in :mod:`lvmref.estimators`).

Where each equation lives
-------------------------
==========================================  =============================================
(1)-(3) densities                           :class:`VAEModel` ``log_prior``,
                                            ``log_likelihood``, ``log_q``; :meth:`VAE.log_q`
(5) KL and its gradient                     :func:`lvmref.kernels.kl_normal_std`,
                                            :func:`kl_normal_std_grad`
(6) reparameterization                      :func:`reparameterize`
(7a)/(7b) ELBO estimators                   :meth:`VAE.elbo`
(8)-(9) reparameterization gradient         :meth:`VAE.elbo_grad_reparam`
(10) REINFORCE with baselines               :meth:`VAE.elbo_grad_reinforce`
(11) IWAE bound                             :meth:`VAE.iwae_bound` (:mod:`lvmref.estimators`)
(12) per-data-point VI, amortization gap    :meth:`VAE.fit_local`, :meth:`VAE.amortization_gap`
(13) PPCA marginal, posterior, exact VAE    :func:`linear_gaussian_log_marginal`,
                                            :func:`linear_gaussian_posterior`,
                                            :func:`linear_gaussian_vae`
(14) closed-form ELBO of a linear VAE       :func:`linear_gaussian_elbo`
training (Adam, Kingma & Ba 2015)           :meth:`VAE.fit`, :class:`Adam`
==========================================  =============================================

:meth:`VAE.fit` runs the reparameterized gradient (9) with S = 1 through an
allocation-free workspace (one flat parameter vector, fused Numba kernels from
:mod:`lvmref.kernels.vae`); a test asserts it computes the same gradient as
:meth:`VAE.elbo_grad_reparam` to rounding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .kernels import bernoulli_logit_grad, kl_normal_std, normal_log_prob_diag
from .kernels.checks import (
    as_float_array,
    check_binary,
    check_choice,
    check_positive_float,
    check_positive_int,
    check_rng,
)
from .kernels.densities import bernoulli_log_prob_np, sigmoid_np
from .kernels.fpenv import benign_underflow
from .kernels.optim import adam_update
from .kernels.vae import (
    bernoulli_grad,
    gaussian_reparam,
    kl_grad_analytic,
    neg_abs,
    tanh_backward,
)
from .nn import ACTIVATIONS, MLP
from .optim import Adam

__all__ = [
    "VAE",
    "VAEModel",
    "AmortizationGap",
    "kl_normal_std_grad",
    "reparameterize",
    "linear_gaussian_vae",
    "linear_gaussian_log_marginal",
    "linear_gaussian_posterior",
    "linear_gaussian_elbo",
    "save_vae",
    "load_vae",
]

LOG_2PI = float(np.log(2.0 * np.pi))
_LIKELIHOODS = ("bernoulli", "gaussian")
_KL = ("analytic", "mc")


# ------------------------------------------------------------------ small pure pieces


@benign_underflow
def reparameterize(mean, log_var, eps):
    r"""z = mean + exp(log_var / 2) * eps, eq. (6).

    Parameters
    ----------
    mean, log_var : ndarray, shape (n, K)
    eps : ndarray, shape (n, K) or (n, S, K)

    Returns
    -------
    z : ndarray, same shape as ``eps``
    """
    mean = as_float_array(mean, "mean", ndim=2)
    log_var = as_float_array(log_var, "log_var", shape=mean.shape)
    eps = as_float_array(eps, "eps", ndim=(2, 3))
    if eps.shape[0] != mean.shape[0] or eps.shape[-1] != mean.shape[1]:
        raise ValueError(f"eps must have shape (n, K) or (n, S, K) with (n, K) = {mean.shape}, "
                         f"got {eps.shape}")
    if eps.ndim == 2:
        return mean + np.exp(0.5 * log_var) * eps
    return mean[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * eps


@benign_underflow
def kl_normal_std_grad(mean, log_var):
    r"""Gradient of KL(N(mean, diag exp(log_var)) || N(0, I)) per row, eq. (5).

    Parameters
    ----------
    mean, log_var : ndarray, shape (n, K)

    Returns
    -------
    d_mean, d_log_var : ndarray, shape (n, K)
        ``mean`` and ``(exp(log_var) - 1) / 2``.
    """
    mean = as_float_array(mean, "mean", ndim=2)
    log_var = as_float_array(log_var, "log_var", shape=mean.shape)
    return mean, 0.5 * np.expm1(log_var)


def _log_normal_std(z):
    """Eq. (1): log N(z | 0, I) over the last axis."""
    return -0.5 * np.sum(LOG_2PI + z * z, axis=-1)


def _log_lik_bernoulli(x, logits, need_grad):
    """Eq. (2a) per row and, if ``need_grad``, eq. (8) d ell / d logits = x - sigmoid_np(l)."""
    ll = bernoulli_log_prob_np(x, logits)
    return ll, (bernoulli_logit_grad(x, logits) if need_grad else None)


def _log_lik_gaussian(x, out, need_grad):
    """Eq. (2b) per row and, if ``need_grad``, eq. (8) for (mean, log_var) = out[:, :D], [D:].

    The log-density comes from :func:`lvmref.kernels.normal_log_prob_diag` (no 0 * inf for
    x == m at extreme log-variances); the gradient (8) is formed from the same scaled
    residual w = (x - m) e^{-v/2}: d/dm = w e^{-v/2}, d/dv = (w^2 - 1)/2, and 0 * inf
    where x == m is taken as its limit 0.
    """
    d = x.shape[1]
    m, v = out[:, :d], out[:, d:]
    ll = normal_log_prob_diag(x, m, v)
    if not need_grad:
        return ll, None
    g = np.empty_like(out)
    g[:, :d], g[:, d:] = _gaussian_score(x, m, v)
    return ll, g


def _gaussian_score(x, mean, log_var):
    """d log N(x | mean, e^{log_var}) / d(mean, log_var): eq. (8) (Gaussian) and eq. (10).

    ``(x - m) e^{-v}`` and ``((x - m)^2 e^{-v} - 1) / 2``, formed from the scaled residual
    w = (x - m) e^{-v/2} as ``w e^{-v/2}`` and ``(w^2 - 1) / 2``; where x == m the
    0 * inf of an extreme log-variance (v < -1419) is taken as its limit 0.
    """
    r = x - mean
    with np.errstate(over="ignore", invalid="ignore"):  # x == mean handled by the where
        s = np.exp(-0.5 * log_var)
        w = np.where(r == 0.0, 0.0, r * s)
        return np.where(r == 0.0, 0.0, w * s), 0.5 * (w * w - 1.0)


def _as_eps3(eps, n, k, name="eps"):
    eps = as_float_array(eps, name, ndim=(2, 3))
    if eps.shape[0] != n or eps.shape[-1] != k or (eps.ndim == 3 and eps.shape[1] == 0):
        raise ValueError(f"{name} must have shape (n, K) = ({n}, {k}) or (n, S, K) with S >= 1, "
                         f"got {eps.shape}")
    return eps[:, None, :] if eps.ndim == 2 else eps


# ------------------------------------------------------------------ the model


@dataclass(frozen=True)
class AmortizationGap:
    """Per-row result of :meth:`VAE.amortization_gap`, eq. (12).

    Attributes
    ----------
    elbo_local, elbo_encoder, gap, gap_stderr : ndarray, shape (n,)
        ELBO (7a) at the per-row optimum and at the encoder output, estimated with the
        same noise (common random numbers), their difference and its standard error.
    mean, log_var : ndarray, shape (n, K)
        The per-row variational parameters found.
    """

    elbo_local: np.ndarray
    elbo_encoder: np.ndarray
    gap: np.ndarray
    gap_stderr: np.ndarray
    mean: np.ndarray
    log_var: np.ndarray


@benign_underflow
class VAE:
    """Variational autoencoder with MLP encoder/decoder; derivation in the module docstring.

    The object describes the architecture; every method taking ``params`` is a pure
    function of ``(params, x, noise)``. :meth:`fit` stores the trained parameters in
    ``params_`` and the learning curves in ``history_``; :meth:`encode`, :meth:`decode`,
    :meth:`reconstruct` and :meth:`sample` use ``params_`` unless ``params`` is given.

    Parameters
    ----------
    n_visible : int
        D, data dimension.
    n_latent : int
        K, latent dimension.
    hidden : tuple of int
        Hidden widths of the encoder (the decoder uses them reversed); ``()`` gives a
        linear encoder/decoder (the linear-Gaussian case of eqs. 13-14).
    likelihood : {"bernoulli", "gaussian"}
        Decoder distribution, eq. (2a) or (2b).
    activation : str
        Hidden activation, one of :data:`lvmref.nn.ACTIVATIONS`.

    Attributes
    ----------
    encoder, decoder : lvmref.nn.MLP
    params_ : dict
        Set by :meth:`fit`; layout in the module docstring.
    history_ : dict of lists
        Set by :meth:`fit`: ``epoch``, ``train_elbo``, ``test_elbo``, ``seconds``.
    """

    latent_type = "continuous"

    def __init__(self, n_visible, n_latent, hidden=(200,), likelihood="bernoulli",
                 activation="tanh"):
        self.n_visible = check_positive_int(n_visible, "n_visible")
        self.n_latent = check_positive_int(n_latent, "n_latent")
        try:
            hidden = tuple(hidden)
        except TypeError:
            raise TypeError(f"hidden must be a tuple of ints, got {type(hidden).__name__}") \
                from None
        self.hidden = tuple(check_positive_int(h, "hidden") for h in hidden)
        self.likelihood = check_choice(likelihood, "likelihood", _LIKELIHOODS)
        self.activation = check_choice(activation, "activation", tuple(ACTIVATIONS))
        d, k = self.n_visible, self.n_latent
        d_out = d if self.likelihood == "bernoulli" else 2 * d
        acts = (self.activation,) * len(self.hidden) + ("identity",)
        self.encoder = MLP((d, *self.hidden, 2 * k), acts, prefix="enc.")
        self.decoder = MLP((k, *self.hidden[::-1], d_out), acts, prefix="dec.")
        self._log_lik = _log_lik_bernoulli if self.likelihood == "bernoulli" \
            else _log_lik_gaussian
        self.params_ = None
        self.history_ = None

    def __repr__(self):
        return (f"VAE(n_visible={self.n_visible}, n_latent={self.n_latent}, "
                f"hidden={self.hidden}, likelihood={self.likelihood!r}, "
                f"activation={self.activation!r})")

    # -------------------------------------------------------------- parameters

    def param_shapes(self) -> dict:
        """Parameter names and shapes (module docstring, "Parameter layout")."""
        out = {}
        for net in (self.encoder, self.decoder):
            for i in range(net.n_layers):
                out[f"{net.prefix}W{i}"] = (net.sizes[i], net.sizes[i + 1])
                out[f"{net.prefix}b{i}"] = (net.sizes[i + 1],)
        return out

    def init_params(self, rng=None, scheme="glorot") -> dict:
        """Random initial parameters, encoder first, then decoder, drawn from ``rng``.

        Parameters
        ----------
        rng : Generator, int or None
        scheme : {"glorot", "torch"}
            ``"glorot"``: Glorot-uniform weights, zero biases (:meth:`lvmref.nn.MLP.init`).
            ``"torch"``: the distribution of PyTorch's ``nn.Linear`` default
            (``kaiming_uniform_(a=sqrt(5))``): weights *and* biases ~ U(-1/sqrt(n_in),
            1/sqrt(n_in)), drawn layer by layer, W then b, from ``rng``.

        Returns
        -------
        dict
            Layout in the module docstring.
        """
        rng = check_rng(rng)
        check_choice(scheme, "scheme", ("glorot", "torch"))
        if scheme == "glorot":
            return {**self.encoder.init(rng), **self.decoder.init(rng)}
        params = {}
        for net in (self.encoder, self.decoder):
            for i in range(net.n_layers):
                n_in, n_out = net.sizes[i], net.sizes[i + 1]
                r = 1.0 / np.sqrt(n_in)
                params[f"{net.prefix}W{i}"] = rng.uniform(-r, r, size=(n_in, n_out))
                params[f"{net.prefix}b{i}"] = rng.uniform(-r, r, size=n_out)
        return params

    def check_params(self, params) -> dict:
        """Validated float64 copies of ``params`` (keys and shapes as in the layout)."""
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of str -> array, got {type(params).__name__}")
        shapes = self.param_shapes()
        missing = [k for k in shapes if k not in params]
        extra = [k for k in params if k not in shapes]
        if missing or extra:
            raise ValueError(f"params keys do not match the layout: missing {missing}, "
                             f"unexpected {extra}")
        return {k: as_float_array(params[k], f"params[{k!r}]", shape=s) for k, s in shapes.items()}

    def _params_or_fitted(self, params):
        if params is None:
            if self.params_ is None:
                raise ValueError("params is required before fit() has been called")
            return self.params_
        return self.check_params(params)

    def _check_x(self, x, name="x"):
        x = as_float_array(x, name, ndim=2)
        if x.shape[1] != self.n_visible:
            raise ValueError(f"{name} must have n_visible = {self.n_visible} columns, "
                             f"got shape {x.shape}")
        if self.likelihood == "bernoulli":
            check_binary(x, name)
        return x

    def _check_z(self, z, name="z"):
        z = as_float_array(z, name, ndim=2)
        if z.shape[1] != self.n_latent:
            raise ValueError(f"{name} must have n_latent = {self.n_latent} columns, "
                             f"got shape {z.shape}")
        return z

    # -------------------------------------------------------------- core math

    def _encode(self, params, x):
        out, cache = self.encoder.forward(params, x)
        k = self.n_latent
        return out[:, :k], out[:, k:], cache

    def _encoder_backward(self, params, cache, g_mean, g_log_var):
        return self.encoder.backward(params, cache, np.concatenate([g_mean, g_log_var], 1))[0]

    def _decoder_log_lik(self, params, x, z3, need_grad, scale=1.0):
        """log p(x|z) for z3 (n, S, K): returns ll (n, S), decoder grads, d(sum ll*scale)/dz.

        Gradients are of ``scale * sum_{i,t} ll[i, t]`` (``None`` unless ``need_grad``).
        """
        n, s, k = z3.shape
        out, cache = self.decoder.forward(params, z3.reshape(n * s, k))
        xr = x if s == 1 else np.repeat(x, s, axis=0)
        ll, g_out = self._log_lik(xr, out, need_grad)
        if not need_grad:
            return ll.reshape(n, s), None, None
        g_out *= scale
        grads, g_z = self.decoder.backward(params, cache, g_out, need_input_grad=True)
        return ll.reshape(n, s), grads, g_z.reshape(n, s, k)

    def _elbo_q(self, params, x, mean, log_var, eps3, kl, need_grad, scale=1.0):
        """ELBO estimate (7a)/(7b) per row for given q parameters, and gradients (8)-(9).

        Returns ``elbo (n,)`` and, if ``need_grad``, (decoder grads, d/dmean, d/dlog_var)
        of ``scale * sum_i elbo_i``.
        """
        s = eps3.shape[1]
        std = np.exp(0.5 * log_var)
        z = mean[:, None, :] + std[:, None, :] * eps3                     # eq. (6)
        ll, dec_grads, g_z = self._decoder_log_lik(params, x, z, need_grad, scale / s)
        if kl == "analytic":
            elbo = ll.mean(axis=1) - kl_normal_std(mean, log_var)              # eq. (7a)
        else:
            log_pz = _log_normal_std(z)
            log_qz = -0.5 * np.sum(LOG_2PI + log_var[:, None, :] + eps3 * eps3, axis=2)
            elbo = np.mean(ll + log_pz - log_qz, axis=1)                 # eq. (7b)
        if not need_grad:
            return elbo, None
        if kl == "mc":
            g_z = g_z - (scale / s) * z                                   # eq. (9b)
        g_mean = g_z.sum(axis=1)
        g_log_var = 0.5 * np.sum(g_z * eps3, axis=1) * std
        if kl == "analytic":                                              # eq. (9a)
            g_mean -= scale * mean
            g_log_var -= (0.5 * scale) * np.expm1(log_var)
        else:
            g_log_var += 0.5 * scale
        return elbo, (dec_grads, g_mean, g_log_var)

    # -------------------------------------------------------------- pure public API

    def elbo(self, params, x, eps, kl="analytic"):
        """Per-row ELBO estimate, eq. (7a) (``kl="analytic"``) or (7b) (``kl="mc"``).

        Parameters
        ----------
        params : dict
            Layout in the module docstring.
        x : array_like, shape (n, D)
        eps : array_like, shape (n, K) or (n, S, K)
            Standard-normal noise of the reparameterization (6).
        kl : {"analytic", "mc"}

        Returns
        -------
        ndarray, shape (n,)
            Deterministic in (params, x, eps); its expectation over eps is eq. (4).
        """
        params = self.check_params(params)
        x = self._check_x(x)
        eps3 = _as_eps3(eps, x.shape[0], self.n_latent)
        kl = check_choice(kl, "kl", _KL)
        mean, log_var, _ = self._encode(params, x)
        return self._elbo_q(params, x, mean, log_var, eps3, kl, False)[0]

    def elbo_grad_reparam(self, params, x, eps, kl="analytic"):
        """Batch-mean ELBO and its exact gradient at fixed eps, eqs. (7)-(9).

        Parameters
        ----------
        params : dict
        x : array_like, shape (n, D)
        eps : array_like, shape (n, K) or (n, S, K)
        kl : {"analytic", "mc"}

        Returns
        -------
        value : float
            ``mean(self.elbo(params, x, eps, kl))``.
        grads : dict
            d value / d params, same keys and shapes as ``params`` (gradient of the ELBO,
            i.e. the *ascent* direction; the loss gradient is its negative).
        """
        params = self.check_params(params)
        x = self._check_x(x)
        eps3 = _as_eps3(eps, x.shape[0], self.n_latent)
        kl = check_choice(kl, "kl", _KL)
        return self._reparam(params, x, eps3, kl)

    def _reparam(self, params, x, eps3, kl):
        n = x.shape[0]
        mean, log_var, cache = self._encode(params, x)
        elbo, (dec_grads, g_mean, g_lv) = self._elbo_q(
            params, x, mean, log_var, eps3, kl, True, scale=1.0 / n)
        grads = self._encoder_backward(params, cache, g_mean, g_lv)
        grads.update(dec_grads)
        return float(np.mean(elbo)), grads

    def log_q(self, params, x, z):
        """log q(z | x), eq. (3).

        Parameters
        ----------
        params : dict
        x : array_like, shape (n, D)
        z : array_like, shape (n, K) or (n, S, K)

        Returns
        -------
        ndarray, shape (n,) or (n, S)
        """
        params = self.check_params(params)
        x = self._check_x(x)
        z_in = as_float_array(z, "z", ndim=(2, 3))
        z3 = _as_eps3(z_in, x.shape[0], self.n_latent, name="z")
        mean, log_var, _ = self._encode(params, x)
        out = _log_q3(z3, mean, log_var)
        return out[:, 0] if z_in.ndim == 2 else out

    def elbo_grad_reinforce(self, params, x, eps=None, *, z=None, baseline=None,
                            kl="analytic"):
        """Batch-mean ELBO and a REINFORCE gradient estimate, eq. (10).

        Decoder gradient: the ordinary one, (8), at the samples. Encoder gradient: the
        score-function estimator (10) — samples are held fixed, no pathwise derivative.

        Parameters
        ----------
        params : dict
        x : array_like, shape (n, D)
        eps : array_like, shape (n, K) or (n, S, K), optional
            Noise; the samples are ``z = mean + exp(log_var/2) * eps`` (eq. 6).
        z : array_like, shape (n, K) or (n, S, K), optional
            The samples themselves (from q(z | x) for an unbiased estimate). Exactly one
            of ``eps`` and ``z``.
        baseline : None, "loo", float or array_like of shape (n,)
            ``None``: b = 0; ``"loo"``: leave-one-out mean of the other S - 1 samples'
            f (needs S >= 2); a number or per-row array: a constant b (it must not be
            computed from these samples for the estimate to stay unbiased).
        kl : {"analytic", "mc"}
            Which f in (10), see the module docstring.

        Returns
        -------
        value : float
            Batch mean of the ELBO estimate at these samples ((7a)/(7b)).
        grads : dict
            Gradient estimate of the batch-mean ELBO (ascent direction).
        """
        params = self.check_params(params)
        x = self._check_x(x)
        n, k = x.shape[0], self.n_latent
        kl = check_choice(kl, "kl", _KL)
        if (eps is None) == (z is None):
            raise ValueError("pass exactly one of eps and z")
        mean, log_var, cache = self._encode(params, x)
        if z is None:
            eps3 = _as_eps3(eps, n, k)
            z3 = mean[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * eps3
        else:
            z3 = _as_eps3(z, n, k, name="z")
        s = z3.shape[1]
        b = _baseline(baseline, n, s)
        ll, dec_grads, _ = self._decoder_log_lik(params, x, z3, True, 1.0 / (n * s))
        log_q = _log_q3(z3, mean, log_var)
        if kl == "analytic":
            f = ll
            elbo = ll.mean(axis=1) - kl_normal_std(mean, log_var)
        else:
            f = ll + _log_normal_std(z3) - log_q
            elbo = f.mean(axis=1)
        if isinstance(b, str):  # leave-one-out
            b = (f.sum(axis=1, keepdims=True) - f) / (s - 1)
        w = (f - b) / (n * s)                                             # (n, S)
        score_mean, score_lv = _gaussian_score(z3, mean[:, None, :], log_var[:, None, :])
        g_mean = np.sum(w[:, :, None] * score_mean, axis=1)               # eq. (10)
        g_lv = np.sum(w[:, :, None] * score_lv, axis=1)
        if kl == "analytic":
            g_mean -= mean / n
            g_lv -= 0.5 * np.expm1(log_var) / n
        grads = self._encoder_backward(params, cache, g_mean, g_lv)
        grads.update(dec_grads)
        return float(np.mean(elbo)), grads

    # -------------------------------------------------------------- estimators protocol

    def as_model(self, params=None) -> VAEModel:
        """This VAE bound to ``params``, following the :mod:`lvmref.estimators` protocol."""
        return VAEModel(self, self._params_or_fitted(params))

    def iwae_bound(self, params, x, k, rng=None, *, n_repeats=1, chunk_size=None, z=None):
        """Importance-weighted bound L_k per row, eq. (11), via lvmref.estimators.iwae_bound.

        Rows are processed in chunks so that at most ``chunk_size`` rows x
        ``n_repeats * k`` samples are held at once; the chunks draw from ``rng`` in order.

        Parameters
        ----------
        params : dict
        x : array_like, shape (n, D)
        k : int
            Importance samples inside the log-mean (k = 1 gives the ELBO).
        rng : Generator, int or None
        n_repeats : int
            Independent sets of k samples per row (their spread is the standard error;
            ``nan`` for 1).
        chunk_size : int, optional
            Rows per chunk (default: 50000 // (n_repeats * k), at least 1).
        z : array_like, shape (n, n_repeats * k, K), optional
            Samples from q(z | x) to use instead of ``rng`` (oracle use; not chunked).

        Returns
        -------
        lvmref.estimators.Estimate
            ``value`` and ``stderr`` of shape (n,); ``log_weights`` (n, n_repeats * k).
        """
        from . import estimators

        model = self.as_model(params)
        x = self._check_x(x)
        k = check_positive_int(k, "k")
        n_repeats = check_positive_int(n_repeats, "n_repeats")
        if z is not None:
            if rng is not None:
                raise ValueError("pass either rng (to sample) or z (given samples), not both")
            z = as_float_array(z, "z", shape=(x.shape[0], n_repeats * k, self.n_latent))
            return estimators.iwae_bound(model, x, k, n_repeats=n_repeats, z=z)
        rng = check_rng(rng)
        if chunk_size is None:
            chunk_size = max(1, 50_000 // (k * n_repeats))
        chunk_size = check_positive_int(chunk_size, "chunk_size")
        parts = [estimators.iwae_bound(model, x[i:i + chunk_size], k, rng, n_repeats=n_repeats)
                 for i in range(0, x.shape[0], chunk_size)]
        if len(parts) == 1:
            return parts[0]
        return estimators.Estimate(
            value=np.concatenate([p.value for p in parts]),
            stderr=np.concatenate([p.stderr for p in parts]),
            n_samples=parts[0].n_samples,
            log_weights=np.concatenate([p.log_weights for p in parts]),
        )

    # -------------------------------------------------------------- training

    def fit(self, x, x_test=None, *, n_epochs=100, batch_size=100, lr=1e-3, rng=None,
            params=None, init="glorot", estimator="reparam", kl="analytic", n_samples=1,
            baseline=None, verbose=False):
        """Maximize the ELBO with minibatch Adam.

        Noise protocol (so another implementation can replay it): ``rng`` draws, in
        order, the initial parameters (``init_params(rng, init)``, unless ``params`` is given),
        then per epoch a permutation ``rng.permutation(n)`` and per minibatch (consecutive
        slices of the permutation, the last one possibly smaller) ``eps =
        rng.standard_normal((b, K))`` (or ``(b, S, K)`` for ``n_samples = S > 1``). The
        test ELBO of each epoch uses a separate stream ``rng.spawn(1)[0]`` created at the
        start, so evaluation does not change the training noise.

        Parameters
        ----------
        x : array_like, shape (n, D)
            Training data.
        x_test : array_like, shape (m, D), optional
            Evaluated after every epoch with a single-sample ELBO (7a).
        n_epochs, batch_size : int
        lr : float
            Adam step size.
        rng : Generator, int or None
        params : dict, optional
            Initial parameters (copied); default ``init_params(rng, init)``.
        init : {"glorot", "torch"}
            Initialization scheme when ``params`` is not given (see :meth:`init_params`).
        estimator : {"reparam", "reinforce"}
            Gradient estimator for the encoder.
        kl : {"analytic", "mc"}
        n_samples : int
            S, noise samples per row and step.
        baseline : see :meth:`elbo_grad_reinforce` (only for ``estimator="reinforce"``).
        verbose : bool
            Print one line per epoch.

        Returns
        -------
        self
        """
        x = self._check_x(x)
        if x_test is not None:
            x_test = self._check_x(x_test, "x_test")
        n_epochs = check_positive_int(n_epochs, "n_epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        n_samples = check_positive_int(n_samples, "n_samples")
        check_positive_float(lr, "lr")
        estimator = check_choice(estimator, "estimator", ("reparam", "reinforce"))
        kl = check_choice(kl, "kl", _KL)
        if estimator == "reparam" and baseline is not None:
            raise ValueError("baseline is only used with estimator='reinforce'")
        rng = check_rng(rng)
        eval_rng = rng.spawn(1)[0]
        check_choice(init, "init", ("glorot", "torch"))
        params = self.init_params(rng, init) if params is None else self.check_params(params)
        fast = estimator == "reparam" and n_samples == 1
        if fast:  # same mathematics, allocation-free (tested equal to _reparam)
            ws = _TrainWorkspace(self, params, batch_size, kl, lr)
            params = ws.params
        else:
            opt = Adam(params, lr=lr)
        n, k = x.shape[0], self.n_latent
        hist = {"epoch": [], "train_elbo": [], "test_elbo": [], "seconds": []}
        t0 = time.perf_counter()
        for epoch in range(1, n_epochs + 1):
            perm = rng.permutation(n)
            total = 0.0
            for start in range(0, n, batch_size):
                xb = x[perm[start:start + batch_size]]
                shape = (xb.shape[0], k) if n_samples == 1 else (xb.shape[0], n_samples, k)
                eps = rng.standard_normal(shape)
                if fast:
                    value = ws.step(xb, eps)
                else:
                    eps3 = eps[:, None, :] if eps.ndim == 2 else eps
                    if estimator == "reparam":
                        value, grads = self._reparam(params, xb, eps3, kl)
                    else:
                        value, grads = self.elbo_grad_reinforce(params, xb, eps3,
                                                                baseline=baseline, kl=kl)
                    opt.step(grads, sign=-1.0)
                if not np.isfinite(value):
                    raise FloatingPointError(f"ELBO became {value} at epoch {epoch}; "
                                             f"lower lr")
                total += value * xb.shape[0]
            hist["epoch"].append(epoch)
            hist["train_elbo"].append(total / n)
            test = np.nan
            if x_test is not None:
                eps_t = eval_rng.standard_normal((x_test.shape[0], 1, k))
                mean, log_var, _ = self._encode(params, x_test)
                test = float(np.mean(self._elbo_q(params, x_test, mean, log_var, eps_t,
                                                  "analytic", False)[0]))
            hist["test_elbo"].append(test)
            hist["seconds"].append(time.perf_counter() - t0)
            if verbose:
                print(f"epoch {epoch:4d}  train ELBO {total / n:10.4f}  test ELBO {test:10.4f}"
                      f"  ({hist['seconds'][-1]:.1f} s)", flush=True)
        self.params_ = {key: np.array(a) for key, a in params.items()}
        self.history_ = hist
        return self

    # -------------------------------------------------------------- conveniences

    def encode(self, x, params=None):
        """Mean and log variance of q(z | x), eq. (3); each of shape (n, K)."""
        params = self._params_or_fitted(params)
        x = self._check_x(x)
        mean, log_var, _ = self._encode(params, x)
        return mean.copy(), log_var.copy()

    def decode(self, z, params=None, *, raw=False):
        """Mean of p(x | z), shape (n, D): sigmoid_np(logits) or the Gaussian mean.

        With ``raw=True``: the logits (n, D) (Bernoulli), or ``(mean, log_var)``
        (Gaussian), eq. (2).
        """
        params = self._params_or_fitted(params)
        z = self._check_z(z)
        out, _ = self.decoder.forward(params, z)
        d = self.n_visible
        if self.likelihood == "bernoulli":
            return out if raw else sigmoid_np(out)
        return (out[:, :d].copy(), out[:, d:].copy()) if raw else out[:, :d].copy()

    def reconstruct(self, x, params=None, rng=None):
        """Decoder mean at the encoder mean (``rng=None``) or at one sample z ~ q(z | x)."""
        params = self._params_or_fitted(params)
        mean, log_var = self.encode(x, params)
        z = mean if rng is None else \
            mean + np.exp(0.5 * log_var) * check_rng(rng).standard_normal(mean.shape)
        return self.decode(z, params)

    def sample(self, n, rng=None, params=None, *, return_mean=False):
        """Draw n rows x ~ p(x) (z ~ N(0, I), then x ~ p(x | z)); shape (n, D).

        With ``return_mean``, return the decoder means instead of sampling x.
        """
        params = self._params_or_fitted(params)
        n = check_positive_int(n, "n")
        rng = check_rng(rng)
        z = rng.standard_normal((n, self.n_latent))
        out, _ = self.decoder.forward(params, z)
        d = self.n_visible
        if self.likelihood == "bernoulli":
            p = sigmoid_np(out)
            return p if return_mean else (rng.random(p.shape) < p).astype(np.float64)
        m, v = out[:, :d], out[:, d:]
        return m.copy() if return_mean else m + np.exp(0.5 * v) * rng.standard_normal(m.shape)

    # -------------------------------------------------------------- amortization

    def fit_local(self, params, x, *, n_steps=500, lr=1e-2, lr_final=1e-4, n_samples=1,
                  rng=None, init=None, kl="analytic"):
        """Per-data-point (non-amortized) VI for the fixed decoder in ``params``, eq. (12).

        Each row gets its own (mean, log_var), optimized by Adam on the reparameterized
        ELBO (7a)/(7b) with gradient (9) (no encoder). Rows are independent. The step size
        decays geometrically from ``lr`` to ``lr_final`` (with a constant step, Adam keeps
        jittering at a noise floor set by the gradient noise).

        Parameters
        ----------
        params : dict
            Only the decoder entries are used (the encoder gives the default start).
        x : array_like, shape (n, D)
        n_steps : int
        lr, lr_final : float
            First and last Adam step size (geometric schedule).
        n_samples : int
            S noise samples per row and step.
        rng : Generator, int or None
        init : tuple (mean, log_var) of arrays (n, K), optional
            Start; default the encoder output.
        kl : {"analytic", "mc"}

        Returns
        -------
        mean, log_var : ndarray, shape (n, K)
        """
        params = self.check_params(params)
        x = self._check_x(x)
        n_steps = check_positive_int(n_steps, "n_steps")
        n_samples = check_positive_int(n_samples, "n_samples")
        kl = check_choice(kl, "kl", _KL)
        rng = check_rng(rng)
        n, k = x.shape[0], self.n_latent
        if init is None:
            mean, log_var, _ = self._encode(params, x)
            phi = {"mean": mean.copy(), "log_var": log_var.copy()}
        else:
            phi = {"mean": as_float_array(init[0], "init[0]", shape=(n, k)),
                   "log_var": as_float_array(init[1], "init[1]", shape=(n, k))}
        lr = check_positive_float(lr, "lr")
        decay = (check_positive_float(lr_final, "lr_final") / lr) ** (1.0 / max(n_steps - 1, 1))
        opt = Adam(phi, lr=lr)
        for step in range(n_steps):
            opt.lr = lr * decay**step
            eps3 = rng.standard_normal((n, n_samples, k))
            _, (_, g_mean, g_lv) = self._elbo_q(params, x, phi["mean"], phi["log_var"], eps3,
                                                kl, True)
            opt.step({"mean": g_mean, "log_var": g_lv}, sign=-1.0)
        return phi["mean"], phi["log_var"]

    def amortization_gap(self, params, x, *, n_eval_samples=1000, rng=None, **local):
        """Per-row amortization gap (12): local-optimum ELBO minus encoder ELBO.

        Both ELBOs use eq. (7a) with the same ``n_eval_samples`` noise draws per row
        (common random numbers), so the standard error is that of the paired difference.

        Parameters
        ----------
        params : dict
        x : array_like, shape (n, D)
        n_eval_samples : int
        rng : Generator, int or None
            Used for :meth:`fit_local` and then for the evaluation noise.
        **local
            Passed to :meth:`fit_local` (``n_steps``, ``lr``, ``n_samples``, ``kl``).

        Returns
        -------
        AmortizationGap
        """
        params = self.check_params(params)
        x = self._check_x(x)
        n_eval = check_positive_int(n_eval_samples, "n_eval_samples", minimum=2)
        rng = check_rng(rng)
        mean_l, lv_l = self.fit_local(params, x, rng=rng, **local)
        mean_e, lv_e, _ = self._encode(params, x)
        n, k = x.shape[0], self.n_latent
        diffs, e_loc, e_enc = [], [], []
        step = max(1, 100_000 // n)
        for start in range(0, n_eval, step):
            s = min(step, n_eval - start)
            eps3 = rng.standard_normal((n, s, k))
            a = self._per_sample_elbo(params, x, mean_l, lv_l, eps3)
            b = self._per_sample_elbo(params, x, mean_e, lv_e, eps3)
            e_loc.append(a)
            e_enc.append(b)
            diffs.append(a - b)
        d = np.concatenate(diffs, axis=1)
        return AmortizationGap(
            elbo_local=np.concatenate(e_loc, axis=1).mean(axis=1),
            elbo_encoder=np.concatenate(e_enc, axis=1).mean(axis=1),
            gap=d.mean(axis=1),
            gap_stderr=d.std(axis=1, ddof=1) / np.sqrt(n_eval),
            mean=mean_l, log_var=lv_l,
        )

    def _per_sample_elbo(self, params, x, mean, log_var, eps3):
        """Eq. (7a) per sample: log p(x | z_t) - KL, shape (n, S)."""
        z = mean[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * eps3
        ll = self._decoder_log_lik(params, x, z, False)[0]
        return ll - kl_normal_std(mean, log_var)[:, None]


# OpenBLAS (SkylakeX kernels) runs dgemm on an unpacked "small matrix" path when M*N*K <=
# 100**3 and the product is not of the Fortran "TN" kind with a large output; for the 64-200
# layers at batch 100 (M*N*K ~ 1.3e6) two half-size products on that path are ~30 % faster
# than one packed product (measured while tuning validation/bench_vae.py).
_SMALL_GEMM = 1_000_000


def _gemm_blocks(a, b, out):
    """Row blocks of out = a @ b small enough for BLAS's small-matrix path.

    a (m, k), b (k, n), out (m, n) C-contiguous. Returns a list of ``(a_r, b, out_r)`` view
    triples; each block is an exact sub-product, so running them equals one ``np.matmul``
    up to the summation order inside BLAS. The views stay valid as long as the arrays do,
    so the training workspace builds them once.
    """
    m, k = a.shape
    n = b.shape[1]
    blocks = -(-(m * n * k) // _SMALL_GEMM)
    if blocks <= 1:
        return [(a, b, out)]
    step = -(-m // blocks)
    return [(a[r:r + step], b, out[r:r + step]) for r in range(0, m, step)]


def _matmul_rows(a, b, out):
    """out = a @ b computed in the row blocks of :func:`_gemm_blocks`."""
    for a_r, b_r, out_r in _gemm_blocks(a, b, out):
        np.matmul(a_r, b_r, out=out_r)


class _TrainWorkspace:
    """Allocation-free training step: reparameterized gradient (9) with S = 1, then Adam.

    The same mathematics as :meth:`VAE.elbo_grad_reparam` (a test asserts they agree),
    arranged for speed:

    * all parameters live in one flat vector ``theta`` (``self.params`` holds views into
      it) and all gradients in ``grad``, so Adam is one fused pass
      (:func:`lvmref.kernels.vae.adam_update`);
    * activations are stored feature-major, ``(n_features, n_rows)``, each layer input with
      an extra row of ones. Because ``W_i`` and ``b_i`` are adjacent in ``theta``, the
      ``(n_in + 1, n_out)`` block ``[W_i; b_i]`` is a view, so one matrix product gives
      ``a_i = [W_i; b_i]^T [h_i; 1]`` (bias included) and one gives
      ``[dW_i; db_i] = [h_i; 1] delta_i^T`` (bias gradient included);
    * every buffer is preallocated (per batch size) and written with ``out=``, and the
      views each matrix product reads and writes are built once per batch size (a "plan"
      per network), so a step does no slicing or allocation in Python;
    * the weight-gradient product takes delta from a batch-major copy (written directly by
      the Bernoulli and KL kernels for the output layers), so BLAS sees no transposed
      operand; products with M*N*K > ``_SMALL_GEMM`` are split into row blocks
      (:func:`_gemm_blocks`). Both keep OpenBLAS on its faster small-matrix path;
    * exp, expm1, tanh and log1p run as vectorized NumPy ufuncs (Numba 0.68 has no SVML,
      its scalar versions are several times slower); Numba kernels fuse the rest.

    ``validation/bench_vae.py`` times this step against a PyTorch twin.
    """

    def __init__(self, vae, params, batch_size, kl, lr, betas=(0.9, 0.999), eps=1e-8):
        self.vae, self.kl = vae, kl
        shapes = vae.param_shapes()
        total = sum(int(np.prod(s)) for s in shapes.values())
        self.theta, self.grad = np.empty(total), np.zeros(total)
        self.m, self.v = np.zeros(total), np.zeros(total)
        self.params, self.grads = {}, {}
        off = 0
        self._aug = {}  # prefix -> list of ([W; b] view, [dW; db] view) per layer
        for net in (vae.encoder, vae.decoder):
            views = []
            for i in range(net.n_layers):
                n_in, n_out = net.sizes[i], net.sizes[i + 1]
                size = (n_in + 1) * n_out
                w_aug = self.theta[off:off + size].reshape(n_in + 1, n_out)
                g_aug = self.grad[off:off + size].reshape(n_in + 1, n_out)
                for key, sl in ((f"{net.prefix}W{i}", slice(0, n_in)),
                                (f"{net.prefix}b{i}", n_in)):
                    self.params[key] = w_aug[sl]
                    self.grads[key] = g_aug[sl]
                    self.params[key][...] = params[key]
                views.append((w_aug, g_aug))
                off += size
            self._aug[net.prefix] = views
        if off != total or list(self.params) != list(shapes):
            raise RuntimeError("parameter layout mismatch in the training workspace")
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.nets = (vae.encoder, vae.decoder)
        self._buffers = {}
        self._bufs(batch_size)

    def _bufs(self, nb):
        """Buffers and precomputed GEMM views for a batch of nb rows (built once per nb)."""
        if nb not in self._buffers:
            bufs = {}
            for net in self.nets:
                views = self._aug[net.prefix]
                # inp[i]: input of layer i with a row of ones; inp[L] holds the output
                inp = [np.ones((w + 1, nb)) for w in net.sizes[:-1]]
                inp.append(np.empty((net.sizes[-1], nb)))
                grd = [np.empty((w, nb)) for w in net.sizes]  # d value / d inp[i]
                fwd, bwd = [], []
                for i, act in enumerate(net.activations):
                    out = inp[i + 1][:net.sizes[i + 1]]
                    fwd.append((_gemm_blocks(views[i][0].T, inp[i], out), out, act))
                    w_aug, g_aug = views[i]
                    # [dW; db] = [h; 1] delta^T, eq. (2), with a batch-major copy of delta:
                    # the product is then NN for BLAS (no transposed operand), which
                    # OpenBLAS runs on its small-matrix path; with delta.T it takes the
                    # slower packed path.
                    delta_t = np.empty((nb, net.sizes[i + 1]))
                    wgrad = _gemm_blocks(inp[i], delta_t, g_aug)
                    need_input = i > 0 or net is self.vae.decoder  # d/dz for the encoder
                    igrad = _gemm_blocks(w_aug[:-1], grd[i + 1], grd[i]) if need_input else []
                    bwd.append((grd[i + 1], out, act, delta_t, wgrad, igrad))
                bufs[net.prefix] = (inp, grd, fwd, bwd[::-1])
            bufs["e"] = np.empty((self.vae.n_visible, nb))
            bufs["std"] = np.empty((self.vae.n_latent, nb))
            bufs["em1"] = np.empty((self.vae.n_latent, nb))
            self._buffers[nb] = bufs
        return self._buffers[nb]

    @staticmethod
    def _forward(fwd):
        """Eq. (1) of lvmref.nn, feature-major, over the precomputed layer plan ``fwd``."""
        for blocks, out, act in fwd:
            for a, b, o in blocks:
                np.matmul(a, b, out=o)
            if act == "tanh":
                np.tanh(out, out=out)
            elif act != "identity":
                out[...] = ACTIVATIONS[act][0](out)

    @staticmethod
    def _backward(bwd, top_transposed):
        """Eq. (2) of lvmref.nn over the plan ``bwd`` (top layer first); the upstream
        gradient is in the top layer's delta buffer, and if ``top_transposed`` also in its
        batch-major copy (valid for an identity output layer)."""
        for layer, (delta, h, act, delta_t, wgrad, igrad) in enumerate(bwd):
            if act == "tanh":                    # f' = 1 - h^2
                tanh_backward(delta, h)
            elif act == "relu":                  # f' = [h > 0]
                delta *= h > 0.0
            elif act == "sigmoid":               # f' = h (1 - h)
                delta *= h - h * h
            elif act == "softplus":              # f' = sigmoid_np(a) = 1 - exp(-h)
                delta *= -np.expm1(-h)
            if layer or not top_transposed or act != "identity":
                np.copyto(delta_t, delta.T)
            for a, b, o in wgrad:
                np.matmul(a, b, out=o)
            for a, b, o in igrad:
                np.matmul(a, b, out=o)

    def step(self, x, eps):
        """ELBO gradient at (x, eps), then one Adam step; returns the batch-mean ELBO."""
        value = self.gradient(x, eps)
        self.t += 1
        b1, b2 = self.betas
        adam_update(self.theta, self.grad, self.m, self.v, -1.0, self.lr, b1, b2, self.eps,
                    1.0 - b1**self.t, float(np.sqrt(1.0 - b2**self.t)))
        return value

    def gradient(self, x, eps):
        """Batch-mean ELBO (7) at (x (nb, D), eps (nb, K)); its gradient (9) into ``grad``."""
        vae, nb, k, d = self.vae, x.shape[0], self.vae.n_latent, self.vae.n_visible
        enc, dec = self.nets
        bufs = self._bufs(nb)
        e_inp, e_grd, e_fwd, e_bwd = bufs[enc.prefix]
        d_inp, d_grd, d_fwd, d_bwd = bufs[dec.prefix]
        xt = e_inp[0][:d]
        xt[...] = x.T
        self._forward(e_fwd)
        out = e_inp[-1]
        mean, log_var = out[:k], out[k:]
        eps_t = eps.T
        std = bufs["std"]
        z = d_inp[0][:k]
        np.multiply(log_var, 0.5, out=std)
        np.exp(std, out=std)
        gaussian_reparam(mean, std, eps_t, z)                             # eq. (6)
        self._forward(d_fwd)
        dec_out = d_inp[-1]
        g_out = d_grd[-1]
        if vae.likelihood == "bernoulli":                                # eq. (2a), (8)
            e = bufs["e"]
            neg_abs(dec_out, e)
            np.exp(e, out=e)
            ll = bernoulli_grad(xt, dec_out, e, 1.0 / nb, g_out, d_bwd[0][3])
            np.log1p(e, out=e)
            ll -= float(e.sum())
            dec_top_t = True                 # the kernel wrote the batch-major copy too
        else:                                                            # eq. (2b), (8)
            m, v = dec_out[:d], dec_out[d:]
            r = xt - m
            iv = np.exp(-v)
            r2iv = r * r * iv
            ll = -0.5 * float(np.sum(LOG_2PI + v + r2iv))
            np.multiply(r * iv, 1.0 / nb, out=g_out[:d])
            np.multiply(r2iv - 1.0, 0.5 / nb, out=g_out[d:])
            dec_top_t = False
        self._backward(d_bwd, dec_top_t)
        g_z = d_grd[0]
        g_enc = e_grd[-1]
        if self.kl == "analytic":                                        # eq. (9a)
            em1 = bufs["em1"]
            np.expm1(log_var, out=em1)
            kl = kl_grad_analytic(mean, log_var, em1, std, eps_t, g_z, 1.0 / nb, g_enc[:k],
                                  g_enc[k:], e_bwd[0][3])
            value = (ll - kl) / nb
            enc_top_t = True
        else:                                                            # eq. (9b)
            value = (ll - 0.5 * float(np.sum(z * z))
                     + 0.5 * float(np.sum(log_var + eps_t * eps_t))) / nb
            np.subtract(g_z, z / nb, out=g_enc[:k])
            np.multiply(g_enc[:k] * eps_t, 0.5 * std, out=g_enc[k:])
            g_enc[k:] += 0.5 / nb
            enc_top_t = False
        self._backward(e_bwd, enc_top_t)
        return float(value)


def _log_q3(z3, mean, log_var):
    """Eq. (3) for z3 (n, S, K) and q parameters (n, K) -> (n, S).

    Through :func:`lvmref.kernels.normal_log_prob_diag`, which forms the quadratic term as
    ((z - mu) e^{-s/2})^2 and takes it as 0 where z == mu, so a collapsed unit
    (s < -710, e^{-s} = inf) gives no 0 * inf.
    """
    shape = z3.shape
    return normal_log_prob_diag(z3, np.broadcast_to(mean[:, None, :], shape),
                                np.broadcast_to(log_var[:, None, :], shape))


def _baseline(baseline, n, s):
    if baseline is None:
        return 0.0
    if isinstance(baseline, str):
        check_choice(baseline, "baseline", ("loo",))
        if s < 2:
            raise ValueError("baseline='loo' needs S >= 2 samples per row")
        return "loo"
    b = as_float_array(baseline, "baseline", ndim=(0, 1))
    if b.ndim == 1 and b.shape != (n,):
        raise ValueError(f"baseline must be a number or have shape (n,) = ({n},), got {b.shape}")
    return b if b.ndim == 0 else b[:, None]


@benign_underflow
class VAEModel:
    """A :class:`VAE` bound to parameters: the :mod:`lvmref.estimators` model protocol.

    ``log_joint(x, z)``, ``log_likelihood(x, z)``, ``log_q(x, z)`` take ``z`` of shape
    (n, k, K) or (1, k, K) and return (n, k); ``log_prior(z)`` returns (m, k) for z of
    shape (m, k, K); ``sample_prior(n, k, rng)`` and ``sample_q(x, k, rng)`` return
    (n, k, K).
    """

    latent_type = "continuous"

    def __init__(self, vae: VAE, params: dict):
        self.vae = vae
        self.params = vae.check_params(params)
        self.n_latent = vae.n_latent

    def _xz(self, x, z):
        x = self.vae._check_x(x)
        z = as_float_array(z, "z", ndim=3)
        n = x.shape[0]
        if z.shape[0] not in (1, n) or z.shape[2] != self.n_latent:
            raise ValueError(f"z must have shape (n, k, K) or (1, k, K) with n = {n}, "
                             f"K = {self.n_latent}; got {z.shape}")
        if z.shape[0] == 1 and n != 1:
            z = np.broadcast_to(z, (n, *z.shape[1:]))
        return x, z

    def log_likelihood(self, x, z):
        """log p(x | z), eq. (2)."""
        x, z = self._xz(x, z)
        return self.vae._decoder_log_lik(self.params, x, np.ascontiguousarray(z), False)[0]

    def log_prior(self, z):
        """log p(z), eq. (1)."""
        return _log_normal_std(as_float_array(z, "z", ndim=3))

    def log_joint(self, x, z):
        """log p(x, z) = log p(x | z) + log p(z), eqs. (1)-(2)."""
        x, z = self._xz(x, z)
        zc = np.ascontiguousarray(z)
        return self.vae._decoder_log_lik(self.params, x, zc, False)[0] + _log_normal_std(zc)

    def log_q(self, x, z):
        """log q(z | x), eq. (3)."""
        x, z = self._xz(x, z)
        mean, log_var, _ = self.vae._encode(self.params, x)
        return _log_q3(z, mean, log_var)

    def sample_prior(self, n, k, rng):
        """z ~ N(0, I), shape (n, k, K)."""
        return check_rng(rng).standard_normal((n, k, self.n_latent))

    def sample_q(self, x, k, rng):
        """z ~ q(z | x) by eq. (6), shape (n, k, K)."""
        x = self.vae._check_x(x)
        mean, log_var, _ = self.vae._encode(self.params, x)
        eps = check_rng(rng).standard_normal((x.shape[0], k, self.n_latent))
        return mean[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * eps


# ------------------------------------------------------------------ linear-Gaussian oracle


def _check_ppca(W, b, noise_var):
    W = as_float_array(W, "W", ndim=2)
    d, k = W.shape
    b = as_float_array(b, "b", shape=(d,))
    noise_var = check_positive_float(noise_var, "noise_var")
    return W, b, noise_var


@benign_underflow
def linear_gaussian_log_marginal(W, b, noise_var, x):
    """log p(x) = log N(x | b, W W^T + noise_var I), eq. (13), via a Cholesky factor.

    Parameters
    ----------
    W : array_like, shape (D, K)
    b : array_like, shape (D,)
    noise_var : float
    x : array_like, shape (n, D)

    Returns
    -------
    ndarray, shape (n,)
    """
    W, b, noise_var = _check_ppca(W, b, noise_var)
    x = as_float_array(x, "x", shape=(None, W.shape[0]))
    d = W.shape[0]
    cov = W @ W.T + noise_var * np.eye(d)
    chol = np.linalg.cholesky(cov)
    r = np.linalg.solve(chol, (x - b).T)
    return -0.5 * (d * LOG_2PI + np.sum(r * r, axis=0)) - np.sum(np.log(np.diag(chol)))


@benign_underflow
def linear_gaussian_posterior(W, b, noise_var, x):
    """Exact posterior p(z | x) = N(M^-1 W^T (x - b), noise_var M^-1), eq. (13).

    Returns
    -------
    mean : ndarray, shape (n, K)
    cov : ndarray, shape (K, K)
        The same for every row.
    """
    W, b, noise_var = _check_ppca(W, b, noise_var)
    x = as_float_array(x, "x", shape=(None, W.shape[0]))
    m = W.T @ W + noise_var * np.eye(W.shape[1])
    mean = np.linalg.solve(m, W.T @ (x - b).T).T
    return mean, noise_var * np.linalg.inv(m)


@benign_underflow
def linear_gaussian_vae(W, b, noise_var):
    """A linear Gaussian VAE whose decoder is PPCA (W, b, noise_var) and whose encoder is
    the exact posterior, eq. (13).

    Requires orthogonal columns of W (so the posterior covariance is diagonal and a
    diagonal-Gaussian encoder can be exact).

    Parameters
    ----------
    W : array_like, shape (D, K)
    b : array_like, shape (D,)
    noise_var : float

    Returns
    -------
    vae : VAE
        ``VAE(D, K, hidden=(), likelihood="gaussian")``.
    params : dict
    """
    W, b, noise_var = _check_ppca(W, b, noise_var)
    d, k = W.shape
    gram = W.T @ W
    off = gram - np.diag(np.diag(gram))
    if np.max(np.abs(off), initial=0.0) > 1e-12 * max(1.0, np.max(np.abs(gram))):
        raise ValueError("W must have orthogonal columns (W^T W diagonal) for the exact "
                         "posterior to be a diagonal Gaussian")
    m_diag = np.diag(gram) + noise_var
    vae = VAE(d, k, hidden=(), likelihood="gaussian")
    a = W / m_diag                                   # (D, K) = W M^-1, so mean = x @ a + c
    params = {
        "enc.W0": np.concatenate([a, np.zeros((d, k))], axis=1),
        "enc.b0": np.concatenate([-(b @ a), np.log(noise_var / m_diag)]),
        "dec.W0": np.concatenate([W.T, np.zeros((k, d))], axis=1),
        "dec.b0": np.concatenate([b, np.full(d, np.log(noise_var))]),
    }
    return vae, params


@benign_underflow
def linear_gaussian_elbo(vae, params, x, mean=None, log_var=None):
    """Exact ELBO (4) of a linear Gaussian VAE, eq. (14) plus the KL (5).

    Parameters
    ----------
    vae : VAE
        With ``hidden=()`` and ``likelihood="gaussian"``.
    params : dict
    x : array_like, shape (n, D)
    mean, log_var : array_like, shape (n, K), optional
        q parameters; default the encoder output.

    Returns
    -------
    ndarray, shape (n,)
    """
    if not isinstance(vae, VAE) or vae.hidden != () or vae.likelihood != "gaussian":
        raise ValueError("vae must be a VAE with hidden=() and likelihood='gaussian'")
    params = vae.check_params(params)
    x = vae._check_x(x)
    d, k = vae.n_visible, vae.n_latent
    if mean is None or log_var is None:
        mean, log_var, _ = vae._encode(params, x)
    else:
        mean = as_float_array(mean, "mean", shape=(x.shape[0], k))
        log_var = as_float_array(log_var, "log_var", shape=(x.shape[0], k))
    A, C = params["dec.W0"][:, :d], params["dec.W0"][:, d:]     # (K, D) each
    a, c = params["dec.b0"][:d], params["dec.b0"][d:]
    tau = np.exp(log_var)                                      # (n, K)
    c_mu = mean @ C + c                                        # (n, D): E[v]
    tc = tau[:, :, None] * C[None, :, :]                       # (n, K, D): T c_d
    c_t_c = np.einsum("kd,nkd->nd", C, tc)
    shifted = mean[:, :, None] - tc                            # (n, K, D): mu - T c_d
    resid = x - a - np.einsum("kd,nkd->nd", A, shifted)
    a_t_a = (A * A).T @ tau.T                                  # (D, n)
    e_ll = -0.5 * np.sum(LOG_2PI + c_mu + np.exp(-c_mu + 0.5 * c_t_c)
                         * (resid**2 + a_t_a.T), axis=1)
    return e_ll - kl_normal_std(mean, log_var)


# ------------------------------------------------------------------ persistence

_VAE_FORMAT = "lvmref.VAE/1"


@benign_underflow
def save_vae(path, vae: VAE, params: dict) -> None:
    """Write a VAE's architecture and its parameters to ``.npz`` (no pickle).

    Parameters
    ----------
    path : str or path-like
        Destination; NumPy appends ``.npz`` if missing.
    vae : VAE
    params : dict
        Parameters with the shapes of ``vae.param_shapes()`` (checked).
    """
    if not isinstance(vae, VAE):
        raise TypeError(f"vae must be a VAE, got {type(vae).__name__}")
    params = vae.check_params(params)
    np.savez(path, __format__=np.array(_VAE_FORMAT), __n_visible__=np.array(vae.n_visible),
             __n_latent__=np.array(vae.n_latent),
             __hidden__=np.array(vae.hidden, dtype=np.int64),
             __likelihood__=np.array(vae.likelihood), __activation__=np.array(vae.activation),
             **params)


@benign_underflow
def load_vae(path):
    """Inverse of :func:`save_vae`: returns ``(vae, params)``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming ``path``
    for a file that is not a readable lvmref VAE file.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            d = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npz file: {exc}") from None
    if str(d.pop("__format__", "")) != _VAE_FORMAT:
        raise ValueError(f"{path} is not an lvmref VAE file (format {_VAE_FORMAT!r})")
    try:
        vae = VAE(int(d.pop("__n_visible__")), int(d.pop("__n_latent__")),
                  hidden=tuple(int(h) for h in d.pop("__hidden__")),
                  likelihood=str(d.pop("__likelihood__")),
                  activation=str(d.pop("__activation__")))
        params = vae.check_params(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is a malformed VAE file: {exc}") from None
    return vae, params
