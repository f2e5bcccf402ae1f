"""Fault tests: real server processes (manage.py serve, as tests/e2e starts them) on loopback,
killed with SIGKILL, restarted, or cut off from a Redis or PostgreSQL of the test's own.
Every test bounds its traffic and its time, and stops what it started."""

import json
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chatserver.core import protocol
from chatserver.models import Room, RoomEvent
from identity.models import User
from identity.services import _phone_bind, citizen_create, session_create
from tests.chatserver import chat_helpers
from tests.e2e.conftest import LiveServer, receive

# Chat limits that would refuse a test's deliberate load (each is documented in
# docs/operations.md); the server processes get them through the environment.
LOAD_ENV = {"SONOR_CHAT_SEND_RATE": "1000000", "SONOR_WS_RATE_PER_SECOND": "10000",
            "SONOR_WS_RATE_BURST": "10000", "SONOR_WS_MAX_SOCKETS_PER_USER": "5000",
            "SONOR_WS_MAX_SOCKETS_PER_ADDRESS": "10000", "SONOR_CHAT_SOCKET_BUFFER": "100000"}


async def answer(ws: ClientConnection, request_id: str, timeout: float = 30) -> Any:
    """The answer to request `request_id`, past the room events that come in between."""
    while True:
        frame = await receive(ws, timeout=timeout)
        if getattr(frame, "id", None) == request_id and not isinstance(
                frame, protocol.NotifyNew):
            return frame


async def open_socket(url: str, token: str, rooms: dict[int, int], **kwargs: Any
                      ) -> tuple[ClientConnection, protocol.Welcome]:
    """A device socket after hello with these last-seen room seqs; the events that follow
    `welcome` are left to the caller. Live room events may come before `welcome` (the socket
    follows its rooms from the connect on): a client drops those it gets again."""
    ws = await connect(f"{url}/ws/v1", additional_headers={"Authorization": f"Bearer {token}"},
                       max_size=2**22, open_timeout=20, **kwargs)
    await ws.send(json.dumps({"type": "hello", "id": "h",
                              "resume": {"rooms": {str(k): v for k, v in rooms.items()}}}))
    welcome = await answer(ws, "h")
    assert isinstance(welcome, protocol.Welcome), welcome
    return ws, welcome


async def connect_close_code(url: str, token: str) -> int | None:
    """The close code the server gives a device socket that connects now; None when the
    socket is still open after a hello."""
    async with connect(f"{url}/ws/v1", open_timeout=20,
                       additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        try:
            await ws.send(json.dumps({"type": "hello", "id": "h"}))
            await answer(ws, "h")
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
    return None


def kill(server: LiveServer) -> None:
    """SIGKILL: no shutdown of any kind, as a crash or an OOM kill."""
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def room_seqs(room_id: int) -> list[int]:
    return list(RoomEvent.objects.filter(room_id=room_id).order_by("seq")
                .values_list("seq", flat=True))


fresh_cache = chat_helpers.fresh_cache


@pytest.fixture
def make_group(transactional_db: None, settings: Any
               ) -> Callable[..., tuple[Room, list[User], list[str]]]:
    """make_group(members) -> a group of that many verified citizens (all joined), them, and
    one session token each."""
    settings.SONOR_CHAT_NEW_ACCOUNT_ADDS_PER_DAY = 1000

    def make(members: int) -> tuple[Room, list[User], list[str]]:
        users = []
        for i in range(members):
            user = citizen_create(register_number=f"УБ{70 + i // 28:02d}{1 + i % 12:02d}"
                                                  f"{1 + i % 28:02d}{i % 100:02d}",
                                  name=f"Иргэн {i}")
            with transaction.atomic():
                _phone_bind(user=user, e164=f"+976911{i:05d}", now=timezone.now())
            users.append(user)
        room = chat_helpers.group(users[0], *users[1:])
        tokens = [session_create(user=user, login_method="test")[1] for user in users]
        return room, users, tokens

    return make
