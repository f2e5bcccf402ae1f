"""The notification POST served in front of Django (chatserver/http/agency_post.py) answers
exactly as Django and django-ninja do: each request of a matrix goes through both, over ASGI,
and status, headers and body must be the same. Requests that the endpoint hands to Django are
recognised by Django's request_started signal, which the endpoint does not send."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.signals import request_started
from django.test import override_settings

from chatserver.core.http_handler import HttpHandler
from chatserver.http import agency_post
from identity.models import User
from notify.models import Agency, Notification

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/api/agency/v1/notifications"


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, by_django: bool):
        self.status, self.headers, self.body, self.by_django = status, headers, body, by_django

    def json(self) -> Any:
        return json.loads(self.body)

    def seen(self) -> tuple[int, dict[str, str], bytes]:
        """What the client sees."""
        return self.status, self.headers, self.body


async def _post(lean: bool, body: bytes, headers: dict[str, str], host: str = "127.0.0.1",
                chunk: int = 0) -> Answer:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "path": PATH, "raw_path": PATH.encode(), "root_path": "", "scheme": "http",
        "query_string": b"", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80),
        "headers": [(b"host", host.encode()), (b"content-type", b"application/json"),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items())],
    }
    parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    incoming = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
                for i, part in enumerate(parts)]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    started: list[bool] = []

    def on_start(**kwargs: Any) -> None:
        started.append(True)

    request_started.connect(on_start)
    try:
        handler = HttpHandler()
        if lean:
            await agency_post.serve(scope, receive, send, handler)
        else:
            await handler(scope, receive, send)
    finally:
        request_started.disconnect(on_start)
    start = sent[0]
    return Answer(start["status"],
                  {k.decode().lower(): v.decode() for k, v in start["headers"]},
                  b"".join(m.get("body", b"") for m in sent[1:]), by_django=bool(started))


async def both(body: Any, headers: dict[str, str], **kwargs: Any) -> tuple[Answer, Answer]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (await _post(True, raw, headers, **kwargs),
            await _post(False, raw, headers, **kwargs))


def notice(citizen: User, **fields: Any) -> dict[str, Any]:
    return {"register_number": citizen.register_number, "category": "service_request",
            "title": "Өргөдөл хүлээн авлаа", "body": "Таны өргөдлийг хүлээн авлаа.", **fields}


@pytest.fixture
def key(agency_key: tuple[Agency, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {agency_key[1]}"}


async def test_a_notice_is_accepted_and_replayed_alike(key: dict[str, str],
                                                       citizen: User) -> None:
    first = await _post(True, json.dumps(notice(citizen)).encode(),
                        {**key, "Idempotency-Key": "req-1"})
    assert (first.status, first.by_django) == (202, False)
    # The retry, once through each path: the same answer, a replay of the first notice.
    lean, django = await both(notice(citizen), {**key, "Idempotency-Key": "req-1"})
    assert lean.seen() == django.seen()
    assert lean.json() == first.json()
    assert lean.headers["idempotent-replayed"] == "true"
    assert lean.headers["x-content-type-options"] == "nosniff"
    assert (lean.by_django, django.by_django) == (False, True)
    assert await Notification.objects.filter(user=citizen).acount() == 1


async def test_a_fresh_notice_gets_the_same_headers_and_shape(key: dict[str, str],
                                                              citizen: User) -> None:
    lean, django = await both(notice(citizen), key)
    assert lean.status == django.status == 202
    assert lean.headers.keys() == django.headers.keys()
    assert {k: v for k, v in lean.headers.items() if k != "content-length"} == \
        {k: v for k, v in django.headers.items() if k != "content-length"}
    assert lean.json().keys() == django.json().keys() == {"id", "created_at"}
    assert len(lean.json()["created_at"]) == len(django.json()["created_at"])
    assert await Notification.objects.filter(user=citizen).acount() == 2


@pytest.mark.parametrize("case", [
    "unknown citizen", "organisation", "wrong key", "category outside the scopes",
    "key reused for another notice",
])
async def test_refusals_of_the_operation_are_answered_alike(
        case: str, key: dict[str, str], citizen: User,
        make_agency: Callable[..., tuple[Agency, str]]) -> None:
    body, headers = notice(citizen), dict(key)
    if case == "unknown citizen":
        body["register_number"] = "УБ99123199"
    elif case == "organisation":
        body["register_number"] = "1234567"
    elif case == "wrong key":
        headers["Authorization"] = "Bearer sk_not_a_key"
    elif case == "category outside the scopes":
        body["category"] = "security"
    else:
        headers["Idempotency-Key"] = "same"
        assert (await _post(True, json.dumps(body).encode(), headers)).status == 202
        body["title"] = "Өөр мэдэгдэл"
    lean, django = await both(body, headers)
    assert lean.status in (401, 403, 404, 409)
    assert not lean.by_django
    assert lean.seen() == django.seen()


@pytest.mark.parametrize("case", [
    "not valid", "not JSON", "a list", "no key", "not a bearer key", "empty key",
    "bad Idempotency-Key", "too large", "host not allowed",
])
async def test_what_is_refused_before_the_operation_is_django_s_answer(
        case: str, key: dict[str, str], citizen: User) -> None:
    body: Any = notice(citizen)
    headers, kwargs = dict(key), dict[str, Any]()
    if case == "not valid":
        body.update(category="nope", extra=1)
    elif case == "not JSON":
        body = b"{nope"
    elif case == "a list":
        body = b"[1]"
    elif case == "no key":
        del headers["Authorization"]
    elif case == "not a bearer key":
        headers["Authorization"] = "Basic abc"
    elif case == "empty key":
        headers["Authorization"] = "Bearer "
    elif case == "bad Idempotency-Key":
        headers["Idempotency-Key"] = "has spaces"
    elif case == "too large":
        body["body"] = "ы" * 2_000_000
        kwargs["chunk"] = 65536
    else:
        kwargs["host"] = "evil.example"
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1_000_000):
        lean, django = await both(body, headers, **kwargs)
    assert lean.by_django and django.by_django
    assert lean.status >= 400
    assert lean.seen() == django.seen()
    assert await Notification.objects.acount() == 0
