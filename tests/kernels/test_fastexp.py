"""lvmref.kernels.fastexp: exp_nonpos_nb against long double, its bound and special values."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from support import (
    C_EXP_OURS,
    HAVE_LONGDOUBLE,
    LD_EPS,
    U,
)

from lvmref.kernels import fastexp as F

pytestmark = pytest.mark.skipif(
    numba.config.DISABLE_JIT,
    reason="tests the jitted kernels; the NUMBA_DISABLE_JIT=1 path is tested in a subprocess",
)


@pytest.mark.skipif(not HAVE_LONGDOUBLE, reason="needs an extended-precision long double")
def test_exp_nonpos_accuracy():
    """Relative error <= 2.35 u (bound derived in _jit.py section 1) against long double.

    The reference itself is within LD_EPS relative, so the check allows 2.35 u + 2 LD_EPS.
    Points: uniform on [-708, 0], dense near 0, and at the range-reduction boundaries
    (k + 1/2) ln 2 where |r| is largest. Subnormal results get the one final rounding
    (<= 2**-1075 absolute) on top.
    """
    rng = np.random.default_rng(0)
    k = np.arange(0, 1021)
    edges = ((k + 0.5) * np.log(2.0))[:, None] + np.array([-1e-12, 0.0, 1e-12])[None, :]
    t = np.concatenate(
        [
            -rng.uniform(0, 708.3, 400_000),
            -rng.uniform(0, 1, 100_000),
            -rng.uniform(0, 1e-8, 10_000),
            -edges.ravel(),
            [-0.0, 0.0, -5e-324, -1e-300],
        ]
    )
    t = t[t >= -708.3]  # results stay normal
    got = F.exp_nonpos_array_nb(t).astype(np.longdouble)
    ref = np.exp(t.astype(np.longdouble))
    rel = np.abs(got - ref) / ref
    assert float(rel.max()) <= C_EXP_OURS * U + 2 * LD_EPS
    # subnormal range: relative bound plus one rounding at 2**-1075
    ts = -rng.uniform(708.4, 745.1, 50_000)
    got = F.exp_nonpos_array_nb(ts).astype(np.longdouble)
    ref = np.exp(ts.astype(np.longdouble))
    err = np.abs(got - ref)
    assert bool(np.all(err <= C_EXP_OURS * U * ref + np.longdouble(2.0) ** -1075))


def test_exp_nonpos_special_values():
    t = np.array([0.0, -0.0, -np.inf, np.nan, -746.0, -800.0, -1e4, -1e308, -745.0])
    got = F.exp_nonpos_array_nb(t)
    assert got[0] == 1.0 and got[1] == 1.0
    assert got[2] == 0.0
    assert np.isnan(got[3])
    assert np.all(got[4:8] == 0.0)
    with np.errstate(under="ignore"):
        ref = np.exp(-745.0)
    assert got[8] == ref == 5e-324  # smallest subnormal, rounded like libm
