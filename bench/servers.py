"""The servers under test: started on loopback, pinned to the server core, stopped for sure.

Each runs in a process group of its own with a raised file-descriptor limit; `stop()` ends the
group (SIGTERM, then SIGKILL). Memory and CPU are read from /proc/PID of the server process.
"""

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_CORE = 0
LOAD_CORE = 1
NOFILE = 65536
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Limits raised so that the bench measures throughput, never a rate limit.
UNLIMITED = {
    "SONOR_CHAT_SEND_RATE": str(10**9),
    "SONOR_WS_RATE_PER_SECOND": str(10**9),
    "SONOR_WS_RATE_BURST": str(10**9),
    "SONOR_AGENCY_RATE_PER_MINUTE": str(10**9),
    # every bench socket comes from 127.0.0.1
    "SONOR_WS_MAX_SOCKETS_PER_ADDRESS": str(10**9),
    "SONOR_LOG_LEVEL": "WARNING",
}

def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE as far as allowed; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (NOFILE, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

@dataclass
class Backend:
    """Where a Sonor server keeps its data: `env` is added to the server's environment."""

    name: str  # "embedded" or "pg"
    env: dict[str, str]
    data: dict = field(default_factory=dict)  # what bench.prepare wrote

@dataclass
class Server:
    name: str  # e.g. "raw", "sonor-embedded-uvicorn"
    kind: str  # "raw" or "sonor"
    asgi: str  # "uvicorn" or "daphne"
    backend: Backend | None
    log_dir: Path
    root: Path = ROOT  # the checkout a Sonor server runs from (bench/ab.py compares two)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1"

    def command(self) -> list[str]:
        if self.kind == "sonor":  # as it is shipped: manage.py serve (uvicorn or daphne)
            server = ["manage.py", "serve", "--port", str(self.port), "--server", self.asgi]
        else:
            server = ["-m", "uvicorn", "--loop", "uvloop", "--http", "httptools",
                      "--ws", "websockets", "bench.raw_app:app", "--host", "127.0.0.1",
                      "--port", str(self.port), "--no-access-log", "--log-level", "warning"]
        command = [sys.executable, *server]
        profile_dir = os.environ.get("BENCH_PYSPY_DIR")
        if profile_dir and self.kind == "sonor":  # sampled stacks of the server, for profiling runs
            out = Path(profile_dir) / f"{self.name}-{time.strftime('%H%M%S')}.txt"
            # BENCH_PYSPY_GIL=1: only threads holding the GIL, i.e. where the CPU goes
            gil = ["--gil"] if os.environ.get("BENCH_PYSPY_GIL") else []
            command = ["py-spy", "record", "--nonblocking", "--threads", "-r", "200", "-f",
                       "raw", *gil, "-o", str(out), "--", *command]
        return ["taskset", "-c", str(SERVER_CORE), *command]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "REDIS_URL", "SONOR_DATA_DIR")}
        if self.backend is not None:
            env.update(UNLIMITED)
            env.update(self.backend.env)
            env["SONOR_ALLOWED_ORIGINS"] = self.origin
            env["SONOR_ALLOWED_HOSTS"] = "127.0.0.1,localhost"
        return env

    def start(self, timeout: float = 60.0) -> None:
        """Start (again, on the same port if it had one) and wait until it answers HTTP."""
        self.port = self.port or free_port()
        log = (self.log_dir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            self.command(), cwd=self.root, env=self.environment(), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=raise_nofile)
        path = "/healthz" if self.kind == "sonor" else "/"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {log.name}")
            try:
                with urllib.request.urlopen(f"{self.origin}{path}", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s; see {log.name}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """End the whole process group: SIGTERM (or `sig`), SIGKILL after 10 s."""
        if self.process is None:
            return
        if sig == signal.SIGTERM and os.environ.get("BENCH_PYSPY_DIR"):
            sig = signal.SIGINT  # the profiler writes its file on SIGINT only
        for current in (sig, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, current)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        self.process.wait()
        self.process = None

    def kill(self) -> None:
        """A crash: SIGKILL, no clean shutdown."""
        self.stop(signal.SIGKILL)

    def rss_kib(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
