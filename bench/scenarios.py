"""The measurements. Each scenario starts the server, drives it, stops it (always), and returns
a JSON-able dict. Rates are messages a second; deliveries = messages x room members.

chat          fixed-rate trials and a rate search, rooms of 10 and the big room, then 1.5x
              the best rate of the rooms of 10 (saturation)
connections   open sockets in batches: connects/s per batch, server RSS per batch, idle CPU
agency        agency POST → notify.new on the citizen's socket (Sonor only)
storm         kill the server under N resumed sockets, restart, verify no event is missed
              (Sonor only)
"""

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench.loadgen import LoadGen, SocketSpec
from bench.servers import Server

P99_BOUND_MS = 100.0
RAW_BIG_ROOM = 1_000_000  # the raw app's big room id (rooms of 10 are 1, 2, ...)


# uvicorn and daphne ping every open socket every 20 s. An idle interval of that length
# holds one ping of every socket on every server, however long its sockets took to open;
# a shorter one held them only for a server that opened its sockets slowly (measured: a
# ping's write was 65 % of such a server's "idle" CPU, and none fell in the raw app's).
KEEPALIVE_SECONDS = 20


@dataclass
class Profile:
    users: int  # prepared citizens; the chat scenario opens one socket each
    trial_seconds: float
    fixed_small: float  # msgs/s of the fixed-rate trial in rooms of 10 (same for every server)
    fixed_big: float  # ... and in the big room
    start_small: float  # first rate of the search
    start_big: float
    max_steps: int  # rate search: steps of x`factor` at most, then `refine` bisections
    refine: int
    factor: float
    tries: int  # a rate holds when one of this many trials holds (the machine is noisy);
    # the fixed-rate trial runs this many times and reports the one with the median p99
    saturation_seconds: float
    idle_sockets: int
    connect_batch: int
    idle_seconds: float  # full: one keepalive interval (KEEPALIVE_SECONDS)
    notify_users: int
    notify_rates: tuple[float, ...]  # agency POSTs/s per step; the first is a warm-up
    storm_sockets: int
    storm_jitter: float
    drain_max: float = 15.0  # a trial's drain: at most this long,
    quiet: float = 1.0  # ending when nothing arrived for this long


PROFILES = {
    "full": Profile(users=1000, trial_seconds=3, fixed_small=100, fixed_big=2, start_small=50,
                    start_big=2, max_steps=14, refine=2, factor=1.5, tries=3, saturation_seconds=8,
                    idle_sockets=10_000, connect_batch=1000, idle_seconds=KEEPALIVE_SECONDS,
                    notify_users=200,
                    notify_rates=(50, 100, 200, 400, 600, 800, 1000, 1200, 1600),
                    storm_sockets=5000,
                    storm_jitter=5),
    "quick": Profile(users=100, trial_seconds=1.5, fixed_small=50, fixed_big=2, start_small=50,
                     start_big=4, max_steps=7, refine=1, factor=2.0, tries=2,
                     saturation_seconds=2, idle_sockets=500, connect_batch=125, idle_seconds=2,
                     notify_users=50,
                     notify_rates=(25, 100, 200, 400, 600, 800, 1000, 1200), storm_sockets=100,
                     storm_jitter=1, drain_max=10, quiet=0.5),
    "smoke": Profile(users=20, trial_seconds=1, fixed_small=5, fixed_big=2, start_small=5,
                     start_big=2, max_steps=1, refine=0, factor=2.0, tries=1, saturation_seconds=1,
                     idle_sockets=40, connect_batch=20, idle_seconds=1,
                     notify_users=10, notify_rates=(5, 5), storm_sockets=20,
                     storm_jitter=0.5, drain_max=5, quiet=0.3),
}


class Context:
    def __init__(self, profile: Profile, loadgen: LoadGen, log: Any) -> None:
        self.profile = profile
        self.loadgen = loadgen
        self.log = log
        self.trials = itertools.count(1)
        self.server: Server | None = None  # the server under test (set by each scenario)


def socket_specs(server: Server, count: int, users: int) -> list[SocketSpec]:
    """Socket i belongs to citizen i % users: rooms [its room of 10, the big room]."""
    specs = []
    for i in range(count):
        user = i % users
        if server.kind == "raw":
            rooms = [user // 10 + 1, RAW_BIG_ROOM]
            specs.append(SocketSpec(url=f"{server.ws_url}?rooms={rooms[0]},{rooms[1]}",
                                    token=None, origin=None, rooms=rooms))
        else:
            data = server.backend.data  # type: ignore[union-attr]
            specs.append(SocketSpec(url=server.ws_url, token=data["tokens"][user],
                                    origin=server.origin,
                                    rooms=[data["small_room_of"][user], data["big_room"]]))
    return specs


def _split(items: list[Any], workers: int) -> list[list[Any]]:
    return [items[w::workers] for w in range(workers)]


def open_sockets(ctx: Context, specs: list[SocketSpec]) -> tuple[float, float]:
    """Open them all (spread over the workers); raises unless every one opened.
    Returns the seconds it took and the generator's CPU seconds."""
    started = time.monotonic()
    parts = ctx.loadgen.call("open", [{"specs": part, "concurrency": 50}
                                      for part in _split(specs, ctx.loadgen.size)])
    failures = Counter()
    for part in parts:
        failures.update(part["failures"])
    if failures:
        raise RuntimeError(f"{sum(failures.values())} of {len(specs)} sockets did not open: "
                           f"{dict(failures)}")
    return time.monotonic() - started, sum(part["cpu_seconds"] for part in parts)


def _shares(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights`, in whole numbers that add up to it."""
    exact = [total * w / sum(weights) for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[:total - sum(counts)]:
        counts[i] += 1
    return counts


def _pct_ms(hist: Any, p: float) -> float | None:
    return round(hist.get_value_at_percentile(p) / 1000, 1) if hist.get_total_count() else None


def run_trial(ctx: Context, specs: list[SocketSpec], room_index: int, rate: float,
              seconds: float, senders: list[int], seqs: bool = False) -> dict[str, Any]:
    """One open-loop trial at `rate` msgs/s; loss counted against every room member.
    `seqs`: include the last acknowledged seq of each room."""
    lg = ctx.loadgen
    counts = _shares(round(rate * seconds), senders)
    assert ctx.server is not None
    server_cpu, began = ctx.server.cpu_seconds(), time.monotonic()
    start_at = time.time() + 0.3
    trial = f"t{next(ctx.trials)}"
    lg.call("send", [{
        "trial": trial, "room_index": room_index, "rate": rate * n / sum(senders),
        "count": count, "drain_max": ctx.profile.drain_max, "quiet": ctx.profile.quiet,
        "start_at": start_at + w / rate}
        for w, (n, count) in enumerate(zip(senders, counts, strict=True))])
    got = lg.collect()
    wall = time.monotonic() - began
    members = Counter(spec.rooms[room_index] for spec in specs)
    expected = sum(count * members[room] for room, count in got["acked"].items())
    hist = got["chat_hist"]
    result = {
        "rate": round(rate, 2), "seconds": seconds,
        "offered_deliveries_per_s": round(rate * (expected / max(1, sum(got["acked"].values())))),
        "sent": got["sent"], "acked": sum(got["acked"].values()), "unacked": got["unacked"],
        "delivered": got["delivered"], "expected": expected,
        "lost": expected - got["delivered"],
        "deliveries_per_s": round(got["delivered"] / seconds),
        "p50_ms": _pct_ms(hist, 50), "p99_ms": _pct_ms(hist, 99),
        "max_ms": round(hist.get_max_value() / 1000, 1) if hist.get_total_count() else None,
        "errors": dict(got["errors"]), "closes": {str(k): v for k, v in got["closes"].items()},
        # Busy share of a core over the trial and its drain: the server's and the generator's
        # (all workers) — the generator must not be the one at 100 %.
        "server_cpu_percent": round(100 * (ctx.server.cpu_seconds() - server_cpu) / wall),
        "generator_cpu_percent": round(100 * got["cpu_seconds"] / wall),
        # The server's CPU time per delivery (its receiving and storing included): the figure
        # that a busy machine disturbs least, since a waiting server spends none.
        "server_cpu_us_per_delivery": round(
            1e6 * (ctx.server.cpu_seconds() - server_cpu) / got["delivered"], 1)
        if got["delivered"] else None,
    }
    if seqs:
        result["max_seq"] = got["max_seq"]
    result["held"] = bool(
        result["p99_ms"] is not None and result["p99_ms"] <= P99_BOUND_MS
        and result["lost"] == 0 and result["unacked"] == 0 and not result["errors"]
        and not result["closes"] and result["sent"] > 0)
    ctx.log(f"    {trial} rate {rate:.1f}/s: delivered {result['delivered']}/{expected} "
            f"p50 {result['p50_ms']} p99 {result['p99_ms']} ms unacked {result['unacked']} "
            f"{'held' if result['held'] else 'NOT held'} (cpu: server "
            f"{result['server_cpu_percent']}%, generator {result['generator_cpu_percent']}%)"
            f"{' ' + str(result['errors']) if result['errors'] else ''}"
            f"{' closes ' + str(result['closes']) if result['closes'] else ''}")
    return result


def warm_up(ctx: Context, specs: list[SocketSpec], senders: list[int]) -> None:
    """A short trial in each layout whose figures are dropped: first requests are slow (lazy
    imports, connection set-up, caches), and that is not what the trials measure."""
    run_trial(ctx, specs, 0, ctx.profile.fixed_small, 1.0, senders)
    run_trial(ctx, specs, 1, ctx.profile.fixed_big, 1.0, senders)


def first_held(trial: Callable[[], dict[str, Any]], tries: int,
               steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Run `trial` until one holds, at most `tries` times (the machine is noisy); every run
    goes to `steps`. Returns the last."""
    for _ in range(tries):
        step = trial()
        steps.append(step)
        if step["held"]:
            break
    return step


def rate_search(ctx: Context, specs: list[SocketSpec], room_index: int, start: float,
                senders: list[int]) -> dict[str, Any]:
    """Step the rate up (x`factor`) until a rate does not hold in `tries` trials (p99 > 100 ms,
    loss, unacked, errors), then bisect `refine` times between the best held and the first
    failed rate."""
    p = ctx.profile
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    failed: float | None = None
    rate = start

    def attempt(rate: float) -> dict[str, Any]:
        return first_held(
            lambda: run_trial(ctx, specs, room_index, rate, p.trial_seconds, senders),
            p.tries, steps)

    for _ in range(p.max_steps):
        step = attempt(rate)
        if not step["held"]:
            failed = rate
            break
        best = step
        rate *= p.factor
    for _ in range(p.refine if failed is not None and best is not None else 0):
        rate = (best["rate"] * failed) ** 0.5  # type: ignore[index, operator]
        step = attempt(rate)
        if step["held"]:
            best = step
        else:
            failed = rate
    return {
        "held_rate": best["rate"] if best else 0,
        "held_deliveries_per_s": best["deliveries_per_s"] if best else 0,
        "held_p99_ms": best["p99_ms"] if best else None,
        "capped": failed is None,  # never failed: the server's limit is higher still
        "steps": steps,
    }


class RssSampler:
    """The server's RSS every 0.25 s in a thread, while a trial runs."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(0.25):
            try:
                self.peak = max(self.peak, self.server.rss_kib())
            except (OSError, AssertionError):
                return

    def __enter__(self) -> "RssSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()


def chat(ctx: Context, server: Server) -> dict[str, Any]:
    p = ctx.profile
    ctx.server = server
    server.start()
    try:
        specs = socket_specs(server, p.users, p.users)
        open_sockets(ctx, specs)
        senders = ctx.loadgen.call("senders")
        warm_up(ctx, specs, senders)
        result: dict[str, Any] = {"sockets": len(specs), "big_room_members": p.users}
        for name, index, fixed, start in (("rooms_of_10", 0, p.fixed_small, p.start_small),
                                          ("big_room", 1, p.fixed_big, p.start_big)):
            ctx.log(f"  {name}: fixed rate {fixed}/s, then the rate search")
            tries = [run_trial(ctx, specs, index, fixed, p.trial_seconds, senders)
                     for _ in range(p.tries)]
            median = sorted(tries, key=lambda t: t["p99_ms"] or 0)[len(tries) // 2]
            result[name] = {
                "fixed": median, "fixed_tries": tries,
                "search": rate_search(ctx, specs, index, start, senders),
            }
        # 1.5x the sustained rate of the rooms of 10: every drop counted, memory bounded.
        rate = 1.5 * max(result["rooms_of_10"]["search"]["held_rate"], p.start_small)
        ctx.log(f"  saturation: {rate:.0f}/s in rooms of 10")
        rss_before = server.rss_kib()
        with RssSampler(server) as sampler:
            trial = run_trial(ctx, specs, 0, rate, p.saturation_seconds, senders)
        rss_after = server.rss_kib()
        trial.update(rss_before_kib=rss_before, rss_after_kib=rss_after,
                     rss_peak_kib=max(sampler.peak, rss_after),
                     closed_too_slow=trial["closes"].get("4408", 0))
        result["saturation"] = trial
        return result
    finally:
        ctx.loadgen.call("close")
        server.stop()


def connections(ctx: Context, server: Server) -> dict[str, Any]:
    """Open idle sockets in batches; connects/s and server RSS after each batch; idle CPU."""
    p = ctx.profile
    ctx.server = server
    server.start()
    try:
        specs = socket_specs(server, p.idle_sockets, p.users)
        batches = [{"sockets": 0, "rss_kib": server.rss_kib()}]
        server_cpu = generator_cpu = 0.0
        refused: dict[str, Any] | None = None
        for start in range(0, len(specs), p.connect_batch):
            batch = specs[start:start + p.connect_batch]
            cpu_before = server.cpu_seconds()
            try:
                seconds, cpu = open_sockets(ctx, batch)
            except RuntimeError as exc:  # refused connects: the figures so far still count
                ctx.log(f"  stopped at {start} sockets: {exc}")
                refused = {"after_sockets": start, "error": str(exc)}
                break
            server_cpu += server.cpu_seconds() - cpu_before
            generator_cpu += cpu
            batches.append({"sockets": start + len(batch), "seconds": round(seconds, 2),
                            "connects_per_s": round(len(batch) / seconds),
                            "rss_kib": server.rss_kib()})
        cpu_before = server.cpu_seconds()
        time.sleep(p.idle_seconds)
        idle_cpu = (server.cpu_seconds() - cpu_before) / p.idle_seconds
        if len(batches) < 2:
            raise RuntimeError(f"the first batch did not open: {refused}")
        first, last = batches[1], batches[-1]
        per_connection = None
        if last is not first:  # the slope from the first batch to the last
            per_connection = ((last["rss_kib"] - first["rss_kib"])
                              / (last["sockets"] - first["sockets"]))
        ctx.log(f"  {last['sockets']} sockets: {first['connects_per_s']}/s first batch, "
                f"{last['connects_per_s']}/s last; {per_connection} KiB each; "
                f"idle CPU {idle_cpu:.1%}")
        return {
            "sockets": last["sockets"], "wanted": len(specs), "refused": refused,
            "batches": batches,
            "connects_per_s_first": first["connects_per_s"],
            "connects_per_s_last": last["connects_per_s"],
            "kib_per_connection": round(per_connection, 1) if per_connection else None,
            "idle_cpu_percent": round(100 * idle_cpu, 2), "idle_seconds": p.idle_seconds,
            # CPU time per connect: the server's, and the generator's (it must be the smaller)
            "server_cpu_ms_per_connect": round(1000 * server_cpu / last["sockets"], 2),
            "generator_cpu_ms_per_connect": round(1000 * generator_cpu / last["sockets"], 2),
        }
    finally:
        ctx.loadgen.call("close")
        server.stop()


def agency(ctx: Context, server: Server) -> dict[str, Any]:
    """Agency POSTs at stepped rates to citizens whose sockets are open; latency from the
    scheduled POST to `notify.new` on the socket; all 202 and all delivered to hold."""
    p = ctx.profile
    data = server.backend.data  # type: ignore[union-attr]
    registers = data["registers"][:p.notify_users]
    ctx.server = server
    server.start()
    try:
        specs = socket_specs(server, p.notify_users, p.users)
        open_sockets(ctx, specs)
        steps: list[dict[str, Any]] = []
        _agency_step(ctx, server, registers, p.notify_rates[0])  # a warm-up, not reported
        for rate in p.notify_rates[1:]:
            step = first_held(partial(_agency_step, ctx, server, registers, rate), p.tries,
                              steps)
            if not step["held"]:
                break
        held = [s for s in steps if s["held"]]
        return {"sockets": len(specs), "fixed": steps[0], "steps": steps,
                "held_rate": held[-1]["rate"] if held else 0,
                "held_delivered_per_s": held[-1]["delivered_per_s"] if held else 0}
    finally:
        ctx.loadgen.call("close")
        server.stop()


def _agency_step(ctx: Context, server: Server, registers: list[str], rate: float
                 ) -> dict[str, Any]:
    """One agency trial at `rate` POSTs/s, from every generator process."""
    p, data = ctx.profile, server.backend.data  # type: ignore[union-attr]
    trial = f"n{next(ctx.trials)}"
    count = round(rate * p.trial_seconds)
    workers = ctx.loadgen.size  # every worker posts its share, interleaved in time
    start_at = time.time() + 0.3
    ctx.loadgen.call("notify", [{
        "trial": trial, "url": server.origin, "key": data["agency_key"],
        "registers": registers[w::workers], "rate": rate / workers,
        "count": len(range(w, count, workers)), "start_at": start_at + w / rate,
        "drain_max": p.drain_max, "quiet": p.quiet,
    } for w in range(workers)])
    got = ctx.loadgen.collect()
    accepted = got["posts"].get(202, 0)
    step = {
        "rate": round(rate, 2), "posted": count, "accepted": accepted,
        "refused": count - accepted, "delivered": got["notified"],
        "lost": accepted - got["notified"],
        "persisted_per_s": round(accepted / p.trial_seconds, 1),
        "delivered_per_s": round(got["notified"] / p.trial_seconds, 1),
        "socket_p50_ms": _pct_ms(got["notify_hist"], 50),
        "socket_p99_ms": _pct_ms(got["notify_hist"], 99),
        "post_p50_ms": _pct_ms(got["post_hist"], 50),
        "post_p99_ms": _pct_ms(got["post_hist"], 99),
        "statuses": {str(k): v for k, v in got["posts"].items()},
    }
    step["held"] = bool(step["socket_p99_ms"] is not None
                        and step["socket_p99_ms"] <= P99_BOUND_MS
                        and step["refused"] == 0 and step["lost"] == 0)
    ctx.log(f"    {trial} {rate:.0f}/s: accepted {accepted}/{count}, delivered "
            f"{got['notified']}, p99 {step['socket_p99_ms']} ms "
            f"{'held' if step['held'] else 'NOT held'}")
    return step


def storm(ctx: Context, server: Server) -> dict[str, Any]:
    """N sockets know their rooms' last seq; messages are sent and the server is killed in the
    middle; it restarts; every socket reconnects after a random delay with `hello` + resume;
    more messages follow. Every socket must then hold every seq from the first it saw to the
    room's last acknowledged one: misses must be 0."""
    p = ctx.profile
    lg = ctx.loadgen
    ctx.server = server
    server.start()
    try:
        specs = socket_specs(server, p.storm_sockets, p.users)
        for i, spec in enumerate(specs):  # one sender per room of 10: its first citizen
            spec.sender = i < p.users and i % 10 == 0
        open_sockets(ctx, specs)
        lg.call("track")
        senders = lg.call("senders")
        rooms = sum(senders)
        # A: a message in every room, so that each socket learns its rooms' seq.
        run_trial(ctx, specs, 0, rooms, 1.0, senders)
        big = run_trial(ctx, specs, 1, 1, 1.0, [1] + [0] * (lg.size - 1), seqs=True)
        # B: messages in flight when the server dies.
        seconds = 2.0
        start_at = time.time() + 0.3
        lg.post("send", [{"trial": "storm", "room_index": 0, "rate": rooms * n / sum(senders),
                          "count": round(seconds * n), "start_at": start_at + w / rooms,
                          "drain_max": ctx.profile.drain_max, "quiet": ctx.profile.quiet}
                         for w, n in enumerate(senders)])
        time.sleep(0.3 + seconds / 2)
        server.kill()
        killed_at = time.time()
        lg.gather()  # the send phase ends: its sockets are closed
        during = lg.collect()
        # The clients start retrying at once; the server takes its start-up time to come back.
        lg.post("reconnect", [{"jitter": p.storm_jitter, "deadline_s": 120}] * lg.size)
        server.start()
        up_at = time.time()
        reconnects = lg.gather()
        last_welcome = max(r["last_welcome_at"] for r in reconnects)
        reconnected = sum(r["reconnected"] for r in reconnects)
        ctx.log(f"  {reconnected}/{len(specs)} resumed, the last "
                f"{last_welcome - up_at:.1f} s after the restart")
        # C: one more message in every room, live.
        after = run_trial(ctx, specs, 0, rooms, 1.0, senders, seqs=True)
        final: dict[int, int] = dict(big["max_seq"])
        for part in (during["max_seq"], after["max_seq"]):
            for room, seq in part.items():
                final[room] = max(final.get(room, 0), seq)
        checks = lg.call("misses", [{"final_seq": final}] * lg.size)
        misses = sum(c["misses"] for c in checks)
        ctx.log(f"  misses {misses} of {sum(c['checked'] for c in checks)} seqs checked")
        return {
            "sockets": len(specs), "jitter_s": p.storm_jitter,
            "acked_before_kill": sum(during["acked"].values()),
            "restart_s": round(up_at - killed_at, 2), "reconnected": reconnected,
            "reconnect_all_s": round(last_welcome - up_at, 2) if reconnected else None,
            "reconnect_attempts": sum(r["attempts"] for r in reconnects),
            "seqs_checked": sum(c["checked"] for c in checks), "misses": misses,
            "live_after": {k: after[k] for k in ("delivered", "expected", "lost")},
        }
    finally:
        lg.call("close")
        server.stop()


SCENARIOS = {"chat": chat, "connections": connections, "agency": agency, "storm": storm}
SONOR_ONLY = {"agency", "storm"}
