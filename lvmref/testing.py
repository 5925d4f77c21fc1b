r"""Finite-difference gradient checking (public: oracle users check their own gradients).

For a scalar objective ``f(params)`` of a dict of float arrays, :func:`check_grad`
compares an analytic gradient dict with

* central differences per coordinate,
  :math:`\hat g_i = (f(x + h e_i) - f(x - h e_i)) / 2h` with
  :math:`h = \epsilon^{1/3} \max(1, |x_i|)` (truncation error :math:`O(h^2)`, round-off
  :math:`O(\epsilon |f| / h)`; the cube root balances the two), optionally
  Richardson-extrapolated, :math:`(4 \hat g(h/2) - \hat g(h)) / 3`, which cancels the
  :math:`h^2` term (then :math:`h = \epsilon^{1/5} \max(1, |x_i|)`);
* random-direction checks for long parameter arrays: for unit random ``v``,
  :math:`v \cdot \nabla f` against :math:`(f(x + hv) - f(x - hv)) / 2h`.

Error measure (per parameter, normwise, so entries whose true gradient is ~0 do not
blow up the ratio):

.. math:: \mathrm{rel} = \frac{\max_i |\hat g_i - g_i|}{\max(\max_i |g_i|, \max_i |\hat g_i|)}

For a direction check, the numerator is :math:`|\hat d - v\cdot g|` and the denominator
:math:`\|g\|_2` (the largest :math:`|v \cdot g|` can be for a unit ``v``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .kernels.checks import (
    as_float_array,
    check_flag,
    check_nonnegative_float,
    check_positive_int,
    check_rng,
)
from .kernels.fpenv import benign_underflow

__all__ = ["check_grad", "assert_grad_close", "GradCheckReport"]

_EPS = np.finfo(np.float64).eps


@benign_underflow
@dataclass
class GradCheckReport:
    """Result of :func:`check_grad`.

    Attributes
    ----------
    rel_error : dict name -> float
        Normwise relative error per parameter (see module docstring).
    abs_error : dict name -> float
        ``max |fd - analytic|`` per parameter (or per direction check).
    method : dict name -> str
        ``"coordinates"`` or ``"directions"``.
    value : float
        ``f(params)``.
    """

    rel_error: dict = field(default_factory=dict)
    abs_error: dict = field(default_factory=dict)
    method: dict = field(default_factory=dict)
    value: float = float("nan")

    @property
    def max_rel_error(self) -> float:
        return max(self.rel_error.values()) if self.rel_error else 0.0

    def passed(self, rtol: float = 1e-7, atol: float = 0.0) -> bool:
        """True when every parameter has ``rel <= rtol`` or ``abs <= atol``."""
        return all(
            self.rel_error[k] <= rtol or self.abs_error[k] <= atol for k in self.rel_error
        )

    def __str__(self) -> str:
        lines = [f"{'parameter':<24}{'method':<13}{'rel error':>12}{'abs error':>12}"]
        for k in self.rel_error:
            lines.append(
                f"{k:<24}{self.method[k]:<13}{self.rel_error[k]:>12.3e}{self.abs_error[k]:>12.3e}"
            )
        return "\n".join(lines)


def _as_value(out):
    """The float value of f's output (``value`` or ``(value, grad)``)."""
    if isinstance(out, tuple):
        out = out[0]
    try:
        return float(out)
    except (TypeError, ValueError):
        raise TypeError(f"f must return a real number (or (value, grad)), got "
                        f"{type(out).__name__}") from None


def _evaluate(f, params):
    val = _as_value(f(params))
    if not np.isfinite(val):
        raise ValueError(f"f returned a non-finite value {val} during the gradient check "
                         "(a finite-difference step of params left its domain?)")
    return val


def _central(f, params, name, flat_index, direction, h, richardson):
    """Central difference of f along ``direction`` (a unit array) or coordinate ``flat_index``."""
    base = params[name]

    def f_at(t):
        trial = dict(params)
        x = base.copy()
        if direction is None:
            x.reshape(-1)[flat_index] += t
        else:
            x = x + t * direction
        trial[name] = x
        return _evaluate(f, trial)

    d1 = (f_at(h) - f_at(-h)) / (2.0 * h)
    if not richardson:
        return d1
    d2 = (f_at(h / 2) - f_at(-h / 2)) / h
    return (4.0 * d2 - d1) / 3.0


@benign_underflow
def check_grad(
    f,
    params: dict,
    grad: dict | None = None,
    *,
    richardson: bool = False,
    max_coords: int = 400,
    n_directions: int = 8,
    keys=None,
    rng=0,
) -> GradCheckReport:
    """Compare an analytic gradient with finite differences.

    Parameters
    ----------
    f : callable
        ``f(params) -> float`` or ``-> (float, grad_dict)``. Called on copies; the
        caller's arrays are never modified.
    params : dict of str -> array_like
        Point at which to check (float64 copies are made).
    grad : dict of str -> ndarray, optional
        Analytic gradient, same keys and shapes as ``params``. If omitted, ``f`` must
        return ``(value, grad)``.
    richardson : bool
        Use Richardson extrapolation of the central difference (4 evaluations/coordinate).
    max_coords : int
        Parameters with at most this many entries are checked coordinate by coordinate;
        larger ones by ``n_directions`` random unit directions.
    n_directions : int
        Number of random directions for long parameters.
    keys : iterable of str, optional
        Subset of parameters to check (default: all keys of ``grad``).
    rng : Generator, int or None
        Randomness for the directions (default seed 0, so reports are reproducible).

    Returns
    -------
    GradCheckReport
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not isinstance(params, dict) or not params:
        raise TypeError("params must be a non-empty dict of str -> array")
    params = {k: as_float_array(v, f"params[{k!r}]", allow_empty=True)
              for k, v in params.items()}
    richardson = check_flag(richardson, "richardson")
    max_coords = check_positive_int(max_coords, "max_coords", minimum=0)
    n_directions = check_positive_int(n_directions, "n_directions")
    rng = check_rng(rng)
    value = f(params)
    if grad is None:
        if not isinstance(value, tuple) or len(value) != 2:
            raise TypeError("f must return (value, grad) when grad is not given")
        value, grad = value
    elif isinstance(value, tuple):
        value = value[0]
    if not isinstance(grad, dict):
        raise TypeError("grad must be a dict of str -> array")
    if not np.isfinite(_as_value(value)):
        raise ValueError(f"f returned a non-finite value {value} at params")
    keys = list(grad) if keys is None else list(keys)
    report = GradCheckReport(value=float(value))
    step = _EPS ** (1.0 / 5.0) if richardson else _EPS ** (1.0 / 3.0)
    for name in keys:
        if name not in params:
            raise ValueError(f"grad has key {name!r} that is not in params")
        if name not in grad:
            raise ValueError(f"keys names {name!r}, which grad does not have")
        g = as_float_array(grad[name], f"grad[{name!r}]", allow_empty=True)
        x = params[name]
        if g.shape != x.shape:
            raise ValueError(f"grad[{name!r}] has shape {g.shape}, params has {x.shape}")
        if x.size <= max_coords:
            flat = x.reshape(-1)
            fd = np.empty(x.size)
            for i in range(x.size):
                h = step * max(1.0, abs(flat[i]))
                fd[i] = _central(f, params, name, i, None, h, richardson)
            err = np.max(np.abs(fd - g.reshape(-1)), initial=0.0)
            scale = max(np.max(np.abs(g), initial=0.0), np.max(np.abs(fd), initial=0.0))
            report.method[name] = "coordinates"
        else:
            h = step * max(1.0, float(np.max(np.abs(x))))
            err = 0.0
            for _ in range(n_directions):
                v = rng.standard_normal(x.shape)
                v /= np.linalg.norm(v)
                dd = _central(f, params, name, None, v, h, richardson)
                err = max(err, abs(dd - float(np.sum(v * g))))
            scale = float(np.linalg.norm(g))
            report.method[name] = "directions"
        report.abs_error[name] = float(err)
        report.rel_error[name] = float(err / scale) if scale > 0 else (0.0 if err == 0 else np.inf)
    return report


@benign_underflow
def assert_grad_close(f, params, grad=None, *, rtol: float = 1e-7, atol: float = 0.0, **kwargs):
    """Assert-style :func:`check_grad`: raise ``AssertionError`` with the report on failure.

    Returns the report when every parameter passes (``rel <= rtol`` or ``abs <= atol``;
    both finite and >= 0).
    """
    rtol = check_nonnegative_float(rtol, "rtol")
    atol = check_nonnegative_float(atol, "atol")
    report = check_grad(f, params, grad, **kwargs)
    if not report.passed(rtol, atol):
        raise AssertionError(
            f"gradient check failed (rtol={rtol:g}, atol={atol:g}):\n{report}"
        )
    return report
