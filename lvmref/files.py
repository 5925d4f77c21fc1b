"""Files for the command line and the demo: data (``.npy``, ``.csv``) in, JSON out.

Errors are ``ValueError``/``FileNotFoundError`` whose message names the file and says
what to fix; the CLI turns them into one-line messages and exit status 2.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from .kernels.checks import check_flag

__all__ = ["load_matrix", "jsonable", "MMAP_CHUNK_ROWS"]


def _csv_error(p, name) -> str:
    """Where a comma-separated file stops being a rectangular table of numbers.

    Lines and columns are counted from 1, as an editor shows them; comment lines
    (``#``) and blank lines are skipped but counted.
    """
    width, first = None, None
    with open(p, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split(",")
            for col, field in enumerate(fields, 1):
                try:
                    float(field)
                except ValueError:
                    hint = " (a header line? lvmref reads no header)" if width is None else ""
                    sep = " (is the delimiter ',' ?)" if (";" in line or "\t" in raw) else ""
                    return (f"{name} file {p}, line {lineno}, column {col}: {field.strip()!r} "
                            f"is not a number{hint}{sep}")
            if width is None:
                width, first = len(fields), lineno
            elif len(fields) != width:
                return (f"{name} file {p}, line {lineno} has {len(fields)} columns but line "
                        f"{first} has {width}")
    return f"{name} file {p} is not a table of comma-separated numbers"


def _first_bad(mask):
    """(row, column) of the first True in a 2-D mask."""
    i, j = np.unravel_index(int(np.argmax(mask)), mask.shape)
    return int(i), int(j)


def load_matrix(path, *, name: str = "DATA", binary: bool = False,
                mmap: bool = False) -> np.ndarray:
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
    mmap : bool
        For ``.npy``: memory-map the file read-only (``np.load(path, mmap_mode="r")``)
        instead of reading it, and validate it chunk by chunk (``MMAP_CHUNK_ROWS`` rows at
        a time), so that data larger than memory can be fitted chunk by chunk
        (:mod:`lvmref.chunked`). The returned ``np.memmap`` keeps the file's dtype (the
        models convert each chunk to float64). A ``.csv`` is read into memory as without
        ``mmap``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64 (an ``np.memmap`` of the
        file's dtype with ``mmap=True`` and a ``.npy`` file)

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        Naming the file and, for a bad entry, where it is: line and column (from 1, as
        an editor counts) in a ``.csv``, the index ``[i, j]`` in a ``.npy``.
    """
    binary = check_flag(binary, "binary")
    mmap = check_flag(mmap, "mmap")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{name} file not found: {p}")
    if p.is_dir():
        raise ValueError(f"{name} must be a file, got the directory {p}")
    suffix = p.suffix.lower()
    csv = suffix in (".csv", ".txt")
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None)
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "pickled" in str(exc) or "Python objects" in str(
                    exc):
                raise ValueError(f"{name} file {p} holds pickled (object) data, which lvmref "
                                 "never loads; save a numeric array") from None
            raise ValueError(f"{name} file {p} is not a readable .npy array ({exc})") from None
        except (OSError, EOFError) as exc:
            raise ValueError(f"{name} file {p} is not a readable .npy array ({exc})") from None
    elif csv:
        with warnings.catch_warnings():  # an empty file warns; it is reported below
            warnings.simplefilter("ignore")
            try:
                arr = np.loadtxt(p, delimiter=",", dtype=np.float64, ndmin=2, comments="#")
            except ValueError:
                raise ValueError(_csv_error(p, name)) from None
            except UnicodeDecodeError:
                raise ValueError(f"{name} file {p} is not a text file of comma-separated "
                                 "numbers") from None
    else:
        raise ValueError(f"{name} file {p} must end in .npy or .csv, got {suffix or 'no suffix'!r}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} file {p} holds complex numbers; lvmref needs real data")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} file {p} must hold numbers, got dtype {arr.dtype}")
    if not isinstance(arr, np.memmap):
        arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} file {p} must hold a 2-D array (n_samples, n_features), got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} file {p} is empty (shape {arr.shape})")

    def where(mask, start=0):
        i, j = _first_bad(mask)
        i += start
        if not csv:
            return f"entry [{i}, {j}]"
        with open(p, encoding="utf-8", errors="replace") as fh:  # row i -> its line number
            lines = [n for n, raw in enumerate(fh, 1) if raw.split("#", 1)[0].strip()]
        return f"line {lines[i]}, column {j + 1}"

    if isinstance(arr, np.memmap):
        for start in range(0, arr.shape[0], MMAP_CHUNK_ROWS):
            _check_values(arr[start:start + MMAP_CHUNK_ROWS], start, name, p, binary, where)
    else:
        _check_values(arr, 0, name, p, binary, where)
    return arr


#: Rows per chunk when :func:`load_matrix` validates a memory-mapped file.
MMAP_CHUNK_ROWS = 65536


def _check_values(arr, start, name, p, binary, where):
    """Finite (and 0/1 with ``binary``) entries of rows ``start:start + len(arr)``."""
    arr = np.asarray(arr, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} file {p} contains NaN or infinite values (first at "
                         f"{where(bad, start)})")
    if binary:
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            i, j = _first_bad(bad)
            raise ValueError(f"{name} file {p} must be binary (0/1) for a Bernoulli model; "
                             f"{where(bad, start)} is {arr[i, j]:g}")


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
