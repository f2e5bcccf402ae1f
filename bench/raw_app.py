"""The ceiling: a minimal fan-out server of our own, no storage, no authentication.

    uvicorn --loop uvloop --http httptools --ws websockets bench.raw_app:app --port 8800

It speaks the subset of Sonor's socket protocol that the load generator uses, so that the same
generator drives both: `hello` → `welcome`, `ping` → `pong`, and `chat.send` → `ack` with the
room's next seq to the sender plus one `chat.message` (serialised once) to every member of the
room, the sender included. A socket's rooms are given at connect: `/ws/v1?rooms=3,17`.
Any HTTP request gets 200 "ok" (the harness's readiness check).
"""

import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Send = Callable[[dict[str, Any]], Awaitable[None]]

members: dict[int, set[Send]] = {}
seqs: dict[int, int] = {}
user_ids = itertools.count(1)


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
              send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await socket(scope, receive, send)


async def socket(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                 send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    query = parse_qs(scope.get("query_string", b"").decode())
    rooms = [int(r) for r in ",".join(query.get("rooms", [])).split(",") if r]
    user_id = next(user_ids)
    for room in rooms:
        members.setdefault(room, set()).add(send)
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            frame = json.loads(event.get("text") or event.get("bytes") or "{}")
            kind = frame.get("type")
            if kind == "chat.send" and frame.get("room") in rooms:
                room = frame["room"]
                seqs[room] = seq = seqs.get(room, 0) + 1
                await send({"type": "websocket.send", "text": json.dumps(
                    {"type": "ack", "id": frame["id"], "seq": seq})})
                text = json.dumps({"type": "chat.message", "room": room, "seq": seq,
                                   "sender": user_id, "text": frame["text"],
                                   "client_msg_id": frame["client_msg_id"]})
                for member in list(members.get(room, ())):
                    try:
                        await member({"type": "websocket.send", "text": text})
                    except Exception:  # noqa: BLE001 - that member went away meanwhile
                        pass
            elif kind == "hello":
                await send({"type": "websocket.send", "text": json.dumps(
                    {"type": "welcome", "id": frame["id"], "user": {"id": user_id}})})
            elif kind == "ping":
                await send({"type": "websocket.send",
                            "text": json.dumps({"type": "pong", "id": frame["id"]})})
            else:
                await send({"type": "websocket.send", "text": json.dumps(
                    {"type": "error", "id": frame.get("id"), "code": "unknown_frame",
                     "message": "not in the raw app"})})
    finally:
        for room in rooms:
            members.get(room, set()).discard(send)
