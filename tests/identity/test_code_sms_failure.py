"""A code whose SMS the operator refused is never answered as sent: the citizen gets
sms_failed with a retry hint, the code cannot be used, and a later code works."""

import re
from collections.abc import Iterator
from typing import Any

import pytest

from identity.models import PhoneVerification
from notify.senders.registry import sender_for
from tests.conftest import JsonClient
from tests.fakes.sms_gateway import FakeSmsGateway

pytestmark = pytest.mark.django_db(transaction=True)

NUMBER = "+97699112233"


@pytest.fixture
def gateway(sms_gateway: FakeSmsGateway, settings: Any) -> Iterator[FakeSmsGateway]:
    settings.SONOR_SMS_HTTP_URL = sms_gateway.url()
    sender_for.cache_clear()
    yield sms_gateway
    sender_for.cache_clear()


@pytest.fixture
def api_client(make_citizen: Any, make_token: Any) -> JsonClient:
    """A citizen with no number yet."""
    return JsonClient(make_token(make_citizen()))


def last_code(gateway: FakeSmsGateway) -> str:
    match = re.search(r"\b(\d{6})\b", gateway.requests[-1].query["text"])
    assert match
    return match.group(1)


@pytest.mark.parametrize(("status", "body"), [
    (400, "ERROR: Invalid destination number"),  # the number is dead
    (401, "bad password"),  # a permanent failure of ours
])
def test_a_refused_code_sms_is_an_error_and_its_code_is_void(
        gateway: FakeSmsGateway, api_client: JsonClient, status: int, body: str) -> None:
    gateway.respond(status, body)

    response = api_client.post("/api/v1/phones", {"phone": NUMBER})

    assert response.status_code == 503
    assert response.json()["code"] == "sms_failed"
    assert response.json()["extra"]["retry_after"] > 0 and response["Retry-After"]
    code = last_code(gateway)  # what the operator was asked to send, and refused
    verify = api_client.post("/api/v1/phones/verify", {"phone": NUMBER, "code": code})
    assert verify.json()["code"] == "code_invalid"
    assert api_client.get("/api/v1/me").json()["phone"] is None


def test_a_busy_operator_gives_its_retry_hint(gateway: FakeSmsGateway,
                                              api_client: JsonClient) -> None:
    gateway.respond(429, "slow down", {"Retry-After": "30"})
    response = api_client.post("/api/v1/phones", {"phone": NUMBER})
    assert (response.status_code, response.json()["code"]) == (503, "sms_failed")
    assert response.json()["extra"]["retry_after"] == 30


def test_after_a_refused_sms_the_next_code_works(gateway: FakeSmsGateway,
                                                 api_client: JsonClient) -> None:
    gateway.respond(400, "ERROR: Invalid destination number")
    assert api_client.post("/api/v1/phones", {"phone": NUMBER}).status_code == 503

    assert api_client.post("/api/v1/phones", {"phone": NUMBER}).status_code == 202
    verify = api_client.post("/api/v1/phones/verify",
                             {"phone": NUMBER, "code": last_code(gateway)})
    assert verify.status_code == 200, verify.content
    assert PhoneVerification.objects.filter(e164=NUMBER).count() == 2
