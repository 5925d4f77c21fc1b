"""Shared pytest configuration: Hypothesis profiles and kernel warm-up.

Profiles (select with the environment variable HYPOTHESIS_PROFILE):
  dev       fast local iteration (default)
  ci        derandomized, no deadline, no example database — what .ci/run uses
  thorough  many examples, for occasional deep runs
Jitted code compiles on first call, so every profile has ``deadline=None``.

Every test runs under ``np.errstate(all="raise")``: lvmref promises that valid input never
raises ``FloatingPointError`` (the contract in :mod:`lvmref.kernels.fpenv`), so the whole
suite checks it. A test's own reference computation that underflows benignly (SciPy,
scikit-learn, a textbook formula) is wrapped in ``np.errstate(under="ignore")``.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def _floating_point_errors_raise():
    """Turn every floating-point flag into an error inside lvmref (see the module docstring)."""
    with np.errstate(all="raise"):
        yield

