r"""Variational autoencoder (MLP encoder and decoder) with hand-derived gradients.

Amortized variational inference (Kingma & Welling 2014, "Auto-Encoding Variational
Bayes"; Rezende, Mohamed & Wierstra 2014). Everything is per data row ``x`` (D features)
with K latent units; ``n`` rows are processed at once, with ``k`` noise samples per row.

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
           \varepsilon_t \sim \mathcal N(0, I_K), \ t = 1..k                      \tag{6}

Two estimators of (4), each a deterministic function of :math:`\varepsilon`:

.. math::

   \hat{\mathcal L}_{\text{analytic}} &= \tfrac1k \textstyle\sum_t
        \log p_\theta(x \mid z_t) - \mathrm{KL}(q \,\|\, p(z)),                 \tag{7a} \\
   \hat{\mathcal L}_{\text{mc}} &= \tfrac1k \textstyle\sum_t \left[
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
        \tfrac1k \textstyle\sum_t g_t - \mu, \qquad
   \frac{\partial \hat{\mathcal L}_{\text{analytic}}}{\partial s} =
        \tfrac1k \textstyle\sum_t \tfrac12\, g_t \odot e^{s/2} \odot \varepsilon_t
        - \tfrac12 (e^{s} - 1);                                                  \tag{9a}

for (7b) replace :math:`g_t` by :math:`g_t - z_t` (from :math:`\log p(z_t)`, eq. 1), drop
the KL terms and add :math:`+\tfrac12` to :math:`\partial/\partial s` (from
:math:`-\log q`, whose dependence on :math:`s` at fixed :math:`\varepsilon` is
:math:`-\tfrac12 s`):

.. math::

   \frac{\partial \hat{\mathcal L}_{\text{mc}}}{\partial \mu} =
        \tfrac1k \textstyle\sum_t (g_t - z_t), \qquad
   \frac{\partial \hat{\mathcal L}_{\text{mc}}}{\partial s} =
        \tfrac1k \textstyle\sum_t \tfrac12 (g_t - z_t) \odot e^{s/2} \odot
        \varepsilon_t + \tfrac12.                                                \tag{9b}

:math:`(\partial/\partial\mu, \partial/\partial s)` are then back-propagated through the
encoder MLP (its output is :math:`[\mu, s]`).

REINFORCE (score function, Williams 1992; for VAEs e.g. Paisley, Blei & Jordan 2012,
Mnih & Gregor 2014). For any :math:`f` not depending on :math:`\lambda`,
:math:`\nabla_\lambda \mathbb E_q[f(z)] = \mathbb E_q[f(z) \nabla_\lambda \log q(z \mid x)]`,
and :math:`\mathbb E_q[\nabla_\lambda \log q] = 0`, so a baseline :math:`b` that does not
depend on :math:`z_t` leaves the estimator unbiased:

.. math::

   \widehat{\nabla_\lambda} = \tfrac1k \textstyle\sum_t (f_t - b_t)\,
        \nabla_\lambda \log q(z_t \mid x), \qquad
   \frac{\partial \log q}{\partial \mu} = (z - \mu) e^{-s}, \quad
   \frac{\partial \log q}{\partial s} = \tfrac12\left[(z - \mu)^2 e^{-s} - 1\right]  \tag{10}

with :math:`f_t = \log p_\theta(x \mid z_t)` and the analytic KL gradient (5) subtracted
(``kl="analytic"``), or :math:`f_t = \log p(x, z_t) - \log q(z_t \mid x)` (``kl="mc"``;
the term :math:`-\mathbb E_q[\nabla_\lambda \log q] = 0` is dropped). Baselines: a
constant per row, or leave-one-out :math:`b_t = \frac{1}{k-1}\sum_{u \ne t} f_u` (Mnih &
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

Multi-sample objective and low-variance gradient estimators
-------------------------------------------------------------
At fixed noise :math:`\varepsilon_1..\varepsilon_k` of one row (eq. 6), write the log
weights with the density of q in the form of (7b), and their self-normalised weights

.. math::

   \log w_i = \log p_\theta(x \mid z_i) + \log p(z_i) - \log q(z_i \mid x), \qquad
   \omega_i = \frac{w_i}{\sum_j w_j}, \qquad
   \hat{\mathcal L}_k = \log \tfrac1k \textstyle\sum_{i=1}^k w_i,                 \tag{15}

so that :math:`\mathbb E\,\hat{\mathcal L}_k = \mathcal L_k` (11) and
:math:`\hat{\mathcal L}_1 = \hat{\mathcal L}_{\text{mc}}` with one sample (7b).

*IWAE, reparameterised* (Burda, Grosse & Salakhutdinov 2016, sec. 3). The exact
gradient of (15) at fixed noise is :math:`\sum_i \omega_i \nabla \log w_i`, each
:math:`\nabla \log w_i` being the one-sample gradient (8)-(9b): with
:math:`g_i = \partial \log p_\theta(x \mid z_i) / \partial z_i` (8),

.. math::

   \frac{\partial \hat{\mathcal L}_k}{\partial \theta} = \textstyle\sum_i \omega_i
        \frac{\partial \log p_\theta(x \mid z_i)}{\partial \theta}, \quad
   \frac{\partial \hat{\mathcal L}_k}{\partial \mu} = \textstyle\sum_i \omega_i
        (g_i - z_i), \quad
   \frac{\partial \hat{\mathcal L}_k}{\partial s} = \textstyle\sum_i \omega_i\,
        \tfrac12 (g_i - z_i) \odot e^{s/2} \odot \varepsilon_i + \tfrac12.     \tag{16}

*Path and score parts.* :math:`\lambda = (\mu, s)` enters :math:`\log w_i` twice: through
the sample :math:`z_i` (the *path*) and through the density :math:`q_\lambda` at fixed
:math:`z_i` (the *score*, :math:`-\nabla_\lambda \log q(z_i \mid x)`, whose expectation
under q is zero). The derivative of :math:`\log w` in z with the parameters of q held
fixed, and the score of (3) at :math:`z_i = \mu + e^{s/2}\varepsilon_i`, are

.. math::

   \delta_i = \frac{\partial}{\partial z_i}\Big[\log p_\theta(x, z_i)
        - \log q_{\bar\lambda}(z_i \mid x)\Big] = g_i - z_i + e^{-s/2} \odot
        \varepsilon_i, \qquad
   \frac{\partial \log q}{\partial \mu} = e^{-s/2} \odot \varepsilon_i, \quad
   \frac{\partial \log q}{\partial s} = \tfrac12 (\varepsilon_i^2 - 1)          \tag{17}

(:math:`\bar\lambda` = held fixed), so by the chain rule
:math:`\nabla_\lambda \log w_i = \delta_i \,\partial z_i / \partial \lambda -
\nabla_\lambda \log q(z_i \mid x)`, with :math:`\partial z_i / \partial \mu = I`,
:math:`\partial z_i / \partial s = \tfrac12 e^{s/2} \odot \varepsilon_i`.

*DReG*, the doubly reparameterised gradient (Tucker, Lawson, Gu & Maddison 2019,
sec. 3). For any :math:`f(z)` smooth in z, the score and path forms of one derivative agree
in expectation (reparameterising :math:`\mathbb E_q[f(z)]` both ways):
:math:`\mathbb E_q[f(z) \nabla_\lambda \log q(z \mid x)] = \mathbb E_\varepsilon[\nabla_z
f(z)\, \partial z / \partial \lambda]`. Apply it to the score part of
:math:`\sum_i \omega_i \nabla_\lambda \log w_i`, with :math:`f = \omega_i` as a function of
:math:`z_i` (the other samples fixed; :math:`\partial \omega_i / \partial \log w_i =
\omega_i (1 - \omega_i)`):

.. math::

   \nabla_\lambda \mathcal L_k
     = \mathbb E\Big[\textstyle\sum_i \big(\omega_i - \omega_i (1 - \omega_i)\big)\,
       \delta_i \frac{\partial z_i}{\partial \lambda}\Big]
     = \mathbb E\Big[\textstyle\sum_i \omega_i^2\, \delta_i
       \frac{\partial z_i}{\partial \lambda}\Big],                               \\
   \widehat{\nabla_\mu} = \textstyle\sum_i \omega_i^2 \delta_i, \qquad
   \widehat{\nabla_s} = \textstyle\sum_i \omega_i^2 \big[\tfrac12 (g_i - z_i) \odot
       e^{s/2} \odot \varepsilon_i + \tfrac12 \varepsilon_i^2\big]                \tag{18}

(the last bracket is :math:`\tfrac12 \delta_i e^{s/2} \varepsilon_i` written without
:math:`e^{-s/2} e^{s/2}`). The decoder gradient is that of (16). Unbiased for
:math:`\nabla_\lambda \mathcal L_k`, not the gradient of (15) at fixed noise; as
:math:`k` grows the IWAE encoder gradient (16) has a signal-to-noise ratio falling like
:math:`k^{-1/2}` (Rainforth et al. 2018, "Tighter variational bounds are not necessarily
better"), which (18) does not.

*STL*, "sticking the landing" (Roeder, Wu & Duvenaud 2017, sec. 3): the ELBO gradient (9b)
with the score part dropped,

.. math::

   \widehat{\nabla_\mu} = \tfrac1k \textstyle\sum_t \delta_t, \qquad
   \widehat{\nabla_s} = \tfrac1k \textstyle\sum_t \big[\tfrac12 (g_t - z_t) \odot
       e^{s/2} \odot \varepsilon_t + \tfrac12 \varepsilon_t^2\big],             \tag{19}

i.e. (9b) minus :math:`\tfrac1k \sum_t \nabla_\lambda \log q(z_t \mid x)` (zero mean), so
unbiased for :math:`\nabla_\lambda \mathcal L`; decoder gradient as in (9b). It is (18)
with k = 1. At the exact posterior :math:`\log p(x, z) - \log q(z \mid x) = \log p(x)` for
every z, so :math:`\delta_t = 0`: (19) -- and (18) -- are exactly zero, with zero variance,
while (9b) and (16) are zero only in expectation.

Parameter layout
----------------
``params`` is a plain dict ``name -> float64 array`` (all dense layers ``y = h @ W + b``,
``W`` of shape ``(n_in, n_out)``). With ``D = n_features`` and ``hidden = (h_1, ..., h_L)``:

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

Noise layout: ``eps`` of shape ``(n, K)`` (one sample per row) or ``(n, k, K)`` (k samples
per row, as in :mod:`lvmref.estimators`); given samples ``z`` likewise.

Functions and estimator
-----------------------
The mathematics is in module-level functions of ``(params, x, noise, arch, options)``,
each a deterministic function of its arguments: ``noise`` is ``eps`` (or the samples
``z``), ``arch`` a :class:`VAEArchitecture` (sizes, likelihood, activation and the two
MLPs). Where the noise is drawn inside (``iwae_bound``, ``fit_local``,
``amortization_gap``) an ``rng`` option replaces it. :class:`VAE` is a thin estimator: it
holds an architecture (``.arch``) and, once fitted, ``params_``; its methods of the same
names take ``params`` first, ``None`` meaning the fitted ``params_``. :class:`VAEModel`
binds an architecture and parameters to the :mod:`lvmref.estimators` protocol.

Where each equation lives
-------------------------
==========================================  =============================================
(1) prior                                   :func:`log_prior`
(2a)/(2b) likelihood, (8) its gradient      :func:`log_likelihood` (``_log_lik_bernoulli``,
                                            ``_log_lik_gaussian``, ``_gaussian_score``)
(3) encoder and q density                   :func:`encode`, :func:`log_q`
(5) KL and its gradient                     :func:`lvmref.kernels.kl_normal_std`,
                                            :func:`kl_normal_std_grad`
(6) reparameterization                      :func:`reparameterize`
(7a)/(7b) ELBO estimators                   :func:`elbo`
(8)-(9) reparameterization gradient         :func:`elbo_grad_reparam`
(10) REINFORCE with baselines               :func:`elbo_grad_reinforce`
(11) IWAE bound                             :func:`iwae_bound` (:mod:`lvmref.estimators`)
(12) per-data-point VI, amortization gap    :func:`fit_local`, :func:`amortization_gap`
(13) PPCA marginal, posterior, exact VAE    :mod:`lvmref.linear_gaussian`
(14) closed-form ELBO of a linear VAE       :func:`lvmref.linear_gaussian.linear_gaussian_elbo`
(15)-(16) IWAE estimate, its gradient       :func:`iwae_grad` (``estimator="reparam"``)
(17)-(18) path derivative, DReG             :func:`iwae_grad` (``estimator="dreg"``)
(19) STL                                    :func:`elbo_grad_stl`
training (Adam, Kingma & Ba 2015)           :meth:`VAE.fit` (``objective="elbo"`` with
                                            (9)/(10)/(19), ``objective="iwae"`` with
                                            (16)/(18)), :class:`lvmref.optim.Adam`
==========================================  =============================================

:meth:`VAE.fit` runs the reparameterized gradient (9) with k = 1 through the
allocation-free :class:`lvmref.vae_training.TrainingWorkspace` (one flat parameter
vector, fused Numba kernels from :mod:`lvmref.kernels.vae`); a test asserts it computes
the same gradient as :func:`elbo_grad_reparam` to rounding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import estimators
from .chunked import RowChunks
from .kernels import bernoulli_logit_grad, kl_normal_std, logsumexp, normal_log_prob_diag
from .kernels.checks import (
    as_float_array,
    check_binary,
    check_choice,
    check_flag,
    check_positive_float,
    check_positive_int,
    check_rng,
)
from .kernels.constants import LOG_2PI
from .kernels.densities import bernoulli_log_prob_np, sigmoid_np
from .kernels.fpenv import benign_underflow
from .nn import ACTIVATIONS, MLP
from .optim import Adam
from .persistence import read_model, save_model
from .vae_training import TrainingWorkspace, scoped_blas_threads

__all__ = [
    "VAE",
    "VAEArchitecture",
    "VAEModel",
    "AmortizationGap",
    "init_params",
    "log_prior",
    "log_likelihood",
    "encode",
    "log_q",
    "kl_normal_std_grad",
    "reparameterize",
    "elbo",
    "elbo_grad_reparam",
    "elbo_grad_reinforce",
    "elbo_grad_stl",
    "iwae_grad",
    "iwae_bound",
    "fit_local",
    "amortization_gap",
]

_LIKELIHOODS = ("bernoulli", "gaussian")
_KL = ("analytic", "mc")
_FILE_VERSION = 1  # of the "VAE" kind in the lvmref.persistence format
_HISTORY = ("epoch", "train_elbo", "test_elbo", "seconds")


# ------------------------------------------------------------------ architecture


@benign_underflow
@dataclass(frozen=True)
class VAEArchitecture:
    """Sizes, decoder likelihood and activation of a VAE, and its two MLPs.

    Parameters
    ----------
    n_features : int
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
    encoder : lvmref.nn.MLP
        ``D -> hidden -> 2K``, keys ``"enc.*"``; output ``[mean, log_var]`` (eq. 3).
    decoder : lvmref.nn.MLP
        ``K -> reversed(hidden) -> D`` logits (Bernoulli) or ``2D`` mean and log variance
        (Gaussian), keys ``"dec.*"`` (eq. 2).
    """

    n_features: int
    n_latent: int
    hidden: tuple = (200,)
    likelihood: str = "bernoulli"
    activation: str = "tanh"
    encoder: MLP = field(init=False, repr=False, compare=False)
    decoder: MLP = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        d = check_positive_int(self.n_features, "n_features")
        K = check_positive_int(self.n_latent, "n_latent")
        try:
            hidden = tuple(self.hidden)
        except TypeError:
            raise TypeError(f"hidden must be a tuple of ints, got {type(self.hidden).__name__}") \
                from None
        hidden = tuple(check_positive_int(h, "hidden") for h in hidden)
        check_choice(self.likelihood, "likelihood", _LIKELIHOODS)
        check_choice(self.activation, "activation", tuple(ACTIVATIONS))
        d_out = d if self.likelihood == "bernoulli" else 2 * d
        acts = (self.activation,) * len(hidden) + ("identity",)
        for name, value in (("n_features", d), ("n_latent", K), ("hidden", hidden),
                            ("encoder", MLP((d, *hidden, 2 * K), acts, prefix="enc.")),
                            ("decoder", MLP((K, *hidden[::-1], d_out), acts, prefix="dec."))):
            object.__setattr__(self, name, value)

    def param_shapes(self) -> dict:
        """Parameter names and shapes, encoder then decoder (the "Parameter layout")."""
        out = {}
        for net in (self.encoder, self.decoder):
            for i in range(net.n_layers):
                out[f"{net.prefix}W{i}"] = (net.sizes[i], net.sizes[i + 1])
                out[f"{net.prefix}b{i}"] = (net.sizes[i + 1],)
        return out

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

    def check_x(self, x, name="x"):
        """``x`` as a float64 copy of shape (n, D), finite, binary for a Bernoulli decoder."""
        x = as_float_array(x, name, ndim=2)
        if x.shape[1] != self.n_features:
            raise ValueError(f"{name} must have n_features = {self.n_features} columns, "
                             f"got shape {x.shape}")
        if self.likelihood == "bernoulli":
            check_binary(x, name)
        return x

    def check_z(self, z, name="z"):
        """``z`` as a finite float64 copy of shape (n, K)."""
        z = as_float_array(z, name, ndim=2)
        if z.shape[1] != self.n_latent:
            raise ValueError(f"{name} must have n_latent = {self.n_latent} columns, "
                             f"got shape {z.shape}")
        return z


def _check_mapped_x(arch, x, name="x"):
    """A memory-mapped ``x`` checked as :meth:`VAEArchitecture.check_x` checks data, chunk
    by chunk (:mod:`lvmref.chunked`), without copying it; returned as given."""
    rows = RowChunks(x, name=name)
    if rows.d != arch.n_features:
        raise ValueError(f"{name} must have n_features = {arch.n_features} columns, "
                         f"got shape {rows.shape}")
    if arch.likelihood == "bernoulli":
        for start, stop in rows.bounds():
            check_binary(rows.read(start, stop), name)
    else:
        for start, stop in rows.bounds():
            rows.read(start, stop)
    return x


def _check_arch(arch):
    if not isinstance(arch, VAEArchitecture):
        raise TypeError(f"arch must be a VAEArchitecture (a VAE's .arch), got "
                        f"{type(arch).__name__}")
    return arch


def _checked(params, x, arch):
    """``(params, x)`` validated against ``arch``, which must be a VAEArchitecture."""
    arch = _check_arch(arch)
    return arch.check_params(params), arch.check_x(x)


def _as_noise3(a, n, K, name="eps", bounded=True):
    """Noise or samples of shape (n, K) or (n, k, K), checked, as (n, k, K); ``bounded``:
    at most :data:`_MAX_ABS` in magnitude (:func:`_check_bounded`)."""
    a = as_float_array(a, name, ndim=(2, 3))
    if a.shape[0] != n or a.shape[-1] != K or (a.ndim == 3 and a.shape[1] == 0):
        raise ValueError(f"{name} must have shape (n, K) = ({n}, {K}) or (n, k, K) with "
                         f"k >= 1, got {a.shape}")
    if bounded:
        _check_bounded(a, name)
    return a[:, None, :] if a.ndim == 2 else a


_MAX_ABS = 1e150  # noise, latents and baselines beyond it overflow the networks' products


def _check_bounded(a, name):
    """Refuse entries beyond 1e150 in magnitude: the noise of eq. (6) and latents fed to
    the decoder enter products (z W, eps^2, the back-propagated gradients of
    :mod:`lvmref.nn`, whose own limit this is) that would overflow float64. (A standard
    normal draw that large has probability below exp(-1e299).)"""
    if np.max(np.abs(a), initial=0.0) > _MAX_ABS:
        raise ValueError(f"{name} must be at most {_MAX_ABS:g} in magnitude (larger values "
                         "overflow the networks' products)")
    return a


@benign_underflow
def init_params(arch, rng=None, scheme="glorot") -> dict:
    """Random initial parameters, encoder first, then decoder, drawn from ``rng``.

    Parameters
    ----------
    arch : VAEArchitecture
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
    arch = _check_arch(arch)
    rng = check_rng(rng)
    check_choice(scheme, "scheme", ("glorot", "torch"))
    if scheme == "glorot":
        return {**arch.encoder.init(rng), **arch.decoder.init(rng)}
    params = {}
    for net in (arch.encoder, arch.decoder):
        for i in range(net.n_layers):
            n_in, n_out = net.sizes[i], net.sizes[i + 1]
            r = 1.0 / np.sqrt(n_in)
            params[f"{net.prefix}W{i}"] = rng.uniform(-r, r, size=(n_in, n_out))
            params[f"{net.prefix}b{i}"] = rng.uniform(-r, r, size=n_out)
    return params


# ------------------------------------------------------------------ eqs. (1)-(3): densities


def _log_prior(z):
    """Eq. (1), unchecked: log N(z | 0, I) over the last axis."""
    with np.errstate(over="ignore"):  # z * z beyond float64: the density is 0, log = -inf
        return -0.5 * np.sum(LOG_2PI + z * z, axis=-1)


@benign_underflow
def log_prior(z):
    """log p(z) = log N(z | 0, I_K), eq. (1).

    Parameters
    ----------
    z : array_like, shape (..., K)

    Returns
    -------
    ndarray, shape (...,)
    """
    return _log_prior(as_float_array(z, "z", ndim=(1, 2, 3)))


def _log_lik_bernoulli(x, logits, need_grad):
    """Eq. (2a) per row and, if ``need_grad``, eq. (8): d ell / d logits = x - sigmoid(l).

    Parameters
    ----------
    x, logits : ndarray, shape (n, D)

    Returns
    -------
    ll : ndarray, shape (n,)
    grad : ndarray, shape (n, D), or None
        Formed without cancellation (:func:`lvmref.kernels.bernoulli_logit_grad`).
    """
    ll = bernoulli_log_prob_np(x, logits)
    return ll, (bernoulli_logit_grad(x, logits) if need_grad else None)


def _gaussian_score(x, mean, log_var):
    """d log N(x | mean, e^{log_var}) / d(mean, log_var): eq. (8) (Gaussian) and eq. (10).

    ``(x - m) e^{-v}`` and ``((x - m)^2 e^{-v} - 1) / 2``, formed from the scaled residual
    w = (x - m) e^{-v/2} as ``w e^{-v/2}`` and ``(w^2 - 1) / 2``; where x == m the
    0 * inf of an extreme log-variance (v < -1419) is taken as its limit 0. All arrays
    of one (broadcast) shape.
    """
    r = x - mean
    with np.errstate(over="ignore", invalid="ignore"):  # x == mean handled by the where
        s = np.exp(-0.5 * log_var)
        w = np.where(r == 0.0, 0.0, r * s)
        return np.where(r == 0.0, 0.0, w * s), 0.5 * (w * w - 1.0)


def _log_lik_gaussian(x, out, need_grad):
    """Eq. (2b) per row and, if ``need_grad``, eq. (8) for (mean, log_var) = out[:, :D], [D:].

    Parameters
    ----------
    x : ndarray, shape (n, D)
    out : ndarray, shape (n, 2D)
        Decoder output.

    Returns
    -------
    ll : ndarray, shape (n,)
        From :func:`lvmref.kernels.normal_log_prob_diag` (no 0 * inf for x == m at extreme
        log-variances).
    grad : ndarray, shape (n, 2D), or None
        :func:`_gaussian_score` of the decoder's mean and log variance.
    """
    d = x.shape[1]
    m, v = out[:, :d], out[:, d:]
    ll = normal_log_prob_diag(x, m, v)
    if not need_grad:
        return ll, None
    g = np.empty_like(out)
    g[:, :d], g[:, d:] = _gaussian_score(x, m, v)
    return ll, g


_LOG_LIK = {"bernoulli": _log_lik_bernoulli, "gaussian": _log_lik_gaussian}


def _decoder_log_lik(params, x, z3, arch, need_grad, scale=1.0):
    """Eq. (2) for z3 (n, k, K): ll (n, k), and if ``need_grad`` the decoder gradients and
    g = d/dz of ``scale * sum_{i,t} ll[i, t]`` (eq. 8 back-propagated, :mod:`lvmref.nn`)."""
    n, k, K = z3.shape
    out, cache = arch.decoder.forward(params, z3.reshape(n * k, K))
    xr = x if k == 1 else np.repeat(x, k, axis=0)
    ll, g_out = _LOG_LIK[arch.likelihood](xr, out, need_grad)
    if not need_grad:
        return ll.reshape(n, k), None, None
    g_out *= scale
    grads, g_z = arch.decoder.backward(params, cache, g_out, need_input_grad=True)
    return ll.reshape(n, k), grads, g_z.reshape(n, k, K)


@benign_underflow
def log_likelihood(params, x, z, arch):
    """log p(x | z), eq. (2a) (Bernoulli) or (2b) (Gaussian).

    Parameters
    ----------
    params : dict
    x : array_like, shape (n, D)
    z : array_like, shape (n, K) or (n, k, K)
    arch : VAEArchitecture

    Returns
    -------
    ndarray, shape (n,) or (n, k)
    """
    params, x = _checked(params, x, arch)
    z_in = as_float_array(z, "z", ndim=(2, 3))
    z3 = np.ascontiguousarray(_as_noise3(z_in, x.shape[0], arch.n_latent, name="z"))
    ll = _decoder_log_lik(params, x, z3, arch, False)[0]
    return ll[:, 0] if z_in.ndim == 2 else ll


def _encode(params, x, arch):
    """Eq. (3), unchecked: (mean, log_var) = f_lambda(x), and the encoder's forward cache."""
    out, cache = arch.encoder.forward(params, x)
    K = arch.n_latent
    return out[:, :K], out[:, K:], cache


def _value_and_grads(params, cache, rows, g_mean, g_log_var, dec_grads, arch):
    """The last step of every gradient here, eqs. (9), (10), (16)-(19): the derivatives
    (d/dmean, d/dlog_var) of the objective are back-propagated through the encoder MLP,
    whose output is [mean, log_var] (after eq. 9b; :mod:`lvmref.nn`, eq. 2), and joined
    with the decoder gradients of eq. (8).

    Parameters
    ----------
    params : dict
    cache : object
        The encoder's forward cache (from :func:`_encode`).
    rows : ndarray, shape (n,)
        The objective per row.
    g_mean, g_log_var : ndarray, shape (n, K)
        Derivatives of the batch-mean objective w.r.t. the encoder outputs.
    dec_grads : dict
        Decoder gradients of the batch-mean objective.
    arch : VAEArchitecture

    Returns
    -------
    value : float
        ``mean(rows)``.
    grads : dict
        Encoder and decoder gradients, keys of ``params``.
    """
    grads = arch.encoder.backward(params, cache, np.concatenate([g_mean, g_log_var], 1))[0]
    grads.update(dec_grads)
    return float(np.mean(rows)), grads


@benign_underflow
def encode(params, x, arch):
    """Parameters of q(z | x), eq. (3): the encoder output split in two.

    Parameters
    ----------
    params : dict
    x : array_like, shape (n, D)
    arch : VAEArchitecture

    Returns
    -------
    mean, log_var : ndarray, shape (n, K)
    """
    params, x = _checked(params, x, arch)
    mean, log_var, _ = _encode(params, x, arch)
    return mean.copy(), log_var.copy()


def _log_q3(z3, mean, log_var):
    """Eq. (3) for z3 (n, k, K) and q parameters (n, K) -> (n, k).

    Through :func:`lvmref.kernels.normal_log_prob_diag`, which forms the quadratic term as
    ((z - mu) e^{-s/2})^2 and takes it as 0 where z == mu, so a collapsed unit
    (s < -710, e^{-s} = inf) gives no 0 * inf.
    """
    shape = z3.shape
    return normal_log_prob_diag(z3, np.broadcast_to(mean[:, None, :], shape),
                                np.broadcast_to(log_var[:, None, :], shape))


@benign_underflow
def log_q(params, x, z, arch):
    """log q(z | x), eq. (3).

    Parameters
    ----------
    params : dict
    x : array_like, shape (n, D)
    z : array_like, shape (n, K) or (n, k, K)
    arch : VAEArchitecture

    Returns
    -------
    ndarray, shape (n,) or (n, k)
    """
    params, x = _checked(params, x, arch)
    z_in = as_float_array(z, "z", ndim=(2, 3))
    z3 = _as_noise3(z_in, x.shape[0], arch.n_latent, name="z", bounded=False)
    mean, log_var, _ = _encode(params, x, arch)
    out = _log_q3(z3, mean, log_var)
    return out[:, 0] if z_in.ndim == 2 else out


# ------------------------------------------------------------------ eqs. (5)-(6): KL, sampler


def _kl_normal_std_grad(mean, log_var):
    """Eq. (5), unchecked: d KL / d mean = mean, d KL / d log_var = (e^{log_var} - 1) / 2."""
    return mean, 0.5 * np.expm1(log_var)


@benign_underflow
def kl_normal_std_grad(mean, log_var):
    r"""Gradient of KL(N(mean, diag exp(log_var)) || N(0, I)) per row, eq. (5).

    (The KL itself is :func:`lvmref.kernels.kl_normal_std`.)

    Parameters
    ----------
    mean, log_var : array_like, shape (n, K)

    Returns
    -------
    d_mean, d_log_var : ndarray, shape (n, K)
        ``mean`` and ``(exp(log_var) - 1) / 2``.
    """
    mean, log_var = _mean_log_var(mean, log_var)
    with np.errstate(over="ignore"):  # exp(log_var) beyond float64: the gradient is +inf
        return _kl_normal_std_grad(mean, log_var)


def _mean_log_var(mean, log_var):
    """(mean, log_var) of q checked: 2-D, finite, of one shape."""
    mean = as_float_array(mean, "mean", ndim=2)
    log_var = as_float_array(log_var, "log_var", ndim=2)
    if log_var.shape != mean.shape:
        raise ValueError(f"mean and log_var must have the same shape (n, K), got {mean.shape} "
                         f"and {log_var.shape}")
    return mean, log_var


def _reparameterize(mean, log_var, eps):
    """Eq. (6), unchecked: mean (n, K), log_var (n, K), eps (n, K) or (n, k, K) -> z like eps."""
    if eps.ndim == 2:
        return mean + np.exp(0.5 * log_var) * eps
    return mean[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * eps


@benign_underflow
def reparameterize(mean, log_var, eps):
    r"""z = mean + exp(log_var / 2) * eps, eq. (6).

    Parameters
    ----------
    mean, log_var : array_like, shape (n, K)
    eps : array_like, shape (n, K) or (n, k, K)

    Returns
    -------
    z : ndarray, same shape as ``eps``
    """
    mean, log_var = _mean_log_var(mean, log_var)
    eps = as_float_array(eps, "eps", ndim=(2, 3))
    if eps.shape[0] != mean.shape[0] or eps.shape[-1] != mean.shape[1]:
        raise ValueError(f"eps must have shape (n, K) or (n, k, K) with (n, K) = {mean.shape}, "
                         f"got {eps.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # a standard deviation beyond float64
        z = _reparameterize(mean, log_var, eps)         # gives +-inf, and inf * 0 where eps = 0,
    if np.isnan(z).any():                               # whose exact value is z = mean
        z = np.where(np.isnan(z), mean if eps.ndim == 2 else mean[:, None, :], z)
    return z


# ------------------------------------------------------------------ eqs. (7)-(9): ELBO, gradient


def _elbo_q(params, x, mean, log_var, eps3, arch, kl, need_grad, scale=1.0):
    """ELBO estimate (7a)/(7b) per row for given q parameters, and gradients (8)-(9).

    Parameters
    ----------
    mean, log_var : ndarray, shape (n, K)
        q parameters (the encoder output, or free per-row parameters, eq. 12).
    eps3 : ndarray, shape (n, k, K)

    Returns
    -------
    elbo : ndarray, shape (n,)
    grads : None, or (decoder grads, d/dmean, d/dlog_var) of ``scale * sum_i elbo_i``
    """
    k = eps3.shape[1]
    z = _reparameterize(mean, log_var, eps3)                           # eq. (6)
    ll, dec_grads, g_z = _decoder_log_lik(params, x, z, arch, need_grad, scale / k)
    if kl == "analytic":
        elbo_rows = ll.mean(axis=1) - kl_normal_std(mean, log_var)     # eq. (7a)
    else:
        log_qz = -0.5 * np.sum(LOG_2PI + log_var[:, None, :] + eps3 * eps3, axis=2)
        elbo_rows = np.mean(ll + _log_prior(z) - log_qz, axis=1)       # eq. (7b)
    if not need_grad:
        return elbo_rows, None
    if kl == "mc":
        g_z = g_z - (scale / k) * z                                    # eq. (9b)
    g_mean = g_z.sum(axis=1)
    g_log_var = 0.5 * np.sum(g_z * eps3, axis=1) * np.exp(0.5 * log_var)
    if kl == "analytic":                                               # eq. (9a), KL (5)
        d_mean, d_log_var = _kl_normal_std_grad(mean, log_var)
        g_mean -= scale * d_mean
        g_log_var -= scale * d_log_var
    else:
        g_log_var += 0.5 * scale
    return elbo_rows, (dec_grads, g_mean, g_log_var)


@benign_underflow
def elbo(params, x, eps, arch, kl="analytic"):
    """Per-row ELBO estimate, eq. (7a) (``kl="analytic"``) or (7b) (``kl="mc"``).

    Parameters
    ----------
    params : dict
        Layout in the module docstring.
    x : array_like, shape (n, D)
    eps : array_like, shape (n, K) or (n, k, K)
        Standard-normal noise of the reparameterization (6).
    arch : VAEArchitecture
    kl : {"analytic", "mc"}

    Returns
    -------
    ndarray, shape (n,)
        Deterministic in (params, x, eps); its expectation over eps is eq. (4).
    """
    params, x = _checked(params, x, arch)
    eps3 = _as_noise3(eps, x.shape[0], arch.n_latent)
    kl = check_choice(kl, "kl", _KL)
    mean, log_var, _ = _encode(params, x, arch)
    return _elbo_q(params, x, mean, log_var, eps3, arch, kl, False)[0]


def _elbo_grad_reparam(params, x, eps3, arch, kl):
    """Eqs. (7)-(9), unchecked: batch-mean ELBO and its gradient at eps3 (n, k, K)."""
    n = x.shape[0]
    mean, log_var, cache = _encode(params, x, arch)
    elbo_rows, (dec_grads, g_mean, g_lv) = _elbo_q(params, x, mean, log_var, eps3, arch, kl,
                                                   True, scale=1.0 / n)
    return _value_and_grads(params, cache, elbo_rows, g_mean, g_lv, dec_grads, arch)


@benign_underflow
def elbo_grad_reparam(params, x, eps, arch, kl="analytic"):
    """Batch-mean ELBO and its exact gradient at fixed eps, eqs. (7)-(9).

    Parameters
    ----------
    params : dict
    x : array_like, shape (n, D)
    eps : array_like, shape (n, K) or (n, k, K)
    arch : VAEArchitecture
    kl : {"analytic", "mc"}

    Returns
    -------
    value : float
        ``mean(elbo(params, x, eps, arch, kl))``.
    grads : dict
        d value / d params, same keys and shapes as ``params`` (gradient of the ELBO,
        i.e. the *ascent* direction; the loss gradient is its negative).
    """
    params, x = _checked(params, x, arch)
    eps3 = _as_noise3(eps, x.shape[0], arch.n_latent)
    kl = check_choice(kl, "kl", _KL)
    return _elbo_grad_reparam(params, x, eps3, arch, kl)


# ------------------------------------------------------------------ eq. (10): REINFORCE


def _baseline(baseline, n, k):
    if baseline is None:
        return 0.0
    if isinstance(baseline, str):
        check_choice(baseline, "baseline", ("loo",))
        if k < 2:
            raise ValueError("baseline='loo' needs k >= 2 samples per row")
        return "loo"
    b = _check_bounded(as_float_array(baseline, "baseline", ndim=(0, 1)), "baseline")
    if b.ndim == 1 and b.shape != (n,):
        raise ValueError(f"baseline must be a number or have shape (n,) = ({n},), got {b.shape}")
    return b if b.ndim == 0 else b[:, None]


@benign_underflow
def elbo_grad_reinforce(params, x, eps, arch, *, z=None, baseline=None, kl="analytic"):
    """Batch-mean ELBO and a REINFORCE gradient estimate, eq. (10).

    Decoder gradient: the ordinary one, (8), at the samples. Encoder gradient: the
    score-function estimator (10) -- samples are held fixed, no pathwise derivative.

    Parameters
    ----------
    params : dict
    x : array_like, shape (n, D)
    eps : array_like, shape (n, K) or (n, k, K), or None
        Noise; the samples are ``z = mean + exp(log_var/2) * eps`` (eq. 6).
    arch : VAEArchitecture
    z : array_like, shape (n, K) or (n, k, K), optional
        The samples themselves (from q(z | x) for an unbiased estimate). Exactly one
        of ``eps`` and ``z``.
    baseline : None, "loo", float or array_like of shape (n,)
        ``None``: b = 0; ``"loo"``: leave-one-out mean of the other k - 1 samples'
        f (needs k >= 2); a number or per-row array: a constant b (it must not be
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
    params, x = _checked(params, x, arch)
    n, K = x.shape[0], arch.n_latent
    kl = check_choice(kl, "kl", _KL)
    if (eps is None) == (z is None):
        raise ValueError("pass exactly one of eps and z")
    mean, log_var, cache = _encode(params, x, arch)
    if z is None:
        z3 = _reparameterize(mean, log_var, _as_noise3(eps, n, K))      # eq. (6)
    else:
        z3 = _as_noise3(z, n, K, name="z")
    k = z3.shape[1]
    b = _baseline(baseline, n, k)
    ll, dec_grads, _ = _decoder_log_lik(params, x, z3, arch, True, 1.0 / (n * k))
    if kl == "analytic":
        f = ll
        elbo_rows = ll.mean(axis=1) - kl_normal_std(mean, log_var)
    else:
        f = ll + _log_prior(z3) - _log_q3(z3, mean, log_var)
        elbo_rows = f.mean(axis=1)
    if isinstance(b, str):  # leave-one-out
        b = (f.sum(axis=1, keepdims=True) - f) / (k - 1)
    w = (f - b) / (n * k)                                              # (n, k)
    score_mean, score_lv = _gaussian_score(z3, mean[:, None, :], log_var[:, None, :])
    g_mean = np.sum(w[:, :, None] * score_mean, axis=1)               # eq. (10)
    g_lv = np.sum(w[:, :, None] * score_lv, axis=1)
    if kl == "analytic":                                               # minus the KL (5)
        d_mean, d_log_var = _kl_normal_std_grad(mean, log_var)
        g_mean -= d_mean / n
        g_lv -= d_log_var / n
    return _value_and_grads(params, cache, elbo_rows, g_mean, g_lv, dec_grads, arch)


# ------------------------------------------------------------------ eq. (11): IWAE


@benign_underflow
def iwae_bound(params, x, arch, k, rng=None, *, n_repeats=1, chunk_size=None, z=None):
    """Importance-weighted bound L_k per row, eq. (11), via lvmref.estimators.iwae_bound.

    Rows are processed in chunks so that at most ``chunk_size`` rows x
    ``n_repeats * k`` samples are held at once; the chunks draw from ``rng`` in order.

    Parameters
    ----------
    params : dict
    x : array_like, shape (n, D)
    arch : VAEArchitecture
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
    model = VAEModel(arch, params)
    x = arch.check_x(x)
    k = check_positive_int(k, "k")
    n_repeats = check_positive_int(n_repeats, "n_repeats")
    if z is not None:
        if rng is not None:
            raise ValueError("pass either rng (to sample) or z (given samples), not both")
        z = as_float_array(z, "z", shape=(x.shape[0], n_repeats * k, arch.n_latent))
        _check_bounded(z, "z")
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
        n_draws=parts[0].n_draws,
        log_weights=np.concatenate([p.log_weights for p in parts]),
    )


# ------------------------------------------------------------------ eq. (12): amortization


@dataclass(frozen=True)
class AmortizationGap:
    """Per-row result of :func:`amortization_gap`, eq. (12).

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
def fit_local(params, x, arch, *, n_steps=500, lr=1e-2, lr_final=1e-4, k=1, rng=None,
              init=None, kl="analytic"):
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
    arch : VAEArchitecture
    n_steps : int
    lr, lr_final : float
        First and last Adam step size (geometric schedule), ``lr_final <= lr``. A step
        size so large that the optimisation diverges is a ``FloatingPointError``.
    k : int
        Noise samples per row and step; each step draws ``rng.standard_normal((n, k, K))``.
    rng : Generator, int or None
    init : tuple (mean, log_var) of arrays (n, K), optional
        Start; default the encoder output.
    kl : {"analytic", "mc"}

    Returns
    -------
    mean, log_var : ndarray, shape (n, K)
    """
    params, x = _checked(params, x, arch)
    n_steps = check_positive_int(n_steps, "n_steps")
    k = check_positive_int(k, "k")
    kl = check_choice(kl, "kl", _KL)
    rng = check_rng(rng)
    n, K = x.shape[0], arch.n_latent
    if init is None:
        mean, log_var, _ = _encode(params, x, arch)
        phi = {"mean": mean.copy(), "log_var": log_var.copy()}
    elif not isinstance(init, (tuple, list)) or len(init) != 2:
        raise TypeError(f"init must be None or a pair (mean, log_var) of (n, K) arrays, got "
                        f"{type(init).__name__}")
    else:
        phi = {"mean": as_float_array(init[0], "init[0]", shape=(n, K)),
               "log_var": as_float_array(init[1], "init[1]", shape=(n, K))}
    lr = check_positive_float(lr, "lr")
    if check_positive_float(lr_final, "lr_final") > lr:
        raise ValueError(f"lr_final must be <= lr = {lr:g} (the step size decays from lr to "
                         f"lr_final), got {lr_final:g}")
    decay = (lr_final / lr) ** (1.0 / max(n_steps - 1, 1))
    opt = Adam(phi, lr=lr)
    for step in range(n_steps):
        opt.lr = lr * decay**step
        eps3 = rng.standard_normal((n, k, K))
        _, (_, g_mean, g_lv) = _elbo_q(params, x, phi["mean"], phi["log_var"], eps3, arch, kl,
                                       True)
        opt.step({"mean": g_mean, "log_var": g_lv}, sign=-1.0)
        if not (np.all(np.abs(phi["mean"]) <= _MAX_ABS)                # NaN fails too
                and np.all(np.abs(phi["log_var"]) <= 2 * np.log(_MAX_ABS))):
            raise FloatingPointError(f"fit_local diverged at step {step + 1} (q parameters "
                                     f"beyond |mean| <= 1e150, sd <= 1e150); lower lr = {lr:g}")
    return phi["mean"], phi["log_var"]


def _per_sample_elbo(params, x, mean, log_var, eps3, arch):
    """Eq. (7a) per sample: log p(x | z_t) - KL, shape (n, k)."""
    z = _reparameterize(mean, log_var, eps3)
    ll = _decoder_log_lik(params, x, z, arch, False)[0]
    return ll - kl_normal_std(mean, log_var)[:, None]


@benign_underflow
def amortization_gap(params, x, arch, *, k_eval=1000, rng=None, **local):
    """Per-row amortization gap (12): local-optimum ELBO minus encoder ELBO.

    Both ELBOs use eq. (7a) with the same ``k_eval`` noise draws per row (common random
    numbers), so the standard error is that of the paired difference.

    Parameters
    ----------
    params : dict
    x : array_like, shape (n, D)
    arch : VAEArchitecture
    k_eval : int
        Noise samples per row for the evaluation (>= 2).
    rng : Generator, int or None
        Used for :func:`fit_local` and then for the evaluation noise.
    **local
        Passed to :func:`fit_local` (``n_steps``, ``lr``, ``lr_final``, ``k``, ``init``,
        ``kl``).

    Returns
    -------
    AmortizationGap
    """
    params, x = _checked(params, x, arch)
    k_eval = check_positive_int(k_eval, "k_eval", minimum=2)
    rng = check_rng(rng)
    mean_l, lv_l = fit_local(params, x, arch, rng=rng, **local)
    mean_e, lv_e, _ = _encode(params, x, arch)
    n, K = x.shape[0], arch.n_latent
    diffs, e_loc, e_enc = [], [], []
    step = max(1, 100_000 // n)
    for start in range(0, k_eval, step):
        eps3 = rng.standard_normal((n, min(step, k_eval - start), K))
        a = _per_sample_elbo(params, x, mean_l, lv_l, eps3, arch)
        b = _per_sample_elbo(params, x, mean_e, lv_e, eps3, arch)
        e_loc.append(a)
        e_enc.append(b)
        diffs.append(a - b)
    d = np.concatenate(diffs, axis=1)
    return AmortizationGap(
        elbo_local=np.concatenate(e_loc, axis=1).mean(axis=1),
        elbo_encoder=np.concatenate(e_enc, axis=1).mean(axis=1),
        gap=d.mean(axis=1),
        gap_stderr=d.std(axis=1, ddof=1) / np.sqrt(k_eval),
        mean=mean_l, log_var=lv_l,
    )


# ------------------------------------------------------------------ eqs. (15)-(19): IWAE, DReG, STL

_IWAE_ESTIMATORS = ("reparam", "dreg")


def _multi_sample_grad(params, x, eps3, arch, estimator):
    """Eqs. (15)-(19), unchecked: batch-mean objective and gradient at eps3 (n, k, K).

    ``estimator``: ``"reparam"`` (16) or ``"dreg"`` (18) for the IWAE estimate (15),
    ``"stl"`` (19) for the ELBO estimate (7b).
    """
    n, k, K = eps3.shape
    mean, log_var, cache = _encode(params, x, arch)
    sd = np.exp(0.5 * log_var)
    z = mean[:, None, :] + sd[:, None, :] * eps3                       # eq. (6)
    out, dec_cache = arch.decoder.forward(params, z.reshape(n * k, K))
    xr = x if k == 1 else np.repeat(x, k, axis=0)
    ll, g_out = _LOG_LIK[arch.likelihood](xr, out, True)
    log_qz = -0.5 * np.sum(LOG_2PI + log_var[:, None, :] + eps3 * eps3, axis=2)
    log_w = ll.reshape(n, k) + _log_prior(z) - log_qz                  # eq. (15)
    if estimator == "stl":
        rows = log_w.mean(axis=1)                                      # eq. (7b)
        omega = np.full((n, k), 1.0 / k)
    else:
        lse = logsumexp(log_w, axis=1)
        rows = lse - np.log(k)                                         # eq. (15)
        omega = np.exp(log_w - lse[:, None])
    c = omega / n                                                      # weights of the batch mean
    g_out *= c.reshape(n * k, 1)
    dec_grads, g_z = arch.decoder.backward(params, dec_cache, g_out, need_input_grad=True)
    a = g_z.reshape(n, k, K) - c[:, :, None] * z                       # c_i (g_i - z_i)
    if estimator == "reparam":                                         # eq. (16)
        g_mean = a.sum(axis=1)
        g_lv = 0.5 * np.sum(a * eps3, axis=1) * sd + 0.5 / n
    else:                                                              # eqs. (17)-(19)
        if estimator == "dreg":
            a *= omega[:, :, None]
            c = c * omega                                              # omega_i^2 / n
        ce = c[:, :, None] * eps3
        g_mean = a.sum(axis=1) + ce.sum(axis=1) * np.exp(-0.5 * log_var)
        g_lv = 0.5 * np.sum(a * eps3, axis=1) * sd + 0.5 * np.sum(ce * eps3, axis=1)
    return _value_and_grads(params, cache, rows, g_mean, g_lv, dec_grads, arch)


@benign_underflow
def iwae_grad(params, x, eps, arch, estimator="reparam"):
    """Batch-mean IWAE estimate (15) at fixed noise and a gradient estimate of L_k.

    Parameters
    ----------
    params : dict
        Layout in the module docstring.
    x : array_like, shape (n, D)
    eps : array_like, shape (n, k, K)
        Standard-normal noise of the k samples per row, z_i = mean + exp(log_var/2) eps_i
        (eq. 6).
    arch : VAEArchitecture
    estimator : {"reparam", "dreg"}
        ``"reparam"``: the exact gradient of the estimate at this noise, eq. (16) (Burda
        et al. 2016). ``"dreg"``: the doubly reparameterised encoder gradient, eq. (18)
        (Tucker et al. 2019), with the decoder gradient of (16); unbiased for the
        gradient of L_k but not the gradient of the returned value at fixed noise.

    Returns
    -------
    value : float
        ``mean_i log (1/k) sum_t w_it``, eq. (15); with k = 1 the ELBO estimate (7b).
    grads : dict
        Gradient estimate of the batch-mean L_k (ascent direction), keys and shapes of
        ``params``. With k = 1, ``"reparam"`` equals :func:`elbo_grad_reparam` with
        ``kl="mc"`` and ``"dreg"`` equals :func:`elbo_grad_stl`.
    """
    params, x = _checked(params, x, arch)
    eps = as_float_array(eps, "eps", ndim=3)
    n, K = x.shape[0], arch.n_latent
    if eps.shape[0] != n or eps.shape[2] != K or eps.shape[1] == 0:
        raise ValueError(f"eps must have shape (n, k, K) with (n, K) = ({n}, {K}) and "
                         f"k >= 1, got {eps.shape}")
    _check_bounded(eps, "eps")
    estimator = check_choice(estimator, "estimator", _IWAE_ESTIMATORS)
    return _multi_sample_grad(params, x, eps, arch, estimator)


@benign_underflow
def elbo_grad_stl(params, x, eps, arch):
    """Batch-mean ELBO estimate (7b) and the "sticking the landing" gradient, eq. (19).

    The reparameterisation gradient (9b) with the score term of q dropped (Roeder, Wu &
    Duvenaud 2017): unbiased for the gradient of the ELBO (4), and exactly zero in the
    encoder when q(z | x) is the exact posterior.

    Parameters
    ----------
    params : dict
    x : array_like, shape (n, D)
    eps : array_like, shape (n, K) or (n, k, K)
    arch : VAEArchitecture

    Returns
    -------
    value : float
        ``mean(elbo(params, x, eps, arch, kl="mc"))``.
    grads : dict
        The estimate (ascent direction); its decoder part is that of
        :func:`elbo_grad_reparam` with ``kl="mc"``.
    """
    params, x = _checked(params, x, arch)
    eps3 = _as_noise3(eps, x.shape[0], arch.n_latent)
    return _multi_sample_grad(params, x, eps3, arch, "stl")


# ------------------------------------------------------------------ the estimator


def _all_finite(params):
    return all(np.all(np.isfinite(a)) for a in params.values())


@benign_underflow
class VAE:
    """Variational autoencoder with MLP encoder and decoder: a thin estimator around the
    functions of this module (derivation in the module docstring).

    Parameters
    ----------
    n_features : int
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
    arch : VAEArchitecture
        The architecture (``n_features`` ... ``activation`` are read-only views of it).
    params_ : dict or None
        The fitted parameters (layout in the module docstring), set by :meth:`fit` or
        :meth:`load`; may also be assigned.
    history_ : dict of lists or None
        Set by :meth:`fit`: ``epoch``, ``train_elbo``, ``test_elbo``, ``seconds``.

    Notes
    -----
    The methods ``elbo``, ``elbo_grad_reparam``, ``elbo_grad_reinforce``,
    ``elbo_grad_stl``, ``iwae_grad``, ``log_q``,
    ``iwae_bound``, ``fit_local`` and ``amortization_gap`` are the module-level functions
    of the same names with ``arch=self.arch``, taking ``(params, x, noise, ...)``.
    Everywhere, ``params=None`` means the fitted ``params_`` (a ``ValueError`` naming
    ``params`` if there are none); the conveniences ``encode``, ``decode``,
    ``reconstruct``, ``sample`` and ``as_model`` take ``params`` as an optional keyword.
    """

    latent_type = "continuous"

    def __init__(self, n_features, n_latent, hidden=(200,), likelihood="bernoulli",
                 activation="tanh"):
        self.arch = VAEArchitecture(n_features, n_latent, hidden, likelihood, activation)
        self.params_ = None
        self.history_ = None

    n_features = property(lambda self: self.arch.n_features, doc="D, data dimension.")
    n_latent = property(lambda self: self.arch.n_latent, doc="K, latent dimension.")
    hidden = property(lambda self: self.arch.hidden, doc="Hidden widths of the encoder.")
    likelihood = property(lambda self: self.arch.likelihood, doc="Decoder distribution.")
    activation = property(lambda self: self.arch.activation, doc="Hidden activation.")

    def __repr__(self):
        a = self.arch
        return (f"VAE(n_features={a.n_features}, n_latent={a.n_latent}, hidden={a.hidden}, "
                f"likelihood={a.likelihood!r}, activation={a.activation!r})")

    def _params(self, params):
        """``params``, or the fitted ``params_`` for ``None`` (the rule of the class)."""
        if params is not None:
            return params
        if self.params_ is None:
            raise ValueError("params: this VAE has no fitted params_ (pass params, call fit() "
                             "or load a saved model)")
        return self.params_

    # -------------------------------------------------------------- parameters

    def param_shapes(self) -> dict:
        """Parameter names and shapes (:meth:`VAEArchitecture.param_shapes`)."""
        return self.arch.param_shapes()

    def check_params(self, params) -> dict:
        """Validated float64 copies of ``params`` (:meth:`VAEArchitecture.check_params`)."""
        return self.arch.check_params(params)

    def init_params(self, rng=None, scheme="glorot") -> dict:
        """Random initial parameters: :func:`init_params` with this architecture."""
        return init_params(self.arch, rng, scheme)

    # -------------------------------------------------------------- the functions, bound

    def elbo(self, params, x, eps, kl="analytic"):
        """Per-row ELBO estimate (7a)/(7b): :func:`elbo`."""
        return elbo(self._params(params), x, eps, self.arch, kl)

    def elbo_grad_reparam(self, params, x, eps, kl="analytic"):
        """Batch-mean ELBO and its exact gradient at fixed eps, (7)-(9):
        :func:`elbo_grad_reparam`."""
        return elbo_grad_reparam(self._params(params), x, eps, self.arch, kl)

    def elbo_grad_reinforce(self, params, x, eps=None, *, z=None, baseline=None,
                            kl="analytic"):
        """Batch-mean ELBO and a REINFORCE gradient estimate (10):
        :func:`elbo_grad_reinforce`."""
        return elbo_grad_reinforce(self._params(params), x, eps, self.arch, z=z,
                                   baseline=baseline, kl=kl)

    def elbo_grad_stl(self, params, x, eps):
        """Batch-mean ELBO (7b) and the sticking-the-landing gradient (19):
        :func:`elbo_grad_stl`."""
        return elbo_grad_stl(self._params(params), x, eps, self.arch)

    def iwae_grad(self, params, x, eps, estimator="reparam"):
        """Batch-mean IWAE estimate (15) and its reparameterised (16) or DReG (18)
        gradient, eps of shape (n, k, K): :func:`iwae_grad`."""
        return iwae_grad(self._params(params), x, eps, self.arch, estimator)

    def log_q(self, params, x, z):
        """log q(z | x), eq. (3): :func:`log_q`."""
        return log_q(self._params(params), x, z, self.arch)

    def iwae_bound(self, params, x, k, rng=None, *, n_repeats=1, chunk_size=None, z=None):
        """Importance-weighted bound L_k per row (11): :func:`iwae_bound`."""
        return iwae_bound(self._params(params), x, self.arch, k, rng, n_repeats=n_repeats,
                          chunk_size=chunk_size, z=z)

    def fit_local(self, params, x, *, n_steps=500, lr=1e-2, lr_final=1e-4, k=1, rng=None,
                  init=None, kl="analytic"):
        """Per-data-point VI for the fixed decoder (12): :func:`fit_local`."""
        return fit_local(self._params(params), x, self.arch, n_steps=n_steps, lr=lr,
                         lr_final=lr_final, k=k, rng=rng, init=init, kl=kl)

    def amortization_gap(self, params, x, *, k_eval=1000, rng=None, **local):
        """Per-row amortization gap (12): :func:`amortization_gap`."""
        return amortization_gap(self._params(params), x, self.arch, k_eval=k_eval, rng=rng,
                                **local)

    def as_model(self, params=None) -> VAEModel:
        """This VAE bound to ``params``, following the :mod:`lvmref.estimators` protocol."""
        return VAEModel(self.arch, self._params(params))

    # -------------------------------------------------------------- training

    @scoped_blas_threads  # BLAS threads for the step's small products, restored on return
    def fit(self, x, x_test=None, *, n_epochs=100, batch_size=100, lr=1e-3, rng=None,
            params=None, init="glorot", objective="elbo", estimator="reparam", kl=None,
            k=1, baseline=None, verbose=False, callback=None):
        """Maximize the ELBO (4) or the IWAE bound L_k (11) with minibatch Adam; sets
        ``params_`` and ``history_``.

        Noise protocol (so another implementation can replay it): ``rng`` draws, in
        order, the initial parameters (``init_params(rng, init)``, unless ``params`` is
        given), then per epoch a permutation ``rng.permutation(n)`` and per minibatch
        (consecutive slices of the permutation, the last one possibly smaller) ``eps =
        rng.standard_normal((b, K))`` (or ``(b, k, K)`` for ``k > 1``). The test ELBO of
        each epoch uses a separate stream ``rng.spawn(1)[0]`` created at the start, so
        evaluation does not change the training noise. With ``objective="elbo"``,
        ``estimator="reparam"`` and ``k=1`` the steps run in
        :class:`lvmref.vae_training.TrainingWorkspace` (the same gradient,
        allocation-free); every other combination runs the module-level gradient
        functions and :class:`lvmref.optim.Adam`. ``history_["train_elbo"]`` records the
        training objective: the ELBO estimate, or the L_k estimate (15) for
        ``objective="iwae"``; ``test_elbo`` is always the one-sample ELBO (7a).

        Parameters
        ----------
        x : array_like, shape (n, D)
            Training data. An ``np.memmap`` (e.g. ``np.load(path, mmap_mode="r")``) is
            not copied: it is validated chunk by chunk and each minibatch's rows are
            gathered from it, converted to float64 as a copy of the whole would be, so
            every number of the fit is the same as for ``np.asarray(x)``.
        x_test : array_like, shape (m, D), optional
            Evaluated after every epoch with a single-sample ELBO (7a).
        n_epochs, batch_size : int
        lr : float
            Adam step size.
        rng : Generator, int or None
        params : dict, optional
            Initial parameters (copied); default ``init_params(rng, init)``.
        init : {"glorot", "torch"}
            Initialization scheme when ``params`` is not given (see :func:`init_params`).
        objective : {"elbo", "iwae"}
            The ELBO (4), or the importance-weighted bound L_k (11) with k = ``k``.
        estimator : str
            Gradient estimator. For ``objective="elbo"``: ``"reparam"`` (9),
            ``"reinforce"`` (10) or ``"stl"`` (19, sticking the landing); for
            ``objective="iwae"``: ``"reparam"`` (16) or ``"dreg"`` (18).
        kl : {"analytic", "mc"}, optional
            The ELBO estimate (7a)/(7b) of ``"reparam"`` and ``"reinforce"`` (default
            ``"analytic"``). ``"stl"`` is defined on (7b) (``kl`` unset or ``"mc"``); the
            IWAE objective has no KL term (``kl`` must be unset).
        k : int
            Noise samples per row and step (the k of L_k for ``objective="iwae"``).
        baseline : see :func:`elbo_grad_reinforce` (only for ``estimator="reinforce"``).
        verbose : bool
            Print one line per epoch.
        callback : callable, optional
            Called as ``callback(epoch, history)`` after every epoch (after ``verbose``'s
            line), with ``history`` the dict that becomes ``history_`` (its lists end with
            this epoch's entries); e.g. to drive a :class:`lvmref.progress.Progress` line.
            Its return value is ignored; it must not change ``history``.

        Returns
        -------
        self
        """
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
        verbose = check_flag(verbose, "verbose")
        arch = self.arch
        mapped = isinstance(x, np.memmap)
        x = _check_mapped_x(arch, x) if mapped else arch.check_x(x)
        if x_test is not None:
            x_test = arch.check_x(x_test, "x_test")
        n_epochs = check_positive_int(n_epochs, "n_epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        k = check_positive_int(k, "k")
        check_positive_float(lr, "lr")
        objective = check_choice(objective, "objective", ("elbo", "iwae"))
        estimator = check_choice(estimator, "estimator",
                                 _IWAE_ESTIMATORS if objective == "iwae"
                                 else ("reparam", "reinforce", "stl"))
        if kl is not None:
            kl = check_choice(kl, "kl", _KL)
        if objective == "iwae" and kl is not None:
            raise ValueError("kl: the IWAE objective (15) has no KL term; leave kl unset")
        if estimator == "stl" and kl == "analytic":
            raise ValueError("kl: estimator='stl' differentiates the Monte Carlo ELBO (7b); "
                             "pass kl='mc' or leave kl unset")
        kl = "mc" if estimator == "stl" else (kl or "analytic")
        if estimator != "reinforce" and baseline is not None:
            raise ValueError("baseline is only used with estimator='reinforce'")
        rng = check_rng(rng)
        eval_rng = rng.spawn(1)[0]
        check_choice(init, "init", ("glorot", "torch"))
        params = init_params(arch, rng, init) if params is None else arch.check_params(params)
        fast = objective == "elbo" and estimator == "reparam" and k == 1
        if fast:  # same mathematics, allocation-free (tested equal to elbo_grad_reparam)
            # x was validated above and the noise is ours: no per-step checks
            ws = TrainingWorkspace(arch, params, batch_size, kl, lr, check_inputs=False)
            params = ws.params
        else:
            opt = Adam(params, lr=lr)
        n, K = x.shape[0], arch.n_latent
        hist = {"epoch": [], "train_elbo": [], "test_elbo": [], "seconds": []}
        t0 = time.perf_counter()
        for epoch in range(1, n_epochs + 1):
            perm = rng.permutation(n)
            total = 0.0
            for start in range(0, n, batch_size):
                xb = x[perm[start:start + batch_size]]
                if mapped:  # the gathered rows, as arch.check_x would have converted them
                    xb = np.ascontiguousarray(xb, dtype=np.float64)
                eps = rng.standard_normal((xb.shape[0], K) if k == 1 else (xb.shape[0], k, K))
                # A diverging run (too large an lr) overflows inside the step; that is
                # reported once, below, as a FloatingPointError naming lr -- not as
                # RuntimeWarnings from deep inside, or an error about matmul under a
                # caller's np.errstate(all="raise").
                with np.errstate(all="ignore"):
                    if fast:
                        value = ws.step(xb, eps)
                    else:
                        eps3 = eps[:, None, :] if eps.ndim == 2 else eps
                        try:
                            if objective == "iwae" or estimator == "stl":  # (16)-(19)
                                value, grads = _multi_sample_grad(
                                    params, xb, eps3, arch,
                                    estimator if objective == "iwae" else "stl")
                            elif estimator == "reparam":
                                value, grads = _elbo_grad_reparam(params, xb, eps3, arch,
                                                                  kl)
                            else:
                                value, grads = elbo_grad_reinforce(
                                    params, xb, eps3, arch, baseline=baseline, kl=kl)
                        except ValueError as exc:
                            # x and the options were validated above and the parameters
                            # are finite, so a non-finite value refused inside the step
                            # is an overflowed intermediate (e.g. the latent z)
                            if "NaN or infinite" not in str(exc):
                                raise
                            raise FloatingPointError(
                                f"training diverged at epoch {epoch} (a non-finite "
                                f"intermediate); lower lr = {lr:g}") from exc
                        opt.step(grads, sign=-1.0)
                # (the fast step's next ELBO shows an overflowed update; the other paths
                # refuse non-finite parameters, so theirs are checked here)
                if not np.isfinite(value) or not (fast or _all_finite(params)):
                    raise FloatingPointError(f"training diverged at epoch {epoch} (ELBO "
                                             f"{value}); lower lr = {lr:g}")
                total += value * xb.shape[0]
            hist["epoch"].append(epoch)
            hist["train_elbo"].append(total / n)
            test = np.nan
            if x_test is not None:
                eps_t = eval_rng.standard_normal((x_test.shape[0], 1, K))
                mean, log_var, _ = _encode(params, x_test, arch)
                test = float(np.mean(_elbo_q(params, x_test, mean, log_var, eps_t, arch,
                                             "analytic", False)[0]))
            hist["test_elbo"].append(test)
            hist["seconds"].append(time.perf_counter() - t0)
            if verbose:
                print(f"epoch {epoch:4d}  train ELBO {total / n:10.4f}  test ELBO {test:10.4f}"
                      f"  ({hist['seconds'][-1]:.1f} s)", flush=True)
            if callback is not None:
                callback(epoch, hist)
        if not _all_finite(params):
            # the last Adam step overflowed although the ELBO before it was finite
            raise FloatingPointError(f"the parameters became non-finite in the last step "
                                     f"(epoch {n_epochs}); lower lr = {lr:g}")
        self.params_ = {key: np.array(a) for key, a in params.items()}
        self.history_ = hist
        return self

    # -------------------------------------------------------------- conveniences

    def encode(self, x, params=None):
        """Mean and log variance of q(z | x), eq. (3); each of shape (n, K)."""
        return encode(self._params(params), x, self.arch)

    def decode(self, z, params=None, *, raw=False):
        """Mean of p(x | z), shape (n, D): sigmoid(logits) or the Gaussian mean.

        With ``raw=True``: the logits (n, D) (Bernoulli), or ``(mean, log_var)``
        (Gaussian), eq. (2).
        """
        params = self.arch.check_params(self._params(params))
        z = _check_bounded(self.arch.check_z(z), "z")
        raw = check_flag(raw, "raw")
        out, _ = self.arch.decoder.forward(params, z)
        d = self.arch.n_features
        if self.arch.likelihood == "bernoulli":
            return out if raw else sigmoid_np(out)
        return (out[:, :d].copy(), out[:, d:].copy()) if raw else out[:, :d].copy()

    def reconstruct(self, x, params=None, rng=None):
        """Decoder mean at the encoder mean (``rng=None``) or at one sample z ~ q(z | x)."""
        params = self.arch.check_params(self._params(params))
        mean, log_var = self.encode(x, params)
        z = mean if rng is None else \
            _reparameterize(mean, log_var, check_rng(rng).standard_normal(mean.shape))
        return self.decode(z, params)

    def sample(self, n, rng=None, params=None, *, return_mean=False):
        """Draw n rows x ~ p(x) (z ~ N(0, I), then x ~ p(x | z)); shape (n, D).

        With ``return_mean``, return the decoder means instead of sampling x.
        """
        params = self.arch.check_params(self._params(params))
        n = check_positive_int(n, "n")
        return_mean = check_flag(return_mean, "return_mean")
        rng = check_rng(rng)
        z = rng.standard_normal((n, self.arch.n_latent))
        out, _ = self.arch.decoder.forward(params, z)
        d = self.arch.n_features
        if self.arch.likelihood == "bernoulli":
            p = sigmoid_np(out)
            return p if return_mean else (rng.random(p.shape) < p).astype(np.float64)
        m, v = out[:, :d], out[:, d:]
        return m.copy() if return_mean else _reparameterize(m, v, rng.standard_normal(m.shape))

    # -------------------------------------------------------------- persistence

    def save(self, path):
        """Write the architecture, ``params_`` and ``history_`` to a model file.

        The one lvmref ``.npz`` format (:mod:`lvmref.persistence`), kind ``"VAE"``,
        format version 1: ``n_features``, ``n_latent``, ``hidden`` (1-D int array),
        ``likelihood``, ``activation``; the parameters under their names (``"enc.W0"``,
        ...); ``history_.epoch``, ``history_.train_elbo``, ``history_.test_elbo``,
        ``history_.seconds`` (recorded as unset when there is no history).

        Parameters
        ----------
        path : str or path-like
            ``.npz`` is appended if missing.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        if self.params_ is None:
            raise ValueError("params_: save needs a fitted VAE (call fit(), or assign params_)")
        params = self.arch.check_params(self.params_)
        history = _check_history(self.history_)
        a = self.arch
        entries = {"n_features": a.n_features, "n_latent": a.n_latent,
                   "hidden": np.array(a.hidden, dtype=np.int64), "likelihood": a.likelihood,
                   "activation": a.activation, **params}
        for key in _HISTORY:
            entries[f"history_.{key}"] = None if history is None else np.asarray(history[key])
        return save_model(path, "VAE", _FILE_VERSION, entries)

    @classmethod
    def load(cls, path):
        """Read a model file written by :meth:`save`: a VAE carrying ``params_`` (and
        ``history_`` if one was saved).

        Every entry is validated as the constructor and :meth:`fit` would (types, shapes,
        finiteness; history lengths consistent). A missing file is ``FileNotFoundError``;
        anything else wrong is a ``ValueError`` naming the file.
        """
        f = read_model(path, "VAE", versions=(_FILE_VERSION,))
        arch = (f.int("n_features"), f.int("n_latent"), f.int_tuple("hidden"),
                f.str("likelihood"), f.str("activation"))
        try:
            vae = cls(*arch)
        except (TypeError, ValueError) as exc:
            raise f.error(f"invalid architecture: {exc}") from None
        shapes = vae.arch.param_shapes()
        keys = [f"history_.{key}" for key in _HISTORY]
        extra = sorted(set(f.keys()) - set(shapes) - set(keys)
                       - {"n_features", "n_latent", "hidden", "likelihood", "activation"})
        if extra:
            raise f.error(f"unexpected entries {extra} for a VAE with parameters "
                          f"{list(shapes)}")
        params = {key: f.array(key) for key in shapes}
        unset = [f.is_none(key) for key in keys]
        history = None if all(unset) else \
            {key: f.array(k) for key, k in zip(_HISTORY, keys, strict=True)}
        try:
            vae.params_ = vae.arch.check_params(params)
            vae.history_ = _check_history(history)
        except (TypeError, ValueError) as exc:
            raise f.error(str(exc)) from None
        return vae


def _check_history(history):
    """``history_`` validated -- None, or lists of equal length: epoch = 1..m, finite
    train_elbo, test_elbo finite or NaN (no test data), seconds finite, >= 0 and
    non-decreasing -- and returned as lists."""
    if history is None:
        return None
    if not isinstance(history, dict) or set(history) != set(_HISTORY):
        raise ValueError(f"history_ must be None or a dict with keys {list(_HISTORY)}")
    epoch = np.asarray(history["epoch"])
    if epoch.ndim != 1 or not (np.issubdtype(epoch.dtype, np.integer) or epoch.size == 0):
        raise ValueError(f"history_['epoch'] must be a 1-D list of integers, got {epoch.dtype} "
                        f"{epoch.shape}")
    m = epoch.shape[0]
    if not np.array_equal(epoch, np.arange(1, m + 1)):
        raise ValueError("history_['epoch'] must be 1, 2, ..., n_epochs")
    out = {"epoch": [int(e) for e in epoch]}
    for key in _HISTORY[1:]:
        v = as_float_array(history[key], f"history_[{key!r}]", shape=(m,), allow_empty=True,
                           finite=False)
        bad = np.isinf(v) if key == "test_elbo" else ~np.isfinite(v)
        if bad.any():
            raise ValueError(f"history_[{key!r}] must be finite"
                             + (" (or NaN: no test data)" if key == "test_elbo" else ""))
        out[key] = [float(e) for e in v]
    s = np.asarray(out["seconds"])
    if np.any(s < 0) or np.any(np.diff(s) < 0):
        raise ValueError("history_['seconds'] must be non-negative and non-decreasing")
    return out


# ------------------------------------------------------------------ estimators protocol


@benign_underflow
class VAEModel:
    """A VAE architecture bound to parameters: the :mod:`lvmref.estimators` model protocol.

    ``log_joint(x, z)``, ``log_likelihood(x, z)``, ``log_q(x, z)`` take ``z`` of shape
    (n, k, K) or (1, k, K) and return (n, k); ``log_prior(z)`` returns (m, k) for z of
    shape (m, k, K); ``sample_prior(n, k, rng)`` and ``sample_q(x, k, rng)`` return
    (n, k, K).

    Parameters
    ----------
    arch : VAEArchitecture
    params : dict
        Validated and copied.
    """

    latent_type = "continuous"

    def __init__(self, arch, params):
        self.arch = _check_arch(arch)
        self.params = arch.check_params(params)
        self.n_latent = arch.n_latent

    def _xz(self, x, z):
        x = self.arch.check_x(x)
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
        _check_bounded(z, "z")
        return _decoder_log_lik(self.params, x, np.ascontiguousarray(z), self.arch, False)[0]

    def log_prior(self, z):
        """log p(z), eq. (1)."""
        z = as_float_array(z, "z", ndim=3)
        if z.shape[2] != self.n_latent:
            raise ValueError(f"z must have shape (m, k, K) with K = {self.n_latent}, got {z.shape}")
        return _log_prior(z)

    def log_joint(self, x, z):
        """log p(x, z) = log p(x | z) + log p(z), eqs. (1)-(2)."""
        x, z = self._xz(x, z)
        zc = np.ascontiguousarray(_check_bounded(z, "z"))
        return _decoder_log_lik(self.params, x, zc, self.arch, False)[0] + _log_prior(zc)

    def log_q(self, x, z):
        """log q(z | x), eq. (3)."""
        x, z = self._xz(x, z)
        mean, log_var, _ = _encode(self.params, x, self.arch)
        return _log_q3(z, mean, log_var)

    def sample_prior(self, n, k, rng):
        """z ~ N(0, I), shape (n, k, K)."""
        n, k = check_positive_int(n, "n"), check_positive_int(k, "k")
        return check_rng(rng).standard_normal((n, k, self.n_latent))

    def sample_q(self, x, k, rng):
        """z ~ q(z | x) by eq. (6), shape (n, k, K)."""
        x = self.arch.check_x(x)
        k = check_positive_int(k, "k")
        mean, log_var, _ = _encode(self.params, x, self.arch)
        eps = check_rng(rng).standard_normal((x.shape[0], k, self.n_latent))
        return _reparameterize(mean, log_var, eps)
