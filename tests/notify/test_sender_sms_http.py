"""The HTTP SMS sender against a local gateway (tests/fakes/sms_gateway.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import pytest
from asgiref.sync import async_to_sync

from notify.senders.base import OutboundMessage, SendStatus, retry_after_seconds
from notify.senders.registry import sender_for
from notify.senders.sms_http import HttpSmsSender, invalid_number_said
from tests.loopback import free_port

if TYPE_CHECKING:
    from tests.fakes.sms_gateway import FakeSmsGateway

# Loaded as a plugin (not imported here) so that pytest rewrites its asserts.

NUMBER = "+97688110011"
CYRILLIC = "Таны өргөдөл хүлээн авлаа. Код: 4821 & 50% +1 ?=#/ 😀"


@pytest.fixture
def make_sender() -> Iterator[Callable[..., HttpSmsSender]]:
    made: list[HttpSmsSender] = []

    def make(template: str, **kwargs: Any) -> HttpSmsSender:
        sender = HttpSmsSender(template, **kwargs)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close()


def sms(body: str, address: str = NUMBER, **kwargs: Any) -> OutboundMessage:
    return OutboundMessage(kind="sms", address=address, body=body, **kwargs)


async def test_cyrillic_text_is_url_encoded_and_arrives_exactly(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender]) -> None:
    result = await make_sender(sms_gateway.url()).send(sms(CYRILLIC))

    assert result.status == SendStatus.SENT, result.detail
    assert (result.provider_id, result.parts) == ("gw-1", 1)
    [request] = sms_gateway.requests
    assert request.method == "GET" and request.path == "/send"
    assert request.query == {"user": "sonor", "pass": "p@ss", "to": NUMBER, "text": CYRILLIC}
    assert "%D0%A2%D0%B0%D0%BD%D1%8B" in request.raw_query  # "Таны" as UTF-8
    assert "to=%2B97688110011" in request.raw_query  # the + survives form decoding


async def test_number_forms_and_other_placeholders(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender]) -> None:
    template = sms_gateway.url(
        "msisdn={to_digits}&dest={to_national}&text={text}&ref={ref}&coding={coding}"
        "&validity={validity_minutes}")
    sender = make_sender(template)

    await sender.send(sms("Sain baina uu", dedupe_key="n:42/sms", ttl_seconds=3601))
    await sender.send(sms("Сайн байна уу"))

    first, second = (request.query for request in sms_gateway.requests)
    assert first == {"user": "sonor", "pass": "p@ss", "msisdn": "97688110011",
                     "dest": "88110011", "text": "Sain baina uu", "ref": "n:42/sms",
                     "coding": "0", "validity": "61"}
    assert (second["coding"], second["validity"]) == ("2", str(96 * 60))


async def test_long_text_is_sent_once_and_counted_in_parts(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender]) -> None:
    text = "Таны иргэний үнэмлэх бэлэн боллоо. " * 4 + "Баярлалаа"  # 149 characters

    result = await make_sender(sms_gateway.url()).send(sms(text))

    assert (result.status, result.parts) == (SendStatus.SENT, 3)
    [request] = sms_gateway.requests
    assert request.query["text"] == text


@pytest.mark.parametrize(("body", "provider_id"), [
    (json.dumps({"message_id": "A1B2"}), "A1B2"),
    (json.dumps({"messageId": 981}), "981"),
    (json.dumps({"status": "ok", "data": {"id": "x-7"}}), "x-7"),
    ("0: Accepted for delivery", "0: Accepted for delivery"),  # Kannel
    ("  7729103  \n", "7729103"),
    ("<html>" + "x" * 200 + "</html>", ""),
    (json.dumps({"status": "queued"}), ""),
])
async def test_provider_id_from_the_answer(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender],
        body: str, provider_id: str) -> None:
    sms_gateway.respond(202, body)

    result = await make_sender(sms_gateway.url()).send(sms("Sain baina uu"))

    assert (result.status, result.provider_id) == (SendStatus.SENT, provider_id)


async def test_429_is_retry_after_what_the_gateway_said(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender]) -> None:
    sms_gateway.respond(429, "slow down", {"Retry-After": "30"})
    sender = make_sender(sms_gateway.url())

    result = await sender.send(sms("Sain baina uu"))

    assert result.status == SendStatus.RETRY
    assert result.retry_after == 30
    assert "429" in result.detail
    assert result.parts == 0


@pytest.mark.parametrize("code", [500, 502, 503, 504, 408])
async def test_server_errors_are_retry(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender],
        code: int) -> None:
    sms_gateway.respond(code, "upstream SMSC down")

    result = await make_sender(sms_gateway.url()).send(sms("Sain baina uu"))

    assert result.status == SendStatus.RETRY
    assert str(code) in result.detail and "upstream SMSC down" in result.detail


async def test_503_with_retry_after_date(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender]) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    sms_gateway.respond(503, "", {"Retry-After": format_datetime(later, usegmt=True)})

    result = await make_sender(sms_gateway.url()).send(sms("Sain baina uu"))

    assert result.status == SendStatus.RETRY
    assert result.retry_after is not None and 3000 < result.retry_after <= 3600


@pytest.mark.parametrize(("code", "body"), [
    (400, "missing parameter: from"),
    (400, "Invalid number of parameters"),
    (404, "Not Found"),
    (422, json.dumps({"error": "text too long"})),
    (413, "too large"),
])
async def test_client_errors_are_failed(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender],
        code: int, body: str) -> None:
    sms_gateway.respond(code, body)

    result = await make_sender(sms_gateway.url()).send(sms("Sain baina uu"))

    assert result.status == SendStatus.FAILED
    assert str(code) in result.detail


@pytest.mark.parametrize(("code", "body"), [
    (400, "ERROR: Invalid destination number"),
    (400, json.dumps({"error": "INVALID_MSISDN"})),
    (422, json.dumps({"errors": {"to": ["The phone number is invalid."]}})),
    (404, "Unknown subscriber"),
    (400, "Дугаар буруу байна"),
    (200, json.dumps({"success": False, "message": "invalid recipient"})),
])
async def test_a_refusal_naming_the_number_is_invalid_address(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender],
        code: int, body: str) -> None:
    sms_gateway.respond(code, body)

    result = await make_sender(sms_gateway.url()).send(sms("Sain baina uu"))

    assert result.status == SendStatus.INVALID_ADDRESS, result.detail


async def test_200_with_a_json_failure_is_failed(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender]) -> None:
    sms_gateway.respond(200, json.dumps({"status": "error", "message": "no credit"}))

    result = await make_sender(sms_gateway.url()).send(sms("Sain baina uu"))

    assert result.status == SendStatus.FAILED
    assert "no credit" in result.detail


async def test_bad_credentials_are_retry(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender]) -> None:
    sms_gateway.respond(401, "bad password")

    result = await make_sender(sms_gateway.url()).send(sms("Sain baina uu"))

    assert result.status == SendStatus.RETRY
    assert "credentials" in result.detail


async def test_redirect_is_failed(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender]) -> None:
    sms_gateway.respond(302, "", {"Location": "http://elsewhere.example/"})

    result = await make_sender(sms_gateway.url()).send(sms("Sain baina uu"))

    assert result.status == SendStatus.FAILED
    assert len(sms_gateway.requests) == 1


async def test_timeout_is_retry(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender]) -> None:
    sms_gateway.respond(200, "late", hang=True)

    result = await make_sender(sms_gateway.url(), timeout=0.2).send(sms("Sain baina uu"))

    assert result.status == SendStatus.RETRY
    assert "timed out" in result.detail


async def test_no_gateway_listening_is_retry(
        make_sender: Callable[..., HttpSmsSender]) -> None:
    port = free_port()  # a loopback port that nobody listens on

    result = await make_sender(f"http://127.0.0.1:{port}/send?to={{to}}&text={{text}}").send(
        sms("Sain baina uu"))

    assert result.status == SendStatus.RETRY
    assert "unreachable" in result.detail


async def test_nothing_is_sent_for_a_bad_number_an_empty_body_or_an_expired_message(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender]) -> None:
    sender = make_sender(sms_gateway.url())

    assert (await sender.send(sms("Hi", "88110011"))).status == SendStatus.INVALID_ADDRESS
    assert (await sender.send(sms(""))).status == SendStatus.FAILED
    assert (await sender.send(sms("Hi", ttl_seconds=-5))).status == SendStatus.FAILED
    assert sms_gateway.requests == []


async def test_registry_picks_the_http_gateway_from_settings(
        sms_gateway: FakeSmsGateway, settings: Any) -> None:
    settings.SONOR_SMPP_URL = ""
    settings.SONOR_SMS_HTTP_URL = sms_gateway.url()
    sender_for.cache_clear()
    try:
        sender = sender_for("sms")
        assert isinstance(sender, HttpSmsSender)
        result = await sender.send(sms("Таны код: 123456"))
        sender.close()
    finally:
        sender_for.cache_clear()

    assert result.status == SendStatus.SENT
    assert [r.query["text"] for r in sms_gateway.requests] == ["Таны код: 123456"]


def test_sync_callers_in_new_event_loops_share_one_connection(
        sms_gateway: FakeSmsGateway, make_sender: Callable[..., HttpSmsSender]) -> None:
    # The delivery worker calls async_to_sync(sender.send): a new event loop each time.
    sender = make_sender(sms_gateway.url())

    results = [async_to_sync(sender.send)(sms(f"Мэдэгдэл {n}")) for n in range(3)]

    assert [r.status for r in results] == [SendStatus.SENT] * 3
    assert [r.query["text"] for r in sms_gateway.requests] == [
        "Мэдэгдэл 0", "Мэдэгдэл 1", "Мэдэгдэл 2"]
    assert len({r.client_port for r in sms_gateway.requests}) == 1


def test_template_is_checked() -> None:
    for bad in ("http://gw/send?to={to}",  # no text
                "http://gw/send?text={text}",  # no number
                "http://gw/send?to={to}&text={text}&from={sender}",  # unknown placeholder
                "ftp://gw/send?to={to}&text={text}"):
        with pytest.raises(ValueError):
            HttpSmsSender.from_url(bad)
    HttpSmsSender.from_url("https://gw/{to_national}/send?msg={text}")


def test_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now=now) == 120
    assert retry_after_seconds("Wed, 01 Jan 2025 12:01:00 GMT", now=now) == 60
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds(None) is None


def test_invalid_number_wording() -> None:
    assert invalid_number_said("Invalid 'to' number")
    assert invalid_number_said("destination address is invalid")
    assert not invalid_number_said("invalid number of parameters")
    assert not invalid_number_said("invalid API key")
