"""Hypothesis settings for the unit tests: deterministic by default, no example database on disk.

``HYPOTHESIS_PROFILE=explore`` runs the property tests with fresh random seeds and many more examples.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", derandomize=True, database=None, deadline=None)
settings.register_profile(
    "explore", max_examples=2000, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
