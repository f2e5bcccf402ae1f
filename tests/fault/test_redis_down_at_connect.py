"""Sockets that connect while Redis is down (a redis-server of the test's own, never the shared
one). A server process that has not reached Redis yet closes them with 4503 (try again
later) instead of crashing; once Redis is up the next sockets connect and follow their rooms
live. A server that did reach Redis before lets them in, and they get their rooms' messages
live once Redis is back, without reconnecting."""

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from chatserver.core import protocol
from identity.services import citizen_create, session_create
from tests.e2e.conftest import LiveServer, start_server
from tests.fault.conftest import answer, connect_close_code, open_socket, receive
from tests.fault.test_redis_outage import OwnRedis

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


async def _down_then_up(server: LiveServer, redis: OwnRedis, room_id: int, tokens: list[str]
                        ) -> dict[str, Any]:
    while_down = [await connect_close_code(server.ws_url, tokens[0]) for _ in range(3)]
    await asyncio.to_thread(redis.start)
    sender, _ = await open_socket(server.ws_url, tokens[0], {})
    reader, _ = await open_socket(server.ws_url, tokens[1], {})
    await sender.send(json.dumps({"type": "chat.send", "id": "m1", "room": room_id,
                                  "client_msg_id": "m1", "text": "Redis ирлээ"}))
    ack = await answer(sender, "m1")
    live = None
    while live is None or not isinstance(live, protocol.ChatMessage):
        live = await receive(reader, timeout=10)
    await sender.close()
    await reader.close()
    return {"while_down": while_down, "ack": ack, "live": live}


def test_sockets_get_4503_while_redis_is_down_and_connect_once_it_is_up(
        make_group: Any, tmp_path: Path) -> None:
    room, _, tokens = make_group(2)
    redis = OwnRedis(tmp_path / "redis.log")  # not started yet
    server = start_server(tmp_path, (), REDIS_URL=redis.url)
    try:
        result = asyncio.run(_down_then_up(server, redis, room.pk, tokens))
        assert server.process.poll() is None, "the server process died"
    finally:
        server.stop()
        redis.stop()

    assert result["while_down"] == [protocol.CLOSE_TRY_AGAIN_LATER] * 3
    assert isinstance(result["ack"], protocol.Ack) and result["ack"].seq is not None
    assert result["live"].text == "Redis ирлээ" and result["live"].seq == result["ack"].seq


async def _connect_while_down(server: LiveServer, redis: OwnRedis, room_id: int,
                              tokens: list[str], outsider_token: str) -> dict[str, Any]:
    # The process reaches Redis once, through a socket that follows no room.
    outsider, _ = await open_socket(server.ws_url, outsider_token, {})
    redis.stop()
    reader, _ = await open_socket(server.ws_url, tokens[1], {})  # its room is new here
    await asyncio.to_thread(redis.start)
    sender, _ = await open_socket(server.ws_url, tokens[0], {})
    # The layer reconnects within a bound: send until a message crosses it, as a chat would.
    acks: list[Any] = []
    live: list[Any] = []
    for attempt in range(10):
        cmid = f"m{attempt}"
        await sender.send(json.dumps({"type": "chat.send", "id": cmid, "room": room_id,
                                      "client_msg_id": cmid, "text": "Redis ирлээ"}))
        acks.append(await answer(sender, cmid))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while not live:
                    frame = await receive(reader)
                    if isinstance(frame, protocol.ChatMessage):
                        live.append(frame)
        if live:
            break
    for ws in (outsider, reader, sender):
        await ws.close()
    return {"acks": acks, "live": live}


def test_a_socket_that_connected_while_redis_was_down_gets_its_rooms_live_once_it_is_back(
        make_group: Any, tmp_path: Path) -> None:
    room, _, tokens = make_group(2)
    outsider = citizen_create(register_number="УБ99123199", name="Гадны")
    outsider_token = session_create(user=outsider, login_method="test")[1]
    redis = OwnRedis(tmp_path / "redis.log")
    redis.start()
    server = start_server(tmp_path, (), REDIS_URL=redis.url)
    try:
        result = asyncio.run(_connect_while_down(server, redis, room.pk, tokens,
                                                 outsider_token))
        assert server.process.poll() is None, "the server process died"
    finally:
        server.stop()
        redis.stop()

    assert all(isinstance(ack, protocol.Ack) and ack.seq is not None for ack in result["acks"])
    assert result["live"], "a socket that connected while Redis was down never got its room live"
    assert result["live"][0].seq in {ack.seq for ack in result["acks"]}
