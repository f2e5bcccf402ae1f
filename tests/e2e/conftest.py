"""A real server process on a loopback port, sharing the test database with the test.

Data the test commits (transactional_db) is visible to the server; the server's own
channel layer is in-memory unless REDIS_URL is set, so live events must be caused through
the server (HTTP or its sockets), not by calling services in the test process.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from websockets.asyncio.client import ClientConnection

from tests.conftest import server_frame
from tests.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] or "postgres"
    if db["PASSWORD"]:
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class LiveServer:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return self.url

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(log_dir: Path, server_args: tuple[str, ...] = (), **extra_env: str
                 ) -> LiveServer:
    """A server process (manage.py serve) on a free loopback port; `server_args` are extra
    options of the serve command."""
    # SONOR_E2E_SERVER=daphne runs the same tests against daphne (.ci/run does once).
    return start_command(log_dir, lambda port: [
        sys.executable, "manage.py", "serve", "--port", str(port),
        "--server", os.environ.get("SONOR_E2E_SERVER", "uvicorn"), *server_args], **extra_env)


def start_command(log_dir: Path, argv: Callable[[int], list[str]], /, **extra_env: str
                  ) -> LiveServer:
    """The server command line `argv(port)` on a free loopback port, on the test's database,
    once its /healthz answers."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SONOR_DATA_DIR": str(settings.DATA_DIR),
        "SONOR_ALLOWED_ORIGINS": f"http://127.0.0.1:{port}",
        "SONOR_DEMO": "1",
        **extra_env,
    }
    log_path = log_dir / f"server-{port}.log"
    process = subprocess.Popen(
        argv(port), cwd=ROOT, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )
    server = LiveServer(port=port, process=process, log_path=log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not start:\n{server.log()}")


@pytest.fixture
def live_server_factory(transactional_db: None, tmp_path: Path
                        ) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def factory(server_args: tuple[str, ...] = (), **extra_env: str) -> LiveServer:
        server = start_server(tmp_path, server_args, **extra_env)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_server_factory()


def header_dict(headers: Any) -> dict[str, str]:
    """Response headers by name as `Set-Cookie` spells it: uvicorn sends names in lower case,
    daphne capitalised (HTTP names are case-insensitive)."""
    return {name.title(): value for name, value in headers.items()}


def frame_of(raw: str | bytes) -> Any:
    """A frame a server process sent, checked against its protocol model."""
    return server_frame(json.loads(raw))


async def receive(ws: ClientConnection, timeout: float = 10) -> Any:
    return frame_of(await asyncio.wait_for(ws.recv(), timeout=timeout))
