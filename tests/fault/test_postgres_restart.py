"""PostgreSQL restarted under load. The test runs a PostgreSQL of its own (initdb and pg_ctl
in a temporary directory, on a free port; as the `postgres` OS user when the test runs as
root), never the shared one. While it is down, the REST API answers 503 `unavailable` in JSON
with Retry-After, and a socket's chat.send gets an `error` frame `unavailable` with
retry_after, the socket staying open, and a socket that connects is closed with 4503 (try
again later, counted in /metrics); once PostgreSQL is back, the same server process and the
same socket work again, a new socket connects, and every acked message is stored. An agency's
burst of notifications through the restart gets 202 or a JSON 503 with Retry-After for each;
retries with the same Idempotency-Key after recovery are accepted, and every notification is
stored exactly once."""

import asyncio
import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
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
from tests.fault.conftest import LOAD_ENV, answer, connect_close_code, open_socket
from tests.loopback import free_port
from tests.notify.helpers import notification_body

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
        close_code = await connect_close_code(server.ws_url, token)
        down_answers.append((await send(), await rest(), close_code))
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
    new_ws, welcome = await open_socket(server.ws_url, token, {})
    await new_ws.close()
    metrics = await asyncio.to_thread(_metrics, server)
    return {"before": before, "down": down_answers, "after": after, "acked": acked,
            "recovered_after": recovered_after, "welcome_after": welcome, "metrics": metrics}


def _metrics(server: LiveServer) -> str:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
        text: str = response.read().decode()
    return text


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
    for frame, (status, headers, body), close_code in result["down"]:
        assert close_code == protocol.CLOSE_TRY_AGAIN_LATER == 4503, close_code
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
    assert isinstance(result["welcome_after"], protocol.Welcome)
    refused = [line for line in result["metrics"].splitlines()
               if line.startswith('sonor_sockets_refused_total{reason="unavailable"}')]
    assert refused and float(refused[0].split()[-1]) == len(result["down"]), refused
    # Every acked message is stored, with its ack's seq.
    with psycopg.connect(own_postgres.url.replace("postgres://", "postgresql://")) as conn:
        stored: dict[str, int] = dict(conn.execute(
            "SELECT client_msg_id, seq FROM chatserver_roomevent WHERE room_id = %s "
            "AND client_msg_id IS NOT NULL", (seed["room"],)).fetchall())
    assert stored == result["acked"]


_SEED_AGENCY = """
import json
from identity.services import citizen_create
from notify.agency_services import agency_create
citizen = citizen_create(register_number="УБ99011512", name="Ану")
agency, key = agency_create(name="Улсын бүртгэлийн ерөнхий газар")
print(json.dumps({"register_number": citizen.register_number, "key": key}))
"""

BURST_CLIENTS = 6
BURST_MAX_REQUESTS = 1500  # a bound on the whole test's traffic


def _post(server: LiveServer, key: str, idempotency_key: str, register_number: str
          ) -> tuple[int, dict[str, str], Any]:
    body = json.dumps(notification_body(register_number, reference=idempotency_key)).encode()
    request = urllib.request.Request(
        f"{server.url}/api/agency/v1/notifications", data=body, method="POST",
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key,
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, _lower(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers), json.loads(error.read())


def _burst_through_restart(server: LiveServer, postgres: OwnPostgres, key: str,
                           register_number: str) -> dict[str, Any]:
    """BURST_CLIENTS threads post notifications, each with a key of its own, from before
    PostgreSQL stops until after it is back; then every refused one is sent again with its
    key, and a few accepted ones too."""
    answers: dict[str, tuple[int, dict[str, str], Any]] = {}
    sending = threading.Event()
    sending.set()
    lock = threading.Lock()

    def client(index: int) -> None:
        n = 0
        while sending.is_set():
            with lock:
                if len(answers) >= BURST_MAX_REQUESTS:
                    return
            idempotency_key = f"c{index}-{n}"
            try:
                answer = _post(server, key, idempotency_key, register_number)
            except Exception as exc:  # no answer at all (a reset, a timeout): the test fails
                answer = (0, {}, repr(exc))
            with lock:
                answers[idempotency_key] = answer
            n += 1
            if answer[0] == 503:  # a client backs off (briefer than Retry-After, to keep load)
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(BURST_CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        postgres.stop()
        time.sleep(DOWN_SECONDS)
        postgres.start()
        # Back: the burst goes on until requests are stored again, within a bound.
        recovered = False
        started = time.monotonic()
        while not recovered and time.monotonic() - started < RECOVER_WITHIN:
            time.sleep(0.2)
            with lock:
                recent = list(answers.values())[-BURST_CLIENTS:]
            recovered = bool(recent) and all(status == 202 for status, _, _ in recent)
        time.sleep(1)
    finally:
        sending.clear()
        for thread in threads:
            thread.join(timeout=60)
    refused = [k for k, (status, _, _) in answers.items() if status != 202]
    accepted = [k for k, (status, _, _) in answers.items() if status == 202]
    retries = {k: _retry(server, key, k, register_number) for k in refused + accepted[:20]}
    return {"answers": answers, "retries": retries, "recovered": recovered}


def _retry(server: LiveServer, key: str, idempotency_key: str, register_number: str
           ) -> tuple[int, dict[str, str], Any]:
    """As a client retries: again while the answer is 503 (a pooled database connection that
    the restart cut fails once before it is replaced), a few times."""
    for _ in range(5):
        answer = _post(server, key, idempotency_key, register_number)
        if answer[0] != 503:
            break
        time.sleep(0.2)
    return answer


def test_an_agency_burst_through_a_postgres_restart_stores_each_notification_once(
        own_postgres: OwnPostgres, tmp_path: Path) -> None:
    _manage(own_postgres.url, "migrate", "--no-input")
    seed = json.loads(_manage(own_postgres.url, "shell", "-c", _SEED_AGENCY)
                      .strip().splitlines()[-1])
    server = start_server(tmp_path, (), **LOAD_ENV, SONOR_AGENCY_RATE_PER_MINUTE="1000000",
                          DATABASE_URL=own_postgres.url)
    try:
        result = _burst_through_restart(server, own_postgres, seed["key"],
                                        seed["register_number"])
        assert server.process.poll() is None, "the server process died"
    finally:
        server.stop()

    answers: dict[str, tuple[int, dict[str, str], Any]] = result["answers"]
    retries: dict[str, tuple[int, dict[str, str], Any]] = result["retries"]
    statuses = [status for status, _, _ in answers.values()]
    # Every answer is a 202 or a retryable 503 in JSON: no 500, no HTML, no hang.
    assert set(statuses) <= {202, 503}, sorted(set(statuses))
    assert 503 in statuses, "no request was refused: PostgreSQL was not down"
    assert result["recovered"], "requests were not stored again after PostgreSQL came back"
    for status, headers, body in answers.values():
        assert headers["content-type"].startswith("application/json")
        if status == 503:
            assert body["code"] == "unavailable" and body["extra"]["retry_after"] > 0, body
            assert int(headers["retry-after"]) >= 1
    # After recovery every retry with the same key is accepted; one accepted before answers
    # with its first id, marked as replayed.
    for idempotency_key, (status, headers, body) in retries.items():
        assert status == 202, (idempotency_key, status, body)
        first_status, _, first_body = answers[idempotency_key]
        if first_status == 202:
            assert body["id"] == first_body["id"] and headers["idempotent-replayed"] == "true"
    # Every key is stored exactly once, with the id its 202 gave.
    with psycopg.connect(own_postgres.url.replace("postgres://", "postgresql://")) as conn:
        stored = conn.execute("SELECT idempotency_key, count(*), min(id) FROM "
                              "notify_notification WHERE idempotency_key <> '' "
                              "GROUP BY idempotency_key").fetchall()
    assert {k: n for k, n, _ in stored} == dict.fromkeys(answers, 1)
    ids = {k: i for k, _, i in stored}
    for idempotency_key, (status, _, body) in answers.items():
        if status == 202:
            assert ids[idempotency_key] == body["id"]
    for idempotency_key, (_, _, body) in retries.items():
        assert ids[idempotency_key] == body["id"]
