"""Fixtures of the identity tests: a clean throttle."""

from collections.abc import Iterator

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    """Rate-limit counters (shared through Redis when set) must not outlive their test."""
    cache.clear()
    yield
    cache.clear()
