"""The server process is killed with SIGKILL while ten clients send chat messages into one
group. Clients reconnect to the restarted server and resend the message they had no ack for,
with the same client_msg_id. Every acked message is stored exactly once, with the seq its ack
gave, each client's messages in the order it sent them, the room's stream without a gap; a
resend of a message stored before the kill gets that message's seq back, not a new one."""

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from chatserver.core import protocol
from chatserver.models import RoomEvent
from tests.e2e.conftest import LiveServer, start_server
from tests.fault.conftest import LOAD_ENV, answer, kill, open_socket, room_seqs

pytestmark = pytest.mark.e2e

CLIENTS = 10
MESSAGES_EACH = 30


class Sender:
    """One client: sends its messages one after another, each after the last one's ack; on a
    dropped connection, reconnects with jitter and resends the unacked one, same id."""

    def __init__(self, index: int, token: str, room_id: int) -> None:
        self.index, self.token, self.room_id = index, token, room_id
        self.acked: dict[str, int] = {}  # client_msg_id -> seq from its ack
        self.in_flight: str | None = None
        self.resent: list[str] = []
        self.reconnects = 0

    def client_msg_id(self, n: int) -> str:
        return f"c{self.index}-{n:03d}"

    async def run(self, url: list[str]) -> None:
        n = 0
        while n < MESSAGES_EACH:
            try:
                ws, _ = await open_socket(url[0], self.token, {})
            except (OSError, ConnectionClosed, TimeoutError):
                self.reconnects += 1
                await asyncio.sleep(random.uniform(0.05, 0.3))
                continue
            try:
                async with ws:
                    while n < MESSAGES_EACH:
                        cmid = self.client_msg_id(n)
                        if self.in_flight == cmid:
                            self.resent.append(cmid)
                        self.in_flight = cmid
                        await ws.send(json.dumps({
                            "type": "chat.send", "id": cmid, "room": self.room_id,
                            "client_msg_id": cmid, "text": f"мессеж {cmid}"}))
                        frame = await answer(ws, cmid)
                        assert isinstance(frame, protocol.Ack), frame
                        assert frame.seq is not None, frame
                        self.acked[cmid] = frame.seq
                        self.in_flight = None
                        n += 1
            except (OSError, ConnectionClosed):
                self.reconnects += 1
                await asyncio.sleep(random.uniform(0.05, 0.3))


async def _traffic_with_a_kill(servers: list[LiveServer], senders: list[Sender],
                               tmp_path: Path) -> list[str]:
    server = servers[0]
    url = [server.ws_url]
    tasks = [asyncio.ensure_future(sender.run(url)) for sender in senders]
    deadline = asyncio.get_running_loop().time() + 60
    while min(len(s.acked) for s in senders) < 5:
        assert asyncio.get_running_loop().time() < deadline, "no traffic before the kill"
        await asyncio.sleep(0.01)
    kill(server)
    in_flight_at_kill = [s.in_flight for s in senders if s.in_flight]
    restarted = await asyncio.to_thread(start_server, tmp_path, (), **LOAD_ENV)
    servers.append(restarted)
    url[0] = restarted.ws_url
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    return in_flight_at_kill


def test_a_killed_server_loses_no_acked_message_and_resends_store_nothing_twice(
        make_group: Any, tmp_path: Path) -> None:
    room, users, tokens = make_group(CLIENTS)
    start_seq = room_seqs(room.pk)[-1]
    senders = [Sender(i, tokens[i], room.pk) for i in range(CLIENTS)]
    servers = [start_server(tmp_path, (), **LOAD_ENV)]
    try:
        in_flight_at_kill = asyncio.run(_traffic_with_a_kill(servers, senders, tmp_path))
    finally:
        for server in servers:
            server.stop()
    assert in_flight_at_kill, "the kill hit no message in flight"
    assert all(s.reconnects for s in senders), "every client lost its connection"

    stored = {e.client_msg_id: e for e in RoomEvent.objects.filter(
        room_id=room.pk, kind="message", client_msg_id__isnull=False)}
    for sender in senders:
        ids = [sender.client_msg_id(n) for n in range(MESSAGES_EACH)]
        # Every message acked, and stored once with the seq its ack gave.
        assert list(sender.acked) == ids
        assert {cmid: stored[cmid].seq for cmid in ids} == sender.acked
        assert all(stored[cmid].sender_id == users[sender.index].pk for cmid in ids)
        # In the order the client sent them.
        seqs = [sender.acked[cmid] for cmid in ids]
        assert seqs == sorted(seqs)
    # Nothing else stored, nothing twice, and the room's stream has no gap.
    assert len(stored) == CLIENTS * MESSAGES_EACH
    assert RoomEvent.objects.filter(room_id=room.pk, kind="message").count() == len(stored)
    assert room_seqs(room.pk) == list(range(1, start_seq + len(stored) + 1))
    # Messages without an ack at the kill were sent again; whether the dead server had
    # stored them or not, each is one row with the seq of its (second) ack, checked above.
    assert any(s.resent for s in senders)


def test_a_resend_after_reconnect_gets_the_stored_seq_and_no_duplicate(
        make_group: Any, tmp_path: Path) -> None:
    """The resend path on its own: a message stored and acked, the server killed, the same
    client_msg_id sent again to the restarted server."""
    room, _, tokens = make_group(2)
    servers = [start_server(tmp_path, (), **LOAD_ENV)]
    server = servers[0]

    async def scenario() -> tuple[protocol.Ack, protocol.Ack]:
        send = {"type": "chat.send", "room": room.pk, "client_msg_id": "once", "text": "нэг"}
        ws, _ = await open_socket(server.ws_url, tokens[0], {})
        await ws.send(json.dumps({**send, "id": "first"}))
        first = await answer(ws, "first")
        kill(server)
        servers.append(await asyncio.to_thread(start_server, tmp_path, (), **LOAD_ENV))
        ws, _ = await open_socket(servers[-1].ws_url, tokens[0], {})
        await ws.send(json.dumps({**send, "id": "again"}))
        again = await answer(ws, "again")
        await ws.close()
        return first, again

    try:
        first, again = asyncio.run(scenario())
    finally:
        for process in servers:
            process.stop()
    assert isinstance(first, protocol.Ack) and isinstance(again, protocol.Ack)
    assert (again.seq, again.message_id) == (first.seq, first.message_id)
    assert RoomEvent.objects.filter(room_id=room.pk, client_msg_id="once").count() == 1
