"""Chat fan-out load generator: N device sockets on loopback, one room or rooms of 10.

    python bench/chat_fanout.py --url ws://127.0.0.1:8000 --sockets 200 --layout one \
        --rate 20 --duration 20

It prepares its citizens, sessions and rooms directly in the server's database (run it with
the server's environment: DATABASE_URL or SONOR_DATA_DIR), opens the sockets, sends
`chat.send` at a fixed total rate spread over all senders (so that no one hits the per-user
send limit), and reports deliveries per second and the latency from the message's `sent_at`
(stamped by the server before it commits) to its arrival at each member's socket. Messages
that were acknowledged but not delivered to every member are counted as lost.

Bounded: at most 2,000 sockets and 60 seconds of sending, then a drain of at most 15 s; it
stops by itself.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

MAX_SOCKETS = 2000
MAX_SECONDS = 60.0
DRAIN_SECONDS = 15.0


def _django_setup() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatserver.settings")
    import django

    django.setup()
    from django.conf import settings

    # The bench's citizens are new accounts: let them build big groups here.
    settings.SONOR_CHAT_NEW_ACCOUNT_ADDS_PER_DAY = 10**9
    settings.SONOR_CHAT_GROUP_INITIAL_MAX = MAX_SOCKETS
    settings.SONOR_CHAT_DISCOVERY_PER_HOUR = 10**9


def prepare(count: int, room_size: int) -> tuple[list[str], list[int]]:
    """Citizens with verified numbers, a session token each, and groups of `room_size`
    (one room when room_size >= count). Returns the tokens and each socket's room id."""
    from django.db import transaction
    from django.utils import timezone

    from chatserver.services import group_create, invitation_accept
    from identity.services import _phone_bind, citizen_create, session_create

    users = []
    for n in range(count):
        born = date(1960, 1, 1) + timedelta(days=n)
        user = citizen_create(register_number=f"БН{born:%y%m%d}{n // 20000 % 100:02d}",
                              name=f"Bench {n}")
        with transaction.atomic():
            _phone_bind(user=user, e164=f"+97690{n:06d}", now=timezone.now())
        users.append(user)
    tokens = [session_create(user=u, login_method="bench", device_name="bench")[1]
              for u in users]
    room_of: list[int] = []
    for start in range(0, count, room_size):
        members = users[start:start + room_size]
        created = group_create(creator=members[0], name=f"bench {start}",
                               phones=[f"+97690{start + i:06d}" for i in range(1, len(members))])
        for invite in created.pending:  # strangers to the creator: each says yes
            assert invite.invitee is not None
            invitation_accept(user=invite.invitee, invitation_id=invite.pk)
        room = created.room
        room_of.extend([room.pk] * len(members))
    return tokens, room_of


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    delivered: int = 0
    last_delivery: float = 0.0
    last_frame: float = 0.0
    acked: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    expected: int = 0
    sent: int = 0


async def run(url: str, tokens: list[str], room_of: list[int], rate: float, seconds: float
              ) -> tuple[Stats, float]:
    from websockets.asyncio.client import connect

    stats = Stats()
    members: dict[int, int] = {}
    for room_id in room_of:
        members[room_id] = members.get(room_id, 0) + 1
    gate = asyncio.Semaphore(50)

    async def open_one(token: str):  # type: ignore[no-untyped-def]
        async with gate:
            ws = await connect(f"{url}/ws/v1", max_size=2**22, open_timeout=30,
                               additional_headers={"Authorization": f"Bearer {token}"})
            await ws.send('{"type":"ping","id":"ready"}')
            while '"pong"' not in await ws.recv():
                pass
            return ws

    sockets = await asyncio.gather(*(open_one(t) for t in tokens))
    print(f"{len(sockets)} sockets open", file=sys.stderr)

    async def reader(ws) -> None:  # type: ignore[no-untyped-def]
        async for raw in ws:
            now = time.time()
            stats.last_frame = time.monotonic()
            if '"chat.message"' in raw:
                frame = json.loads(raw)
                sent_at = datetime.fromisoformat(frame["sent_at"]).timestamp()
                stats.latencies.append(now - sent_at)
                stats.delivered += 1
                stats.last_delivery = time.monotonic()
            elif '"ack"' in raw:
                frame = json.loads(raw)
                if frame.get("seq") is not None:
                    stats.acked += 1
                    # Every member of the room should get it, the sender's socket too.
                    stats.expected += members[room_by_request[frame["id"]]]
            elif '"error"' in raw:
                code = json.loads(raw)["code"]
                stats.errors[code] = stats.errors.get(code, 0) + 1

    room_by_request: dict[str, int] = {}
    readers = [asyncio.create_task(reader(ws)) for ws in sockets]
    started = time.monotonic()
    deadline = started + min(seconds, MAX_SECONDS)
    interval = 1.0 / rate
    n = 0
    next_at = started
    while time.monotonic() < deadline:  # sender: a fixed rate, round robin
        index = n % len(sockets)
        frame = {"type": "chat.send", "id": f"b{n}", "room": room_of[index],
                 "client_msg_id": f"bench-{started:.0f}-{n}", "text": f"bench message {n}"}
        room_by_request[frame["id"]] = room_of[index]
        await sockets[index].send(json.dumps(frame))
        stats.sent += 1
        n += 1
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    # Drain: until nothing has arrived for a second (the server may still be working through
    # a backlog), at most DRAIN_SECONDS.
    drain_until = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < drain_until:
        await asyncio.sleep(0.25)
        if time.monotonic() - max(stats.last_frame, deadline) > 1.0:
            break
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    # Deliveries per second over the time they took, backlog included.
    elapsed = max(stats.last_delivery, deadline) - started
    print(f"sent {stats.sent} in {min(seconds, MAX_SECONDS):.1f} s", file=sys.stderr)
    return stats, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000")
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--layout", choices=["one", "tens"], default="one",
                        help="one room with every socket, or rooms of 10")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second, total")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    args = parser.parse_args()
    count = max(2, min(args.sockets, MAX_SOCKETS))
    _django_setup()
    tokens, room_of = prepare(count, count if args.layout == "one" else 10)
    stats, elapsed = asyncio.run(run(args.url, tokens, room_of, args.rate, args.duration))
    latencies = sorted(stats.latencies)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    result = {
        "sockets": count, "layout": args.layout, "rate_msgs_per_s": args.rate,
        "seconds": round(elapsed, 1), "sent": stats.sent, "acked": stats.acked,
        # Sent but not acknowledged before the end: the server could not store them that fast.
        "unacked": stats.sent - stats.acked - sum(stats.errors.values()),
        "delivered": stats.delivered,
        "expected": stats.expected, "lost": max(0, stats.expected - stats.delivered),
        "deliveries_per_s": round(stats.delivered / elapsed, 1) if elapsed else 0,
        "p50_ms": round(pct(0.50), 1) if latencies else None,
        "p99_ms": round(pct(0.99), 1) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
        "errors": stats.errors,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
