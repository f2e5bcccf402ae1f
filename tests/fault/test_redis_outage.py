"""Redis (the channel layer and the cache) stopped for ten seconds under load, then started
again. Two server processes share PostgreSQL and a redis-server of the test's own (never the
shared one). Clients on both keep sending: every send is stored and acked, within a bound,
while Redis is down; live fan-out across the servers comes back after Redis does; a client
that resumes with `hello` then has every message, without a gap.

Needs PostgreSQL (DATABASE_URL): two server processes on one SQLite file is no deployment of
ours, and the channel layer only matters across processes."""

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from chatserver.core import protocol
from chatserver.models import RoomEvent
from tests.e2e.conftest import LiveServer, frame_of, start_server
from tests.fault.conftest import LOAD_ENV, open_socket, room_seqs
from tests.loopback import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="needs PostgreSQL (DATABASE_URL): two servers share the database"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]

CLIENTS = 6
OUTAGE_SECONDS = 10
SEND_EVERY = 0.1
ACK_WITHIN = 15.0  # a send's answer comes within this, Redis up or down


class OwnRedis:
    """A redis-server on a free loopback port, no persistence, stopped and started here."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no"], stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    redis = OwnRedis(tmp_path / "redis.log")
    redis.start()
    yield redis
    redis.stop()


class Client:
    """Sends a message every SEND_EVERY seconds while `sending`; records the answer times
    and the room's messages it receives."""

    def __init__(self, index: int, token: str, room_id: int) -> None:
        self.index, self.token, self.room_id = index, token, room_id
        self.ws: ClientConnection | None = None
        self.seqs: set[int] = set()
        self.acked: dict[str, int] = {}
        self.answers: dict[str, asyncio.Future[Any]] = {}
        self.slowest_answer = 0.0
        self.errors: list[Any] = []

    async def open(self, url: str, last_seq: int) -> None:
        self.ws, _ = await open_socket(url, self.token, {self.room_id: last_seq})
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                frame = frame_of(raw)
                if isinstance(frame, protocol.ChatMessage) and frame.room == self.room_id:
                    self.seqs.add(frame.seq)
                future = self.answers.pop(getattr(frame, "id", None) or "", None)
                if future is not None and not isinstance(frame, protocol.ChatMessage):
                    future.set_result(frame)

    async def request(self, frame: dict[str, Any]) -> Any:
        assert self.ws is not None
        future = asyncio.get_running_loop().create_future()
        self.answers[frame["id"]] = future
        started = time.monotonic()
        await self.ws.send(json.dumps(frame))
        answer = await asyncio.wait_for(future, timeout=ACK_WITHIN)
        self.slowest_answer = max(self.slowest_answer, time.monotonic() - started)
        return answer

    async def send_while(self, sending: asyncio.Event, prefix: str) -> None:
        n = 0
        while sending.is_set():
            cmid = f"{prefix}-{self.index}-{n}"
            answer = await self.request({"type": "chat.send", "id": cmid, "room": self.room_id,
                                         "client_msg_id": cmid, "text": f"мессеж {cmid}"})
            if isinstance(answer, protocol.Ack) and answer.seq is not None:
                self.acked[cmid] = answer.seq
            else:
                self.errors.append(answer)
            n += 1
            await asyncio.sleep(SEND_EVERY)

    def contiguous(self, since: int) -> int:
        seq = since
        while seq + 1 in self.seqs:
            seq += 1
        return seq


async def _phase(clients: list[Client], prefix: str, seconds: float) -> None:
    sending = asyncio.Event()
    sending.set()
    tasks = [asyncio.ensure_future(c.send_while(sending, prefix)) for c in clients]
    await asyncio.sleep(seconds)
    sending.clear()
    await asyncio.gather(*tasks)


async def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _outage(servers: list[LiveServer], redis: OwnRedis, room_id: int,
                  tokens: list[str], start_seq: int) -> dict[str, Any]:
    clients = [Client(i, tokens[i], room_id) for i in range(CLIENTS)]
    for client in clients:  # alternately on the two servers
        await client.open(servers[client.index % 2].ws_url, start_seq)
    await _phase(clients, "before", 2)

    redis.stop()
    await _phase(clients, "down", OUTAGE_SECONDS)
    await asyncio.to_thread(redis.start)
    await _phase(clients, "after", 3)

    # Live fan-out across the servers is back: a message sent through server 0 reaches the
    # clients of server 1 without their asking (within a bound: the layer reconnects).
    marker = clients[0]
    marker_seq = 0
    live_back = False
    for attempt in range(10):
        cmid = f"marker-{attempt}"
        ack = await marker.request({"type": "chat.send", "id": cmid, "room": room_id,
                                    "client_msg_id": cmid, "text": "layer back?"})
        marker_seq = ack.seq
        if await _until(lambda seq=marker_seq: all(seq in c.seqs for c in clients[1::2]), 2):
            live_back = True
            break

    # Each client resumes from the last seq it has without a gap.
    for client in clients:
        since = client.contiguous(start_seq)
        welcome = await client.request({"type": "hello", "id": "resume",
                                        "resume": {"rooms": {str(room_id): since}}})
        assert isinstance(welcome, protocol.Welcome) and welcome.resync == []
    await _until(lambda: all(max(c.seqs, default=0) >= marker_seq for c in clients), 10)
    for client in clients:
        assert client.ws is not None
        await client.ws.close()
    return {"clients": clients, "live_back": live_back, "marker_seq": marker_seq}


def test_sends_are_stored_and_acked_through_a_redis_outage_and_fan_out_recovers(
        make_group: Any, own_redis: OwnRedis, tmp_path: Path) -> None:
    room, _, tokens = make_group(CLIENTS)
    start_seq = room_seqs(room.pk)[-1]
    env = {**LOAD_ENV, "REDIS_URL": own_redis.url}
    servers = [start_server(tmp_path, (), **env), start_server(tmp_path, (), **env)]
    try:
        result = asyncio.run(_outage(servers, own_redis, room.pk, tokens, start_seq))
    finally:
        for server in servers:
            server.stop()
    clients: list[Client] = result["clients"]

    # Nothing hung and nothing was refused: every send answered with an ack and a seq.
    assert [c.errors for c in clients] == [[]] * CLIENTS
    assert max(c.slowest_answer for c in clients) < ACK_WITHIN
    acked = {cmid: seq for c in clients for cmid, seq in c.acked.items()}
    assert any(cmid.startswith("down-") for cmid in acked), "no send while Redis was down"
    # Every acked message stored once, with its ack's seq; the stream has no gap.
    stored = dict(RoomEvent.objects.filter(room_id=room.pk, client_msg_id__in=list(acked))
                  .values_list("client_msg_id", "seq"))
    assert stored == acked
    final = room_seqs(room.pk)
    assert final == list(range(1, final[-1] + 1))
    # Live fan-out came back after Redis did.
    assert result["live_back"], "messages stopped crossing servers after Redis came back"
    # After resuming, every client has every message since it connected.
    for client in clients:
        assert set(range(start_seq + 1, final[-1] + 1)) <= client.seqs, client.index
