"""One ``.npz`` format for every model class (``Model.save(path)`` / ``Model.load(path)``).

Layout
------
A NumPy ``.npz`` archive (``np.savez``; never pickled, read with ``allow_pickle=False``)
holding

* ``__kind__``: the class name (``"GaussianMixture"``, ``"BayesianGaussianMixture"``,
  ``"HelmholtzMachine"``, ``"VAE"``) as a 0-d unicode array;
* ``__format__``: the format version of that kind (a 0-d int; each class states its
  current version and which versions it reads);
* ``__lvmref__``: the lvmref version that wrote the file (informative);
* the model's own arrays under names documented by its ``save`` method: constructor
  hyper-parameters under their constructor names, fitted arrays under their attribute
  names, parameter dicts under their parameter names. ``None`` hyper-parameters are
  listed in ``__none__`` (a 1-d unicode array) instead of being stored.

Any implementation can read and write this with its own npz/zip library.

Error policy
------------
A missing file is ``FileNotFoundError``; anything else that is wrong -- a directory, a
file that is not a zip archive, a truncated or corrupted one, an object array (pickled
data, which lvmref never loads), another kind of model, an unknown format version, a
missing or malformed entry -- is a ``ValueError`` whose message names the file and says
what is wrong in the model's own terms. Loading then validates every array as strictly
as the constructor and ``fit`` would (the classes' ``load`` methods do this with the same
checks).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from .kernels.checks import check_path

__all__ = ["save_model", "read_model", "ModelFile"]

_KIND, _FORMAT, _LVMREF, _NONE = "__kind__", "__format__", "__lvmref__", "__none__"
_HEADER = (_KIND, _FORMAT, _LVMREF, _NONE)


def _lvmref_version() -> str:
    from . import __version__

    return __version__


def save_model(path, kind: str, version: int, entries: dict) -> Path:
    """Write ``entries`` as a model file of ``kind`` (format ``version``); return the path.

    Parameters
    ----------
    path : str or path-like
        Destination; ``.npz`` is appended if the name does not end in it (as NumPy does).
    kind : str
        Class name of the model.
    version : int
        Format version of this kind.
    entries : dict of str -> array_like, scalar, str, bool or None
        The model's content; ``None`` values are recorded in ``__none__``.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = check_path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: directory {path.parent} does not exist")
    arrays = {_KIND: np.array(kind), _FORMAT: np.array(int(version)),
              _LVMREF: np.array(_lvmref_version())}
    nones = []
    for key, value in entries.items():
        if key in _HEADER:
            raise ValueError(f"entry name {key!r} is reserved")
        if value is None:
            nones.append(key)
        else:
            arr = np.asarray(value)
            if arr.dtype == object:
                raise TypeError(f"entry {key!r} is not a numeric, bool or string array")
            arrays[key] = arr
    arrays[_NONE] = np.array(nones, dtype=np.str_)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


class ModelFile:
    """The entries of a model file, with typed getters whose errors name the file.

    Created by :func:`read_model`. ``get_*`` raise ``ValueError`` naming the file and the
    entry (in the model's own terms) when an entry is missing or of the wrong type.
    """

    def __init__(self, path, kind, version, entries, nones):
        self.path, self.kind, self.version = path, kind, version
        self._entries, self._nones = entries, nones

    def error(self, message: str) -> ValueError:
        """A ``ValueError`` prefixed with the file: ``"<path>: <message>"``."""
        return ValueError(f"{self.path}: {message}")

    def __contains__(self, key) -> bool:
        return key in self._entries or key in self._nones

    def keys(self):
        """Names of the stored entries (without the header and the ``None`` entries)."""
        return list(self._entries)

    def is_none(self, key) -> bool:
        return key in self._nones

    def array(self, key, *, optional=False):
        """The entry ``key`` as a numeric ndarray (``None`` if recorded as ``None`` and
        ``optional``)."""
        if key in self._nones:
            if optional:
                return None
            raise self.error(f"{key} is missing")
        if key not in self._entries:
            raise self.error(f"{key} is missing")
        a = self._entries[key]
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise self.error(f"{key} must be numeric, got dtype {a.dtype}")
        return a

    def _scalar(self, key, optional):
        a = self.array(key, optional=optional) if self._is_num(key) else self._raw(key, optional)
        if a is None:
            return None
        if a.ndim != 0:
            raise self.error(f"{key} must be a single value, got shape {a.shape}")
        return a[()]

    def _is_num(self, key):
        a = self._entries.get(key)
        return a is not None and (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_)

    def _raw(self, key, optional):
        if key in self._nones:
            if optional:
                return None
            raise self.error(f"{key} is missing")
        if key not in self._entries:
            raise self.error(f"{key} is missing")
        return self._entries[key]

    def int(self, key, *, optional=False):
        v = self._scalar(key, optional)
        if v is None:
            return None
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise self.error(f"{key} must be an integer, got {v!r}")
        return int(v)

    def float(self, key, *, optional=False):
        v = self._scalar(key, optional)
        if v is None:
            return None
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                                  np.floating)):
            raise self.error(f"{key} must be a number, got {v!r}")
        return float(v)

    def bool(self, key, *, optional=False):
        v = self._scalar(key, optional)
        if v is None:
            return None
        if not isinstance(v, (bool, np.bool_)):
            raise self.error(f"{key} must be True or False, got {v!r}")
        return bool(v)

    def str(self, key, *, optional=False):
        v = self._raw(key, optional)
        if v is None:
            return None
        if v.dtype.kind != "U" or v.ndim != 0:
            raise self.error(f"{key} must be a string")
        return str(v[()])

    def int_tuple(self, key):
        a = self.array(key)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise self.error(f"{key} must be a 1-D integer array, got {a.dtype} {a.shape}")
        return tuple(int(v) for v in a)


def read_model(path, kind: str, versions=(1,)) -> ModelFile:
    """Open a model file of ``kind`` written in one of ``versions``; see the error policy.

    Returns
    -------
    ModelFile
    """
    p = check_path(path)
    if not p.exists():
        raise FileNotFoundError(f"model file not found: {p}")
    if p.is_dir():
        raise ValueError(f"{p}: is a directory, not a model file")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if not magic:
        raise ValueError(f"{p}: the file is empty, not an lvmref model file")
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ValueError(f"{p}: not an .npz (zip) archive, so not an lvmref model file")
    try:
        with np.load(p, allow_pickle=False) as f:
            entries = {key: f[key] for key in f.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise ValueError(f"{p}: contains pickled (object) data, which lvmref never "
                             "loads; it is not an lvmref model file") from None
        raise ValueError(f"{p}: corrupted .npz archive ({exc})") from None
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, KeyError) as exc:
        raise ValueError(f"{p}: truncated or corrupted .npz archive ({exc})") from None
    if _KIND not in entries or _FORMAT not in entries:
        raise ValueError(f"{p}: not an lvmref model file (no model kind recorded)")
    got_kind = entries.pop(_KIND)
    if got_kind.dtype.kind != "U" or got_kind.ndim != 0:
        raise ValueError(f"{p}: not an lvmref model file (malformed model kind)")
    got_kind = str(got_kind[()])
    if got_kind != kind:
        raise ValueError(f"{p}: holds a {got_kind}, not a {kind}")
    version = entries.pop(_FORMAT)
    if version.ndim != 0 or not np.issubdtype(version.dtype, np.integer):
        raise ValueError(f"{p}: malformed format version")
    version = int(version)
    if version not in versions:
        known = ", ".join(str(v) for v in versions)
        raise ValueError(f"{p}: {kind} file format version {version} is not supported "
                         f"(this lvmref reads version {known}); it was written by a "
                         "newer lvmref?")
    entries.pop(_LVMREF, None)
    nones = entries.pop(_NONE, np.array([], dtype=np.str_))
    if nones.dtype.kind not in "U" or nones.ndim != 1:
        if nones.size:
            raise ValueError(f"{p}: malformed list of unset hyper-parameters")
        nones = np.array([], dtype=np.str_)
    return ModelFile(p, kind, version, entries, {str(v) for v in nones})
