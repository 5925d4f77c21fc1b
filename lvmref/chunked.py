"""Rows of data that need not fit in memory: memory maps, array-likes and Dask arrays.

A model that reduces its data to sums over rows (the mixtures' sufficient statistics,
:mod:`lvmref.mixture_stats`) can read the rows a chunk at a time: working memory is then
that of one chunk, whatever the number of rows. This module is the one way lvmref does
that. It holds no mathematics.

Sources
-------
:func:`row_source` wraps ``X`` in

* :class:`RowChunks` -- an ``np.memmap``, an in-memory array, or any *array-like* with
  ``.shape``, ``.dtype`` and row slicing ``X[a:b]`` (``h5py.Dataset``, ``zarr.Array``,
  ...), read ``chunk_size`` rows at a time in row order; or
* :class:`DaskRows` -- a ``dask.array.Array``, whose row blocks are processed where
  they live (a local scheduler, or a ``dask.distributed`` cluster when a ``Client`` is
  active), the partial results combined by a tree reduction on the client.

Both offer the same three operations: ``map_reduce(fn, merge)`` (``fn(start, x, w, r)``
on every chunk, partial results combined by ``merge``), ``map_rows(fn, width)`` (``fn(x,
start)`` per chunk, a result for every row: an ndarray, or a lazy Dask array for Dask
input) and ``take(rows)`` (selected rows in memory). Each chunk is validated as
:func:`lvmref.mixture.check_X` validates in-memory data (numeric, finite, converted to
C-contiguous float64 -- a float64 C-contiguous chunk of a memory map is used in place,
never copied or written), and an error names the argument and the global row.

Dask is optional. Nothing here imports it until a Dask array is passed: ``import
lvmref.gmm`` works without it, and a Dask array without a usable Dask raises an
``ImportError`` that says to ``pip install 'lvmref[dask]'``.

Chunk size
----------
``chunk_size=None`` means, for an in-memory array, the whole array (one chunk); for a
memory map or array-like, :func:`default_chunk_size`: about ``CHUNK_BYTES`` (64 MiB) of
float64 working memory per chunk, counting the chunk itself and the per-row arrays a
mixture's E-step makes (``D + 2 K + 2`` floats per row). For Dask input ``None`` keeps
the array's own row blocks (its columns are joined into one block); an int re-chunks
the rows.
"""

from __future__ import annotations

import numpy as np

from lvmref.kernels.checks import as_float_array, check_positive_int
from lvmref.kernels.fpenv import benign_underflow

__all__ = [
    "CHUNK_BYTES",
    "DASK_INSTALL_HINT",
    "is_dask_array",
    "require_dask",
    "is_in_memory",
    "default_chunk_size",
    "check_chunk_size",
    "check_rows",
    "row_source",
    "RowChunks",
    "DaskRows",
]

#: Target float64 working memory of one chunk (bytes) for :func:`default_chunk_size`.
CHUNK_BYTES = 64 * 2**20

#: What to install for Dask input.
DASK_INSTALL_HINT = "pip install 'lvmref[dask]' (installs dask[array] and distributed)"


@benign_underflow
def is_dask_array(X) -> bool:
    """Whether ``X`` is a ``dask.array.Array`` (decided without importing Dask)."""
    return any(c.__name__ == "Array" and c.__module__.startswith("dask.array")
               for c in type(X).__mro__)


@benign_underflow
def require_dask():
    """``(dask, dask.array)``, or an ``ImportError`` saying what to install."""
    try:
        import dask
        import dask.array as da
    except ImportError as exc:
        raise ImportError(f"X is a Dask array, and lvmref needs Dask to use it: "
                          f"{DASK_INSTALL_HINT} ({exc})") from None
    return dask, da


@benign_underflow
def is_in_memory(X) -> bool:
    """Whether ``X`` is data in memory (an ndarray that is not a memory map, a list, a
    sparse matrix, ...) rather than a memory map, an array-like read by rows, or a Dask
    array. In-memory data go through the models' in-memory paths (``check_X``)."""
    if isinstance(X, np.ndarray):
        return not isinstance(X, np.memmap)
    if is_dask_array(X):
        return False
    if isinstance(X, (list, tuple, str, bytes)) or hasattr(X, "tocsr"):  # sparse: refused later
        return True
    if not (hasattr(X, "shape") and hasattr(X, "dtype") and hasattr(X, "__getitem__")):
        return True
    try:
        dtype = np.dtype(X.dtype)
        ndim = len(X.shape)
    except TypeError:  # e.g. a torch dtype: convert as in-memory data
        return True
    return not (ndim == 2 and dtype.kind != "O")


@benign_underflow
def default_chunk_size(n_features, n_components=1) -> int:
    """Rows per chunk for ``CHUNK_BYTES`` of float64 working memory: ``CHUNK_BYTES /
    (8 (D + 2 K + 2))``, rounded down to a multiple of 1024 and at least 1024."""
    d = check_positive_int(n_features, "n_features")
    k = check_positive_int(n_components, "n_components")
    rows = CHUNK_BYTES // (8 * (d + 2 * k + 2))
    return max(1024, rows - rows % 1024)


@benign_underflow
def check_chunk_size(chunk_size, name="chunk_size"):
    """``None`` or a positive int (``TypeError``/``ValueError`` naming ``name``)."""
    if chunk_size is None:
        return None
    return check_positive_int(chunk_size, name)


def _check_meta(X, name):
    """(n, d) of a 2-D numeric array-like, with :func:`lvmref.mixture.check_X`'s messages."""
    if not (hasattr(X, "shape") and hasattr(X, "dtype")):
        raise TypeError(f"{name} must be a numeric 2-D array (or an array-like with .shape "
                        f"and .dtype), got {type(X).__name__}")
    try:
        dtype = np.dtype(X.dtype)
        shape = tuple(X.shape)
    except TypeError as exc:
        raise TypeError(f"{name} must be a numeric array: {exc}") from None
    if np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"{name}: Complex data not supported (dtype {dtype}); pass real and "
                         "imaginary parts as separate columns")
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        raise TypeError(f"{name} must be a numeric array, got dtype {dtype}")
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (rows are samples), got shape {shape}. Reshape "
                         f"your data: {name}.reshape(-1, 1) if it has a single feature, "
                         f"{name}.reshape(1, -1) if it is a single sample")
    if any(isinstance(s, float) and not np.isfinite(s) for s in shape):
        raise ValueError(f"{name} has unknown chunk sizes (shape {shape}); call "
                         f"{name}.compute_chunk_sizes() first")
    for axis, what in ((0, "sample(s)"), (1, "feature(s)")):
        if shape[axis] == 0:
            raise ValueError(f"{name} has 0 {what} (shape={shape}) while a minimum of 1 is "
                             "required.")
    return int(shape[0]), int(shape[1])


@benign_underflow
def check_rows(block, start, name="X", width=None):
    """A chunk of rows as a finite C-contiguous float64 array (no copy if it already is).

    Parameters
    ----------
    block : array_like of shape (m, d)
        Rows ``start .. start + m - 1`` of the argument ``name``.
    start : int
        Global index of the chunk's first row (for messages).
    name : str
    width : int, optional
        Required number of columns.

    Returns
    -------
    ndarray of shape (m, d), float64, C-contiguous. Never written to by lvmref.
    """
    if width is not None:
        width = check_positive_int(width, "width")
    a = np.asarray(block)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number)
                                 or np.issubdtype(a.dtype, np.bool_)):
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name}: Complex data not supported (dtype {a.dtype})")
    if a.dtype != np.float64 or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a, dtype=np.float64)
    if a.ndim != 2 or (width is not None and a.shape[1] != width):
        want = "2-D" if width is None else f"of shape (*, {width})"
        raise ValueError(f"{name} rows from {start} must be {want}, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        row = start + int(np.argmax(bad.any(axis=1)))
        raise ValueError(f"{name} contains NaN or infinite values (first in row {row})")
    return a


@benign_underflow
def row_source(X, chunk_size=None, *, name="X", n_features=None, n_components=1):
    """Wrap ``X`` for chunk-wise access: a :class:`DaskRows` for a Dask array, else a
    :class:`RowChunks`.

    Parameters
    ----------
    X : np.memmap, ndarray, array-like with ``.shape``/``.dtype``/row slicing, or
        ``dask.array.Array`` of shape (n, d); lists are converted to an array.
    chunk_size : int or None
        Rows per chunk (see the module docstring for ``None``).
    name : str
        The argument's name in messages.
    n_features : int, optional
        Required ``d`` (a fitted model's ``n_features_in_``).
    n_components : int
        ``K`` for :func:`default_chunk_size`.
    """
    chunk_size = check_chunk_size(chunk_size)
    if n_features is not None:
        n_features = check_positive_int(n_features, "n_features")
    n_components = check_positive_int(n_components, "n_components")
    if is_dask_array(X):
        src = DaskRows(X, chunk_size, name=name)
    else:
        if isinstance(X, (list, tuple)):
            X = as_float_array(X, name, ndim=2)
        src = RowChunks(X, chunk_size, name=name, n_components=n_components)
    if n_features is not None and src.d != n_features:
        raise ValueError(f"{name} has {src.d} features, but the model is expecting "
                         f"{n_features} features as input (the number it was fitted with)")
    return src


def _aligned(a, start, stop, name, width):
    """Rows ``start:stop`` of an aligned per-row array (weights: 1-D; resp: 2-D)."""
    if a is None:
        return None
    block = np.asarray(a[start:stop])
    if width is None:
        return block
    return check_rows(block, start, name, width)


@benign_underflow
class RowChunks:
    """Rows of an in-memory array, a memory map or an array-like, ``chunk_size`` at a time.

    Attributes
    ----------
    X : the wrapped object (never copied whole, never written)
    n, d : int
    chunk_size : int
        Rows per chunk (the whole array for in-memory input with ``chunk_size=None``).
    name : str
    """

    def __init__(self, X, chunk_size=None, *, name="X", n_components=1):
        if isinstance(X, (list, tuple)):  # as row_source does
            X = as_float_array(X, name, ndim=2)
        self.X = X
        self.name = name
        self.n, self.d = _check_meta(X, name)
        if chunk_size is None:
            in_memory = isinstance(X, np.ndarray) and not isinstance(X, np.memmap)
            chunk_size = self.n if in_memory else default_chunk_size(self.d, n_components)
        self.chunk_size = check_chunk_size(chunk_size)

    @property
    def shape(self):
        """``(n, d)``."""
        return (self.n, self.d)

    def bounds(self):
        """``(start, stop)`` of every chunk, in row order."""
        return [(a, min(a + self.chunk_size, self.n)) for a in range(0, self.n, self.chunk_size)]

    def read(self, start, stop):
        """Rows ``start:stop`` validated (:func:`check_rows`)."""
        return check_rows(self.X[start:stop], start, self.name, self.d)

    def map_reduce(self, fn, merge, *, weight=None, resp=None, resp_name="resp_init"):
        """``merge``-fold of ``fn(start, x, w, r)`` over the chunks, in row order.

        ``x`` is the validated chunk, ``w`` the chunk of ``weight`` (a 1-D array of ``n``
        entries, or ``None``) and ``r`` that of ``resp`` (an array-like of ``n`` rows,
        validated like ``x``, or ``None``).
        """
        acc = None
        width = None if resp is None else resp.shape[1]
        for start, stop in self.bounds():
            part = fn(start, self.read(start, stop), _aligned(weight, start, stop, "", None),
                      _aligned(resp, start, stop, resp_name, width))
            acc = part if acc is None else merge(acc, part)
        return acc

    def map_rows(self, fn, width=None, dtype=np.float64):
        """``fn(x, start)`` for every chunk, stacked: an ndarray of shape ``(n,)`` (``width``
        None) or ``(n, width)``."""
        out = np.empty((self.n,) if width is None else (self.n, width), dtype=dtype)
        for start, stop in self.bounds():
            out[start:stop] = fn(self.read(start, stop), start)
        return out

    def take(self, rows):
        """The rows with the given sorted global indices, validated, in memory."""
        rows = np.asarray(rows, dtype=np.intp)
        if isinstance(self.X, np.ndarray):
            return check_rows(self.X[rows], 0, self.name, self.d)
        parts = []
        for start, stop in self.bounds():  # one pass; chunks without selected rows skipped
            lo, hi = np.searchsorted(rows, [start, stop])
            if hi > lo:
                parts.append(self.read(start, stop)[rows[lo:hi] - start])
        return np.concatenate(parts) if parts else np.empty((0, self.d))


def _apply(fn, start, x, w, r, name, d, resp_name):
    """Run ``fn`` on one Dask block (on a worker): the block validated first."""
    x = check_rows(x, start, name, d)
    if r is not None:
        r = check_rows(r, start, resp_name, None)
    return fn(start, x, None if w is None else np.asarray(w), r)


def _merge_all(merge, *parts):
    acc = parts[0]
    for p in parts[1:]:
        acc = merge(acc, p)
    return acc


def _map_block(x, fn, name, d, block_info=None):
    start = block_info[0]["array-location"][0][0] if block_info else 0
    return fn(check_rows(x, start, name, d), start)


@benign_underflow
class DaskRows:
    """Rows of a ``dask.array.Array``; work runs where the blocks live.

    Attributes
    ----------
    X : dask.array.Array
        The array with its columns in one block (and its rows re-chunked to
        ``chunk_size`` when given).
    n, d : int
    starts : ndarray of int
        First global row of every row block.
    name : str
    """

    #: fan-in of the tree reduction of :meth:`map_reduce`
    SPLIT_EVERY = 8

    def __init__(self, X, chunk_size=None, *, name="X"):
        self._dask, self._da = require_dask()
        self.name = name
        self.n, self.d = _check_meta(X, name)
        if chunk_size is not None:
            X = X.rechunk({0: chunk_size, 1: -1})
        elif len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        self.X = X
        self.starts = np.concatenate(([0], np.cumsum(X.chunks[0])[:-1])).astype(np.intp)

    @property
    def shape(self):
        """``(n, d)``."""
        return (self.n, self.d)

    def _align(self, a, two_d):
        if a is None:
            return [None] * len(self.starts)
        if is_dask_array(a):
            a = a.rechunk((self.X.chunks[0], -1) if two_d else (self.X.chunks[0],))
        else:
            a = self._da.from_array(np.asarray(a) if not two_d else a,
                                    chunks=(self.X.chunks[0], -1) if two_d
                                    else (self.X.chunks[0],))
        return list(a.to_delayed().ravel())

    def map_reduce(self, fn, merge, *, weight=None, resp=None, resp_name="resp_init"):
        """Tree reduction (fan-in ``SPLIT_EVERY``) with ``merge`` of ``fn(start, x, w, r)``
        over the row blocks, computed by the active Dask scheduler; see
        :meth:`RowChunks.map_reduce`."""
        delayed = self._dask.delayed
        blocks = list(self.X.to_delayed().ravel())
        ws, rs = self._align(weight, False), self._align(resp, True)
        parts = [delayed(_apply)(fn, int(s), b, w, r, self.name, self.d, resp_name)
                 for s, b, w, r in zip(self.starts, blocks, ws, rs)]
        while len(parts) > 1:
            parts = [delayed(_merge_all)(merge, *parts[i:i + self.SPLIT_EVERY])
                     for i in range(0, len(parts), self.SPLIT_EVERY)]
        return self._dask.compute(parts[0])[0]

    def map_rows(self, fn, width=None, dtype=np.float64):
        """A lazy Dask array of ``fn(x, start)`` over the row blocks: shape ``(n,)``
        (``width`` None) or ``(n, width)``, with the same row blocks as ``X``."""
        if width is None:
            return self.X.map_blocks(_map_block, fn, self.name, self.d, dtype=dtype,
                                     drop_axis=1, chunks=(self.X.chunks[0],))
        return self.X.map_blocks(_map_block, fn, self.name, self.d, dtype=dtype,
                                 chunks=(self.X.chunks[0], (int(width),)))

    def take(self, rows):
        """The rows with the given sorted global indices, computed and validated."""
        rows = np.asarray(rows, dtype=np.intp)
        return check_rows(self.X[rows].compute(), 0, self.name, self.d)
