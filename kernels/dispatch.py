"""Choosing between a Numba kernel and its NumPy twin (the one dispatch mechanism).

Naming rule, in every kernels module: ``foo`` is the public dispatcher (validating where
it is public API), ``foo_nb`` the jitted kernel (``foo_nb_serial`` its serial build when a
parallel one exists), ``foo_np`` its plain-NumPy twin, side by side in the same module.
Every dispatcher calls :func:`pick` with the names spelt out, so ``grep foo_nb`` finds
every use.

* Under ``NUMBA_DISABLE_JIT=1`` the twin runs (the readable reference; the tests compare
  kernel and twin).
* Otherwise the jitted kernel; where a parallel build exists, it runs only for problems
  of at least ``PARALLEL_MIN_WORK`` multiply-adds and when Numba has more than one
  thread: thread start-up and OpenMP spin-waiting (which competes with BLAS threads) cost
  more than they save on small problems. Parallel kernels split rows into fixed blocks
  and reduce each block serially, so results do not depend on the thread count.

Shared machines: Numba's OpenMP layer spin-waits between parallel regions by default.
On an oversubscribed machine this made one parallel kernel take 1.5 s instead of 8 ms
(measured on the 2-core development machine while other jobs ran); set
``OMP_WAIT_POLICY=passive`` (before the process starts) or use one thread there.
"""

from __future__ import annotations

import types

import numba
from numba import njit

__all__ = ["PARALLEL_MIN_WORK", "jit_enabled", "pick", "parallel_and_serial"]

#: Below this many multiply-adds (elements for log-sum-exp) the serial build runs.
PARALLEL_MIN_WORK = 1 << 18


def jit_enabled() -> bool:
    """Whether Numba compiles (False under ``NUMBA_DISABLE_JIT=1``)."""
    return not numba.config.DISABLE_JIT


def pick(kernel_nb, twin_np, *, serial_nb=None, work=0):
    """The implementation to run: ``twin_np`` without JIT, else the kernel.

    Parameters
    ----------
    kernel_nb : callable
        The jitted kernel (the parallel build if ``serial_nb`` is given).
    twin_np : callable
        Its NumPy twin.
    serial_nb : callable, optional
        Serial build of ``kernel_nb``; used below ``PARALLEL_MIN_WORK`` or with one
        Numba thread.
    work : int
        Problem size in multiply-adds (only used with ``serial_nb``).
    """
    if not jit_enabled():
        return twin_np
    if serial_nb is not None and (work < PARALLEL_MIN_WORK or numba.get_num_threads() < 2):
        return serial_nb
    return kernel_nb


def _renamed(f, suffix):
    """Copy of function ``f`` under a new name (so Numba caches the two builds apart)."""
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + suffix, f.__defaults__,
                           f.__closure__)
    g.__qualname__ = f.__qualname__ + suffix
    g.__doc__ = f.__doc__
    return g


def parallel_and_serial(f):
    """(parallel, serial) Numba builds of one kernel body written with ``prange``.

    ``prange`` runs as ``range`` in the serial build; kernels that reduce fixed row blocks
    serially give identical results from both builds.
    """
    return (
        njit(cache=True, parallel=True)(_renamed(f, "_par")),
        njit(cache=True)(_renamed(f, "_ser")),
    )
