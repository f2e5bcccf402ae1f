"""Attacks on real server processes: a spoofed X-Forwarded-For against the image's own server
command, and per-address limits that must hold when a client spreads over several servers."""

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from chatserver.core import protocol
from identity.services import _phone_bind, citizen_create, session_create
from tests.e2e.conftest import ROOT, LiveServer, start_command
from tests.e2e.test_foundation_e2e import http, receive

pytestmark = pytest.mark.e2e


def _image_server_options() -> tuple[str, ...]:
    """The serve options of the Dockerfile's CMD, less the bind address and port."""
    cmd = next(line for line in (ROOT / "Dockerfile").read_text().splitlines()
               if line.startswith("CMD "))
    args: list[str] = json.loads(cmd[4:])
    assert args[:3] == ["python", "manage.py", "serve"], args
    options, rest = [], iter(args[3:])
    for arg in rest:
        if arg in ("--host", "--port"):
            next(rest)
        else:
            options.append(arg)
    return tuple(options)


def _citizen_token() -> str:
    with transaction.atomic():
        user = citizen_create(register_number="УБ90010112", name="Батболд")
        _phone_bind(user=user, e164="+97688110001", now=timezone.now())
    return session_create(user=user, login_method="test", device_name="phone")[1]


async def test_the_image_server_command_ignores_a_spoofed_forwarded_for(
        live_server_factory: Callable[..., LiveServer]) -> None:
    # The attacker claims an address of the citizen's own network, so that the approval
    # screen shows something the citizen would trust.
    server = live_server_factory(server_args=_image_server_options())
    token = await asyncio.to_thread(_citizen_token)
    async with connect(f"{server.ws_url}/ws/v1/login", origin=server.origin,  # type: ignore[arg-type]
                       additional_headers={"X-Forwarded-For": "192.0.2.77"}) as ws:
        code = (await receive(ws, "qr.code"))["code"]
        status, body, _ = await http("POST", f"{server.url}/api/v1/qr/lookup",
                                     {"token": code}, token=token)
    assert status == 200, body
    assert body["requester_ip"] == "127.0.0.1"  # the real peer, not the header's claim


@pytest.fixture
def uvicorn_server(transactional_db: None, tmp_path: Path) -> Iterator[LiveServer]:
    """uvicorn as docs/operations.md says to run it: with --no-proxy-headers (by default it
    believes X-Forwarded-For from 127.0.0.1, which is where this test's client is)."""
    server = start_command(tmp_path, lambda port: [
        sys.executable, "-m", "uvicorn", "--no-proxy-headers", "--host", "127.0.0.1",
        "--port", str(port), "chatserver.asgi:application"])
    yield server
    server.stop()


async def test_uvicorn_run_as_documented_ignores_a_spoofed_forwarded_for(
        uvicorn_server: LiveServer) -> None:
    token = await asyncio.to_thread(_citizen_token)
    async with connect(f"{uvicorn_server.ws_url}/ws/v1/login",
                       origin=Origin(uvicorn_server.origin),
                       additional_headers={"X-Forwarded-For": "192.0.2.77"}) as ws:
        code = (await receive(ws, "qr.code"))["code"]
        status, body, _ = await http("POST", f"{uvicorn_server.url}/api/v1/qr/lookup",
                                     {"token": code}, token=token)
    assert status == 200, body
    assert body["requester_ip"] == "127.0.0.1"


def _unique_client() -> str:
    """A client address of this test alone (shared Redis counters outlive a test)."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


async def _login_socket_outcome(server: LiveServer, client: str) -> str:
    """`code` if the page got a QR code, else the close code it got instead."""
    async with connect(f"{server.ws_url}/ws/v1/login", origin=server.origin,  # type: ignore[arg-type]
                       additional_headers={"X-Forwarded-For": client}) as ws:
        try:
            frame: dict[str, Any] = json.loads(await ws.recv())
        except ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else None}"
        return "code" if frame["type"] == "qr.code" else frame["type"]


# Both servers sit behind the same proxy (this loopback test client), which names the client.
LIMITED = {"SONOR_TRUSTED_PROXIES": "127.0.0.1", "SONOR_QR_CONNECTS_PER_MINUTE": "4"}


@pytest.mark.skipif(not os.environ.get("REDIS_URL"),
                    reason="several servers share counters only through Redis (REDIS_URL)")
async def test_qr_connect_limit_holds_across_two_servers(
        live_server_factory: Callable[..., LiveServer]) -> None:
    servers = [live_server_factory(**LIMITED), live_server_factory(**LIMITED)]
    client = _unique_client()
    outcomes = [await _login_socket_outcome(servers[i % 2], client) for i in range(6)]
    # Four in all, not four per server: the fifth and sixth are refused by either server.
    assert outcomes == ["code"] * 4 + [f"closed {protocol.CLOSE_RATE_LIMITED}"] * 2


async def test_qr_connect_limit_on_one_server_is_per_client_not_per_header(
        live_server_factory: Callable[..., LiveServer]) -> None:
    server = live_server_factory(**LIMITED)
    client = _unique_client()
    outcomes = [await _login_socket_outcome(server, client) for _ in range(5)]
    assert outcomes == ["code"] * 4 + [f"closed {protocol.CLOSE_RATE_LIMITED}"]
    # Another client behind the same proxy is not affected.
    assert await _login_socket_outcome(server, _unique_client()) == "code"
