r"""Bernoulli latent variable models and the Helmholtz machine.

Trained by wake-sleep (Hinton, Dayan, Frey & Neal 1995), reweighted wake-sleep
(Bornschein & Bengio 2015) and REINFORCE on the ELBO with NVIL baselines
(Mnih & Gregor 2014).

Generative model
----------------
Layers :math:`\ell = 0, \dots, L` of binary units, top to bottom, with sizes
``layer_sizes = (n_0, ..., n_L)``; :math:`h^0` is the top latent layer and
:math:`h^L = x` the :math:`D = n_L` pixels. The latent vector is the concatenation
:math:`z = (h^0, h^1, \dots, h^{L-1})` of :math:`K = n_0 + \dots + n_{L-1}` bits
(``n_latent``), always in this top-to-bottom order. With
:math:`\log \mathrm{Bern}(h \mid \sigma(a)) = h a - \mathrm{softplus}(a)`:

.. math::
    p(h^0) = \prod_k \sigma(\beta_k)^{h^0_k} (1 - \sigma(\beta_k))^{1 - h^0_k}     \tag{1}

.. math::
    p(h^{\ell+1} \mid h^\ell) = \prod_j \mathrm{Bern}(h^{\ell+1}_j \mid
        \sigma(a^{\ell+1}_j)), \qquad a^{\ell+1} = g_\ell(h^\ell)                  \tag{2}

where :math:`g_\ell` is the "generative" MLP of :mod:`lvmref.nn` (zero or more
deterministic hidden layers, identity output giving logits). The one-latent-layer
seed model is ``layer_sizes = (K, D)``.

.. math::
    \log p(x, z) = \sum_k [h^0_k \beta_k - \mathrm{softplus}(\beta_k)]
        + \sum_{\ell=0}^{L-1} \sum_j [h^{\ell+1}_j a^{\ell+1}_j
        - \mathrm{softplus}(a^{\ell+1}_j)]                                        \tag{3}

.. math::
    \log p(x) = \log \sum_{z \in \{0,1\}^K} \exp \log p(x, z)                     \tag{4}

(4) is computed by enumeration in :func:`lvmref.estimators.exact_log_marginal`.

Recognition model
-----------------
Factorised Bernoulli layers running bottom-up, :math:`h^L = x`:

.. math::
    q(z \mid x) = \prod_{\ell=0}^{L-1} \prod_k \mathrm{Bern}(h^\ell_k \mid
        \sigma(c^\ell_k)), \qquad c^\ell = r_\ell(h^{\ell+1})                     \tag{5}

with "recognition" MLPs :math:`r_\ell`.

Sampling convention (the noise is an input)
-------------------------------------------
A unit with logit :math:`a` is sampled from one uniform :math:`u \sim U(0, 1)` as

.. math::  h = \mathbf{1}[u < \sigma(a)].                                          \tag{6}

Prior / ancestral samples use uniforms ``u`` of shape (..., K + D) whose columns
are in the order (z, x) (top layer first); samples from q use ``u`` of shape
(..., K) in the column order of z (each layer is filled bottom-up, but its columns
stay where they are in z). Passing the same ``u`` reproduces the same samples in
every implementation.

Gradients
---------
For one Bernoulli unit, :math:`\partial \log \mathrm{Bern}(h \mid \sigma(a)) /
\partial a = h - \sigma(a)`. Hence the **wake gradient** at fixed (x, z):

.. math::
    \frac{\partial \log p(x, z)}{\partial \beta} = h^0 - \sigma(\beta), \qquad
    \frac{\partial \log p(x, z)}{\partial a^{\ell+1}} = h^{\ell+1}
        - \sigma(a^{\ell+1}),                                                     \tag{7}

back-propagated through :math:`g_\ell` by eq. (2) of :mod:`lvmref.nn`. Without
hidden layers (:math:`a^{\ell+1} = h^\ell W + b`) this is the local delta rule
:math:`\Delta W = \eta\, h^{\ell\top} (h^{\ell+1} - \sigma(a^{\ell+1}))`,
:math:`\Delta b = \eta\, (h^{\ell+1} - \sigma(a^{\ell+1}))`.

The **sleep gradient** at fixed (x, z):

.. math::
    \frac{\partial \log q(z \mid x)}{\partial c^\ell} = h^\ell - \sigma(c^\ell)    \tag{8}

back-propagated through :math:`r_\ell` (again a delta rule without hidden layers).

*How the deltas are computed.* For binary :math:`h`,

.. math::  h - \sigma(a) = \begin{cases} \sigma(-a) & h = 1 \\
           -\sigma(a) & h = 0 \end{cases}                                       \tag{8a}

and every implementation here (the NumPy functions, the prior gradient, the Numba online
kernels and their NumPy twins) evaluates the right-hand side
(:func:`lvmref.kernels.bernoulli_logit_grad`), never the literal difference. Confident
units are the normal state late in training, and for :math:`h = 1, a \gg 0` the
difference :math:`1 - \sigma(a)` cancels: its relative error is about
:math:`10^{-16} e^{a}` (2e-11 at a = 12, 1e-3 at a = 30, and exactly 0 instead of
4e-18 at a = 40), while (8a) is accurate to a few ulp for every :math:`a`. Likewise every
Bernoulli log-probability of (3) and (5), the prior's included, is evaluated as
:math:`(h a - \max(a, 0)) - \log(1 + e^{-|a|})`, exact for binary :math:`h`
(:func:`lvmref.kernels.bernoulli_log_prob`): :math:`h a - \mathrm{softplus}(a)` would give
0 instead of -6.3e-16 for h = 1, a = 35.

Training algorithms
-------------------
**Wake-sleep** (Hinton et al. 1995). Wake: :math:`x \sim` data,
:math:`z \sim q(\cdot \mid x)`, :math:`\theta \mathrel{+}= \eta\, \nabla_\theta
\log p(x, z)` (eq. 7; θ includes β). Sleep: :math:`(z, x) \sim p` ("dreams"),
:math:`\phi \mathrel{+}= \eta_q \nabla_\phi \log q(z \mid x)` (eq. 8).       (9)

**Reweighted wake-sleep** (Bornschein & Bengio 2015). With
:math:`z_1, \dots, z_S \sim q(\cdot \mid x)`,
:math:`\log w_s = \log p(x, z_s) - \log q(z_s \mid x)` and self-normalised weights
:math:`\omega_s = w_s / \sum_t w_t`:

.. math::
    \Delta\theta \propto \sum_s \omega_s \nabla_\theta \log p(x, z_s), \qquad
    \Delta\phi \propto \sum_s \omega_s \nabla_\phi \log q(z_s \mid x)             \tag{10}

the first a (biased, consistent) estimate of :math:`\nabla_\theta \log p(x)`, the
second of :math:`-\nabla_\phi \mathrm{KL}(p(z \mid x) \,\|\, q(z \mid x))` (wake-phase
q update); an optional sleep-phase q update (9) may be added.

**REINFORCE on the ELBO.** With the learning signal
:math:`l(x, z) = \log p(x, z) - \log q(z \mid x)`,
:math:`\mathcal{L}(x) = E_q[l(x, z)]` and, since :math:`E_q[\nabla_\phi \log q] = 0`,

.. math::
    \nabla_\theta \mathcal{L} = E_q[\nabla_\theta \log p(x, z)], \qquad
    \nabla_\phi \mathcal{L} = E_q[(l(x, z) - b(x)) \nabla_\phi \log q(z \mid x)]   \tag{11}

for any baseline :math:`b(x)` that does not depend on z (unbiased for every such b).

**NVIL baselines** (Mnih & Gregor 2014, sec. 3). The baseline is
:math:`b(x) = c + b_\psi(x)` with a moving average :math:`c` of
:math:`l - b_\psi(x)` and an optional input-dependent MLP :math:`b_\psi`, trained to
regress the centred signal; optionally the signal is divided by
:math:`\max(1, \sqrt{v})`, :math:`v` a moving average of its variance:

.. math::
    \hat g_\phi = \frac{l - c - b_\psi(x)}{\max(1, \sqrt{v})} \nabla_\phi \log q,
    \quad c \leftarrow \alpha c + (1 - \alpha)\,\overline{l - b_\psi},
    \quad v \leftarrow \alpha v + (1 - \alpha)\,\overline{(l - c - b_\psi)^2},
    \quad \psi \mathrel{+}= \eta\, (l - c - b_\psi(x)) \nabla_\psi b_\psi(x)      \tag{12}

c, v and ψ used for a minibatch are those from before it, so (11) stays unbiased
(up to the positive scale of the variance normalisation).

Parameter layout
----------------
One flat dict ``name -> float64 array``. For ``layer_sizes = (n_0, ..., n_L)``,
``hidden = (m_1, ..., m_H)`` (deterministic widths of every generative MLP) and
``recognition_hidden`` (same for recognition MLPs):

===========================  ==========================  ===========================
key                          shape                        meaning
===========================  ==========================  ===========================
``prior``                    (n_0,)                      β, eq. (1)
``gen{l}.W{i}``              (sizes_i, sizes_{i+1})      layer i of g_l, sizes =
``gen{l}.b{i}``              (sizes_{i+1},)              (n_l, m_1..m_H, n_{l+1})
``rec{l}.W{i}``              (sizes_i, sizes_{i+1})      layer i of r_l, sizes =
``rec{l}.b{i}``              (sizes_{i+1},)              (n_{l+1}, m_1..m_H, n_l)
===========================  ==========================  ===========================

for l = 0..L-1, with ``y = x @ W + b`` and the hidden activation ``activation``
(output layers are identity: they produce logits). The NVIL input-dependent
baseline, when used, lives in the separate dict ``baseline_params_`` with keys
``base.W{i}``, ``base.b{i}`` (sizes (D, m_1..m_H, 1)).

Functions and the equations they implement, all in the argument order
``(params, x, z, arch)`` -- ``(params, x, u, arch)`` for samplers, whose noise is the
uniforms ``u`` -- then options: :func:`log_joint` (3), :func:`log_prior` (latent terms of
3), :func:`log_q` (5), :func:`sample_prior` (1, 2, 6), :func:`sample_q` (5, 6),
:func:`wake_grad` (7), :func:`sleep_grad` (8), :func:`log_weights` and :func:`rws_grads` (10),
:func:`reinforce_grads` (11, 12), :func:`exact_elbo` (E_q[l] by enumeration, through
:mod:`lvmref.estimators`).
The batch-size-1 paths of (9), (10) and (11, 12) for sigmoid belief nets (no hidden
layers) run in the Numba kernels ``ws_online``, ``rws_online`` and
``reinforce_online`` of :mod:`lvmref.kernels.helmholtz`, beside their NumPy twins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .kernels import bernoulli_logit_grad, logsumexp
from .kernels.checks import (
    as_float_array,
    check_binary,
    check_choice,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_rng,
)
from .kernels.densities import bernoulli_log_prob_np, sigmoid_np
from .kernels.fpenv import benign_underflow
from .nn import ACTIVATIONS, MLP

__all__ = [
    "Architecture",
    "HelmholtzMachine",
    "init_params",
    "log_joint",
    "log_prior",
    "log_q",
    "sample_prior",
    "sample_q",
    "wake_grad",
    "sleep_grad",
    "log_weights",
    "rws_grads",
    "reinforce_grads",
    "exact_elbo",
]


# ----------------------------------------------------------------------------------------
# architecture
# ----------------------------------------------------------------------------------------

@benign_underflow
@dataclass(frozen=True)
class Architecture:
    """Layer sizes (top to bottom, pixels last) and the MLPs of eqs. (2) and (5).

    Parameters
    ----------
    layer_sizes : tuple of int
        ``(n_0, ..., n_L)``, L >= 1; ``n_L = D`` pixels.
    hidden : tuple of int
        Deterministic hidden widths of each generative MLP g_l (may be empty).
    recognition_hidden : tuple of int
        Same for each recognition MLP r_l.
    activation : str
        Hidden activation (a key of :data:`lvmref.nn.ACTIVATIONS`).
    """

    layer_sizes: tuple
    hidden: tuple = ()
    recognition_hidden: tuple = ()
    activation: str = "tanh"

    def __post_init__(self):
        sizes = _int_tuple(self.layer_sizes, "layer_sizes")
        if len(sizes) < 2:
            raise ValueError(
                f"layer_sizes must have >= 2 entries (latent layers then pixels), got {sizes}"
            )
        object.__setattr__(self, "layer_sizes", sizes)
        object.__setattr__(self, "hidden", _int_tuple(self.hidden, "hidden", empty=True))
        object.__setattr__(
            self,
            "recognition_hidden",
            _int_tuple(self.recognition_hidden, "recognition_hidden", empty=True),
        )
        check_choice(self.activation, "activation", tuple(ACTIVATIONS))

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    @property
    def n_latent(self) -> int:
        return int(sum(self.layer_sizes[:-1]))

    @property
    def n_features(self) -> int:
        return self.layer_sizes[-1]

    @property
    def offsets(self) -> np.ndarray:
        """Start column of each layer in the (z, x) vector, shape (L + 2,)."""
        return np.concatenate([[0], np.cumsum(self.layer_sizes)]).astype(np.int64)

    def gen(self, l: int) -> MLP:
        """g_l: layer l -> logits of layer l + 1, eq. (2)."""
        s = self.layer_sizes
        acts = (self.activation,) * len(self.hidden) + ("identity",)
        return MLP((s[l], *self.hidden, s[l + 1]), acts, prefix=f"gen{l}.")

    def rec(self, l: int) -> MLP:
        """r_l: layer l + 1 -> logits of layer l, eq. (5)."""
        s = self.layer_sizes
        acts = (self.activation,) * len(self.recognition_hidden) + ("identity",)
        return MLP((s[l + 1], *self.recognition_hidden, s[l]), acts, prefix=f"rec{l}.")

    @property
    def is_sigmoid_belief_net(self) -> bool:
        """True when no MLP has hidden layers (the classic Helmholtz machine)."""
        return not self.hidden and not self.recognition_hidden

    def keys(self) -> list:
        """All parameter names in canonical order: prior, gen0.., rec0.."""
        out = ["prior"]
        for l in range(self.n_layers):
            out += self.gen(l).keys()
        for l in range(self.n_layers):
            out += self.rec(l).keys()
        return out

    def shapes(self) -> dict:
        out = {"prior": (self.layer_sizes[0],)}
        for l in range(self.n_layers):
            for net in (self.gen(l), self.rec(l)):
                for i in range(net.n_layers):
                    out[f"{net.prefix}W{i}"] = (net.sizes[i], net.sizes[i + 1])
                    out[f"{net.prefix}b{i}"] = (net.sizes[i + 1],)
        return {k: out[k] for k in self.keys()}


def _int_tuple(v, name, empty=False):
    try:
        t = tuple(v)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of positive ints, got {v!r}") from None
    out = tuple(check_positive_int(s, name) for s in t)
    if not out and not empty:
        raise ValueError(f"{name} must not be empty")
    return out


@benign_underflow
def init_params(arch: Architecture, rng=None, scale: float | None = None,
                bias=None) -> dict:
    """Initial parameters in the layout of the module docstring.

    Weights are Glorot-uniform (``nn.MLP.init``) unless ``scale`` is given, in which
    case every weight is ``scale * N(0, 1)``; β and all biases start at zero, except
    that ``bias`` (a float, or one float per layer l = 1..L) sets the output biases of
    the generative nets g_0..g_{L-1}, i.e. the logits of layers 1..L when the layer above
    is all off. Negative values start from a sparse code (units and pixels mostly off).
    """
    rng = check_rng(rng)
    bias = _layer_floats(bias, arch.n_layers, "bias")
    params = {"prior": np.zeros(arch.layer_sizes[0])}
    for l in range(arch.n_layers):
        params.update(arch.gen(l).init(rng))
    for l in range(arch.n_layers):
        params.update(arch.rec(l).init(rng))
    if scale is not None:
        scale = check_nonnegative_float(scale, "scale")
        for k in params:
            if ".W" in k:
                params[k] = scale * rng.standard_normal(params[k].shape)
    if bias is not None:
        for l in range(arch.n_layers):
            params[f"gen{l}.b{len(arch.hidden)}"][...] = bias[l]
    return {k: params[k] for k in arch.keys()}


def _layer_floats(v, n, name):
    """None, a finite float, or n finite floats -> None or a tuple of n floats."""
    if v is None:
        return None
    vals = np.atleast_1d(np.asarray(v))
    if vals.ndim != 1 or not (np.issubdtype(vals.dtype, np.integer)
                              or np.issubdtype(vals.dtype, np.floating)):
        raise TypeError(f"{name} must be a float or a sequence of {n} floats, got {v!r}")
    if vals.size == 1:
        vals = np.repeat(vals, n)
    if vals.size != n:
        raise ValueError(f"{name} needs 1 or {n} values (one per layer below the top), "
                         f"got {vals.size}")
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return tuple(float(t) for t in vals)


# ----------------------------------------------------------------------------------------
# densities, eqs. (3) and (5); all on 2-D (rows, features) arrays
# ----------------------------------------------------------------------------------------

def _split(arch, v):
    """Split a (rows, K [+ D]) array into its layers (views)."""
    off = arch.offsets
    n = v.shape[-1]
    return [v[..., off[l]:off[l + 1]] for l in range(arch.n_layers + 1) if off[l + 1] <= n]


def _gen_logits(params, arch, l, h):
    return arch.gen(l).forward(params, h)


def _rec_logits(params, arch, l, h):
    return arch.rec(l).forward(params, h)


@benign_underflow
def log_joint(params: dict, x: np.ndarray, z: np.ndarray, arch: Architecture) -> np.ndarray:
    """log p(x, z), eq. (3).

    Parameters
    ----------
    x : ndarray (n, D)
    z : ndarray (n, K)

    Returns
    -------
    ndarray (n,)
    """
    layers = _split(arch, np.concatenate([z, x], axis=1))
    out = bernoulli_log_prob_np(layers[0], params["prior"])
    for l in range(arch.n_layers):
        a, _ = _gen_logits(params, arch, l, layers[l])
        out = out + bernoulli_log_prob_np(layers[l + 1], a)
    return out


@benign_underflow
def log_prior(params: dict, z: np.ndarray, arch: Architecture) -> np.ndarray:
    """log p(z): the latent terms of eq. (3) (prior (1) and the latent-to-latent
    conditionals (2), l < L - 1). z (n, K) -> (n,)."""
    layers = _split(arch, z)
    out = bernoulli_log_prob_np(layers[0], params["prior"])
    for l in range(arch.n_layers - 1):
        a, _ = _gen_logits(params, arch, l, layers[l])
        out = out + bernoulli_log_prob_np(layers[l + 1], a)
    return out


@benign_underflow
def log_q(params: dict, x: np.ndarray, z: np.ndarray, arch: Architecture) -> np.ndarray:
    """log q(z | x), eq. (5). Shapes: x (n, D), z (n, K) -> (n,)."""
    layers = _split(arch, np.concatenate([z, x], axis=1))
    out = np.zeros(x.shape[0])
    for l in range(arch.n_layers):
        c, _ = _rec_logits(params, arch, l, layers[l + 1])
        out = out + bernoulli_log_prob_np(layers[l], c)
    return out


@benign_underflow
def sample_prior(params: dict, u: np.ndarray, arch: Architecture):
    """Ancestral sample of (z, x) from eqs. (1), (2), (6).

    Parameters
    ----------
    u : ndarray (n, K + D)
        Uniforms in (z, x) column order.

    Returns
    -------
    z : ndarray (n, K)
    x : ndarray (n, D)
    """
    off = arch.offsets
    out = np.empty_like(u)
    h = (u[:, : off[1]] < sigmoid_np(params["prior"])).astype(np.float64)
    out[:, : off[1]] = h
    for l in range(arch.n_layers):
        a, _ = _gen_logits(params, arch, l, h)
        h = (u[:, off[l + 1]:off[l + 2]] < sigmoid_np(a)).astype(np.float64)
        out[:, off[l + 1]:off[l + 2]] = h
    K = arch.n_latent
    return out[:, :K], out[:, K:]


@benign_underflow
def sample_q(params: dict, x: np.ndarray, u: np.ndarray, arch: Architecture) -> np.ndarray:
    """Sample z ~ q(z | x) bottom-up, eqs. (5), (6). x (n, D), u (n, K) -> z (n, K)."""
    off = arch.offsets
    z = np.empty((x.shape[0], arch.n_latent))
    h = x
    for l in range(arch.n_layers - 1, -1, -1):
        c, _ = _rec_logits(params, arch, l, h)
        h = (u[:, off[l]:off[l + 1]] < sigmoid_np(c)).astype(np.float64)
        z[:, off[l]:off[l + 1]] = h
    return z


# ----------------------------------------------------------------------------------------
# gradients, eqs. (7), (8), (10), (11), (12)
# ----------------------------------------------------------------------------------------

@benign_underflow
def wake_grad(params, x, z, arch, weights=None) -> dict:
    """Gradient of ``sum_i w_i log p(x_i, z_i)`` w.r.t. β and the generative MLPs, eq. (7).

    Parameters
    ----------
    x : ndarray (n, D)
    z : ndarray (n, K)
    weights : ndarray (n,), optional
        Per-row weights w_i (default 1).

    Returns
    -------
    dict
        Keys ``prior`` and ``gen{l}.*`` with parameter shapes.
    """
    layers = _split(arch, np.concatenate([z, x], axis=1))
    w = np.ones(x.shape[0]) if weights is None else weights
    beta = np.broadcast_to(params["prior"], layers[0].shape)
    grads = {"prior": w @ bernoulli_logit_grad(layers[0], beta)}
    for l in range(arch.n_layers):
        net = arch.gen(l)
        a, cache = net.forward(params, layers[l])
        g, _ = net.backward(params, cache, w[:, None] * bernoulli_logit_grad(layers[l + 1], a))
        grads.update(g)
    return grads


@benign_underflow
def sleep_grad(params, x, z, arch, weights=None) -> dict:
    """Gradient of ``sum_i w_i log q(z_i | x_i)`` w.r.t. the recognition MLPs, eq. (8).

    Shapes as :func:`wake_grad`; returns keys ``rec{l}.*``.
    """
    layers = _split(arch, np.concatenate([z, x], axis=1))
    w = np.ones(x.shape[0]) if weights is None else weights
    grads = {}
    for l in range(arch.n_layers):
        net = arch.rec(l)
        c, cache = net.forward(params, layers[l + 1])
        g, _ = net.backward(params, cache, w[:, None] * bernoulli_logit_grad(layers[l], c))
        grads.update(g)
    return grads


@benign_underflow
def log_weights(params, x, z, arch):
    """Importance log weights ``log w = log p(x, z) - log q(z | x)`` of eq. (10).

    x (n, D), z (n, k, K): k samples per row -> (n, k).
    """
    n, S, K = z.shape
    xr = np.repeat(x, S, axis=0)
    zr = z.reshape(n * S, K)
    return (log_joint(params, xr, zr, arch) - log_q(params, xr, zr, arch)).reshape(n, S)


@benign_underflow
def rws_grads(params, x, z, arch):
    """Reweighted wake-sleep wake-phase gradients, eq. (10).

    Parameters
    ----------
    x : ndarray (n, D)
    z : ndarray (n, S, K)
        S samples from q(. | x_i) per row.

    Returns
    -------
    grads : dict
        ``sum_i sum_s omega_is grad log p(x_i, z_is)`` (keys prior, gen*) and
        ``sum_i sum_s omega_is grad log q(z_is | x_i)`` (keys rec*).
    log_px : ndarray (n,)
        The IWAE estimate ``log mean_s w_is`` of log p(x_i) on these samples.
    """
    n, S, K = z.shape
    logw = log_weights(params, x, z, arch)
    lse = logsumexp(logw, axis=1)
    omega = np.exp(logw - lse[:, None]).reshape(n * S)
    xr = np.repeat(x, S, axis=0)
    zr = z.reshape(n * S, K)
    grads = wake_grad(params, xr, zr, arch, omega)
    grads.update(sleep_grad(params, xr, zr, arch, omega))
    return grads, lse - np.log(S)


@benign_underflow
def reinforce_grads(params, x, z, arch, baseline=0.0, scale=1.0):
    """Score-function (REINFORCE) ELBO gradients, eqs. (11), (12).

    Parameters
    ----------
    x : ndarray (n, D)
    z : ndarray (n, K)
        One sample from q(. | x_i) per row.
    baseline : float or ndarray (n,)
        b(x_i), must not depend on z_i.
    scale : float
        Divides the centred learning signal (NVIL variance normalisation), > 0.

    Returns
    -------
    grads : dict
        Unbiased estimates (sums over rows) of grad_theta ELBO (keys prior, gen*) and
        ``sum_i (l_i - b_i) / scale * grad_phi log q(z_i | x_i)`` (keys rec*).
    signal : ndarray (n,)
        The learning signal l_i = log p(x_i, z_i) - log q(z_i | x_i).
    """
    signal = log_joint(params, x, z, arch) - log_q(params, x, z, arch)
    grads = wake_grad(params, x, z, arch)
    grads.update(sleep_grad(params, x, z, arch, (signal - baseline) / scale))
    return grads, signal


@benign_underflow
def exact_elbo(params, x, arch) -> np.ndarray:
    """ELBO = log p(x) - KL(q || p(z | x)) by enumeration over all 2**K latents.

    Uses :func:`lvmref.estimators.exact_log_marginal` and
    :func:`lvmref.estimators.exact_kl_to_posterior` (their eqs. (1), (3), (4)).
    x (n, D) -> (n,). Exponential in K; for tests and small models.
    """
    from .estimators import exact_kl_to_posterior, exact_log_marginal

    model = HelmholtzMachine(arch.layer_sizes, arch.hidden, arch.recognition_hidden,
                             arch.activation, params=params)
    return exact_log_marginal(model, x) - exact_kl_to_posterior(model, x)


# ----------------------------------------------------------------------------------------
# the estimator shell
# ----------------------------------------------------------------------------------------

_METHODS = ("wake-sleep", "reweighted", "reinforce")


@benign_underflow
class HelmholtzMachine:
    """Layered Bernoulli LVM with a bottom-up recognition network.

    Implements the protocol of :mod:`lvmref.estimators` (``n_latent``,
    ``latent_type``, ``log_joint``, ``log_q``, ``sample_prior``, ``sample_q``, and
    ``log_prior`` for naive Monte Carlo).

    Parameters
    ----------
    layer_sizes : sequence of int
        ``(n_0, ..., n_L)`` top to bottom, pixels last (e.g. ``(1, 8, 16)``).
    hidden, recognition_hidden : sequence of int
        Deterministic hidden widths of each generative / recognition MLP.
    activation : str
        Hidden activation of the MLPs.
    params : dict, optional
        Initial parameters (layout in the module docstring); copied and validated.
    rng : Generator, int or None
        Randomness for the default initialisation.
    init_scale : float, optional
        If given, weights start as ``init_scale * N(0, 1)`` instead of Glorot.
    init_bias : float or sequence of float, optional
        Initial output biases of the generative nets, one per layer below the top
        (or one for all), e.g. ``(-1.5, -3.0)`` for a 1-8-16 net; see
        :func:`init_params`. Default: zero.

    Attributes
    ----------
    params : dict
    history_ : dict of lists, set by :meth:`fit`
    """

    latent_type = "binary"

    def __init__(
        self,
        layer_sizes=(1, 8, 16),
        hidden=(),
        recognition_hidden=(),
        activation="tanh",
        *,
        params=None,
        rng=None,
        init_scale=None,
        init_bias=None,
    ):
        self.arch = Architecture(layer_sizes, hidden, recognition_hidden, activation)
        if params is None:
            self.params = init_params(self.arch, rng, init_scale, _layer_floats(
                init_bias, self.arch.n_layers, "init_bias"))
        elif init_scale is not None or init_bias is not None:
            raise ValueError("init_scale and init_bias set the default initialisation; "
                             "they cannot be combined with params")
        else:
            self.params = self._check_params(params)
        self.history_ = {}

    # -- protocol ------------------------------------------------------------------------
    @property
    def n_latent(self) -> int:
        return self.arch.n_latent

    @property
    def n_features(self) -> int:
        return self.arch.n_features

    def _check_params(self, params):
        if not isinstance(params, dict):
            raise TypeError("params must be a dict name -> array")
        shapes = self.arch.shapes()
        missing = [k for k in shapes if k not in params]
        extra = [k for k in params if k not in shapes]
        if missing or extra:
            raise ValueError(f"params keys mismatch: missing {missing}, unexpected {extra}")
        return {k: as_float_array(params[k], f"params[{k!r}]", shape=s) for k, s in shapes.items()}

    def _check_x(self, x, name="x"):
        x = as_float_array(x, name, ndim=2, shape=(None, self.n_features))
        return check_binary(x, name)

    def _broadcast(self, x, z):
        """x (n, D), z (n|1, k, K) -> flattened (n*k, D), (n*k, K) and (n, k)."""
        x = self._check_x(x)
        z = as_float_array(z, "z", ndim=3, shape=(None, None, self.n_latent))
        check_binary(z, "z")
        n, k = x.shape[0], z.shape[1]
        if z.shape[0] not in (1, n):
            raise ValueError(f"z must have shape (1 or {n}, k, {self.n_latent}), got {z.shape}")
        zb = np.broadcast_to(z, (n, k, self.n_latent)).reshape(n * k, self.n_latent)
        return np.repeat(x, k, axis=0), zb, (n, k)

    def log_joint(self, x, z) -> np.ndarray:
        """log p(x, z), eq. (3); x (n, D), z (n or 1, k, K) -> (n, k)."""
        xr, zr, shape = self._broadcast(x, z)
        return log_joint(self.params, xr, zr, self.arch).reshape(shape)

    def log_prior(self, z) -> np.ndarray:
        """log p(z) (latent terms of eq. (3)); z (m, k, K) -> (m, k)."""
        z = as_float_array(z, "z", ndim=3, shape=(None, None, self.n_latent))
        check_binary(z, "z")
        m, k = z.shape[:2]
        return log_prior(self.params, z.reshape(m * k, -1), self.arch).reshape(m, k)

    def log_q(self, x, z) -> np.ndarray:
        """log q(z | x), eq. (5); x (n, D), z (n or 1, k, K) -> (n, k)."""
        xr, zr, shape = self._broadcast(x, z)
        return log_q(self.params, xr, zr, self.arch).reshape(shape)

    def sample_q(self, x, k, rng=None, *, u=None) -> np.ndarray:
        """z ~ q(z | x), eqs. (5), (6): x (n, D) -> (n, k, K).

        ``u`` (n, k, K) uniforms may be passed instead of ``rng``.
        """
        x = self._check_x(x)
        k = check_positive_int(k, "k")
        n, K = x.shape[0], self.n_latent
        u = self._uniforms(u, (n, k, K), rng)
        z = sample_q(self.params, np.repeat(x, k, axis=0), u.reshape(n * k, K), self.arch)
        return z.reshape(n, k, K)

    def sample_prior(self, n, k, rng=None, *, u=None) -> np.ndarray:
        """Latents z ~ p(z) (ancestral, eqs. (1), (2), (6)): -> (n, k, K).

        ``u`` (n, k, K + D) uniforms may be passed instead of ``rng`` (only the first
        K columns of each row matter for z; the layout is that of :meth:`sample`).
        """
        z, _ = self.sample(n, k, rng, u=u)
        return z

    def sample(self, n, k=None, rng=None, *, u=None):
        """Ancestral samples (z, x) ~ p, eqs. (1), (2), (6).

        Returns z (n, K), x (n, D) when ``k`` is None, else z (n, k, K), x (n, k, D).
        ``u`` (n, K + D) or (n, k, K + D) uniforms may replace ``rng``.
        """
        n = check_positive_int(n, "n")
        kk = 1 if k is None else check_positive_int(k, "k")
        K, D = self.n_latent, self.n_features
        shape = (n, K + D) if k is None else (n, kk, K + D)
        u = self._uniforms(u, shape, rng)
        z, x = sample_prior(self.params, u.reshape(n * kk, K + D), self.arch)
        if k is None:
            return z, x
        return z.reshape(n, kk, K), x.reshape(n, kk, D)

    @staticmethod
    def _uniforms(u, shape, rng):
        if u is None:
            return check_rng(rng).random(shape)
        u = as_float_array(u, "u", shape=shape)
        if np.any((u < 0) | (u >= 1)):
            raise ValueError("u must lie in [0, 1)")
        return u

    # -- persistence ---------------------------------------------------------------------
    def save(self, path):
        """Write the parameters and architecture to ``path`` (.npz)."""
        a = self.arch
        np.savez(
            path,
            __layer_sizes__=np.array(a.layer_sizes),
            __hidden__=np.array(a.hidden, dtype=np.int64),
            __recognition_hidden__=np.array(a.recognition_hidden, dtype=np.int64),
            __activation__=np.array(a.activation),
            **self.params,
        )

    @classmethod
    def load(cls, path):
        """Inverse of :meth:`save`; a malformed file raises ``ValueError``."""
        try:
            with np.load(path, allow_pickle=False) as f:
                d = {k: f[k] for k in f.files}
            arch = (tuple(int(s) for s in d.pop("__layer_sizes__")),
                    tuple(int(s) for s in d.pop("__hidden__")),
                    tuple(int(s) for s in d.pop("__recognition_hidden__")),
                    str(d.pop("__activation__")))
        except (KeyError, OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a HelmholtzMachine file: {exc}") from None
        return cls(*arch, params=d)

    # -- training ------------------------------------------------------------------------
    def fit(
        self,
        X,
        method="wake-sleep",
        *,
        n_updates=1000,
        batch_size=1,
        learning_rate=0.01,
        recognition_learning_rate=None,
        n_samples=5,
        sleep=False,
        baseline="moving-average",
        baseline_hidden=(),
        baseline_decay=0.9,
        normalize_variance=False,
        engine="auto",
        block=10_000,
        record_every=None,
        monitor=None,
        rng=None,
    ):
        """Train by wake-sleep (9), reweighted wake-sleep (10) or REINFORCE (11, 12).

        Plain SGD; each update averages its gradient over the minibatch.

        Parameters
        ----------
        X : ndarray (n, D) or callable
            Training images (minibatches drawn uniformly with replacement), or a
            sampler ``X(m, rng) -> (m, D)`` for an endless stream (e.g. bars).
        method : {"wake-sleep", "reweighted", "reinforce"}
        n_updates : int
            Number of parameter updates.
        batch_size : int
            Data rows per update (and dreams per sleep phase).
        learning_rate : float
            η for β and the generative MLPs (and the NVIL baseline net).
        recognition_learning_rate : float, optional
            η_q for the recognition MLPs (default ``learning_rate``).
        n_samples : int
            S, samples from q per data row for "reweighted".
        sleep : bool
            Add the sleep-phase q update to "reweighted".
        baseline : {"none", "moving-average", "input-dependent"}
            NVIL baseline for "reinforce", eq. (12).
        baseline_hidden : sequence of int
            Hidden widths of the input-dependent baseline MLP.
        baseline_decay : float in [0, 1)
            α of the moving averages in eq. (12).
        normalize_variance : bool
            NVIL variance normalisation, eq. (12).
        engine : {"auto", "numpy", "numba"}
            "numba" runs the batch-size-1 kernels of :mod:`lvmref.kernels.helmholtz`
            (needs ``batch_size=1``, no hidden layers and, for "reinforce", no
            input-dependent baseline); "auto" picks them whenever allowed. Both engines
            consume identical noise and agree to rounding.
        block : int
            Updates per block of pre-drawn noise.
        record_every : int, optional
            Record the objective every this many updates (default: once per block).
        monitor : callable, optional
            ``monitor(model) -> float`` appended to ``history_["monitor"]`` at each
            record (e.g. exact KL on bars).
        rng : Generator, int or None

        Returns
        -------
        self

        Notes
        -----
        Noise is drawn from ``rng``: first the initial weights of an input-dependent
        baseline (if any), then per block of updates the data (row indices or the
        sampler's draws), the q uniforms (block, batch, S, K) (S = 1 unless
        "reweighted") and the dream uniforms (block, batch, K + D).
        ``history_["objective"]`` holds, per record, the mean since the previous record
        of log w = log p(x, z) - log q(z | x) on the wake samples (an ELBO estimate;
        for "reweighted" the IWAE estimate log mean_s w_s).
        """
        method = check_choice(method, "method", _METHODS)
        n_updates = check_positive_int(n_updates, "n_updates")
        batch_size = check_positive_int(batch_size, "batch_size")
        lr = check_positive_float(learning_rate, "learning_rate")
        lr_q = lr if recognition_learning_rate is None else check_positive_float(
            recognition_learning_rate, "recognition_learning_rate")
        S = check_positive_int(n_samples, "n_samples") if method == "reweighted" else 1
        baseline = check_choice(baseline, "baseline",
                                ("none", "moving-average", "input-dependent"))
        alpha = check_nonnegative_float(baseline_decay, "baseline_decay")
        if alpha >= 1.0:
            raise ValueError(f"baseline_decay must be < 1, got {alpha}")
        engine = check_choice(engine, "engine", ("auto", "numpy", "numba"))
        block = check_positive_int(block, "block")
        record_every = block if record_every is None else check_positive_int(
            record_every, "record_every")
        block = min(block, record_every)
        rng = check_rng(rng)
        numba_ok = (batch_size == 1 and self.arch.is_sigmoid_belief_net
                    and not (method == "reinforce" and baseline == "input-dependent"))
        if engine == "numba" and not numba_ok:
            raise ValueError(
                "engine='numba' needs batch_size=1, no hidden layers and (for 'reinforce') "
                "no input-dependent baseline"
            )
        use_numba = numba_ok and engine in ("auto", "numba")
        draw = self._data_sampler(X)
        K, D = self.n_latent, self.n_features

        hist = {"update": [], "objective": [], "seconds": [], "monitor": []}
        state = {"c": 0.0, "v": 1.0, "n": 0}
        if method == "reinforce" and baseline == "input-dependent":
            bh = _int_tuple(baseline_hidden, "baseline_hidden", empty=True)
            bnet = MLP((D, *bh, 1), (self.arch.activation,) * len(bh) + ("identity",),
                       prefix="base.")
            # Glorot hidden layers; zero output layer so that b_psi(x) = 0 at the start
            self.baseline_params_ = bnet.init(rng)
            self.baseline_params_[f"base.W{len(bh)}"][...] = 0.0
        else:
            bnet = None

        if use_numba:
            from .kernels import helmholtz as kh
            flat, layout = kh.pack_params(self.params, self.arch.layer_sizes)
            kstate = np.array([0.0, 1.0])

        done, t0 = 0, time.perf_counter()
        since_record, obj_acc, obj_n = 0, 0.0, 0
        while done < n_updates:
            m = min(block, n_updates - done, record_every - since_record)
            xb = draw(m * batch_size, rng).reshape(m, batch_size, D)
            uq = rng.random((m, batch_size, S, K))
            us = rng.random((m, batch_size, K + D))
            if use_numba:
                if method == "wake-sleep":
                    logw = kh.ws_online(flat, layout, xb[:, 0], uq[:, 0, 0], us[:, 0], lr, lr_q)
                elif method == "reweighted":
                    logw = kh.rws_online(flat, layout, xb[:, 0], uq[:, 0], us[:, 0], lr, lr_q,
                                         sleep)
                else:
                    logw = kh.reinforce_online(flat, layout, xb[:, 0], uq[:, 0, 0], lr, lr_q,
                                               baseline != "none", normalize_variance, alpha,
                                               kstate)
                self.params = kh.unpack_params(flat, layout)
                obj_acc += float(np.sum(logw))
                obj_n += m
            else:
                for t in range(m):
                    val = self._update(method, xb[t], uq[t], us[t], lr, lr_q, sleep,
                                       baseline, bnet, alpha, normalize_variance, state)
                    obj_acc += val
                    obj_n += 1
            done += m
            since_record += m
            if since_record == record_every or done == n_updates:
                hist["update"].append(done)
                hist["objective"].append(obj_acc / max(obj_n, 1))
                hist["seconds"].append(time.perf_counter() - t0)
                if monitor is not None:
                    hist["monitor"].append(float(monitor(self)))
                since_record, obj_acc, obj_n = 0, 0.0, 0
        if use_numba:
            self.params = {k: v.copy() for k, v in self.params.items()}
        self.history_ = hist
        return self

    def _data_sampler(self, X):
        if callable(X):
            def draw(m, rng):
                out = as_float_array(X(m, rng), "X(m, rng)", shape=(m, self.n_features))
                return check_binary(out, "X(m, rng)")
            return draw
        Xa = self._check_x(X, "X")

        def draw_rows(m, rng):
            return Xa[rng.integers(0, Xa.shape[0], size=m)]
        return draw_rows

    def _update(self, method, x, uq, us, lr, lr_q, sleep, baseline, bnet, alpha,
                normalize_variance, state):
        """One SGD update from one minibatch; x (B, D), uq (B, S, K), us (B, K + D).

        Returns the mean of the objective on the wake samples (see fit Notes).
        """
        p, arch = self.params, self.arch
        B, S, K = uq.shape
        if method == "wake-sleep":                                        # eq. (9)
            z = sample_q(p, x, uq[:, 0], arch)
            obj = float(np.mean(log_joint(p, x, z, arch) - log_q(p, x, z, arch)))
            _add(p, wake_grad(p, x, z, arch), lr / B)
            zd, xd = sample_prior(p, us, arch)
            _add(p, sleep_grad(p, xd, zd, arch), lr_q / B)
            return obj
        if method == "reweighted":                                        # eq. (10)
            xr = np.repeat(x, S, axis=0)
            z = sample_q(p, xr, uq.reshape(B * S, K), arch).reshape(B, S, K)
            grads, log_px = rws_grads(p, x, z, arch)
            _add(p, {k: v for k, v in grads.items() if not k.startswith("rec")}, lr / B)
            _add(p, {k: v for k, v in grads.items() if k.startswith("rec")}, lr_q / B)
            if sleep:
                zd, xd = sample_prior(p, us, arch)
                _add(p, sleep_grad(p, xd, zd, arch), lr_q / B)
            return float(np.mean(log_px))
        # REINFORCE with NVIL baselines, eqs. (11), (12)
        z = sample_q(p, x, uq[:, 0], arch)
        if bnet is not None:
            bx, bcache = bnet.forward(self.baseline_params_, x)
            bx = bx[:, 0]
        else:
            bx = np.zeros(B)
        b = (state["c"] if baseline != "none" else 0.0) + bx
        scale = max(1.0, np.sqrt(state["v"])) if normalize_variance else 1.0
        grads, signal = reinforce_grads(p, x, z, arch, b, scale)
        _add(p, {k: v for k, v in grads.items() if not k.startswith("rec")}, lr / B)
        _add(p, {k: v for k, v in grads.items() if k.startswith("rec")}, lr_q / B)
        if baseline != "none":
            resid = signal - b
            if bnet is not None:
                g, _ = bnet.backward(self.baseline_params_, bcache, resid[:, None])
                _add(self.baseline_params_, g, lr / B)
            state["c"] = alpha * state["c"] + (1 - alpha) * float(np.mean(signal - bx))
            state["v"] = alpha * state["v"] + (1 - alpha) * float(np.mean(resid**2))
        return float(np.mean(signal))


def _add(params, grads, step):
    for k, g in grads.items():
        params[k] += step * g

