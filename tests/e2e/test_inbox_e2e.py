"""The inbox end to end: an agency POSTs over HTTP to a real server process and the
citizen's connected sockets get the notification live; concurrent retries store it once."""

import asyncio
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import connect

from identity.models import User
from identity.services import citizen_create, session_create
from notify.agency_services import agency_create
from notify.models import Notification
from tests.e2e.conftest import LiveServer, header_dict
from tests.e2e.test_foundation_e2e import receive

pytestmark = pytest.mark.e2e

NOTICE = {
    "register_number": "УБ99011512",
    "category": "payment",
    "title": "Төлбөрийн мэдэгдэл",
    "body": "Таны хүсэлт шийдвэрлэгдлээ. Улсын тэмдэгтийн хураамжаа төлнө үү.",
    "link": "https://e-mongolia.mn/payments/77",
    "reference": "REQ-2026-0077",
    "amount_mnt": 15_000,
    "due_date": "2026-12-31",
}


def agency_post(url: str, key: str, body: dict[str, Any], idempotency_key: str | None = None
                ) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {key}")
    if idempotency_key:
        request.add_header("Idempotency-Key", idempotency_key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), header_dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), header_dict(exc.headers)


@pytest.fixture
def setup(transactional_db: None) -> dict[str, Any]:
    user = citizen_create(register_number="УБ99011512", name="Бат")
    _, phone_token = session_create(user=user, login_method="test", device_name="Phone")
    _, web_token = session_create(user=user, login_method="test", device_name="Web")
    _, key = agency_create(name="Улсын бүртгэлийн ерөнхий газар")
    return {"user": user, "tokens": [phone_token, web_token], "key": key}


async def test_agency_post_reaches_the_citizens_sockets_live(
        server: LiveServer, setup: dict[str, Any]) -> None:
    sockets = []
    for token in setup["tokens"]:
        ws = await connect(f"{server.ws_url}/ws/v1",
                           additional_headers={"Authorization": f"Bearer {token}"})
        await ws.send(json.dumps({"type": "hello", "id": "h", "resume": {"inbox": 0}}))
        welcome = await receive(ws, "welcome")
        assert (welcome["inbox_seq"], welcome["unread"]) == (0, 0)
        sockets.append(ws)

    status, body, _ = await asyncio.to_thread(
        agency_post, f"{server.url}/api/agency/v1/notifications", setup["key"], NOTICE,
        "REQ-2026-0077-payment")
    assert status == 202, body

    for ws in sockets:
        new = await receive(ws, "notify.new")
        assert new["id"] == body["id"]
        assert new["seq"] == 1
        assert (new["category"], new["title"], new["link"]) == (
            "payment", "Төлбөрийн мэдэгдэл", "https://e-mongolia.mn/payments/77")
        assert await receive(ws, "notify.unread") == {"type": "notify.unread", "count": 1}

    # Reading it on one device updates the other.
    await sockets[0].send(json.dumps({"type": "notify.read", "id": "r1", "ids": [body["id"]]}))
    assert (await receive(sockets[0], "ack"))["id"] == "r1"
    assert (await receive(sockets[1], "notify.unread"))["count"] == 0
    for ws in sockets:
        await ws.close()


def test_ten_concurrent_posts_with_one_key_store_one_notification(
        server: LiveServer, setup: dict[str, Any]) -> None:
    barrier = threading.Barrier(10)
    results: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    lock = threading.Lock()

    def post() -> None:
        barrier.wait(timeout=10)
        result = agency_post(f"{server.url}/api/agency/v1/notifications", setup["key"], NOTICE,
                             "REQ-2026-0077-payment")
        with lock:
            results.append(result)

    threads = [threading.Thread(target=post) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [status for status, _, _ in results] == [202] * 10, results
    assert len({body["id"] for _, body, _ in results}) == 1
    assert sum(headers.get("Idempotent-Replayed") == "true" for _, _, headers in results) == 9

    user = User.objects.get(register_number="УБ99011512")
    assert list(Notification.objects.filter(user=user).values_list("id", "seq")) == [
        (results[0][1]["id"], 1)]


async def test_embedded_server_fans_a_broadcast_out_live_without_a_worker_process(
        live_server_factory: Any, setup: dict[str, Any]) -> None:
    """The embedded default is one process: its own worker thread fans the broadcast out,
    and the in-memory layer wakes the citizen's socket."""
    server = live_server_factory(SONOR_EMBEDDED_WORKER="1", SONOR_WORKER_SLEEP="0.2")
    ws = await connect(f"{server.ws_url}/ws/v1",
                       additional_headers={"Authorization": f"Bearer {setup['tokens'][0]}"})
    await ws.send(json.dumps({"type": "hello", "id": "h", "resume": {"inbox": 0}}))
    await receive(ws, "welcome")

    broadcast = {"category": "service_request", "audience": "list",
                 "register_numbers": ["УБ99011512"], "title": "Үйлчилгээний мэдэгдэл",
                 "body": "Таны хүсэлтийг хүлээн авлаа."}
    status, body, _ = await asyncio.to_thread(
        agency_post, f"{server.url}/api/agency/v1/broadcasts", setup["key"], broadcast)
    assert status == 202, body

    new = await receive(ws, "notify.new")
    assert (new["title"], new["seq"]) == ("Үйлчилгээний мэдэгдэл", 1)
    assert (await receive(ws, "notify.unread"))["count"] == 1
    await ws.close()
