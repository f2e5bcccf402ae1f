"""Open-loop load generator: worker processes, each owning a share of the sockets.

    controller (bench.run)  ──pipe──▶  worker 0: asyncio + uvloop, sockets 0, W, 2W, ...
                            ──pipe──▶  worker 1: sockets 1, W+1, ...

Every socket both sends and receives. A trial has a fixed schedule: a worker's message j is
due at `start_at + offset + j / rate`, and is sent then or, when the worker is behind, at once.
The schedule (wall clock) travels in the message's `client_msg_id`, so the latency recorded at
each member is arrival minus *scheduled* send time: a server that makes the generator fall
behind is charged for it (no coordinated omission). Latencies go into HDR histograms in
microseconds, which are encoded and merged by the controller.

Each worker keeps counts the controller turns into loss: acked messages per room (each must
reach every member, the sender's own socket too), deliveries, error codes, close codes.
Bounded: every wait has a deadline; the controller stops the workers at the end.
"""

import asyncio
import json
import multiprocessing
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.servers import raise_nofile

HIST_MAX_US = 120_000_000  # latencies above 2 minutes are clamped
CONNECT_TIMEOUT = 30.0
CALL_TIMEOUT = 600.0  # no worker command may take longer


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_US, 3)


@dataclass
class SocketSpec:
    url: str  # ws://127.0.0.1:PORT/ws/v1 (the raw app: with ?rooms=...)
    token: str | None  # Sonor: a session token (Authorization: Bearer)
    origin: str | None  # Sonor: an allowed origin
    rooms: list[int]  # its rooms: [its room of 10, the big room]
    sender: bool = True  # sends in trials (else it only receives)


class Conn:
    def __init__(self, spec: SocketSpec) -> None:
        self.spec = spec
        self.ws: Any = None
        self.ready = asyncio.Event()  # the pong to "ready" or the welcome arrived
        self.seqs: dict[int, set[int]] | None = None  # tracked seqs per room (storm)
        self.open = False
        # (room, seq) of trial messages counted: after a reconnect the same message can come
        # both live and in the resume (live events may precede `welcome`); it counts once.
        self.counted: set[tuple[int, int]] = set()


class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.conns: list[Conn] = []
        self.reset()

    def reset(self) -> None:
        # No trial runs until the next send: frames that come meanwhile (a storm's resumed
        # messages, sent before the kill) are not counted for the trial that follows.
        self.trial = ""
        for conn in self.conns:
            conn.counted.clear()
        self.chat_hist = new_histogram()
        self.notify_hist = new_histogram()
        self.post_hist = new_histogram()
        self.delivered = 0
        self.notified = 0
        self.sent = 0
        self.acked: Counter[int] = Counter()
        self.max_seq: dict[int, int] = {}
        self.pending: dict[str, int] = {}  # request id -> room, until the ack
        self.errors: Counter[str] = Counter()
        self.closes: Counter[int] = Counter()
        self.posts: Counter[int] = Counter()
        self.last_frame_at = time.monotonic()
        self.cpu_at = time.process_time()

    # ---- sockets --------------------------------------------------------------------------

    async def _connect(self, conn: Conn, hello: dict[str, Any] | None = None) -> None:
        from websockets.asyncio.client import connect

        spec = conn.spec
        headers = {"Authorization": f"Bearer {spec.token}"} if spec.token else None
        conn.ready = asyncio.Event()
        # No client pings (a busy server must not be charged for them) and no compression.
        conn.ws = await connect(spec.url, origin=spec.origin, additional_headers=headers,
                                open_timeout=CONNECT_TIMEOUT, ping_interval=None,
                                compression=None, max_size=2**22, max_queue=None)
        conn.open = True
        asyncio.get_running_loop().create_task(self._read(conn))
        await conn.ws.send(json.dumps(hello or {"type": "ping", "id": "ready"}))
        await asyncio.wait_for(conn.ready.wait(), CONNECT_TIMEOUT)

    async def _read(self, conn: Conn) -> None:
        ws = conn.ws
        try:
            async for raw in ws:
                now = time.time()
                self.last_frame_at = time.monotonic()
                if '"chat.message"' in raw or (conn.seqs is not None and '"seq"' in raw
                                               and '"room"' in raw):
                    self._room_frame(conn, json.loads(raw), now)
                elif '"ack"' in raw:
                    frame = json.loads(raw)
                    room = self.pending.pop(frame["id"], None)
                    if room is not None and frame.get("seq") is not None:
                        self.acked[room] += 1
                        self.max_seq[room] = max(self.max_seq.get(room, 0), frame["seq"])
                elif '"notify.new"' in raw:
                    title = json.loads(raw)["title"]
                    if title.startswith(self.trial + " "):
                        scheduled = float(title.rsplit(" ", 1)[1])
                        self.notify_hist.record_value(_micros(now - scheduled))
                        self.notified += 1
                elif '"error"' in raw:
                    frame = json.loads(raw)
                    self.errors[frame["code"]] += 1
                    self.pending.pop(frame.get("id") or "", None)
                elif '"pong"' in raw or '"welcome"' in raw:
                    conn.ready.set()
        except Exception:  # noqa: BLE001 - a closed socket ends its reader
            pass
        finally:
            if conn.ws is ws and conn.open:  # not closed by us
                conn.open = False
                self.closes[ws.close_code or 1006] += 1

    def _room_frame(self, conn: Conn, frame: dict[str, Any], now: float) -> None:
        if conn.seqs is not None and "seq" in frame:
            conn.seqs[frame["room"]].add(frame["seq"])
        if frame.get("type") != "chat.message":
            return
        trial, _, rest = (frame.get("client_msg_id") or "").partition(":")
        if trial == self.trial:
            key = (frame["room"], frame["seq"])
            if key in conn.counted:
                return
            conn.counted.add(key)
            scheduled = float(rest.rsplit(":", 1)[1])
            self.chat_hist.record_value(_micros(now - scheduled))
            self.delivered += 1

    async def cmd_open(self, specs: list[SocketSpec], concurrency: int) -> dict[str, Any]:
        """Open sockets (each answered its first ping); failures are counted, not raised."""
        gate = asyncio.Semaphore(concurrency)
        failures: Counter[str] = Counter()

        async def one(spec: SocketSpec) -> None:
            conn = Conn(spec)
            async with gate:
                try:
                    await self._connect(conn)
                    self.conns.append(conn)
                except Exception as exc:  # noqa: BLE001
                    failures[type(exc).__name__] += 1
                    if conn.ws is not None:
                        await conn.ws.close()

        cpu_before = time.process_time()
        await asyncio.gather(*(one(s) for s in specs))
        return {"opened": len(specs) - sum(failures.values()), "failures": dict(failures),
                "cpu_seconds": time.process_time() - cpu_before}

    async def cmd_close(self) -> int:
        conns, self.conns = self.conns, []
        for conn in conns:
            conn.open = False
        await asyncio.wait_for(asyncio.gather(
            *(c.ws.close() for c in conns if c.ws is not None), return_exceptions=True), 60)
        return len(conns)

    # ---- chat trials ----------------------------------------------------------------------

    async def cmd_send(self, trial: str, room_index: int, rate: float, count: int,
                       start_at: float, drain_max: float, quiet: float) -> None:
        """Send `count` messages at `rate` a second (this worker's share) into each sender's
        room `room_index` (0: its room of 10, 1: the big room), then drain."""
        self.trial = trial
        senders = [c for c in self.conns if c.spec.sender and c.open]
        for j in range(count if senders else 0):
            scheduled = start_at + j / rate
            delay = scheduled - time.time()
            await asyncio.sleep(max(0.0, delay))  # yields to the readers even when behind
            conn = senders[j % len(senders)]
            room = conn.spec.rooms[room_index]
            request_id = f"{trial}.{self.index}.{j}"
            self.pending[request_id] = room
            self.sent += 1
            try:
                await conn.ws.send(json.dumps({
                    "type": "chat.send", "id": request_id, "room": room,
                    "client_msg_id": f"{trial}:{self.index}:{j}:{scheduled:.6f}",
                    "text": "bench message"}))
            except Exception:  # noqa: BLE001 - closed: counted as unacked
                self.errors["send_on_closed_socket"] += 1
        await self._drain(drain_max, quiet)

    async def _drain(self, drain_max: float, quiet: float) -> None:
        """Until the acks are in and nothing arrived for `quiet` seconds (3x that while acks
        are missing), at most `drain_max`."""
        deadline = time.monotonic() + drain_max
        while time.monotonic() < deadline:
            silent = time.monotonic() - self.last_frame_at
            if silent >= quiet and (not self.pending or silent >= 3 * quiet):
                return
            await asyncio.sleep(0.05)

    async def cmd_notify(self, trial: str, url: str, key: str, registers: list[str],
                         rate: float, count: int, start_at: float, drain_max: float,
                         quiet: float) -> None:
        """POST `count` agency notifications at `rate` a second, open loop, then drain."""
        self.trial = trial
        pool = Http1Pool(url, size=64)

        async def post(j: int, scheduled: float) -> None:
            body = json.dumps({
                "register_number": registers[j % len(registers)], "category": "service_request",
                "title": f"{trial} {scheduled:.6f}", "body": "Bench notice."}).encode()
            try:
                status = await pool.post_json(
                    "/api/agency/v1/notifications", body,
                    {"Authorization": f"Bearer {key}",
                     "Idempotency-Key": f"{trial}-{self.index}-{j}"})
                self.posts[status] += 1
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                self.posts[0] += 1
                self.errors[f"post: {type(exc).__name__}"] += 1
            self.post_hist.record_value(_micros(time.time() - scheduled))

        try:
            tasks = []
            for j in range(count):
                scheduled = start_at + j / rate
                await asyncio.sleep(max(0.0, scheduled - time.time()))
                tasks.append(asyncio.create_task(post(j, scheduled)))
            await asyncio.wait_for(asyncio.gather(*tasks), drain_max + 30)
        finally:
            await pool.close()
        await self._drain(drain_max, quiet)

    async def cmd_collect(self) -> dict[str, Any]:
        """This worker's counts since the last collect (then reset)."""
        result = {
            "chat_hist": self.chat_hist.encode(), "notify_hist": self.notify_hist.encode(),
            "post_hist": self.post_hist.encode(), "delivered": self.delivered,
            "notified": self.notified, "sent": self.sent, "acked": dict(self.acked),
            "max_seq": self.max_seq, "unacked": len(self.pending), "errors": dict(self.errors),
            "closes": dict(self.closes), "posts": dict(self.posts),
            "open": sum(c.open for c in self.conns),
            "cpu_seconds": time.process_time() - self.cpu_at,  # this worker's own CPU time
        }
        self.reset()
        return result

    # ---- reconnect storm ------------------------------------------------------------------

    async def cmd_senders(self) -> int:
        return sum(c.spec.sender for c in self.conns)

    async def cmd_track(self) -> None:
        """From now on, remember every room seq each socket receives."""
        for conn in self.conns:
            conn.seqs = defaultdict(set)

    async def cmd_reconnect(self, jitter: float, deadline_s: float) -> dict[str, Any]:
        """Every closed socket reconnects after a random delay (retrying with jittered backoff
        until `deadline_s`) and resumes with `hello` and its last seq of each room."""
        deadline = time.monotonic() + deadline_s
        welcomed_at: list[float] = []
        attempts = 0

        async def one(conn: Conn) -> None:
            nonlocal attempts
            await asyncio.sleep(random.uniform(0, jitter))
            while time.monotonic() < deadline:
                attempts += 1
                await _wait_closed(conn)
                assert conn.seqs is not None
                resume = {str(room): max(conn.seqs[room]) for room in conn.spec.rooms
                          if conn.seqs[room]}
                try:
                    await self._connect(conn, {"type": "hello", "id": "resume",
                                               "resume": {"rooms": resume}})
                    welcomed_at.append(time.time())
                    return
                except Exception:  # noqa: BLE001 - not up yet: back off and retry
                    if conn.ws is not None:
                        conn.open = False
                        await conn.ws.close()
                    await asyncio.sleep(random.uniform(0.1, 0.5))

        await asyncio.gather(*(one(c) for c in self.conns))
        return {"reconnected": len(welcomed_at), "attempts": attempts,
                "last_welcome_at": max(welcomed_at, default=0.0)}

    async def cmd_misses(self, final_seq: dict[int, int]) -> dict[str, int]:
        """Room seqs missing at each socket between the first it saw and the room's last."""
        misses = checked = 0
        for conn in self.conns:
            assert conn.seqs is not None
            for room in conn.spec.rooms:
                seen = conn.seqs[room]
                if not seen:
                    continue
                wanted = set(range(min(seen), max(final_seq.get(room, 0), max(seen)) + 1))
                misses += len(wanted - seen)
                checked += len(wanted)
        return {"misses": misses, "checked": checked}


async def _wait_closed(conn: Conn) -> None:
    if conn.ws is not None:
        try:
            await asyncio.wait_for(conn.ws.wait_closed(), 5)
        except Exception:  # noqa: BLE001
            pass


def _micros(seconds: float) -> int:
    return min(HIST_MAX_US, max(1, int(seconds * 1_000_000)))


def _worker_main(index: int, pipe: Connection) -> None:
    raise_nofile()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(Worker(index), pipe))


async def _serve(worker: Worker, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    while True:
        name, kwargs = await loop.run_in_executor(None, pipe.recv)
        if name == "exit":
            await worker.cmd_close()
            pipe.send(None)
            return
        try:
            pipe.send(("ok", await getattr(worker, f"cmd_{name}")(**kwargs)))
        except Exception as exc:  # noqa: BLE001 - reported to the controller
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))


class Http1Pool:
    """Keep-alive HTTP/1.1 connections for POSTs, at most `size` at once: a request waits for
    a free connection, and that wait counts in its latency. Hand-written because a general
    client (httpx) spent ~1 ms of the generator's CPU per request, more than the server under
    test: it parses only what a JSON API answers (a status line, Content-Length, a body)."""

    def __init__(self, url: str, size: int) -> None:
        host_port = url.split("://", 1)[1].rstrip("/")
        self.host, _, port = host_port.partition(":")
        self.port = int(port or 80)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(size)

    async def post_json(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        """The response's status code (its body is read and dropped)."""
        async with self.slots:
            while self.idle:  # the server closes a connection idle for a few seconds
                reader, writer = self.idle.pop()
                if not reader.at_eof():
                    break
                writer.close()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(
                    f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    f"{head}\r\n".encode() + body)
                status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in lines
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                status = int(status_line.split(b" ", 2)[1])
            except BaseException:
                writer.close()
                raise
            self.idle.append((reader, writer))
            return status

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


class LoadGen:
    """The controller's handle on the worker processes (they inherit its CPU affinity)."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes = []
        for index in range(workers):
            ours, theirs = context.Pipe()
            process = context.Process(target=_worker_main, args=(index, theirs), daemon=True)
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)

    @property
    def size(self) -> int:
        return len(self.pipes)

    def post(self, name: str, per_worker: Iterable[dict[str, Any]] | None = None) -> None:
        for pipe, kwargs in zip(self.pipes, per_worker or [{}] * self.size, strict=True):
            pipe.send((name, kwargs))

    def gather(self, timeout: float = CALL_TIMEOUT) -> list[Any]:
        results = []
        for index, pipe in enumerate(self.pipes):
            if not pipe.poll(timeout):
                raise RuntimeError(f"load worker {index} did not answer in {timeout:.0f} s")
            status, value = pipe.recv()
            if status != "ok":
                raise RuntimeError(f"load worker {index}: {value}")
            results.append(value)
        return results

    def call(self, name: str, per_worker: Iterable[dict[str, Any]] | None = None) -> list[Any]:
        self.post(name, per_worker)
        return self.gather()

    def collect(self) -> dict[str, Any]:
        """The workers' counts merged: histograms added, counters summed."""
        merged: dict[str, Any] = {"chat_hist": new_histogram(), "notify_hist": new_histogram(),
                                  "post_hist": new_histogram()}
        for part in self.call("collect"):
            for key, value in part.items():
                if key.endswith("_hist"):
                    merged[key].add(HdrHistogram.decode(value))
                elif key == "max_seq":
                    seqs = merged.setdefault(key, {})
                    for room, seq in value.items():
                        seqs[room] = max(seqs.get(room, 0), seq)
                elif isinstance(value, dict):
                    merged.setdefault(key, Counter()).update(value)
                else:
                    merged[key] = merged.get(key, 0) + value
        return merged

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("exit", {}))
            except OSError:
                pass
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            if pipe.poll(60):
                pipe.recv()
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join(5)
