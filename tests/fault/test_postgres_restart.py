"""PostgreSQL restarted under load. The test runs a PostgreSQL of its own (initdb and pg_ctl
in a temporary directory, on a free port; as the `postgres` OS user when the test runs as
root), never the shared one. While it is down, the REST API answers 503 `unavailable` in JSON
with Retry-After, and a socket's chat.send gets an `error` frame `unavailable` with
retry_after, the socket staying open; once PostgreSQL is back, the same server process and
the same socket work again, and every acked message is stored."""

import asyncio
import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chatserver.core import protocol
from tests.e2e.conftest import ROOT, LiveServer, start_server
from tests.fault.conftest import LOAD_ENV, answer, open_socket
from tests.loopback import free_port

_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not _BIN, reason="needs PostgreSQL's initdb and pg_ctl"),
]

DOWN_SECONDS = 4
RECOVER_WITHIN = 20.0


class OwnPostgres:
    """A PostgreSQL cluster in a temporary directory on a free loopback port."""

    def __init__(self) -> None:
        self.bin = Path(_BIN[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sonor-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.as_root = os.geteuid() == 0
        if self.as_root:  # PostgreSQL refuses to run as root
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/sonor"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                        "-c fsync=off -c full_page_writes=off", "start")

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in a restart or a failover."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    postgres = OwnPostgres()
    try:
        postgres.start()
        with psycopg.connect(postgres.url.rsplit("/", 1)[0] + "/postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE sonor")
        yield postgres
    finally:
        postgres.remove()


_SEED = """
import json
from django.db import transaction
from django.utils import timezone
from identity.services import _phone_bind, citizen_create, session_create
from chatserver.chat import invites as chat_invites
from chatserver.chat import rooms as chat_rooms
ana = citizen_create(register_number="УБ99011512", name="Ану")
bold = citizen_create(register_number="УБ98021534", name="Болд")
with transaction.atomic():
    _phone_bind(user=ana, e164="+97691100001", now=timezone.now())
    _phone_bind(user=bold, e164="+97691100002", now=timezone.now())
invite = chat_rooms.room_direct_get_or_create(user=ana, phone="+97691100002")
room = chat_invites.invitation_accept(user=bold, invitation_id=invite.pk)
print(json.dumps({"room": room.pk, "token": session_create(user=ana, login_method="test")[1]}))
"""


def _manage(url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": url, "SONOR_DEMO": "1"}
    env.pop("REDIS_URL", None)
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          check=True, capture_output=True, text=True, timeout=180)
    return done.stdout


def _get(server: LiveServer, path: str, token: str) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(f"{server.url}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, _lower(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers), json.loads(error.read())


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


async def _restart_under_load(server: LiveServer, postgres: OwnPostgres, room_id: int,
                              token: str) -> dict[str, Any]:
    ws, _ = await open_socket(server.ws_url, token, {})
    acked: dict[str, int] = {}
    n = 0

    async def send() -> Any:
        nonlocal n
        n += 1
        cmid = f"m{n}"
        frame = await asyncio.wait_for(_send(ws, room_id, cmid), timeout=30)
        if isinstance(frame, protocol.Ack) and frame.seq is not None:
            acked[cmid] = frame.seq
        return frame

    async def rest() -> tuple[int, dict[str, str], Any]:
        return await asyncio.to_thread(_get, server, "/api/v1/me", token)

    before = (await send(), await rest())
    await asyncio.to_thread(postgres.stop)
    down_answers = []
    down_until = time.monotonic() + DOWN_SECONDS
    while time.monotonic() < down_until:
        down_answers.append((await send(), await rest()))
        await asyncio.sleep(0.2)
    await asyncio.to_thread(postgres.start)
    # Back: the same process and the same socket work again within a bound.
    recovered_after = None
    started = time.monotonic()
    while time.monotonic() - started < RECOVER_WITHIN:
        frame, (status, _, _) = await send(), await rest()
        if isinstance(frame, protocol.Ack) and status == 200:
            recovered_after = time.monotonic() - started
            break
        await asyncio.sleep(0.2)
    after = (await send(), await rest())
    await ws.close()
    return {"before": before, "down": down_answers, "after": after, "acked": acked,
            "recovered_after": recovered_after}


async def _send(ws: Any, room_id: int, cmid: str) -> Any:
    await ws.send(json.dumps({"type": "chat.send", "id": cmid, "room": room_id,
                              "client_msg_id": cmid, "text": f"мессеж {cmid}"}))
    return await answer(ws, cmid)


def test_a_postgres_restart_answers_retry_then_recovers_without_restarting_sonor(
        own_postgres: OwnPostgres, tmp_path: Path) -> None:
    _manage(own_postgres.url, "migrate", "--no-input")
    seed = json.loads(_manage(own_postgres.url, "shell", "-c", _SEED).strip().splitlines()[-1])
    server = start_server(tmp_path, (), **LOAD_ENV, DATABASE_URL=own_postgres.url)
    try:
        result = asyncio.run(_restart_under_load(server, own_postgres, seed["room"],
                                                 seed["token"]))
        assert server.process.poll() is None, "the server process died"
    finally:
        server.stop()

    frame, (status, _, _) = result["before"]
    assert isinstance(frame, protocol.Ack) and status == 200
    # While PostgreSQL is down: retryable errors, in JSON, nothing else (no 500, no HTML,
    # no closed socket, no hang).
    assert result["down"]
    for frame, (status, headers, body) in result["down"]:
        assert isinstance(frame, protocol.ErrorFrame), frame
        assert frame.code == "unavailable" and float(str(frame.extra["retry_after"])) > 0, frame
        assert status == 503, (status, body)
        assert body["code"] == "unavailable" and body["extra"]["retry_after"] > 0
        assert int(headers["retry-after"]) >= 1
        assert headers["content-type"].startswith("application/json")
    # Back without restarting Sonor, on the same socket.
    assert result["recovered_after"] is not None, "did not recover"
    frame, (status, _, body) = result["after"]
    assert isinstance(frame, protocol.Ack) and status == 200, (frame, body)
    # Every acked message is stored, with its ack's seq.
    with psycopg.connect(own_postgres.url.replace("postgres://", "postgresql://")) as conn:
        stored: dict[str, int] = dict(conn.execute(
            "SELECT client_msg_id, seq FROM chatserver_roomevent WHERE room_id = %s "
            "AND client_msg_id IS NOT NULL", (seed["room"],)).fetchall())
    assert stored == result["acked"]
