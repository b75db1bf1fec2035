"""Benchmarks reuse the user's artifact cache: converting again would only cost minutes."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_cache():
    """Override tests/conftest.py's per-session cache with the default one."""
    yield None
