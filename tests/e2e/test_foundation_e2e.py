"""The foundation end to end: a real daphne process, driven by the `websockets` client."""

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from chatserver.core import protocol
from identity.services import _phone_bind, citizen_create, session_create
from tests.e2e.conftest import LiveServer, header_dict

pytestmark = pytest.mark.e2e


def http_json(method: str, url: str, body: dict[str, Any] | None = None, *,
              token: str | None = None, origin: str | None = None,
              ) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if origin:
        request.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}, header_dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else {}, header_dict(exc.headers)


async def http(method: str, url: str, body: dict[str, Any] | None = None, **kw: Any
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
    return await asyncio.to_thread(http_json, method, url, body, **kw)


async def receive(ws: ClientConnection, frame_type: str) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert frame["type"] == frame_type, frame
    return frame


async def closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), timeout=10)
    return info.value.rcvd.code if info.value.rcvd else None


@pytest.fixture
def citizen_tokens(transactional_db: None) -> dict[str, Any]:
    from django.db import transaction
    from django.utils import timezone

    user = citizen_create(register_number="УБ99011512", name="Бат")
    with transaction.atomic():
        _phone_bind(user=user, e164="+97699112233", now=timezone.now())
    phone_session, phone_token = session_create(user=user, login_method="test",
                                                device_name="Phone")
    tablet_session, tablet_token = session_create(user=user, login_method="test",
                                                  device_name="Tablet")
    return {"user": user, "phone": (phone_session, phone_token),
            "tablet": (tablet_session, tablet_token)}


async def test_socket_without_credentials_is_closed_4401(server: LiveServer) -> None:
    async with connect(f"{server.ws_url}/ws/v1") as ws:
        assert await closed_with(ws) == protocol.CLOSE_UNAUTHENTICATED
    async with connect(f"{server.ws_url}/ws/v1",
                       additional_headers={"Authorization": "Bearer not-a-token"}) as ws:
        assert await closed_with(ws) == protocol.CLOSE_UNAUTHENTICATED


async def test_hello_then_logout_closes_only_that_device(
    server: LiveServer, citizen_tokens: dict[str, Any]
) -> None:
    phone_session, phone_token = citizen_tokens["phone"]
    _, tablet_token = citizen_tokens["tablet"]
    phone = await connect(f"{server.ws_url}/ws/v1",
                          additional_headers={"Authorization": f"Bearer {phone_token}"})
    tablet = await connect(f"{server.ws_url}/ws/v1",
                           additional_headers={"Authorization": f"Bearer {tablet_token}"})
    await phone.send(json.dumps({"type": "hello", "id": "h1", "resume": {"inbox": 0}}))
    welcome = protocol.Welcome.model_validate(await receive(phone, "welcome"))
    assert welcome.id == "h1"
    assert welcome.user.id == citizen_tokens["user"].pk
    assert welcome.user.phone == "+97699112233"

    # The tablet logs the phone out.
    status, _, _ = await http("DELETE", f"{server.url}/api/v1/sessions/{phone_session.pk}",
                              token=tablet_token)
    assert status == 204
    revoked = await receive(phone, "session.revoked")
    assert revoked["reason"] == "logout"
    assert await closed_with(phone) == protocol.CLOSE_UNAUTHENTICATED

    await tablet.send(json.dumps({"type": "ping", "id": "p1"}))
    assert (await receive(tablet, "pong"))["id"] == "p1"
    status, body, _ = await http("GET", f"{server.url}/api/v1/me", token=phone_token)
    assert (status, body["code"]) == (401, "unauthenticated")
    await tablet.close()


async def test_qr_login_approved_by_a_logged_in_device(
    server: LiveServer, citizen_tokens: dict[str, Any]
) -> None:
    _, phone_token = citizen_tokens["phone"]
    web = await connect(f"{server.ws_url}/ws/v1/login", origin=Origin(server.origin),
                        user_agent_header="Firefox on the test bench")
    qr = await receive(web, "qr.code")
    assert qr["svg"].lstrip().startswith(("<?xml", "<svg"))
    login_token = qr["code"].removeprefix("sonor-login:")

    # The phone scans it and is shown who asks.
    status, request, _ = await http("POST", f"{server.url}/api/v1/qr/lookup",
                                    {"token": login_token}, token=phone_token)
    assert status == 200, request
    assert request["requester_ip"] == "127.0.0.1"
    assert "Firefox on the test bench" in request["requester_device"]
    await receive(web, "qr.scanned")

    status, _, _ = await http("POST", f"{server.url}/api/v1/qr/approve",
                              {"token": login_token}, token=phone_token)
    assert status in (200, 204)
    approved = await receive(web, "login.approved")
    assert approved["user_name"] == "Бат"

    # The web page trades the token for its HttpOnly cookie and opens the device socket.
    status, _, headers = await http("POST", f"{server.url}/api/v1/auth/cookie",
                                    {"token": approved["token"]}, origin=server.origin)
    assert status == 204
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    async with connect(f"{server.ws_url}/ws/v1", origin=Origin(server.origin),
                       additional_headers={"Cookie": cookie.split(";")[0]}) as device:
        await device.send(json.dumps({"type": "hello", "id": "w1"}))
        welcome = await receive(device, "welcome")
        assert welcome["user"]["id"] == citizen_tokens["user"].pk

    # The code was single-use.
    status, body, _ = await http("POST", f"{server.url}/api/v1/qr/lookup",
                                 {"token": login_token}, token=phone_token)
    assert (status, body["code"]) == (409, "qr_already_used")
    await web.close()
