r"""A small multilayer perceptron with hand-derived backpropagation.

One implementation serves the Helmholtz machine and the VAE.

Layout (other implementations can load these weights directly)
----------------------------------------------------------------
An :class:`MLP` with ``sizes = (n_0, n_1, ..., n_L)`` has ``L`` dense layers. Layer
``i`` (0-based) computes

.. math::  a_i = h_i W_i + b_i, \qquad h_{i+1} = f_i(a_i),                      \tag{1}

with ``h_0 = x`` of shape ``(n_samples, n_0)``, ``W_i`` of shape ``(n_i, n_{i+1})``,
``b_i`` of shape ``(n_{i+1},)`` and ``f_i = activations[i]``. Parameters live in a
plain dict under the keys ``f"{prefix}W{i}"`` and ``f"{prefix}b{i}"``, so two
networks (e.g. ``"enc."`` and ``"dec."``) share one parameter dict.

Backward pass. Given ``g_{i+1} = dL/dh_{i+1}`` (shape ``(n, n_{i+1})``):

.. math::
    \delta_i = g_{i+1} \odot f_i'(a_i), \quad
    \frac{\partial L}{\partial W_i} = h_i^\top \delta_i, \quad
    \frac{\partial L}{\partial b_i} = \textstyle\sum_n \delta_i, \quad
    g_i = \delta_i W_i^\top.                                                   \tag{2}

Each activation's derivative sits beside its forward below. Derivatives are written
in terms of the forward output where that is cheaper (tanh' = 1 - h^2,
sigmoid' = h(1 - h)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kernels.checks import (
    as_float_array,
    check_choice,
    check_flag,
    check_positive_int,
    check_rng,
)
from .kernels.densities import sigmoid_np, softplus_np
from .kernels.fpenv import benign_underflow

__all__ = ["MLP", "ACTIVATIONS", "glorot_uniform"]


# --- activations: forward f(a) and backward g * f'(a), side by side -------------------

def _tanh(a):
    return np.tanh(a)


def _tanh_back(a, h, g):
    return g * (1.0 - h * h)


def _relu(a):
    return np.maximum(a, 0.0)


def _relu_back(a, h, g):
    return g * (a > 0.0)


def _softplus_back(a, h, g):
    return g * sigmoid_np(a)


def _sigmoid_back(a, h, g):
    return g * h * (1.0 - h)


def _identity(a):
    return a


def _identity_back(a, h, g):
    return g


ACTIVATIONS = {
    "tanh": (_tanh, _tanh_back),
    "relu": (_relu, _relu_back),
    "softplus": (softplus_np, _softplus_back),
    "sigmoid": (sigmoid_np, _sigmoid_back),
    "identity": (_identity, _identity_back),
}


@benign_underflow
def glorot_uniform(n_in: int, n_out: int, rng) -> np.ndarray:
    """Glorot & Bengio (2010) uniform init: U(-r, r), r = sqrt(6 / (n_in + n_out)).

    Returns an ``(n_in, n_out)`` array; ``n_in``, ``n_out`` >= 1.
    """
    n_in = check_positive_int(n_in, "n_in")
    n_out = check_positive_int(n_out, "n_out")
    r = np.sqrt(6.0 / (n_in + n_out))
    return check_rng(rng).uniform(-r, r, size=(n_in, n_out))


@benign_underflow
@dataclass(frozen=True)
class MLP:
    """Dense network ``sizes[0] -> ... -> sizes[-1]``, eq. (1)-(2) of the module docstring.

    Parameters
    ----------
    sizes : tuple of int
        Layer widths including input and output, length ``L + 1``.
    activations : tuple of str
        One of ``ACTIVATIONS`` per layer, length ``L`` (the last is usually "identity").
    prefix : str
        Key prefix of this network's entries in the parameter dict.
    """

    sizes: tuple
    activations: tuple
    prefix: str = ""

    def __post_init__(self):
        if isinstance(self.sizes, (str, bytes)) or not hasattr(self.sizes, "__len__"):
            raise TypeError(f"sizes must be a sequence of positive ints, got {self.sizes!r}")
        sizes = tuple(check_positive_int(s, "sizes") for s in self.sizes)
        if isinstance(self.activations, (str, bytes)) or not hasattr(self.activations,
                                                                     "__len__"):
            raise TypeError(f"activations must be a sequence of names, got "
                            f"{self.activations!r}")
        acts = tuple(self.activations)
        if len(sizes) < 2:
            raise ValueError(f"sizes must have >= 2 entries, got {self.sizes}")
        if len(acts) != len(sizes) - 1:
            raise ValueError(
                f"activations must have len(sizes) - 1 = {len(sizes) - 1} entries, got {len(acts)}"
            )
        for a in acts:
            check_choice(a, "activations", tuple(ACTIVATIONS))
        if not isinstance(self.prefix, str):
            raise TypeError(f"prefix must be a str, got {type(self.prefix).__name__}")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "activations", acts)

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def keys(self) -> list[str]:
        """Parameter names in layer order: W0, b0, W1, b1, ... (with prefix)."""
        out = []
        for i in range(self.n_layers):
            out += [f"{self.prefix}W{i}", f"{self.prefix}b{i}"]
        return out

    def init(self, rng) -> dict:
        """Glorot-uniform weights and zero biases, drawn from ``rng``."""
        rng = check_rng(rng)
        params = {}
        for i in range(self.n_layers):
            params[f"{self.prefix}W{i}"] = glorot_uniform(self.sizes[i], self.sizes[i + 1], rng)
            params[f"{self.prefix}b{i}"] = np.zeros(self.sizes[i + 1])
        return params

    def check_params(self, params) -> dict:
        """This network's entries of ``params`` as float64 arrays (validated, not copied).

        Other keys are ignored (one dict may hold several networks, e.g. ``enc.`` and
        ``dec.``); each of this network's keys must be present with its shape and finite.
        """
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict name -> array, got {type(params).__name__}")
        out = {}
        for i in range(self.n_layers):
            for key, shape in ((f"{self.prefix}W{i}", (self.sizes[i], self.sizes[i + 1])),
                               (f"{self.prefix}b{i}", (self.sizes[i + 1],))):
                if key not in params:
                    raise ValueError(f"params is missing the key {key!r}")
                out[key] = as_float_array(params[key], f"params[{key!r}]", shape=shape,
                                          copy=False)
        return out

    def forward(self, params: dict, x: np.ndarray, *, check: bool = True):
        """Eq. (1). Returns ``(output, cache)``; output has shape (n, sizes[-1]).

        ``x`` has shape ``(n, sizes[0])``. ``cache`` holds every layer's input ``h_i`` and
        pre-activation ``a_i`` for :meth:`backward`. ``check=False`` skips the validation
        of ``params`` and ``x`` (for callers that validated them already).
        """
        if check:
            params = self.check_params(params)
            x = as_float_array(x, "x", shape=(None, self.sizes[0]), copy=False)
        p = self.prefix
        hs, pre = [x], []
        h = x
        for i, act in enumerate(self.activations):
            a = h @ params[f"{p}W{i}"] + params[f"{p}b{i}"]
            h = ACTIVATIONS[act][0](a)
            pre.append(a)
            hs.append(h)
        return h, (hs, pre)

    def backward(self, params: dict, cache, grad_out: np.ndarray, need_input_grad: bool = False,
                 *, check: bool = True):
        """Eq. (2). Returns ``(grads, grad_x)`` for upstream gradient ``grad_out`` = dL/dy.

        ``cache`` comes from :meth:`forward`; ``grad_out`` has the output's shape
        ``(n, sizes[-1])``. ``grads`` has this network's keys and parameter shapes;
        ``grad_x`` (shape of the input) is ``None`` unless ``need_input_grad``.
        ``check=False`` skips the validation (for callers that validated already).
        """
        p = self.prefix
        hs, pre = cache
        if check:
            params = self.check_params(params)
            need_input_grad = check_flag(need_input_grad, "need_input_grad")
            grad_out = as_float_array(grad_out, "grad_out", shape=np.shape(hs[-1]),
                                      copy=False)
            if np.max(np.abs(grad_out), initial=0.0) > 1e150:
                raise ValueError("grad_out values too large (beyond 1e150): the products "
                                 "of backpropagation would overflow float64")
        grads = {}
        g = grad_out
        for i in range(self.n_layers - 1, -1, -1):
            delta = ACTIVATIONS[self.activations[i]][1](pre[i], hs[i + 1], g)
            grads[f"{p}W{i}"] = hs[i].T @ delta
            grads[f"{p}b{i}"] = delta.sum(axis=0)
            if i > 0 or need_input_grad:
                g = delta @ params[f"{p}W{i}"].T
        return grads, (g if need_input_grad else None)
