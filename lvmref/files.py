"""Files for the command line and the demo: data (``.npy``, ``.csv``) in, JSON out.

Errors are ``ValueError``/``FileNotFoundError`` whose message names the file and says
what to fix; the CLI turns them into one-line messages and exit status 2.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["load_matrix", "jsonable"]


def load_matrix(path, *, name: str = "DATA", binary: bool = False) -> np.ndarray:
    """Load a 2-D float64 matrix (rows = samples) from ``.npy`` or ``.csv``.

    Parameters
    ----------
    path : str or Path
        ``.npy`` (loaded with ``allow_pickle=False``) or ``.csv`` (comma-separated
        numbers, no header; lines starting with ``#`` are comments).
    name : str
        How the file is called in error messages.
    binary : bool
        Require every entry to be 0 or 1 (Bernoulli models).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{name} file not found: {p}")
    if p.is_dir():
        raise ValueError(f"{name} must be a file, got the directory {p}")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise ValueError(f"{name} file {p} is not a readable .npy array: {exc}") from None
    elif suffix in (".csv", ".txt"):
        try:
            arr = np.loadtxt(p, delimiter=",", dtype=np.float64, ndmin=2, comments="#")
        except ValueError as exc:
            raise ValueError(
                f"{name} file {p} must hold comma-separated numbers with no header "
                f"(is the delimiter ',' ?): {exc}"
            ) from None
    else:
        raise ValueError(f"{name} file {p} must end in .npy or .csv, got {suffix or 'no suffix'!r}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} file {p} must hold numbers, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} file {p} must hold a 2-D array (n_samples, n_features), got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} file {p} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} file {p} contains NaN or infinite values")
    if binary and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} file {p} must be binary (0/1) for a Bernoulli model")
    return arr


def jsonable(obj):
    """Plain JSON types; non-finite floats become None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj
