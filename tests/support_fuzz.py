"""The engine of tests/test_api_fuzz.py: call a public function with one argument replaced by
bad or extreme input and classify what happens.

A *case* is a public callable plus a valid call (argument name -> value) and, per
argument, its *kind*; the kind says which replacements to try. Each call ends in one of

* ``clear``    -- a ``ValueError`` or ``TypeError`` whose message names the argument;
* ``result``   -- a return value, accepted only where the replacement may be valid input
                  (float32/int/bool/list data, extreme but finite values, NaN where the
                  function documents propagation) and only if the inputs were not mutated
                  and finite input gave no NaN;
* a failure    -- any other exception type, an error that does not name the argument, a
                  NaN from finite input, a mutated input, or a bad value silently accepted.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# ----------------------------------------------------------------------------- mutations


def _with(value, x):
    a = np.array(value, dtype=float, copy=True)
    if a.size:
        a.flat[a.size // 2] = x
    return a


def array_mutations(v):
    """(label, replacement, may_accept) for a float array argument ``v``."""
    v = np.asarray(v, dtype=float)
    out = [
        ("nan", _with(v, np.nan), False),
        ("inf", _with(v, np.inf), False),
        ("-inf", _with(v, -np.inf), False),
        ("ndim+1", v[None], False),
        ("ndim-1", v.reshape(-1)[:1].reshape(()) if v.ndim == 1 else v[0], False),
        ("shape", np.concatenate([v, v[..., :1]], axis=-1) if v.ndim else v, False),
        ("empty", v[:0] if v.ndim else v, False),
        ("object", np.array(v.tolist() + [None] if v.ndim == 1 else [None], dtype=object),
         False),
        ("string", "abc", False),
        ("complex", v + 1j, False),
        ("huge", np.full_like(v, 1e308), True),
        ("-huge", np.full_like(v, -1e308), True),
        ("float32", v.astype(np.float32), True),
        ("list", v.tolist(), True),
        ("none", None, False),
    ]
    return [(lab, rep, ok) for lab, rep, ok in out if not (lab == "shape" and v.ndim == 0)]


def binary_mutations(v):
    v = np.asarray(v, dtype=float)
    return array_mutations(v) + [("non-binary", np.full_like(v, 0.5), False),
                                 ("bool", v.astype(bool), True),
                                 ("int", v.astype(np.int64), True)]


COUNT = [("zero", 0, False), ("negative", -1, False), ("float", 2.5, False),
         ("bool", True, False), ("string", "3", False), ("none", None, False),
         ("numpy-int", np.int64(2), True)]
POSITIVE_FLOAT = [("zero", 0.0, False), ("negative", -1.0, False), ("nan", np.nan, False),
                  ("inf", np.inf, False), ("string", "1", False), ("bool", True, False),
                  ("none", None, False), ("tiny", 1e-300, True), ("huge", 1e300, True)]
NONNEG_FLOAT = [lab for lab in POSITIVE_FLOAT if lab[0] != "zero"] + [("zero", 0.0, True)]
RNG = [("string", "abc", False), ("float", 1.5, False), ("negative", -1, False),
       ("list", [1, 2], False), ("bool", True, False), ("legacy", np.random.RandomState(0),
                                                        False),
       ("int", 0, True), ("generator", np.random.default_rng(0), True)]
FLAG = [("string", "no", False), ("int", 1, False), ("none", None, False),
        ("numpy-bool", np.bool_(True), True)]


def choice_mutations(valid):
    return [("unknown", "banana", False), ("none", None, False), ("int", 3, False),
            ("list", [valid], False)]


def params_mutations(p):
    """Mutations of a parameter dict ``p`` (name -> array)."""
    keys = list(p)
    k0 = keys[0]
    out = [("not-a-dict", list(p.values()), False),
           ("missing", {k: v for k, v in p.items() if k != k0}, False),
           ("extra", {**p, "bogus": np.zeros(1)}, False),
           ("nan-entry", {**p, k0: _with(p[k0], np.nan)}, False),
           ("inf-entry", {**p, k0: _with(p[k0], np.inf)}, False),
           ("mis-shaped", {**p, k0: np.concatenate([np.atleast_1d(p[k0]).ravel(), [0.0]])},
            False),
           ("string-entry", {**p, k0: "abc"}, False),
           ("complex-entry", {**p, k0: np.asarray(p[k0]) + 1j}, False)]
    return out


def uniform_mutations(v):
    """Uniforms in [0, 1) (the noise ``u`` of the Helmholtz samplers)."""
    return array_mutations(v) + [("one", _with(v, 1.0), False),
                                 ("negative", _with(v, -0.25), False),
                                 ("zero", _with(v, 0.0), True)]


def sizes_mutations(v):
    """A tuple of positive ints (layer sizes, hidden widths) ``v``, non-empty."""
    v = tuple(v)
    return [("zero-entry", (*v[:-1], 0), False), ("negative-entry", (*v[:-1], -2), False),
            ("float-entry", (*v[:-1], 2.5), False), ("bool-entry", (*v[:-1], True), False),
            ("string", "abc", False), ("int", 3, False), ("none", None, False),
            ("nested", (v,), False), ("empty", (), False),
            ("list", list(v), True), ("numpy", np.array(v), True)]


INSTANCE = [("none", None, False), ("string", "abc", False), ("int", 3, False),
            ("tuple", (2, 5), False), ("dict", {}, False)]


def path_mutations(v):
    """A file path ``v``: wrong types, an empty name, a directory that does not exist
    (``FileNotFoundError`` is the documented outcome there: list it in ``raises``), and the
    existing directory ``v`` lives in."""
    from pathlib import Path

    p = Path(v)
    return [("none", None, False), ("int", 3, False), ("list", [str(p)], False),
            ("empty", "", False), ("missing-dir", p.parent / "no-such-dir" / p.name, False),
            ("directory", p.parent, False), ("str", str(p), True)]


PATTERNS = [("string", "vae.*", False), ("int-entry", [3], False), ("int", 3, False),
            ("no-match", ["no-such-case*"], False), ("tuple", ("*",), True)]

KINDS = {
    "array": array_mutations,
    "binary": binary_mutations,
    "count": lambda v: COUNT,
    "positive": lambda v: POSITIVE_FLOAT,
    "nonneg": lambda v: NONNEG_FLOAT,
    "rng": lambda v: RNG,
    "flag": lambda v: FLAG,
    "params": params_mutations,
    "uniform": uniform_mutations,
    "sizes": sizes_mutations,
    "instance": lambda v: INSTANCE,
    "path": path_mutations,
    "patterns": lambda v: PATTERNS,  # shell patterns of case names (lvmref.conformance)
}


@dataclass
class Case:
    """One public callable, a valid call, and what to mutate.

    ``kinds`` maps argument names to a key of ``KINDS`` or ``("choice", valid)``; ``accept``
    lists extra mutation labels after which a returned result is fine for this case (e.g.
    the kernels propagate NaN); ``aliases`` are other words an error may use to name an
    argument (e.g. ``"params['enc.W0']"`` names ``params``).
    """

    name: str
    fn: object
    args: dict
    kinds: dict
    accept: dict = field(default_factory=dict)
    aliases: dict = field(default_factory=dict)
    positional: tuple = ()
    raises: tuple = ()  # exceptions that are the designed outcome (e.g. AssertionError)


def _names_arg(msg, names):
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", msg)
               for n in names)


def _has_nan(obj, seen=None):
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind in "fc" and bool(np.isnan(obj).any())
    if isinstance(obj, float):
        return obj != obj
    if isinstance(obj, dict):
        return any(_has_nan(v) for v in obj.values())
    if isinstance(obj, (tuple, list)):
        return any(_has_nan(v) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return any(_has_nan(getattr(obj, f)) for f in obj.__dataclass_fields__
                   if f not in ("stderr",))  # an undefined standard error is nan by rule
    return False


def _finite_input(value):
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return True
    return bool(np.all(np.isfinite(a)))


def _snapshot(args):
    return {k: copy.deepcopy(v) for k, v in args.items()}


def _comparable(v):
    """Data the callee must leave unchanged: arrays, numbers, strings, containers of them
    (not Generators, which are consumed by design, nor model objects or callables)."""
    if isinstance(v, (np.ndarray, int, float, str, bytes, np.generic)) or v is None:
        return True
    if isinstance(v, (list, tuple)):
        return all(_comparable(x) for x in v)
    if isinstance(v, dict):
        return all(_comparable(x) for x in v.values())
    return False


def _equal(a, b):
    if not (_comparable(a) and _comparable(b)):
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
        except TypeError:
            return np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b) or (a != a and b != b)
    except Exception:  # noqa: BLE001 - objects without a usable ==
        return True


def call(case, args):
    pos = [args[k] for k in case.positional]
    kw = {k: v for k, v in args.items() if k not in case.positional}
    return case.fn(*pos, **kw)


def run_case(case, counts: Counter, failures: list):
    """Call ``case`` once as given (it must succeed) and once per mutation."""
    base = call(case, _snapshot(case.args))
    try:
        sig = inspect.signature(case.fn).parameters
    except (TypeError, ValueError):
        sig = {}
    optional_none = {k for k, p in sig.items() if p.default is None}
    if _has_nan(base) and all(_finite_input(v) for v in case.args.values()):
        failures.append(f"{case.name}: the valid call returned NaN")
    for arg, kind in case.kinds.items():
        if isinstance(kind, tuple) and kind[0] == "choice":
            muts = choice_mutations(kind[1])
        else:
            muts = KINDS[kind](case.args[arg])
        names = (arg,) + tuple(case.aliases.get(arg, ()))
        for label, rep, may_accept in muts:
            may_accept = (may_accept or label in case.accept.get(arg, ())
                          or (label == "none" and arg in optional_none))
            args = _snapshot(case.args)
            args[arg] = rep
            before = _snapshot(args)
            counts["calls"] += 1
            where = f"{case.name}({arg}={label})"
            try:
                out = call(case, args)
            except case.raises:
                counts["result"] += 1
                continue
            except (ValueError, TypeError) as exc:
                if _names_arg(str(exc), names):
                    counts["clear"] += 1
                else:
                    counts["unclear"] += 1
                    failures.append(f"{where}: {type(exc).__name__} not naming {arg!r}: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - the point is to catch the others
                counts["other"] += 1
                failures.append(f"{where}: {type(exc).__name__}: {exc}")
                continue
            if not may_accept:
                counts["accepted"] += 1
                failures.append(f"{where}: accepted silently")
                continue
            if not all(_equal(before[k], args[k]) for k in args):
                counts["mutated"] += 1
                failures.append(f"{where}: an input was mutated")
                continue
            if _has_nan(out) and _finite_input(rep) and all(
                    _finite_input(v) for v in case.args.values()):
                counts["nan"] += 1
                failures.append(f"{where}: NaN from finite input")
                continue
            counts["result"] += 1
