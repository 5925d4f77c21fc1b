"""Input validation for every public entry point of lvmref (the one validation module).

It sits in the lowest layer (``lvmref.kernels``, importing only NumPy) so that the
kernels' own public wrappers and every model module above them share it.

Every checker names the offending argument in its message and raises ``TypeError`` for a
wrong kind of value and ``ValueError`` for a wrong value. Array input is converted to
float64; :func:`as_float_array` returns a *copy* by default, so callers' arrays are never
mutated. Library code raises -- it never uses ``assert`` -- so checks survive
``python -O``.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "as_float_array",
    "check_binary",
    "check_rng",
    "check_positive_int",
    "check_real",
    "check_nonnegative_float",
    "check_positive_float",
    "check_choice",
    "check_flag",
    "check_axis",
    "check_sample_weight",
    "check_finite_sum",
]


def as_float_array(
    x,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    shape: tuple | None = None,
    allow_empty: bool = False,
    finite: bool = True,
    copy: bool = True,
) -> np.ndarray:
    """Return ``x`` as a float64 ndarray, or raise a clear error naming ``name``.

    Parameters
    ----------
    x : array_like
        Numeric (bool, int, float) input. Strings, object, complex and ragged input are
        refused with ``TypeError``.
    name : str
        Argument name used in error messages.
    ndim : int or tuple of int, optional
        Required number of dimensions.
    shape : tuple, optional
        Required shape; ``None`` entries match any length.
    allow_empty : bool
        Whether a zero-size array is acceptable.
    finite : bool
        Whether NaN and +-inf are refused.
    copy : bool
        ``True`` (default): always a fresh array, so the caller's is never mutated.
        ``False``: float64 input is returned without copying (read-only use only).
    """
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists etc.
        raise TypeError(f"{name} must be a numeric array: {exc}") from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float64, copy=True if copy else None)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must be {want}-D, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, arr.shape)
        ):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_binary(x: np.ndarray, name: str) -> np.ndarray:
    """Raise ``ValueError`` unless every entry of ``x`` is 0 or 1; returns ``x``."""
    if not np.all((x == 0) | (x == 1)):
        raise ValueError(f"{name} must be binary (0/1 entries only)")
    return x


def check_rng(rng, name: str = "rng") -> np.random.Generator:
    """Turn ``rng`` (``Generator``, int seed or ``None``) into a ``np.random.Generator``.

    ``None`` means fresh OS entropy; an int (including 0) is a seed. The global NumPy
    RNG is never touched. ``name`` is the argument's name in messages (e.g.
    ``"random_state"``).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise ValueError(f"{name} seed must be non-negative, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"{name} must be a numpy.random.Generator, an int seed or None, "
        f"got {type(rng).__name__}"
    )


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as int, raising unless it is an integer ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(value, name: str) -> float:
    """Return ``value`` as a finite float (``TypeError`` for non-numbers and bools)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_nonnegative_float(value, name: str) -> float:
    """Return ``value`` as float, raising unless it is finite and ``>= 0``."""
    value = check_real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_positive_float(value, name: str) -> float:
    """Return ``value`` as float, raising unless it is finite and ``> 0``."""
    value = check_real(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def check_choice(value, name: str, choices):
    """Return ``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    try:
        ok = value in choices
    except TypeError:  # unhashable or incomparable
        ok = False
    if not ok or isinstance(value, (np.ndarray, list, dict)):
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {opts}; got {value!r}")
    return value


def check_flag(value, name: str) -> bool:
    """Return ``value`` as bool; ``TypeError`` unless it is a Python or NumPy bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def check_axis(axis, ndim: int, name: str = "axis", array: str = "the array"):
    """Normalise ``axis`` (int or None) for ``array`` of ``ndim`` dimensions."""
    if axis is None:
        return None
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of bounds for {array} of ndim {ndim}")
    return int(axis) % ndim


def check_sample_weight(sample_weight, n_rows: int, name: str = "sample_weight"):
    """``None``, or per-row weights as a float64 copy of shape ``(n_rows,)``.

    Weights must be finite and ``>= 0`` with at least one positive entry (a list, a
    scalar-free 1-D array-like, or anything ``np.asarray`` turns into one).
    """
    if sample_weight is None:
        return None
    w = as_float_array(sample_weight, name, ndim=1)
    if w.shape[0] != n_rows:
        raise ValueError(f"{name} must have shape ({n_rows},) (one weight per row), "
                         f"got {w.shape}")
    if np.any(w < 0.0):
        raise ValueError(f"{name} must be >= 0 (row {int(np.argmax(w < 0.0))} is {w[w < 0][0]})")
    if not np.any(w > 0.0):
        raise ValueError(f"{name} must not be all zero (at least one positive weight)")
    return w


def check_finite_sum(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` unless the sum of its entries overflows float64 (``ValueError`` naming
    ``name``): e.g. frequency weights or counts whose total a model divides by."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(x)
    if not np.isfinite(total):
        raise ValueError(f"{name} too large: the sum of its entries overflows float64 (max "
                         f"{np.max(np.abs(x)):.3g}); rescale it")
    return x


def check_path(path, name: str = "path"):
    """``path`` (a ``str`` or ``os.PathLike``, not empty) as a ``pathlib.Path``.

    Whether the file or its directory exists is the caller's business (a missing file is
    ``FileNotFoundError`` by the persistence rules); this refuses what is not a path at all.
    """
    import os
    from pathlib import Path

    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path-like, got {type(path).__name__}")
    if isinstance(path, str) and not path.strip():
        raise ValueError(f"{name} must not be empty")
    return Path(path)


__all__.append("check_path")
