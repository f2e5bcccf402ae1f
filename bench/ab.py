"""Two servers side by side at one fixed rate: before and after a change, or Sonor and the raw
app. The full run's rate search decides a step by one trial of three, so a ratio near its
bound moves with the machine; this runs the same trial many times, the two sides alternating
round by round, and compares medians.

    python -m bench.ab --a . --b ../other-checkout --layout small --rate 2200
    python -m bench.ab --a raw --b . --layout big --rate 45 --backend pg \\
        --database-url postgres://postgres@127.0.0.1:5432/sonor_ab \\
        --redis-url redis://127.0.0.1:6379/0
    python -m bench.ab --a . --b ../other --layout agency --rate 1000

A side is `raw` (bench/raw_app.py) or the path of a Sonor checkout, run with this
interpreter from that directory, so that its own code is imported. Both Sonor sides share
one prepared database (prepared by this checkout's bench.prepare: the schemas must match).
THE BENCH EMPTIES THAT DATABASE. Each round starts each side fresh, opens the sockets, warms
up and runs --trials trials; servers on core 0, the generator on core 1, as in bench.run.
Prints, per side: trials held, medians of p50, p99 and the server's CPU per delivery.
"""

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.loadgen import LoadGen
from bench.run import log, pg_reachable, prepare
from bench.scenarios import (
    PROFILES,
    Context,
    _agency_step,
    open_sockets,
    run_trial,
    socket_specs,
    warm_up,
)
from bench.servers import LOAD_CORE, Backend, Server, raise_nofile

LAYOUTS = {"small": 0, "big": 1}  # the room index of each chat layout; and "agency"


def _side(name: str, label: str, backend: Backend, log_dir: Path, asgi: str) -> Server:
    if name == "raw":
        return Server(name=f"{label}-raw", kind="raw", asgi="uvicorn", backend=None,
                      log_dir=log_dir)
    root = Path(name).resolve()
    if not (root / "manage.py").exists():
        raise SystemExit(f"{name}: not a Sonor checkout (no manage.py)")
    return Server(name=f"{label}-sonor", kind="sonor", asgi=asgi, backend=backend,
                  log_dir=log_dir, root=root)


def _round(ctx: Context, server: Server, layout: str, rate: float, trials: int
           ) -> list[dict[str, Any]]:
    p = ctx.profile
    ctx.server = server
    server.start()
    try:
        if layout == "agency":
            registers = server.backend.data["registers"][:p.notify_users]  # type: ignore[union-attr]
            open_sockets(ctx, socket_specs(server, p.notify_users, p.users))
            _agency_step(ctx, server, registers, p.notify_rates[0])  # warm-up
            results = []
            for _ in range(trials):
                before = server.cpu_seconds()
                step = _agency_step(ctx, server, registers, rate)
                step["server_cpu_us_per_delivery"] = round(
                    1e6 * (server.cpu_seconds() - before) / max(1, step["delivered"]), 1)
                step["p50_ms"], step["p99_ms"] = step["socket_p50_ms"], step["socket_p99_ms"]
                results.append(step)
            return results
        specs = socket_specs(server, p.users, p.users)
        open_sockets(ctx, specs)
        senders = ctx.loadgen.call("senders")
        warm_up(ctx, specs, senders)
        return [run_trial(ctx, specs, LAYOUTS[layout], rate, p.trial_seconds, senders)
                for _ in range(trials)]
    finally:
        ctx.loadgen.call("close")
        server.stop()


def _summary(label: str, trials: list[dict[str, Any]]) -> str:
    def median(key: str) -> str:
        values = [t[key] for t in trials if t.get(key) is not None]
        return f"{statistics.median(values):.1f}" if values else "-"

    held = sum(1 for t in trials if t["held"])
    return (f"{label}: held {held}/{len(trials)}, p50 median {median('p50_ms')} ms, "
            f"p99 median {median('p99_ms')} ms, server CPU per delivery median "
            f"{median('server_cpu_us_per_delivery')} µs")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="raw, or a Sonor checkout's path")
    parser.add_argument("--b", required=True, help="raw, or a Sonor checkout's path")
    parser.add_argument("--layout", choices=[*LAYOUTS, "agency"], default="small")
    parser.add_argument("--rate", type=float, required=True,
                        help="messages (agency: POSTs) a second")
    parser.add_argument("--trials", type=int, default=5, help="per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trial-seconds", type=float, default=3.0)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--backend", choices=("embedded", "pg"), default="embedded")
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    args = parser.parse_args()
    if args.layout == "agency" and "raw" in (args.a, args.b):
        parser.error("the raw app has no agency API")

    profile = PROFILES["full"]
    profile.users, profile.trial_seconds = args.users, args.trial_seconds
    profile.notify_users = min(profile.notify_users, args.users)  # one socket per citizen
    raise_nofile()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {LOAD_CORE})
    with tempfile.TemporaryDirectory(prefix="sonor-ab-") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        env = {"SONOR_DATA_DIR": str(work / "data")}
        (work / "data").mkdir()
        if args.backend == "pg":
            why = pg_reachable(args.database_url, args.redis_url)
            if why:
                raise SystemExit(why)
            env.update(DATABASE_URL=args.database_url, REDIS_URL=args.redis_url)
        backend = Backend(args.backend, env)
        if {args.a, args.b} != {"raw"}:
            prepare(backend, profile.users, work)
        sides = [_side(args.a, "a", backend, work / "logs", args.server),
                 _side(args.b, "b", backend, work / "logs", args.server)]
        results: dict[str, list[dict[str, Any]]] = {side.name: [] for side in sides}
        loadgen = LoadGen(args.workers)
        try:
            ctx = Context(profile, loadgen, log)
            for number in range(1, args.rounds + 1):
                for side in sides:
                    log(f"round {number}/{args.rounds}: {side.name} ({side.root})")
                    results[side.name] += _round(ctx, side, args.layout, args.rate,
                                                 args.trials)
        finally:
            loadgen.close()
            for side in sides:
                side.stop()
    print(f"{args.layout} at {args.rate:g}/s, {args.backend}, {args.server}, "
          f"{args.rounds} rounds x {args.trials} trials of {args.trial_seconds:g} s")
    for side, path in zip(sides, (args.a, args.b), strict=True):
        print(_summary(f"{side.name} ({path})", results[side.name]))


if __name__ == "__main__":
    main()
