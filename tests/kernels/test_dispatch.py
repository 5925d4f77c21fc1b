"""lvmref.kernels.dispatch: the one rule for choosing a kernel, its serial build or its twin."""

import numba
import numpy as np
import pytest
from numba import prange

from lvmref.kernels import dispatch
from lvmref.kernels.dispatch import PARALLEL_MIN_WORK, parallel_and_serial, pick


def kernel():
    return "kernel"


def serial():
    return "serial"


def twin():
    return "twin"


def test_pick_follows_the_rule(monkeypatch):
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    assert pick(kernel, twin) is kernel
    assert pick(kernel, twin, serial_nb=serial, work=PARALLEL_MIN_WORK) is kernel
    assert pick(kernel, twin, serial_nb=serial, work=PARALLEL_MIN_WORK - 1) is serial
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)
    assert pick(kernel, twin, serial_nb=serial, work=10 * PARALLEL_MIN_WORK) is serial
    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    assert not dispatch.jit_enabled()
    assert pick(kernel, twin, serial_nb=serial, work=10 * PARALLEL_MIN_WORK) is twin


def _blocked_sums(a):
    """Row sums of a (n, m) by blocks of rows in parallel: each row serially."""
    n, m = a.shape
    out = np.empty(n)
    for i in prange(n):
        s = 0.0
        for j in range(m):
            s += a[i, j]
        out[i] = s
    return out


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="compares two Numba builds")
def test_parallel_and_serial_builds_agree_bitwise():
    par, ser = parallel_and_serial(_blocked_sums)
    a = np.random.default_rng(0).normal(size=(3000, 17))
    np.testing.assert_array_equal(par(a), ser(a))
    assert par.py_func.__name__ == "_blocked_sums_par"
    assert ser.py_func.__name__ == "_blocked_sums_ser"
