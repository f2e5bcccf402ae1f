"""The FCM push sender against a local FCM v1 endpoint and OAuth2 token endpoint.

The sender is built by the registry from settings, as the pipeline builds it; every test runs
under `loopback_only`, so a request that tries to leave the machine fails the test.
"""

import asyncio
import email.utils
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from firebase_admin import messaging  # type: ignore[import-untyped]

from notify.senders.base import OutboundMessage, SendStatus, retry_after_seconds, send_many
from notify.senders.fcm import CHUNK_SIZE, FcmSender, fcm_url_template
from notify.senders.registry import sender_for
from tests.fakes.fcm import FakeFcm, FcmError, invalid_argument, platform_error
from tests.loopback import free_port

pytestmark = pytest.mark.usefixtures("loopback_only")

GOOGLE_FCM_URL = "https://fcm.googleapis.com/v1/projects/{0}/messages:send"


@pytest.fixture
def make_sender(fcm_server: FakeFcm, settings) -> Iterator[Callable[..., FcmSender]]:
    """make_sender(fcm_url=...) -> the registry's push sender for these settings."""
    created: list[FcmSender] = []

    def make(fcm_url: str | None = None) -> FcmSender:
        settings.SONOR_FCM_CREDENTIALS = str(fcm_server.credentials_path)
        settings.SONOR_FCM_URL = fcm_server.send_url if fcm_url is None else fcm_url
        sender_for.cache_clear()
        sender = sender_for("push")
        assert isinstance(sender, FcmSender)
        created.append(sender)
        return sender

    yield make
    sender_for.cache_clear()
    for sender in created:
        sender.close()


@pytest.fixture
def sender(make_sender: Callable[..., FcmSender]) -> FcmSender:
    return make_sender()


def push(address: str = "device-token-1", **fields: object) -> OutboundMessage:
    values: dict[str, object] = {"kind": "push", "address": address, "title": "Өргөдөл",
                                 "body": "Таны өргөдлийг хүлээн авлаа", "category": "petition"}
    values.update(fields)
    return OutboundMessage(**values)  # type: ignore[arg-type]


async def test_push_arrives_with_notification_data_and_options(
    sender: FcmSender, fcm_server: FakeFcm,
) -> None:
    message = push(
        title="Шинэ нэвтрэлт", body="Таны бүртгэлд шинэ төхөөрөмжөөс нэвтэрлээ",
        category="security", link="https://e-mongolia.mn/inbox/42",
        data={"notification_id": "42", "seq": "7"}, collapse_key="inbox-42",
        ttl_seconds=3600,
    )
    before = int(time.time())
    result = await sender.send(message)
    after = int(time.time())

    assert result.status == SendStatus.SENT
    [sent] = fcm_server.messages
    assert result.provider_id == fcm_server.names[0]
    assert result.provider_id.startswith("projects/sonor-test/messages/")
    assert sent["token"] == "device-token-1"
    assert sent["notification"] == {"title": "Шинэ нэвтрэлт",
                                    "body": "Таны бүртгэлд шинэ төхөөрөмжөөс нэвтэрлээ"}
    assert sent["data"] == {"notification_id": "42", "seq": "7", "category": "security",
                            "link": "https://e-mongolia.mn/inbox/42"}
    assert sent["android"] == {"priority": "high", "collapse_key": "inbox-42", "ttl": "3600s",
                               "notification": {"tag": "inbox-42"}}
    headers = sent["apns"]["headers"]
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "inbox-42"
    assert before + 3600 <= int(headers["apns-expiration"]) <= after + 3600
    assert set(sent) == {"token", "notification", "data", "android", "apns"}


async def test_ordinary_category_is_normal_priority_and_long_values_fit(
    sender: FcmSender, fcm_server: FakeFcm,
) -> None:
    long_key = "broadcast-" + "ё" * 40  # 90 bytes: too long for apns-collapse-id
    result = await sender.send(push(title="", body="ү" * 3000, category="service_request",
                                    collapse_key=long_key, ttl_seconds=0))

    assert result.status == SendStatus.SENT
    [sent] = fcm_server.messages
    assert sent["notification"] == {"body": "ү" * 999 + "…"}
    assert sent["data"] == {"category": "service_request"}
    assert sent["android"]["priority"] == "normal"
    assert sent["android"]["collapse_key"] == long_key
    assert sent["android"]["ttl"] == "0s"
    headers = sent["apns"]["headers"]
    assert headers["apns-priority"] == "5"
    assert headers["apns-expiration"] == "0"  # try once, do not store
    assert len(headers["apns-collapse-id"].encode()) <= 64


async def test_without_ttl_or_collapse_key_the_options_are_left_out(
    sender: FcmSender, fcm_server: FakeFcm,
) -> None:
    await sender.send(push(category="payment"))

    [sent] = fcm_server.messages
    assert sent["android"] == {"priority": "normal"}
    assert sent["apns"] == {"headers": {"apns-priority": "5"}}


ERROR_CASES = [
    ("UNREGISTERED", SendStatus.INVALID_ADDRESS, None, "UNREGISTERED"),
    ("INVALID_ARGUMENT", SendStatus.INVALID_ADDRESS, None, "not a valid FCM registration token"),
    # The same complaint with no field violation: recognised by FCM's wording.
    (invalid_argument("The registration token is not a valid FCM registration token"),
     SendStatus.INVALID_ADDRESS, None, "registration token"),
    # A 400 about something else: permanent for this message, the token stays.
    (invalid_argument("Invalid value at 'message.android.ttl'", "message.android.ttl"),
     SendStatus.FAILED, None, "message.android.ttl"),
    ("QUOTA_EXCEEDED", SendStatus.RETRY, 30.0, "QUOTA_EXCEEDED"),
    ("UNAVAILABLE", SendStatus.RETRY, None, "UNAVAILABLE"),
    ("INTERNAL", SendStatus.RETRY, None, "INTERNAL"),
    ("SENDER_ID_MISMATCH", SendStatus.FAILED, None, "SENDER_ID_MISMATCH"),
    ("THIRD_PARTY_AUTH_ERROR", SendStatus.FAILED, None, "THIRD_PARTY_AUTH_ERROR"),
    # Without an FCM error code: our credentials or permissions (an operator fixes them and
    # the message can still go), an unknown entity, a gateway error.
    (platform_error(403, "PERMISSION_DENIED",
                    "Permission 'cloudmessaging.messages.create' denied on resource"),
     SendStatus.RETRY, None, "403 PERMISSION_DENIED"),
    (platform_error(404, "NOT_FOUND", "Requested entity was not found."),
     SendStatus.FAILED, None, "404 NOT_FOUND"),
    (platform_error(502, "UNKNOWN", "Bad Gateway"), SendStatus.RETRY, None, "502"),
]


@pytest.mark.parametrize(
    ("error", "status", "retry_after", "detail"), ERROR_CASES,
    ids=[case[0] if isinstance(case[0], str)
         else f"{case[0].http_status}-{case[1]}"  # type: ignore[attr-defined]
         for case in ERROR_CASES],
)
async def test_fcm_errors_map_to_send_status(
    sender: FcmSender, fcm_server: FakeFcm,
    error: str | FcmError, status: SendStatus, retry_after: float | None, detail: str,
) -> None:
    fcm_server.fail("device-token-1", error)

    result = await sender.send(push())

    assert result.status == status
    assert result.retry_after == retry_after
    assert detail in result.detail
    assert result.provider_id == ""
    assert fcm_server.messages == []
    if error == "THIRD_PARTY_AUTH_ERROR":
        # A 401 makes google-auth fetch a new token and resend, twice, before giving up.
        assert fcm_server.requests_by_token["device-token-1"] == 3
        assert fcm_server.token_requests == 3
    else:
        # No retries inside the library (a 503 or 500 would be sent five times): the
        # pipeline schedules the retry.
        assert fcm_server.requests_by_token["device-token-1"] == 1


async def test_retry_after_of_unavailable_and_as_http_date(
    sender: FcmSender, fcm_server: FakeFcm,
) -> None:
    fcm_server.fail("unavailable", "UNAVAILABLE", retry_after="120")
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    fcm_server.fail("quota", "QUOTA_EXCEEDED", retry_after=in_a_minute)

    unavailable, quota = await sender.send_many([push("unavailable"), push("quota")])

    assert (unavailable.status, unavailable.retry_after) == (SendStatus.RETRY, 120.0)
    assert quota.status == SendStatus.RETRY
    assert quota.retry_after is not None and 55 <= quota.retry_after <= 61


def test_parse_retry_after() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None


async def test_network_error_is_retry(
    make_sender: Callable[..., FcmSender], fcm_server: FakeFcm,
) -> None:
    closed_port = free_port()  # a loopback port that nobody listens on
    sender = make_sender(f"http://127.0.0.1:{closed_port}/v1/projects/{{project_id}}"
                         "/messages:send")

    results = await sender.send_many([push("a"), push("b")])

    assert [result.status for result in results] == [SendStatus.RETRY, SendStatus.RETRY]
    assert fcm_server.token_requests == 1  # the token came; the send could not go


async def test_refused_oauth_grant_is_retry(
    sender: FcmSender, fcm_server: FakeFcm,
) -> None:
    fcm_server.token_failure = (400, {"error": "invalid_grant",
                                      "error_description": "Invalid JWT Signature."})

    result = await sender.send(push())

    assert result.status == SendStatus.RETRY
    assert "invalid_grant" in result.detail
    assert fcm_server.requests_by_token == Counter()


async def test_empty_token_is_an_invalid_address_without_a_request(
    sender: FcmSender, fcm_server: FakeFcm,
) -> None:
    empty, good = await sender.send_many([push(""), push("device-token-2")])

    assert empty.status == SendStatus.INVALID_ADDRESS
    assert good.status == SendStatus.SENT
    assert fcm_server.accepted_tokens() == Counter({"device-token-2": 1})


async def test_send_many_goes_in_chunks_of_500_and_each_message_arrives_once(
    sender: FcmSender, fcm_server: FakeFcm,
) -> None:
    tokens = [f"token-{index:04d}" for index in range(1100)]
    messages = [push(token, body=f"Төлбөр {index}", category="payment",
                     data={"n": str(index)}) for index, token in enumerate(tokens)]
    fcm_server.fail("token-0007", "UNREGISTERED")
    fcm_server.fail("token-0777", "QUOTA_EXCEEDED")
    fcm_server.hold()
    task = asyncio.create_task(send_many(sender, messages))  # the pipeline's entry point

    arrived = 0
    for chunk in (CHUNK_SIZE, CHUNK_SIZE, 100):
        arrived += chunk
        assert await asyncio.to_thread(fcm_server.wait_arrivals, arrived) == arrived
        await asyncio.sleep(0.3)
        # The whole chunk is held at the fake, and nothing of the next one has come.
        assert (fcm_server.arrivals, fcm_server.in_flight) == (arrived, chunk)
        fcm_server.release(hold_next=True)
    fcm_server.release()
    results = await asyncio.wait_for(task, timeout=60)

    assert fcm_server.max_in_flight == CHUNK_SIZE
    assert fcm_server.requests_by_token == Counter(tokens)
    assert fcm_server.accepted_tokens() == Counter(
        token for token in tokens if token not in ("token-0007", "token-0777"))
    assert len(results) == len(messages)
    assert results[7].status == SendStatus.INVALID_ADDRESS
    assert (results[777].status, results[777].retry_after) == (SendStatus.RETRY, 30.0)
    sent = [(tokens[index], result.provider_id) for index, result in enumerate(results)
            if index not in (7, 777)]
    assert all(results[index].status == SendStatus.SENT
               for index in range(1100) if index not in (7, 777))
    # Each result carries the name FCM gave that very message.
    names = {message["token"]: name
             for message, name in zip(fcm_server.messages, fcm_server.names, strict=True)}
    assert sent == [(token, names[token]) for token, _ in sent]
    assert all(message["data"]["n"] == message["token"].removeprefix("token-").lstrip("0")
               or message["token"] == "token-0000" for message in fcm_server.messages)


async def test_access_token_is_fetched_once_and_reused(
    sender: FcmSender, fcm_server: FakeFcm,
) -> None:
    # The first call is a concurrent chunk: each of its threads finds no token.
    first = await sender.send_many([push(f"t{index}") for index in range(200)])
    singles = [await sender.send(push(f"s{index}")) for index in range(3)]
    again = await sender.send_many([push(f"u{index}") for index in range(50)])

    assert all(result.status == SendStatus.SENT for result in first + singles + again)
    assert fcm_server.token_requests == 1
    [claims] = fcm_server.token_claims
    assert claims["iss"] == fcm_server.client_email
    assert "https://www.googleapis.com/auth/firebase.messaging" in claims["scope"].split()
    bearer = {headers["authorization"] for headers in fcm_server.request_headers}
    assert bearer == {f"Bearer {token}" for token in fcm_server.issued_tokens}
    assert len(bearer) == 1


def test_firebase_admin_still_takes_its_endpoint_from_the_class_attribute() -> None:
    # FcmSender points firebase-admin at SONOR_FCM_URL through these; if a release renames
    # them, staging and tests would talk to Google.
    assert hasattr(messaging, "_MessagingService")
    assert hasattr(messaging._MessagingService, "FCM_URL")
    assert messaging._MessagingService.FCM_URL == GOOGLE_FCM_URL
    assert hasattr(messaging, "_get_messaging_service")
    assert hasattr(messaging._MessagingService, "encode_message")


async def test_override_reaches_this_sender_only(
    make_sender: Callable[..., FcmSender], fcm_server: FakeFcm,
) -> None:
    sender = make_sender()

    assert sender.send_url == fcm_server.send_url
    # The class attribute is back to Google's: other apps in the process are untouched.
    assert messaging._MessagingService.FCM_URL == GOOGLE_FCM_URL
    assert (await sender.send(push())).status == SendStatus.SENT


@pytest.mark.parametrize("form", ["base", "template", "full"])
async def test_sonor_fcm_url_forms(
    make_sender: Callable[..., FcmSender], fcm_server: FakeFcm, form: str,
) -> None:
    url = {
        "base": fcm_server.base_url,
        "template": fcm_server.base_url + "/v1/projects/{project_id}/messages:send",
        "full": fcm_server.send_url,
    }[form]
    sender = make_sender(url)

    assert (await sender.send(push())).status == SendStatus.SENT
    assert fcm_server.accepted_tokens() == Counter({"device-token-1": 1})


def test_fcm_url_template() -> None:
    assert fcm_url_template("http://h:1") == "http://h:1/v1/projects/{0}/messages:send"
    assert fcm_url_template("http://h:1/") == "http://h:1/v1/projects/{0}/messages:send"
    assert (fcm_url_template("http://h:1/v1/projects/{project_id}/messages:send")
            == "http://h:1/v1/projects/{0}/messages:send")
    assert fcm_url_template("http://h:1/v1/projects/p/messages:send").format("x") == (
        "http://h:1/v1/projects/p/messages:send")
