r"""Bernoulli latent variable models and the Helmholtz machine.

Trained by wake-sleep (Hinton, Dayan, Frey & Neal 1995), reweighted wake-sleep
(Bornschein & Bengio 2015), REINFORCE on the ELBO with NVIL baselines
(Mnih & Gregor 2014) and VIMCO on the multi-sample bound (Mnih & Rezende 2016).

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

and every implementation here (the NumPy functions, the prior gradient and the Numba
online kernels) evaluates the right-hand side
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
:math:`z \sim q(\cdot \mid x)`, the gradient step of eq. (7) (θ includes β). Sleep:
:math:`(z, x) \sim p` ("dreams"), the gradient step of eq. (8):

.. math::
    \text{wake: } \theta \mathrel{+}= \eta\, \nabla_\theta \log p(x, z), \qquad
    \text{sleep: } \phi \mathrel{+}= \eta_q \nabla_\phi \log q(z \mid x)          \tag{9}

**Reweighted wake-sleep** (Bornschein & Bengio 2015). With k samples
:math:`z_1, \dots, z_k \sim q(\cdot \mid x)`,
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
(up to the positive scale of the variance normalisation). They start at c = 0, v = 1 and
a zero output layer of :math:`b_\psi` (:class:`NVILBaseline`, :class:`NVILState`).

**Plain SGD.** Each of eqs. (9)-(12) is one update from a minibatch of B rows
:math:`x_1, \dots, x_B` with the gradients averaged over the rows (steps η/B, η_q/B); the
wake-phase objective recorded is the mean of :math:`\log w` (an ELBO estimate), of the
IWAE estimate for reweighted wake-sleep:

.. math::
    \hat{\mathcal L} = \frac1B \sum_{b=1}^B \log w(x_b, z_b) \quad \text{or} \quad
    \frac1B \sum_{b=1}^B \log \frac1k \sum_{s=1}^k w_s(x_b)                        \tag{13}

**VIMCO** (Mnih & Rezende 2016, sec. 3). The multi-sample objective is the IWAE bound
:math:`\mathcal L_k = E[\hat L]`, :math:`\hat L = \log \frac1k \sum_s w_s` with
:math:`z_1, \dots, z_k \sim q(\cdot \mid x)` independent (k >= 2) and the log weights
and :math:`\omega_s` of (10). Differentiating :math:`E_{q^{\otimes k}}[\hat L]` gives a
pathwise part at fixed samples, :math:`\nabla \hat L = \sum_s \omega_s \nabla \log w_s`
(with :math:`\nabla_\phi \log w_s = -\nabla_\phi \log q(z_s \mid x)`), and a score part
:math:`\hat L \sum_j \nabla_\phi \log q(z_j \mid x)`. Every term j of the score part keeps
its expectation when a baseline :math:`b_j` that does not depend on :math:`z_j` is
subtracted (as in (11)). VIMCO's baseline is :math:`\hat L` with :math:`w_j` replaced by
the geometric mean of the other weights,

.. math::
    \log \hat w_{-j} = \frac{1}{k-1} \sum_{s \ne j} \log w_s, \qquad
    \hat L_{-j} = \log \frac1k \Big(\sum_{s \ne j} w_s + \hat w_{-j}\Big),       \tag{14}

a function of :math:`z_{-j}` alone, which leaves the per-sample learning signal
:math:`\hat L - \hat L_{-j}` (the credit of sample j). Hence the unbiased estimates of
:math:`\nabla \mathcal L_k`:

.. math::
    \Delta\theta = \sum_s \omega_s \nabla_\theta \log p(x, z_s), \qquad
    \Delta\phi = \sum_j \big(\hat L - \hat L_{-j} - \omega_j\big)
        \nabla_\phi \log q(z_j \mid x),                                          \tag{15}

the first the reweighted wake-sleep gradient (10), the second the wake-phase q update
with the learning signals in place of :math:`\omega_j`. VIMCO updates are plain SGD as
in (13), recording the IWAE estimate :math:`\hat L` as the objective. Unbiasedness is
tested against the exact gradient of :math:`E[\hat L]` by enumerating all latent
configurations and all k-tuples of a tiny model (``tests/test_helmholtz.py``).

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
uniforms ``u`` -- then options: :func:`log_joint` (eq. 3), :func:`log_prior` (latent
terms of eq. 3), :func:`log_q` (eq. 5), :func:`sample_prior` (eqs. 1, 2, 6),
:func:`sample_q` (eqs. 5, 6), :func:`wake_grad` (eq. 7), :func:`sleep_grad` (eq. 8),
:func:`log_weights` and :func:`rws_grads` (eq. 10), :func:`reinforce_grads` (eqs. 11, 12),
:func:`vimco_grads` (eqs. 14, 15), :func:`sgd_update` (eqs. 9-15), :func:`exact_elbo`
(E_q[l] by enumeration, through :mod:`lvmref.estimators`).

:func:`sgd_update` is the one NumPy implementation of the training updates (any batch
size and architecture; what ``HelmholtzMachine.fit(engine="numpy")`` runs, and
``engine="auto"`` under ``NUMBA_DISABLE_JIT=1``). The batch-size-1 updates of sigmoid
belief nets also run in the Numba kernels of :mod:`lvmref.kernels.helmholtz`, which are
tested against it to 1e-12; the noise protocol of ``fit`` and the engine choice live in
:mod:`lvmref.helmholtz_training`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .helmholtz_training import (
    ENGINES,
    NOISE_BLOCK,
    KernelEngine,
    data_sampler,
    draw_noise,
    kernel_supported,
    noise_blocks,
    use_kernel,
)
from .kernels import bernoulli_logit_grad, logsumexp
from .kernels.checks import (
    as_float_array,
    check_binary,
    check_choice,
    check_flag,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_real,
    check_rng,
)
from .kernels.densities import bernoulli_log_prob_np, sigmoid_np
from .kernels.fpenv import benign_underflow
from .nn import ACTIVATIONS, MLP
from .persistence import read_model, save_model

__all__ = [
    "Architecture",
    "HelmholtzMachine",
    "NVILBaseline",
    "NVILState",
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
    "vimco_grads",
    "sgd_update",
    "exact_elbo",
]

_METHODS = ("wake-sleep", "reweighted", "reinforce", "vimco")


# ----------------------------------------------------------------------------------------
# architecture and parameters
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
        l = self._check_layer(l)
        s = self.layer_sizes
        acts = (self.activation,) * len(self.hidden) + ("identity",)
        return MLP((s[l], *self.hidden, s[l + 1]), acts, prefix=f"gen{l}.")

    def rec(self, l: int) -> MLP:
        """r_l: layer l + 1 -> logits of layer l, eq. (5)."""
        l = self._check_layer(l)
        s = self.layer_sizes
        acts = (self.activation,) * len(self.recognition_hidden) + ("identity",)
        return MLP((s[l + 1], *self.recognition_hidden, s[l]), acts, prefix=f"rec{l}.")

    def _check_layer(self, l):
        l = check_positive_int(l, "l", minimum=0)
        if l >= self.n_layers:
            raise ValueError(f"l must be < n_layers = {self.n_layers}, got {l}")
        return l

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
        """Parameter name -> shape, in the canonical order of :meth:`keys`."""
        out = {"prior": (self.layer_sizes[0],)}
        for l in range(self.n_layers):
            for net in (self.gen(l), self.rec(l)):
                for i in range(net.n_layers):
                    out[f"{net.prefix}W{i}"] = (net.sizes[i], net.sizes[i + 1])
                    out[f"{net.prefix}b{i}"] = (net.sizes[i + 1],)
        return {k: out[k] for k in self.keys()}

    def check_params(self, params, name: str = "params") -> dict:
        """Validated float64 copies of ``params`` (exactly the keys and shapes of this
        architecture, finite values), in canonical order."""
        if not isinstance(params, dict):
            raise TypeError(f"{name} must be a dict name -> array")
        shapes = self.shapes()
        missing = [k for k in shapes if k not in params]
        extra = [k for k in params if k not in shapes]
        if missing or extra:
            raise ValueError(f"{name} keys mismatch: missing {missing}, unexpected {extra}")
        return {k: as_float_array(params[k], f"{name}[{k!r}]", shape=s)
                for k, s in shapes.items()}


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
    arch = _check_arch(arch)
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
# densities and samplers, eqs. (1)-(6); all on 2-D (rows, features) arrays
# ----------------------------------------------------------------------------------------

def _split(arch, v):
    """Split a (rows, K [+ D]) array into its layers (views)."""
    off = arch.offsets
    n = v.shape[-1]
    return [v[..., off[l]:off[l + 1]] for l in range(arch.n_layers + 1) if off[l + 1] <= n]


_GIVEN = object()  # marks an argument of _checked that was not passed
_MAX_WEIGHT = 1e150  # beyond it the products of back-propagation overflow (lvmref.nn)


def _check_arch(arch, name="arch"):
    if not isinstance(arch, Architecture):
        raise TypeError(f"{name} must be an Architecture (e.g. a HelmholtzMachine's .arch), "
                        f"got {type(arch).__name__}")
    return arch


def _check_uniforms(u, name, shape):
    u = as_float_array(u, name, shape=shape)
    if np.any((u < 0) | (u >= 1)):
        raise ValueError(f"{name} must lie in [0, 1)")
    return u


def _check_row_weights(w, name, n, ndim=(1,)):
    w = as_float_array(w, name, ndim=ndim)
    if w.ndim == 1 and w.shape != (n,):
        raise ValueError(f"{name} must have shape (n,) = ({n},) (one per row), got {w.shape}")
    if np.max(np.abs(w), initial=0.0) > _MAX_WEIGHT:
        raise ValueError(f"{name} must be at most {_MAX_WEIGHT:g} in magnitude (larger "
                         "values overflow the back-propagated gradients)")
    return w


def _checked(params, arch, *, x=_GIVEN, z=_GIVEN, z3=_GIVEN, u=_GIVEN, weights=_GIVEN,
             baseline=_GIVEN, k_min=1):
    """The arguments of a module-level function, validated against ``arch``: ``params``
    (the layout), then those passed, in this order: ``x`` (n, D) and ``z`` (n, K) or ``z3``
    (n, k, K) binary, ``u`` uniforms in [0, 1) of shape (n, K) when ``x`` is passed (the
    sampler of q), else (m, K + D); ``weights`` None or (n,), ``baseline`` a number or (n,).
    Float64 copies; a ``TypeError``/``ValueError`` names the argument."""
    arch = _check_arch(arch)
    out = [arch.check_params(params)]
    K, D = arch.n_latent, arch.n_features
    n = None
    if x is not _GIVEN:
        x = check_binary(as_float_array(x, "x", ndim=2, shape=(None, D)), "x")
        n = x.shape[0]
        out.append(x)
    if z is not _GIVEN:
        out.append(check_binary(as_float_array(z, "z", ndim=2, shape=(n, K)), "z"))
    if z3 is not _GIVEN:
        z3 = check_binary(as_float_array(z3, "z", ndim=3, shape=(n, None, K)), "z")
        if z3.shape[1] < k_min:
            raise ValueError(f"z must hold k >= {k_min} samples per row, got shape {z3.shape}")
        out.append(z3)
    if u is not _GIVEN:
        out.append(_check_uniforms(u, "u", (n, K) if n is not None else (None, K + D)))
    if weights is not _GIVEN:
        out.append(None if weights is None else _check_row_weights(weights, "weights", n))
    if baseline is not _GIVEN:
        out.append(_check_row_weights(baseline, "baseline", n, ndim=(0, 1)))
    return out


@benign_underflow
def log_joint(params: dict, x: np.ndarray, z: np.ndarray, arch: Architecture) -> np.ndarray:
    """log p(x, z), eq. (3).

    Parameters
    ----------
    params : dict
        Layout of the module docstring.
    x : ndarray (n, D)
    z : ndarray (n, K)
    arch : Architecture

    Returns
    -------
    ndarray (n,)
    """
    params, x, z = _checked(params, arch, x=x, z=z)
    return _log_joint(params, x, z, arch)


def _log_joint(params: dict, x: np.ndarray, z: np.ndarray, arch: Architecture) -> np.ndarray:
    layers = _split(arch, np.concatenate([z, x], axis=1))
    out = bernoulli_log_prob_np(layers[0], params["prior"])
    for l in range(arch.n_layers):
        a, _ = arch.gen(l).forward(params, layers[l])
        out = out + bernoulli_log_prob_np(layers[l + 1], a)
    return out


@benign_underflow
def log_prior(params: dict, z: np.ndarray, arch: Architecture) -> np.ndarray:
    """log p(z): the latent terms of eq. (3) (prior (1) and the latent-to-latent
    conditionals (2), l < L - 1). z (n, K) -> (n,)."""
    params, z = _checked(params, arch, z=z)
    return _log_prior(params, z, arch)


def _log_prior(params: dict, z: np.ndarray, arch: Architecture) -> np.ndarray:
    layers = _split(arch, z)
    out = bernoulli_log_prob_np(layers[0], params["prior"])
    for l in range(arch.n_layers - 1):
        a, _ = arch.gen(l).forward(params, layers[l])
        out = out + bernoulli_log_prob_np(layers[l + 1], a)
    return out


@benign_underflow
def log_q(params: dict, x: np.ndarray, z: np.ndarray, arch: Architecture) -> np.ndarray:
    """log q(z | x), eq. (5). Shapes: x (n, D), z (n, K) -> (n,)."""
    params, x, z = _checked(params, arch, x=x, z=z)
    return _log_q(params, x, z, arch)


def _log_q(params: dict, x: np.ndarray, z: np.ndarray, arch: Architecture) -> np.ndarray:
    layers = _split(arch, np.concatenate([z, x], axis=1))
    out = np.zeros(x.shape[0])
    for l in range(arch.n_layers):
        c, _ = arch.rec(l).forward(params, layers[l + 1])
        out = out + bernoulli_log_prob_np(layers[l], c)
    return out


@benign_underflow
def sample_prior(params: dict, u: np.ndarray, arch: Architecture):
    """Ancestral sample of (z, x) from eqs. (1), (2), (6).

    Parameters
    ----------
    params : dict
    u : ndarray (n, K + D)
        Uniforms in [0, 1), in (z, x) column order.
    arch : Architecture

    Returns
    -------
    z : ndarray (n, K)
    x : ndarray (n, D)
    """
    params, u = _checked(params, arch, u=u)
    return _sample_prior(params, u, arch)


def _sample_prior(params: dict, u: np.ndarray, arch: Architecture):
    off = arch.offsets
    out = np.empty_like(u)
    h = (u[:, : off[1]] < sigmoid_np(params["prior"])).astype(np.float64)
    out[:, : off[1]] = h
    for l in range(arch.n_layers):
        a, _ = arch.gen(l).forward(params, h)
        h = (u[:, off[l + 1]:off[l + 2]] < sigmoid_np(a)).astype(np.float64)
        out[:, off[l + 1]:off[l + 2]] = h
    K = arch.n_latent
    return out[:, :K], out[:, K:]


@benign_underflow
def sample_q(params: dict, x: np.ndarray, u: np.ndarray, arch: Architecture) -> np.ndarray:
    """Sample z ~ q(z | x) bottom-up, eqs. (5), (6). x (n, D), u (n, K) -> z (n, K)."""
    params, x, u = _checked(params, arch, x=x, u=u)
    return _sample_q(params, x, u, arch)


def _sample_q(params: dict, x: np.ndarray, u: np.ndarray, arch: Architecture) -> np.ndarray:
    off = arch.offsets
    z = np.empty((x.shape[0], arch.n_latent))
    h = x
    for l in range(arch.n_layers - 1, -1, -1):
        c, _ = arch.rec(l).forward(params, h)
        h = (u[:, off[l]:off[l + 1]] < sigmoid_np(c)).astype(np.float64)
        z[:, off[l]:off[l + 1]] = h
    return z


# ----------------------------------------------------------------------------------------
# gradients, eqs. (7), (8), (10), (11), (12)
# ----------------------------------------------------------------------------------------

@benign_underflow
def wake_grad(params: dict, x, z, arch: Architecture, weights=None) -> dict:
    """Gradient of ``sum_i w_i log p(x_i, z_i)`` w.r.t. β and the generative MLPs, eq. (7).

    The deltas h - σ(a) are evaluated as in eq. (8a).

    Parameters
    ----------
    params : dict
    x : ndarray (n, D)
    z : ndarray (n, K)
    arch : Architecture
    weights : ndarray (n,), optional
        Per-row weights w_i (default 1).

    Returns
    -------
    dict
        Keys ``prior`` and ``gen{l}.*`` with parameter shapes.
    """
    params, x, z, weights = _checked(params, arch, x=x, z=z, weights=weights)
    return _wake_grad(params, x, z, arch, weights)


def _wake_grad(params: dict, x, z, arch: Architecture, weights=None) -> dict:
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
def sleep_grad(params: dict, x, z, arch: Architecture, weights=None) -> dict:
    """Gradient of ``sum_i w_i log q(z_i | x_i)`` w.r.t. the recognition MLPs, eq. (8).

    The deltas h - σ(c) are evaluated as in eq. (8a).

    Shapes as :func:`wake_grad`; returns keys ``rec{l}.*``.
    """
    params, x, z, weights = _checked(params, arch, x=x, z=z, weights=weights)
    return _sleep_grad(params, x, z, arch, weights)


def _sleep_grad(params: dict, x, z, arch: Architecture, weights=None) -> dict:
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
def log_weights(params: dict, x, z, arch: Architecture) -> np.ndarray:
    """Importance log weights ``log w = log p(x, z) - log q(z | x)`` of eq. (10).

    x (n, D), z (n, k, K): k samples per row -> (n, k).
    """
    params, x, z = _checked(params, arch, x=x, z3=z)
    return _log_weights(params, x, z, arch)


def _log_weights(params: dict, x, z, arch: Architecture) -> np.ndarray:
    n, k, K = z.shape
    xr = np.repeat(x, k, axis=0)
    zr = z.reshape(n * k, K)
    return (_log_joint(params, xr, zr, arch) - _log_q(params, xr, zr, arch)).reshape(n, k)


@benign_underflow
def rws_grads(params: dict, x, z, arch: Architecture):
    """Reweighted wake-sleep wake-phase gradients, eq. (10).

    Parameters
    ----------
    params : dict
    x : ndarray (n, D)
    z : ndarray (n, k, K)
        k samples from q(. | x_i) per row.
    arch : Architecture

    Returns
    -------
    grads : dict
        ``sum_i sum_s omega_is grad log p(x_i, z_is)`` (keys prior, gen*) and
        ``sum_i sum_s omega_is grad log q(z_is | x_i)`` (keys rec*).
    log_px : ndarray (n,)
        The IWAE estimate ``log mean_s w_is`` of log p(x_i) on these samples.
    """
    params, x, z = _checked(params, arch, x=x, z3=z)
    return _rws_grads(params, x, z, arch)


def _rws_grads(params: dict, x, z, arch: Architecture):
    n, k, K = z.shape
    logw = _log_weights(params, x, z, arch)
    lse = logsumexp(logw, axis=1)
    omega = np.exp(logw - lse[:, None]).reshape(n * k)
    xr = np.repeat(x, k, axis=0)
    zr = z.reshape(n * k, K)
    grads = _wake_grad(params, xr, zr, arch, omega)
    grads.update(_sleep_grad(params, xr, zr, arch, omega))
    return grads, lse - np.log(k)


@benign_underflow
def reinforce_grads(params: dict, x, z, arch: Architecture, baseline=0.0, scale=1.0):
    """Score-function (REINFORCE) ELBO gradients, eqs. (11), (12).

    Parameters
    ----------
    params : dict
    x : ndarray (n, D)
    z : ndarray (n, K)
        One sample from q(. | x_i) per row.
    arch : Architecture
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
    params, x, z, baseline = _checked(params, arch, x=x, z=z, baseline=baseline)
    scale = check_positive_float(scale, "scale")
    return _reinforce_grads(params, x, z, arch, baseline, scale)


def _reinforce_grads(params: dict, x, z, arch: Architecture, baseline=0.0, scale=1.0):
    signal = _log_joint(params, x, z, arch) - _log_q(params, x, z, arch)
    grads = _wake_grad(params, x, z, arch)
    w = (signal - baseline) / scale
    if np.max(np.abs(w), initial=0.0) > _MAX_WEIGHT:
        raise ValueError(f"scale: the centred learning signal (l - baseline) / scale exceeds "
                         f"{_MAX_WEIGHT:g} in magnitude (scale = {scale:g} is too small)")
    grads.update(_sleep_grad(params, x, z, arch, w))
    return grads, signal


def _vimco_signals(logw):
    """Eqs. (14)-(15) from the log weights (n, k), k >= 2: ``(L, signal, omega)`` with the
    IWAE estimate L (n,), the learning signals L - L_{-j} (n, k) and the normalised
    weights omega (n, k)."""
    n, k = logw.shape
    lse = logsumexp(logw, axis=1)
    log_hat = (logw.sum(axis=1, keepdims=True) - logw) / (k - 1)       # log w^_{-j}, (14)
    swapped = np.repeat(logw[:, None, :], k, axis=1)                   # (n, j, s)
    idx = np.arange(k)
    swapped[:, idx, idx] = log_hat
    signal = lse[:, None] - logsumexp(swapped, axis=2)                 # L - L_{-j}
    return lse - np.log(k), signal, np.exp(logw - lse[:, None])


@benign_underflow
def vimco_grads(params: dict, x, z, arch: Architecture):
    """VIMCO gradients of the multi-sample bound, eqs. (14), (15).

    Same calling convention as :func:`rws_grads`.

    Parameters
    ----------
    params : dict
    x : ndarray (n, D)
    z : ndarray (n, k, K)
        k >= 2 samples from q(. | x_i) per row.
    arch : Architecture

    Returns
    -------
    grads : dict
        Unbiased estimates (sums over rows) of the gradient of L_k:
        ``sum_i sum_s omega_is grad log p(x_i, z_is)`` (keys prior, gen*) and
        ``sum_i sum_j (L_i - L_{i,-j} - omega_ij) grad log q(z_ij | x_i)`` (keys rec*).
    log_px : ndarray (n,)
        The IWAE estimate ``log mean_s w_is`` of log p(x_i) on these samples.
    """
    params, x, z = _checked(params, arch, x=x, z3=z, k_min=2)
    return _vimco_grads(params, x, z, arch)


def _vimco_grads(params: dict, x, z, arch: Architecture):
    n, k, K = z.shape
    if k < 2:
        raise ValueError(f"z: VIMCO needs k >= 2 samples per row, got shape {z.shape}")
    logw = _log_weights(params, x, z, arch)
    log_px, signal, omega = _vimco_signals(logw)
    xr = np.repeat(x, k, axis=0)
    zr = z.reshape(n * k, K)
    grads = _wake_grad(params, xr, zr, arch, omega.reshape(n * k))
    grads.update(_sleep_grad(params, xr, zr, arch, (signal - omega).reshape(n * k)))
    return grads, log_px


# ----------------------------------------------------------------------------------------
# one SGD update of wake-sleep (9), reweighted wake-sleep (10), REINFORCE/NVIL (11, 12),
# VIMCO (15)
# ----------------------------------------------------------------------------------------

_BASELINE_KINDS = ("moving-average", "input-dependent")


@benign_underflow
@dataclass(frozen=True)
class NVILBaseline:
    """The NVIL baseline of REINFORCE, eq. (12) (Mnih & Gregor 2014, sec. 3).

    Parameters
    ----------
    kind : {"moving-average", "input-dependent"}
        ``b(x) = c`` (a moving average of the learning signal) or ``b(x) = c + b_psi(x)``
        with an MLP ``b_psi`` trained to regress the centred signal. No baseline at all
        is ``baseline=None`` (or ``"none"``) in :meth:`HelmholtzMachine.fit`.
    hidden : tuple of int
        Hidden widths of ``b_psi`` (``"input-dependent"`` only): sizes ``(D, *hidden, 1)``,
        hidden activation that of the model, identity output.
    decay : float in [0, 1)
        α of the moving averages c and v.
    normalize_variance : bool
        Divide the centred signal by ``max(1, sqrt(v))``.
    """

    kind: str = "moving-average"
    hidden: tuple = ()
    decay: float = 0.9
    normalize_variance: bool = False

    def __post_init__(self):
        check_choice(self.kind, "kind", _BASELINE_KINDS)
        hidden = _int_tuple(self.hidden, "hidden", empty=True)
        if hidden and self.kind != "input-dependent":
            raise ValueError("hidden is only used by kind='input-dependent'")
        object.__setattr__(self, "hidden", hidden)
        decay = check_nonnegative_float(self.decay, "decay")
        if decay >= 1.0:
            raise ValueError(f"decay must be < 1, got {decay}")
        object.__setattr__(self, "decay", decay)
        object.__setattr__(self, "normalize_variance",
                           check_flag(self.normalize_variance, "normalize_variance"))

    def net(self, arch: Architecture) -> MLP:
        """The MLP b_psi (keys ``base.W{i}``, ``base.b{i}``)."""
        arch = _check_arch(arch)
        acts = (arch.activation,) * len(self.hidden) + ("identity",)
        return MLP((arch.n_features, *self.hidden, 1), acts, prefix="base.")

    def init_state(self, arch: Architecture, rng=None) -> NVILState:
        """c = 0, v = 1 and, for ``"input-dependent"``, psi with Glorot hidden layers
        (drawn from ``rng``) and a zero output layer, so that b_psi(x) = 0 at the start."""
        arch = _check_arch(arch)
        if self.kind != "input-dependent":
            return NVILState()
        psi = self.net(arch).init(check_rng(rng))
        psi[f"base.W{len(self.hidden)}"][...] = 0.0
        return NVILState(psi=psi)


@dataclass(frozen=True)
class NVILState:
    """Running state of an NVIL baseline before an update, eq. (12).

    Attributes
    ----------
    c : float
        Moving average of ``l - b_psi(x)``.
    v : float
        Moving average of the squared centred signal ``(l - c - b_psi(x))**2``.
    psi : dict or None
        Parameters of ``b_psi`` (``"input-dependent"`` baselines only).
    """

    c: float = 0.0
    v: float = 1.0
    psi: dict | None = None

    def __post_init__(self):
        object.__setattr__(self, "c", check_real(self.c, "c"))
        object.__setattr__(self, "v", check_nonnegative_float(self.v, "v"))
        if self.psi is not None:
            if not isinstance(self.psi, dict):
                raise TypeError(f"psi must be None or a dict name -> array, got "
                                f"{type(self.psi).__name__}")
            for k, a in self.psi.items():
                as_float_array(a, f"psi[{k!r}]", copy=False)


def _check_psi(psi, net):
    """``state.psi`` validated against the baseline net b_psi: float64 copies."""
    if not isinstance(psi, dict):
        raise TypeError(f"state.psi must be a dict name -> array, got {type(psi).__name__}")
    shapes = {}
    for i in range(net.n_layers):
        shapes[f"{net.prefix}W{i}"] = (net.sizes[i], net.sizes[i + 1])
        shapes[f"{net.prefix}b{i}"] = (net.sizes[i + 1],)
    if set(psi) != set(shapes):
        raise ValueError(f"state.psi must have the keys {list(shapes)}, got {list(psi)}")
    return {k: as_float_array(psi[k], f"state.psi[{k!r}]", shape=sh) for k, sh in shapes.items()}


def _stepped(params, grads, step, step_rec=None):
    """New dict: ``params + step * grads`` (``step_rec`` for the ``rec*`` keys)."""
    out = dict(params)
    for k, g in grads.items():
        s = step_rec if step_rec is not None and k.startswith("rec") else step
        out[k] = params[k] + s * g
    return out


@benign_underflow
def sgd_update(params: dict, x, uq, us, arch: Architecture, method="wake-sleep", lr=0.01,
               lr_q=None, *, sleep=False, baseline=None, state=None):
    """One plain-SGD update, eqs. (9)-(15), from given noise (the NumPy engine).

    The arguments are not modified; new dicts are returned.

    Parameters
    ----------
    params : dict
        Parameters before the update.
    x : ndarray (B, D)
        The minibatch.
    uq : ndarray (B, k, K)
        Uniforms of the samples from q (eq. 6); k = 1 except for "reweighted" and
        "vimco" (k >= 2).
    us : ndarray (B, K + D)
        Uniforms of the dreams, (z, x) column order ("wake-sleep"; "reweighted" with
        ``sleep``; ignored otherwise).
    arch : Architecture
    method : {"wake-sleep", "reweighted", "reinforce", "vimco"}
        Eq. (9), (10), (11)-(12) or (15).
    lr, lr_q : float
        η (β, generative MLPs and b_psi) and η_q (recognition MLPs; default ``lr``).
    sleep : bool
        Add the sleep phase (9) to "reweighted".
    baseline : NVILBaseline or None
        The NVIL baseline of "reinforce"; None: no baseline.
    state : NVILState, optional
        The baseline's state before the update (default: its start,
        ``baseline.init_state``; required for an input-dependent baseline).

    Returns
    -------
    params : dict
        Parameters after the update.
    state : NVILState
        The baseline's state after it (unchanged without a baseline).
    objective : float
        Eq. (13): the minibatch mean of log w on the wake samples ("wake-sleep"), of the
        IWAE estimate ("reweighted", "vimco") or of the learning signal ("reinforce").
    """
    arch = _check_arch(arch)
    method = check_choice(method, "method", _METHODS)
    sleep = check_flag(sleep, "sleep")
    params, x = _checked(params, arch, x=x)
    B, K, D = x.shape[0], arch.n_latent, arch.n_features
    uq = _check_uniforms(uq, "uq", (B, None, K))
    k_min = 2 if method == "vimco" else 1
    if uq.shape[1] < k_min:
        raise ValueError(f"uq must hold k >= {k_min} samples per row for method={method!r}, "
                         f"got shape {uq.shape}")
    if method == "wake-sleep" or (method == "reweighted" and sleep) or us is not None:
        us = _check_uniforms(us, "us", (B, K + D))
    lr = check_positive_float(lr, "lr")
    lr_q = lr if lr_q is None else check_positive_float(lr_q, "lr_q")
    if baseline is not None and not isinstance(baseline, NVILBaseline):
        raise TypeError(f"baseline must be an NVILBaseline or None, got "
                        f"{type(baseline).__name__}")
    if state is not None and not isinstance(state, NVILState):
        raise TypeError(f"state must be an NVILState or None, got {type(state).__name__}")
    if method == "reinforce" and baseline is not None and baseline.kind == "input-dependent":
        if state is None or state.psi is None:
            raise ValueError("state: an input-dependent baseline needs state.psi "
                             "(NVILBaseline.init_state)")
        state = NVILState(state.c, state.v, _check_psi(state.psi, baseline.net(arch)))
    return _sgd_update(params, x, uq, us, arch, method, lr, lr_q, sleep=sleep,
                       baseline=baseline, state=state)


def _sgd_update(params: dict, x, uq, us, arch: Architecture, method="wake-sleep", lr=0.01,
               lr_q=None, *, sleep=False, baseline=None, state=None):
    lr_q = lr if lr_q is None else lr_q
    state = NVILState() if state is None else state
    B = x.shape[0]
    if method == "wake-sleep":                                            # eq. (9)
        z = _sample_q(params, x, uq[:, 0], arch)
        obj = float(np.mean(_log_joint(params, x, z, arch) - _log_q(params, x, z, arch)))
        params = _stepped(params, _wake_grad(params, x, z, arch), lr / B)
        zd, xd = _sample_prior(params, us, arch)
        return _stepped(params, _sleep_grad(params, xd, zd, arch), lr_q / B), state, obj
    if method == "reweighted":                                            # eq. (10)
        k, K = uq.shape[1], uq.shape[2]
        z = _sample_q(params, np.repeat(x, k, axis=0), uq.reshape(B * k, K), arch)
        grads, log_px = _rws_grads(params, x, z.reshape(B, k, K), arch)
        params = _stepped(params, grads, lr / B, lr_q / B)
        if sleep:
            zd, xd = _sample_prior(params, us, arch)
            params = _stepped(params, _sleep_grad(params, xd, zd, arch), lr_q / B)
        return params, state, float(np.mean(log_px))
    if method == "vimco":                                                 # eq. (15)
        k, K = uq.shape[1], uq.shape[2]
        z = _sample_q(params, np.repeat(x, k, axis=0), uq.reshape(B * k, K), arch)
        grads, log_px = _vimco_grads(params, x, z.reshape(B, k, K), arch)
        return _stepped(params, grads, lr / B, lr_q / B), state, float(np.mean(log_px))
    z = _sample_q(params, x, uq[:, 0], arch)                               # eqs. (11), (12)
    psi = state.psi
    if baseline is not None and baseline.kind == "input-dependent":
        if psi is None:
            raise ValueError("an input-dependent baseline needs state.psi "
                             "(NVILBaseline.init_state)")
        net = baseline.net(arch)
        bx, bcache = net.forward(psi, x)
        bx = bx[:, 0]
    else:
        bx = np.zeros(B)
    b = (state.c if baseline is not None else 0.0) + bx
    scale = (max(1.0, np.sqrt(state.v))
             if baseline is not None and baseline.normalize_variance else 1.0)
    grads, signal = _reinforce_grads(params, x, z, arch, b, scale)
    params = _stepped(params, grads, lr / B, lr_q / B)
    if baseline is not None:
        resid = signal - b
        if baseline.kind == "input-dependent":
            g, _ = net.backward(psi, bcache, resid[:, None])
            psi = _stepped(psi, g, lr / B)
        alpha = baseline.decay
        state = NVILState(c=alpha * state.c + (1 - alpha) * float(np.mean(signal - bx)),
                          v=alpha * state.v + (1 - alpha) * float(np.mean(resid**2)),
                          psi=psi)
    return params, state, float(np.mean(signal))


@benign_underflow
def exact_elbo(params: dict, x, arch: Architecture) -> np.ndarray:
    """ELBO = log p(x) - KL(q || p(z | x)) by enumeration over all 2**K latents.

    Uses :func:`lvmref.estimators.exact_log_marginal` and
    :func:`lvmref.estimators.exact_kl_to_posterior` (their eqs. (1), (3), (4)).
    x (n, D) -> (n,). Exponential in K; for tests and small models.
    """
    from .estimators import exact_kl_to_posterior, exact_log_marginal

    arch = _check_arch(arch)
    model = HelmholtzMachine(arch.layer_sizes, arch.hidden, arch.recognition_hidden,
                             arch.activation, params=params)
    return exact_log_marginal(model, x) - exact_kl_to_posterior(model, x)


# ----------------------------------------------------------------------------------------
# the estimator shell
# ----------------------------------------------------------------------------------------

_ARCH_ENTRIES = ("layer_sizes", "hidden", "recognition_hidden", "activation")


@benign_underflow
class HelmholtzMachine:
    """Layered Bernoulli LVM with a bottom-up recognition network.

    Implements the protocol of :mod:`lvmref.estimators` (``n_latent``,
    ``latent_type``, ``log_joint``, ``log_q``, ``sample_prior``, ``sample_q``, and
    ``log_prior`` for naive Monte Carlo) by the module-level functions.

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
    arch : Architecture
    params : dict
    history_ : dict of lists, set by :meth:`fit`
    baseline_params_ : dict
        Parameters psi of an input-dependent NVIL baseline, set by :meth:`fit`.
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
        if init_scale is not None:
            init_scale = check_nonnegative_float(init_scale, "init_scale")
        if params is None:
            self.params = init_params(self.arch, rng, init_scale, _layer_floats(
                init_bias, self.arch.n_layers, "init_bias"))
        elif init_scale is not None or init_bias is not None:
            raise ValueError("init_scale and init_bias set the default initialisation; "
                             "they cannot be combined with params")
        else:
            self.params = self.arch.check_params(params)
        self.history_ = {}

    def __repr__(self):
        a = self.arch
        return (f"HelmholtzMachine(layer_sizes={a.layer_sizes}, hidden={a.hidden}, "
                f"recognition_hidden={a.recognition_hidden}, activation={a.activation!r})")

    # -- protocol ------------------------------------------------------------------------
    @property
    def n_latent(self) -> int:
        return self.arch.n_latent

    @property
    def n_features(self) -> int:
        return self.arch.n_features

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
        return _log_joint(self.params, xr, zr, self.arch).reshape(shape)

    def log_prior(self, z) -> np.ndarray:
        """log p(z) (latent terms of eq. (3)); z (m, k, K) -> (m, k)."""
        z = as_float_array(z, "z", ndim=3, shape=(None, None, self.n_latent))
        check_binary(z, "z")
        m, k = z.shape[:2]
        return _log_prior(self.params, z.reshape(m * k, -1), self.arch).reshape(m, k)

    def log_q(self, x, z) -> np.ndarray:
        """log q(z | x), eq. (5); x (n, D), z (n or 1, k, K) -> (n, k)."""
        xr, zr, shape = self._broadcast(x, z)
        return _log_q(self.params, xr, zr, self.arch).reshape(shape)

    def sample_q(self, x, k, rng=None, *, u=None) -> np.ndarray:
        """z ~ q(z | x), eqs. (5), (6): x (n, D) -> (n, k, K).

        ``u`` (n, k, K) uniforms may be passed instead of ``rng``.
        """
        x = self._check_x(x)
        k = check_positive_int(k, "k")
        n, K = x.shape[0], self.n_latent
        u = self._uniforms(u, (n, k, K), rng)
        z = _sample_q(self.params, np.repeat(x, k, axis=0), u.reshape(n * k, K), self.arch)
        return z.reshape(n, k, K)

    def sample_prior(self, n, k, rng=None, *, u=None) -> np.ndarray:
        """Latents z ~ p(z) (ancestral, eqs. (1), (2), (6)): -> (n, k, K).

        ``u`` (n, k, K + D) uniforms may be passed instead of ``rng`` (only the first
        K columns of each row matter for z; the layout is that of :meth:`sample`).
        """
        z, _ = self.sample(n, check_positive_int(k, "k"), rng, u=u)
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
        z, x = _sample_prior(self.params, u.reshape(n * kk, K + D), self.arch)
        if k is None:
            return z, x
        return z.reshape(n, kk, K), x.reshape(n, kk, D)

    @staticmethod
    def _uniforms(u, shape, rng):
        if u is None:
            return check_rng(rng).random(shape)
        if rng is not None:
            raise ValueError("pass either rng or u (the uniforms themselves), not both")
        return _check_uniforms(u, "u", shape)

    # -- persistence ---------------------------------------------------------------------
    def save(self, path):
        """Write an lvmref model file (:mod:`lvmref.persistence`); return its path.

        Kind ``"HelmholtzMachine"``, format 1: ``layer_sizes``, ``hidden``,
        ``recognition_hidden`` (1-D int arrays), ``activation`` (string) and every
        parameter under its name (``prior``, ``gen0.W0``, ...). ``history_`` and
        ``baseline_params_`` are not stored.
        """
        a = self.arch
        entries = {"layer_sizes": np.array(a.layer_sizes, dtype=np.int64),
                   "hidden": np.array(a.hidden, dtype=np.int64),
                   "recognition_hidden": np.array(a.recognition_hidden, dtype=np.int64),
                   "activation": a.activation}
        return save_model(path, "HelmholtzMachine", 1, {**entries, **self.params})

    @classmethod
    def load(cls, path):
        """The model saved by :meth:`save`; validated as strictly as the constructor.

        A missing file is ``FileNotFoundError``; anything else wrong (not a model file,
        another kind, a missing, unexpected, non-integer or wrongly shaped entry, a
        non-finite parameter) is a ``ValueError`` naming the file.
        """
        f = read_model(path, "HelmholtzMachine", versions=(1,))
        sizes = [f.int_tuple(name) for name in _ARCH_ENTRIES[:3]]
        activation = f.str("activation")
        try:
            arch = Architecture(*sizes, activation)
        except (TypeError, ValueError) as exc:
            raise f.error(f"invalid architecture: {exc}") from None
        extra = sorted(set(f.keys()) - set(_ARCH_ENTRIES) - set(arch.keys()))
        if extra:
            raise f.error(f"unexpected entries {extra} for layer_sizes {arch.layer_sizes}")
        params = {k: f.array(k) for k in arch.keys()}
        try:
            params = arch.check_params(params, "parameter")
        except (TypeError, ValueError) as exc:
            raise f.error(str(exc)) from None
        return cls(*sizes, activation, params=params)

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
        k=5,
        sleep=False,
        baseline="moving-average",
        engine="auto",
        record_every=None,
        monitor=None,
        rng=None,
    ):
        """Train by wake-sleep (9), reweighted wake-sleep (10), REINFORCE (11, 12) or
        VIMCO (15).

        Plain SGD, one :func:`sgd_update` (or its Numba kernel) per minibatch.

        Parameters
        ----------
        X : ndarray (n, D) or callable
            Training images (minibatches drawn uniformly with replacement), or a
            sampler ``X(m, rng) -> (m, D)`` for an endless stream (e.g. bars).
        method : {"wake-sleep", "reweighted", "reinforce", "vimco"}
        n_updates : int
            Number of parameter updates.
        batch_size : int
            Data rows per update (and dreams per sleep phase).
        learning_rate : float
            η for β and the generative MLPs (and the NVIL baseline net).
        recognition_learning_rate : float, optional
            η_q for the recognition MLPs (default ``learning_rate``).
        k : int
            Samples from q per data row for "reweighted" and "vimco" (k >= 2 for VIMCO).
        sleep : bool
            Add the sleep-phase q update to "reweighted".
        baseline : NVILBaseline, {"moving-average", "input-dependent", "none"} or None
            NVIL baseline of "reinforce", eq. (12): an :class:`NVILBaseline` (its kind,
            the hidden widths of b_psi, the decay α, variance normalisation), a kind
            with the default options, or ``None`` / ``"none"`` for no baseline.
        engine : {"auto", "numpy", "numba"}
            "numba" runs the batch-size-1 kernels of :mod:`lvmref.kernels.helmholtz`
            (needs ``batch_size=1``, no hidden layers and, for "reinforce", no
            input-dependent baseline); "auto" picks them whenever allowed and Numba
            compiles, else :func:`sgd_update` (always for "vimco", which has no kernel).
            Both engines consume identical noise and
            agree to rounding (over long runs one comparison u < sigmoid(a) decided
            differently by a rounding error makes two trajectories part).
        record_every : int, optional
            Record the objective every this many updates (default: once per block of
            :data:`lvmref.helmholtz_training.NOISE_BLOCK` updates).
        monitor : callable, optional
            ``monitor(model) -> float`` appended to ``history_["monitor"]`` at each
            record (e.g. exact KL on bars).
        rng : Generator, int or None
            All the noise, drawn in the order of the noise protocol of
            :mod:`lvmref.helmholtz_training` (so that a twin can replay the run).

        Returns
        -------
        self

        Notes
        -----
        ``history_`` holds per record ``update`` (updates done), ``objective`` (the mean
        since the previous record of eq. (13)'s objective: log w = log p(x, z) -
        log q(z | x) on the wake samples, an ELBO estimate; for "reweighted" and "vimco"
        the IWAE estimate log mean_s w_s), ``seconds`` and ``monitor``.
        """
        method = check_choice(method, "method", _METHODS)
        n_updates = check_positive_int(n_updates, "n_updates")
        batch_size = check_positive_int(batch_size, "batch_size")
        lr = check_positive_float(learning_rate, "learning_rate")
        lr_q = lr if recognition_learning_rate is None else check_positive_float(
            recognition_learning_rate, "recognition_learning_rate")
        k = (check_positive_int(k, "k", minimum=2 if method == "vimco" else 1)
             if method in ("reweighted", "vimco") else 1)
        sleep = check_flag(sleep, "sleep")
        nvil = _as_baseline(baseline)          # checked for every method, used by "reinforce"
        if method != "reinforce":
            nvil = None
        engine = check_choice(engine, "engine", ENGINES)
        if engine == "numba" and method == "vimco":
            raise ValueError("engine='numba' has no VIMCO kernel; use engine='numpy' or "
                             "'auto'")
        record_every = NOISE_BLOCK if record_every is None else check_positive_int(
            record_every, "record_every")
        rng = check_rng(rng)
        self.params = self.arch.check_params(self.params)
        input_dependent = nvil is not None and nvil.kind == "input-dependent"
        numba = method != "vimco" and use_kernel(
            engine, kernel_supported(self.arch, batch_size, input_dependent))
        draw = data_sampler(X, self.n_features)
        K, D = self.n_latent, self.n_features
        state = NVILState() if nvil is None else nvil.init_state(self.arch, rng)
        kernel = None
        if numba:
            kernel = KernelEngine(
                self.params, self.arch.layer_sizes, method, lr, lr_q, sleep=sleep,
                baseline=nvil is not None,
                normalize_variance=nvil is not None and nvil.normalize_variance,
                decay=0.9 if nvil is None else nvil.decay)

        hist = {"update": [], "objective": [], "seconds": [], "monitor": []}
        done, t0, obj_acc, obj_n = 0, time.perf_counter(), 0.0, 0
        for m, record in noise_blocks(n_updates, record_every):
            xb, uq, us = draw_noise(draw, rng, m, batch_size, k, K, D)
            if kernel is not None:
                obj_acc += float(np.sum(kernel.run(xb, uq, us)))
                obj_n += m
                self.params = kernel.params()
            else:
                for t in range(m):
                    self.params, state, val = _sgd_update(
                        self.params, xb[t], uq[t], us[t], self.arch, method, lr, lr_q,
                        sleep=sleep, baseline=nvil, state=state)
                    obj_acc += val
                    obj_n += 1
            done += m
            if record:
                hist["update"].append(done)
                hist["objective"].append(obj_acc / max(obj_n, 1))
                hist["seconds"].append(time.perf_counter() - t0)
                if monitor is not None:
                    hist["monitor"].append(float(monitor(self)))
                obj_acc, obj_n = 0.0, 0
        if kernel is not None:
            self.params = kernel.params(copy=True)
        if input_dependent:
            self.baseline_params_ = state.psi
        self.history_ = hist
        return self


def _as_baseline(baseline):
    """``fit(baseline=...)`` as an :class:`NVILBaseline` or None."""
    if baseline is None or isinstance(baseline, NVILBaseline):
        return baseline
    if isinstance(baseline, str):
        kind = check_choice(baseline, "baseline", ("none", *_BASELINE_KINDS))
        return None if kind == "none" else NVILBaseline(kind)
    raise TypeError("baseline must be an NVILBaseline, 'moving-average', 'input-dependent', "
                    f"'none' or None, got {type(baseline).__name__}")
