"""Shared pytest configuration: Hypothesis profiles and kernel warm-up.

Profiles (select with the environment variable HYPOTHESIS_PROFILE):
  dev       fast local iteration (default)
  ci        derandomized, no deadline, no example database — what .ci/run uses
  thorough  many examples, for occasional deep runs
Jitted code compiles on first call, so every profile has ``deadline=None``.
"""

import os

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
