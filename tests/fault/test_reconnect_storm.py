"""Reconnect storm: 2,000 device sockets in one group, the server killed with SIGKILL (every
socket dropped at once), messages sent while it is down, the server restarted. Each client
reconnects after a random delay, with backoff when refused, and resumes with `hello`: none
misses a message, live fan-out works again for all, and the restarted server holding the same
sockets uses about the memory the first one did.

Bounded: 2,000 sockets, three messages while down and one live, about a minute on two cores."""

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidMessage

from chatserver.chat import messages as chat_messages
from chatserver.core import protocol
from tests.e2e.conftest import LiveServer, frame_of, start_server
from tests.fault.conftest import LOAD_ENV, kill, open_socket, room_seqs

pytestmark = pytest.mark.e2e

USERS = 20
SOCKETS_PER_USER = 100  # 2,000 sockets
SENT_WHILE_DOWN = 3
JITTER_SECONDS = 4.0


def rss_bytes(server: LiveServer) -> int:
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class StormClient:
    def __init__(self, token: str, room_id: int, last_seq: int) -> None:
        self.token, self.room_id, self.last_seq = token, room_id, last_seq
        self.seqs: set[int] = set()
        self.ws: ClientConnection | None = None
        self.attempts = 0

    async def connect(self, url: list[str], jitter: float) -> None:
        """Connect and resume; on failure retry after a growing, jittered delay. A server
        swamped by the storm may close a connection before its handshake's answer (daphne
        drops a handshake not done in 5 s): a client tries again, as with a refusal."""
        await asyncio.sleep(random.uniform(0, jitter))
        backoff = 0.5
        while True:
            self.attempts += 1
            try:
                self.ws, _ = await open_socket(url[0], self.token,
                                               {self.room_id: self.last_seq})
                return
            except (OSError, ConnectionClosed, InvalidMessage, TimeoutError):
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, 4)

    async def read(self) -> None:
        """Record the room's messages until the connection drops."""
        assert self.ws is not None
        try:
            async for raw in self.ws:
                frame = frame_of(raw)
                if isinstance(frame, protocol.ChatMessage) and frame.room == self.room_id:
                    self.seqs.add(frame.seq)
                    self.last_seq = max(self.last_seq, frame.seq)
        except ConnectionClosed:
            pass


async def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)


async def _storm(servers: list[LiveServer], clients: list[StormClient], room_id: int,
                 sender: Any, tmp_path: Path) -> tuple[int, int, int]:
    url = [servers[0].ws_url]
    await asyncio.gather(*(c.connect(url, jitter=2.0) for c in clients))
    readers = [asyncio.ensure_future(c.read()) for c in clients]
    await asyncio.sleep(2)  # the server's batched presence and fresh-socket checks settle
    rss_before = rss_bytes(servers[0])

    kill(servers[0])
    await asyncio.wait_for(asyncio.gather(*readers), timeout=30)  # every socket dropped
    start_seq = max(c.last_seq for c in clients)

    def send_while_down() -> int:
        for n in range(SENT_WHILE_DOWN):
            chat_messages.message_send(sender=sender, room_id=room_id, client_msg_id=f"down-{n}",
                                  text=f"сервер унтарсан үед {n}")
        return room_seqs(room_id)[-1]

    down_seq = await sync_to_async(send_while_down)()
    reconnecting = [asyncio.ensure_future(c.connect(url, JITTER_SECONDS)) for c in clients]
    servers.append(await asyncio.to_thread(start_server, tmp_path, (), **LOAD_ENV))
    url[0] = servers[-1].ws_url
    await asyncio.wait_for(asyncio.gather(*reconnecting), timeout=120)
    readers = [asyncio.ensure_future(c.read()) for c in clients]
    await _until(lambda: all(c.last_seq >= down_seq for c in clients), 60,
                 "every client resumed the messages sent while the server was down")

    # Live fan-out to all 2,000 after the storm.
    live = clients[0]
    assert live.ws is not None
    await live.ws.send(json.dumps({"type": "chat.send", "id": "live", "room": room_id,
                                   "client_msg_id": "after-storm", "text": "дахин амьд"}))
    await _until(lambda: all(c.last_seq > down_seq for c in clients), 60,
                 "every client got the live message")
    await asyncio.sleep(2)
    rss_after = rss_bytes(servers[-1])
    for c in clients:
        assert c.ws is not None
        await c.ws.close()
    await asyncio.wait_for(asyncio.gather(*readers), timeout=30)
    return start_seq, rss_before, rss_after


def test_a_storm_of_2000_reconnects_resumes_every_socket_without_a_miss(
        make_group: Any, tmp_path: Path) -> None:
    room, users, tokens = make_group(USERS)
    first_seq = room_seqs(room.pk)[-1]
    clients = [StormClient(token, room.pk, first_seq)
               for token in tokens for _ in range(SOCKETS_PER_USER)]
    servers = [start_server(tmp_path, (), **LOAD_ENV)]
    try:
        start_seq, rss_before, rss_after = asyncio.run(
            _storm(servers, clients, room.pk, users[-1], tmp_path))
    finally:
        for server in servers:
            server.stop()

    final_seq = room_seqs(room.pk)[-1]
    assert final_seq == start_seq + SENT_WHILE_DOWN + 1
    for client in clients:
        # None missed a message: the three sent while down (by resume) and the live one.
        assert set(range(start_seq + 1, final_seq + 1)) <= client.seqs
    # Some were refused or found the server down, and came back with backoff.
    assert sum(c.attempts for c in clients) > 2 * len(clients)
    # The restarted server with the same 2,000 sockets: about the memory of the first one.
    assert rss_after < rss_before * 1.3 + 20 * 2**20, (rss_before, rss_after)
