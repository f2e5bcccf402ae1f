"""Sonor's benchmark: every server under test in one run, on this machine, on loopback.

    source .venv/bin/activate
    python -m bench.run --quick                  # ~3 minutes
    python -m bench.run                          # the full profile, ~25 minutes
    python -m bench.run --database-url postgres://postgres@127.0.0.1:5432/sonor_bench \\
        --redis-url redis://127.0.0.1:6379/0     # adds Sonor on PostgreSQL + Redis

Servers: the raw fan-out app (bench/raw_app.py, the ceiling) and Sonor under daphne and
uvicorn, on the embedded default (SQLite in a temporary data dir, in-memory layer) and, when
a database and Redis are given (options or DATABASE_URL / REDIS_URL), on PostgreSQL + Redis.
THE BENCH EMPTIES THAT DATABASE: give it one of its own. Scenarios run one after another,
each over every server in turn (the servers interleaved, each started fresh); servers run on
core 0, the load generator on core 1. Writes results.json, results.md and PNGs to --out
(default bench/results/PROFILE).
"""

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from bench.loadgen import LoadGen
from bench.scenarios import PROFILES, SCENARIOS, SONOR_ONLY, Context
from bench.servers import LOAD_CORE, ROOT, SERVER_CORE, Backend, Server, raise_nofile

ALL_SERVERS = ["raw", "sonor-embedded-daphne", "sonor-embedded-uvicorn", "sonor-pg-daphne",
               "sonor-pg-uvicorn"]


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def pg_reachable(database_url: str, redis_url: str) -> str | None:
    """None when both answer, else why not."""
    if not database_url or not redis_url:
        return "no --database-url / --redis-url (nor DATABASE_URL / REDIS_URL)"
    try:
        import psycopg
        import redis

        psycopg.connect(database_url, connect_timeout=3).close()
        redis.Redis.from_url(redis_url, socket_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip, and say why
        return f"PostgreSQL or Redis not reachable: {type(exc).__name__}: {exc}"
    return None


def prepare(backend: Backend, users: int, work: Path) -> None:
    out = work / f"data-{backend.name}.json"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "SONOR_DATA_DIR")}
    env.update(backend.env)
    env["SONOR_LOG_LEVEL"] = "WARNING"
    log(f"preparing {users} citizens, rooms and an agency in the {backend.name} database")
    subprocess.run([sys.executable, "-m", "bench.prepare", "--users", str(users),
                    "--out", str(out)], cwd=ROOT, env=env, check=True, timeout=900)
    backend.data = json.loads(out.read_text())
    log(f"  prepared in {backend.data['seconds']} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--quick", action="store_const", dest="profile", const="quick",
                        help="the quick profile (~3 minutes)")
    parser.add_argument("--servers", default=",".join(ALL_SERVERS),
                        help=f"comma-separated, of: {', '.join(ALL_SERVERS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    parser.add_argument("--out", type=Path,
                        help="where to write the results (default: bench/results/PROFILE)")
    for name in ("users", "idle_sockets", "storm_sockets", "trial_seconds"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float if "seconds" in name
                            else int, help=f"override the profile's {name}")
    args = parser.parse_args()

    args.out = args.out or ROOT / "bench" / "results" / args.profile
    profile = PROFILES[args.profile]
    for name in ("users", "idle_sockets", "storm_sockets", "trial_seconds"):
        if getattr(args, name) is not None:
            setattr(profile, name, getattr(args, name))
    if not 10 <= profile.users <= 10_000:
        parser.error("--users is 10 to 10,000")
    wanted = [s for s in args.servers.split(",") if s]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for name in wanted:
        if name not in ALL_SERVERS:
            parser.error(f"unknown server {name!r}")
    for name in scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")

    # A SIGTERM (a timeout, a CI cancel) unwinds like Ctrl-C: the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    nofile = raise_nofile()
    if os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {LOAD_CORE})  # the workers inherit it
    started = time.monotonic()
    results: dict = {"meta": {
        "profile": args.profile, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "bench.run", *sys.argv[1:]]),
        "cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "load_before": _load(), "server_core": SERVER_CORE, "load_core": LOAD_CORE,
        "workers": args.workers, "nofile": nofile, "profile_values": vars(profile),
    }, "servers": [], "skipped": [], "scenarios": {}}

    with tempfile.TemporaryDirectory(prefix="sonor-bench-") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        backends: dict[str, Backend] = {}
        if any("embedded" in s for s in wanted):
            (work / "embedded").mkdir()
            backends["embedded"] = Backend("embedded", {"SONOR_DATA_DIR": str(work / "embedded")})
        if any("-pg-" in s for s in wanted):
            why = pg_reachable(args.database_url, args.redis_url)
            if why:
                log(f"skipping Sonor on PostgreSQL + Redis: {why}")
                results["skipped"].append(f"Sonor on PostgreSQL + Redis: {why}")
                wanted = [s for s in wanted if "-pg-" not in s]
            else:
                (work / "pg").mkdir()
                backends["pg"] = Backend("pg", {"SONOR_DATA_DIR": str(work / "pg"),
                                                "DATABASE_URL": args.database_url,
                                                "REDIS_URL": args.redis_url})
        for backend in backends.values():
            prepare(backend, profile.users, work)
        servers = []
        for name in wanted:
            kind = "raw" if name == "raw" else "sonor"
            backend = None if kind == "raw" else backends[name.split("-")[1]]
            servers.append(Server(name=name, kind=kind, asgi=name.rsplit("-", 1)[-1]
                                  if kind == "sonor" else "uvicorn",
                                  backend=backend, log_dir=work / "logs"))
        results["servers"] = [s.name for s in servers]

        loadgen = LoadGen(args.workers)
        try:
            ctx = Context(profile, loadgen, log)
            for scenario in scenarios:
                per_server = results["scenarios"].setdefault(scenario, {})
                for server in servers:
                    if scenario in SONOR_ONLY and server.kind == "raw":
                        continue
                    log(f"{scenario} on {server.name}")
                    try:
                        per_server[server.name] = SCENARIOS[scenario](ctx, server)
                    except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
                        traceback.print_exc()
                        per_server[server.name] = {"error": f"{type(exc).__name__}: {exc}"}
                        _show_log(server)
                    finally:
                        server.stop()
                _finish(results, started, args.out)  # what is measured so far, if stopped later
        finally:
            loadgen.close()
            for server in servers:
                server.stop()
    _finish(results, started, args.out)
    log(f"done in {results['meta']['seconds']:.0f} s: {args.out / 'results.md'}")


def _finish(results: dict, started: float, out: Path) -> None:
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    results["meta"]["load_after"] = _load()
    report.write(results, out)


def _show_log(server: Server) -> None:
    path = server.log_dir / f"{server.name}.log"
    if path.exists():
        tail = path.read_text(errors="replace")[-3000:]
        log(f"last lines of {server.name}'s log:\n{tail}")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
