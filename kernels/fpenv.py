"""Floating-point environment contract of lvmref (one mechanism, used by every public entry).

Contract
--------
A caller may run lvmref under ``np.errstate(all="raise")`` (common in scientific test
suites). For valid input, no lvmref function raises ``FloatingPointError``, on any CPU:

* **Underflow is benign.** A result that underflows to a subnormal or to 0 is the correctly
  rounded value (e.g. ``exp(-800) = 0``, ``log1p(s) = s`` for a subnormal ``s``), so the
  underflow flag is ignored inside lvmref. This matters because NumPy's SIMD paths differ
  in which flags they raise: on CPUs without AVX-512 (AVX2 + FMA), ``np.log1p`` raises the
  underflow flag for a subnormal argument while its AVX-512 path does not, and
  ``scipy.special.logsumexp`` itself raises there. Every public function and method runs
  its NumPy code inside :func:`benign_underflow`.
* **Overflow and invalid operations are never silently turned into wrong results.** Where a
  result genuinely overflows float64 (a KL of ``exp(1e4)``, a log-density of ``-inf``
  because the density underflows), the correctly rounded ``+-inf`` is returned and the code
  that produces it says so locally (``np.errstate(over="ignore")`` with a comment). Where
  an intermediate would overflow although the result is finite, the computation is
  rearranged so that it does not. Finite input never produces NaN.
* Numba-compiled code does not consult NumPy's error state; the kernels follow the same
  rules by construction, and the tests run every public function under
  ``np.errstate(all="raise")`` (an autouse fixture in ``tests/conftest.py``), both on the
  default SIMD paths and, in CI, with ``NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL
  AVX512_SPR"`` (NumPy's AVX2 paths).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["benign_underflow"]


def benign_underflow(obj):
    """Decorator: run a function with NumPy's underflow flag ignored (module contract).

    Applied to a class, it wraps every public method (names not starting with ``_``,
    including static and class methods) in the same way. The caller's settings for
    overflow, division by zero and invalid operations stay in force. ``np.errstate`` is
    entered per call (about 1.5 microseconds), so the decorator belongs on public entry
    points, not on inner loops.
    """
    if isinstance(obj, type):
        for name, attr in list(vars(obj).items()):
            if name.startswith("_"):
                continue
            if isinstance(attr, (staticmethod, classmethod)):
                setattr(obj, name, type(attr)(_wrap(attr.__func__)))
            elif callable(attr):
                setattr(obj, name, _wrap(attr))
        return obj
    return _wrap(obj)


def _wrap(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with np.errstate(under="ignore"):
            return func(*args, **kwargs)

    wrapper.benign_underflow = True  # marks the contract (tests/test_architecture.py)
    return wrapper
