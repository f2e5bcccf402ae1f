"""Fixtures of the notify tests: agencies with API keys, their clients, a clean throttle."""

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache

from notify.agency_services import agency_create
from notify.models import Agency
from tests.conftest import JsonClient

_names = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    """Rate-limit counters of one test must not count in the next (agency ids repeat)."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_agency(db: None) -> Callable[..., tuple[Agency, str]]:
    """make_agency(name=None, categories=None, broadcast_all=False) -> (agency, its API key);
    the scopes default to agency_create's."""

    def make(name: str | None = None, **scopes: Any) -> tuple[Agency, str]:
        return agency_create(name=name or f"Агентлаг {next(_names)}", **scopes)

    return make


@pytest.fixture
def agency_key(make_agency: Callable[..., tuple[Agency, str]]) -> tuple[Agency, str]:
    return make_agency("Улсын бүртгэлийн ерөнхий газар")


@pytest.fixture
def agency_client(agency_key: tuple[Agency, str]) -> JsonClient:
    return JsonClient(agency_key[1])
