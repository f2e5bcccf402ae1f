"""Both OpenAPI documents, as the server serves them, checked against the server by
Schemathesis: every check (status codes, content types, response schemas, headers, valid
requests accepted, invalid ones refused, authentication not ignored) over requests it
generates from each operation's schema, valid and invalid. In process (Django's WSGI
handler), so that each operation runs in the test's own database transaction.

The count of requests is bounded (max-examples per phase), so the run takes about a minute."""

from collections.abc import Callable, Iterator
from datetime import date

import pytest
import schemathesis
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from identity.models import User
from notify.agency_services import agency_create

# Operations whose schema-valid requests the server may still refuse, because the rule is a
# secret, the data or the calendar, which no schema can state: a code the SMS carried, a
# cursor the server did not issue, an agency id that names no agency (400), maintenance
# announced fewer than two working days ahead (422).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]
CONFIG = schemathesis.Config.from_dict({
    "generation": {"mode": "all", "max-examples": 10, "deterministic": True},
    "phases": {"stateful": {"enabled": False}},
    "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
    "operations": [
        {"include-path-regex": "/(phones/verify|account/close|inbox|preferences)$",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}}},
        # 422 maintenance_notice_too_short
        {"include-path-regex": "/broadcasts$",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}}},
    ],
})

# The strings the documents describe by format (see chatserver/core/api_schemas.py and the
# quiet hours in notify/preferences_api.py).
schemathesis.openapi.format("local-time", st.times().map(lambda t: f"{t:%H:%M}"))
schemathesis.openapi.format("phone", st.one_of(
    st.from_regex(r"\+976(88|99|91|95|94|80|85)[0-9]{6}", fullmatch=True),
    st.from_regex(r"(88|99|91)[0-9]{6}", fullmatch=True)))
schemathesis.openapi.format("register-number", st.builds(
    lambda letters, born, tail: f"{letters}{born:%y}"
                                f"{born.month + (20 if born.year >= 2000 else 0):02d}"
                                f"{born:%d}{tail:02d}",
    st.sampled_from(["УБ", "ТА", "ӨҮ", "АЯ"]),
    st.dates(min_value=date(1930, 1, 1), max_value=date(2020, 12, 31)),
    st.integers(min_value=0, max_value=99)))
APP = WSGIHandler()
citizen_api = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", APP, config=CONFIG)
agency_api = schemathesis.openapi.from_wsgi("/api/agency/v1/openapi.json", APP, config=CONFIG)


@pytest.fixture(autouse=True)
def _in_the_test_transaction() -> Iterator[None]:
    """Requests run in the test's transaction, as Django's test client runs them: the
    handler must not close the connection after each one. Throttle counters start empty."""
    cache.clear()
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
    cache.clear()


@pytest.fixture
def citizen_headers(citizen: User, make_token: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(citizen)}"}


@pytest.fixture
def agency_headers(db: None) -> dict[str, str]:
    _, key = agency_create(name="Контракт шалгагч", broadcast_all=True)
    return {"Authorization": f"Bearer {key}"}


# The fixtures (a citizen's session, an agency's key) serve every request of an operation.
SHARED_FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@citizen_api.parametrize()
@SHARED_FIXTURES
def test_the_citizen_api_keeps_its_openapi_contract(
        case: schemathesis.Case, citizen_headers: dict[str, str]) -> None:
    case.call_and_validate(headers=citizen_headers)


@agency_api.parametrize()
@SHARED_FIXTURES
def test_the_agency_api_keeps_its_openapi_contract(
        case: schemathesis.Case, agency_headers: dict[str, str]) -> None:
    case.call_and_validate(headers=agency_headers)


@pytest.mark.parametrize("method, path, status", [
    ("get", "/api/v1/no-such-thing", 404),
    ("post", "/api/v1/rooms/not-a-number/messages", 404),
    ("delete", "/api/v1/sessions/99999999999999999999999", 404),  # past a 64-bit id
    ("get", "/api/agency/v1/no/such/thing", 404),
    ("get", "/api/v1", 404),
    ("put", "/api/v1/me", 405),
    ("delete", "/api/agency/v1/notifications", 405),
])
def test_every_path_under_the_api_prefixes_answers_json(
        client: Client, citizen_headers: dict[str, str], method: str, path: str,
        status: int) -> None:
    response = getattr(client, method)(path, headers=citizen_headers)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"code", "message", "extra"}
    if status == 405:
        assert response.json()["code"] == "method_not_allowed"
        assert response["Allow"]
