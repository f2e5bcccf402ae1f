"""A server process that starts while Redis is down (a redis-server of the test's own, never
the shared one): a socket that connects is closed with 1013 (try again later) instead of
crashing, and once Redis is up the next sockets connect and follow their rooms live."""

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from chatserver.core import protocol
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


def test_sockets_get_1013_while_redis_is_down_and_connect_once_it_is_up(
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
