"""Renders docs/protocol.md from the frame models in chatserver.core.protocol.

    protocol.py unions (ClientFrame, ServerFrame, Login*Frame)
        --> one section per union, one entry per frame: type, docstring, JSON Schema
        --> docs/protocol.md (`manage.py protocol_docs`; `--check` and a test compare)

The output depends only on protocol.py and this module (no environment, no clock), so that
the committed file and a fresh rendering agree byte for byte.
"""

import inspect
import json
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel

from chatserver.core import protocol

DOC_PATH = "docs/protocol.md"

# Headings of the known unions; a union added to protocol.py later is documented under its
# own name until it gets a heading here.
_UNION_HEADINGS = {
    "ClientFrame": "`/ws/v1`: client → server",
    "ServerFrame": "`/ws/v1`: server → client",
    "LoginClientFrame": "`/ws/v1/login`: client → server",
    "LoginServerFrame": "`/ws/v1/login`: server → client",
}

_CLOSE_CODE_MEANINGS = {
    "CLOSE_UNAUTHENTICATED": (
        "No valid credentials, the session was revoked (logout, account closed) or the "
        "account is suspended. After `session.revoked`. Log in again before reconnecting."
    ),
    "CLOSE_ORIGIN_FORBIDDEN": (
        "The `Origin` header is not one of the server's allowed origins. Do not retry."
    ),
    "CLOSE_RATE_LIMITED": "Too many connections or frames. Reconnect later, with backoff.",
    "CLOSE_TRY_AGAIN_LATER": (
        "The database or Redis did not answer while the socket connected (a restart or a "
        "failover). Nothing is wrong with the credentials: reconnect later, with backoff."
    ),
    "CLOSE_TOO_SLOW": (
        "The socket fell too far behind the room frames sent to it (the dropped frames are "
        "counted). Reconnect and resume with `hello`."
    ),
}

_INTRO = """\
# Sonor wire protocol

Generated from `chatserver/core/protocol.py` by `python manage.py protocol_docs`: do not edit by
hand. `python manage.py protocol_docs --check` and `tests/chatserver/test_protocol_doc.py`
fail when this file and the models disagree.

## Sockets

- `/ws/v1`: the device socket, one per logged-in device (app or browser tab). It carries
  requests from the client and live events (inbox, chat, session) from the server.
- `/ws/v1/login`: the QR login socket, unauthenticated. It shows a single-use login code that
  rotates before it expires, and receives the new session only after a logged-in device looked
  the code up and explicitly approved it. No token ever appears in a URL.

## Connecting

Authentication happens on connect, with one of:

- `Authorization: Bearer <token>`: native apps. They send no `Origin` header.
- The HttpOnly `{cookie}` cookie: the same-origin web client (set by
  `POST /api/v1/auth/cookie`). The cookie is only honoured when the handshake carries an
  `Origin` header, and that origin must be one of the server's allowed origins.

Any `Origin` that is not allowed is refused, whatever the credentials. The server accepts the
handshake, then checks, and closes a refused socket with a close code of its own:

{close_codes}

A socket whose session ends later (logout on any device, revoke-others, account closed,
account suspended) first receives `session.revoked` with a reason, then is closed with
{unauthenticated}.

## Frames

- Every frame is a JSON object in a UTF-8 text frame, with a `type`. Unknown fields are
  refused.
- Client requests carry an `id` (1 to 64 characters, chosen by the client). The server answers
  each request exactly once, with the same `id`: `ack`, a reply of its own (`welcome` for
  `hello`, `pong` for `ping`), or `error`.
- `error` has a stable `code`, a human `message` and `extra` fields. A frame that cannot be read
  at all (not JSON, binary, too large) gets an `error` whose `id` is `null`. Codes on the socket
  include `invalid_input` (with `extra.errors`), `unknown_frame`, `frame_too_large`,
  `rate_limited` (with `extra.retry_after`, in seconds) and `unavailable` (the database or
  Redis did not answer, nothing was done: send it again after `extra.retry_after`), besides
  the codes of the operation itself (`not_found`, `permission_denied`, ...). The socket stays
  open after an error.
- Server events are not answers and carry no request id (the `id` of `notify.new` is the
  notification's own).

## Limits

- Frames over {max_frame_kib} KiB ({max_frame_bytes:,} bytes of UTF-8) are refused with
  `frame_too_large`. Chat texts over 4,096 characters are refused.
- Each socket has a token-bucket rate limit (by default 20 frames a second sustained, bursts
  of 60; `SONOR_WS_RATE_PER_SECOND`, `SONOR_WS_RATE_BURST`). A frame over the limit is
  answered with `rate_limited` and `extra.retry_after`, and not executed.

## Streams, resume and resync

- Every room and every inbox is a stream with gap-free, strictly increasing sequence numbers
  (`seq`). Edits, deletions and membership changes are events in their room's stream too.
- Live events are a wake-up, not a guarantee: the server may drop one (for example when a
  socket is too slow). The database is the source of truth; a client that sees a gap in a
  stream's `seq`, or reconnects, sends `hello` again with the last `seq` it has of each stream.
- `hello` is answered by `welcome`, then by exactly the events missed since the given
  sequence numbers, in order, with nothing left out. Where the server cannot answer exactly
  (more than `SONOR_RESUME_LIMIT` events were missed, 1,000 by default, or the rooms together
  passed `SONOR_RESUME_TOTAL_LIMIT`, 5,000), it sends none of that
  stream's events and lists the stream in `welcome.resync` (`"inbox"` for the inbox,
  `"room:<id>"` for a room); the client then reloads that stream over the REST API
  (`GET /api/v1/inbox`, `GET /api/v1/rooms/{{id}}/messages`). Rooms the user joined while
  offline are resumed from their join, listed or not.
- A socket follows its user's inbox and rooms from the moment it connects, so live events
  may reach it before `welcome`, even before it sends `hello`. They are ordinary events: the
  client keeps each by its `seq`, as it does after `welcome`.
- A live event and a resumed one can overlap (an event may arrive live before `welcome` and
  again among the resumed ones): a client drops any event whose `seq` it already has in that
  stream.
- The unread count is the same on every device: reading on one device sends `notify.unread`
  to every socket of the user.
- Channel-layer message types (`frame.push`, `session.revoke`) are internal to the server and
  never appear on the wire.
"""


def _frame_unions() -> list[tuple[str, list[type[BaseModel]]]]:
    """The module's unions of frame models, in the order protocol.py defines them."""
    found: list[tuple[str, list[type[BaseModel]]]] = []
    seen: set[tuple[type[BaseModel], ...]] = set()
    for name, value in vars(protocol).items():
        members = union_members(value)
        if not members or not all(_is_frame(m) for m in members):
            continue
        key = tuple(members)
        if key not in seen:
            seen.add(key)
            found.append((name, members))
    return found


def union_members(value: Any) -> list[Any]:
    if typing.get_origin(value) is typing.Annotated:
        value = typing.get_args(value)[0]
    if typing.get_origin(value) in (typing.Union, types.UnionType):
        return list(typing.get_args(value))
    return []


def _is_frame(value: Any) -> bool:
    return (inspect.isclass(value) and issubclass(value, protocol.Frame)
            and "type" in value.model_fields)


def frame_type(model: type[BaseModel]) -> str:
    """The wire `type` of a frame model (its `Literal[...]` value)."""
    annotation = model.model_fields["type"].annotation
    assert typing.get_origin(annotation) is Literal, model
    value = typing.get_args(annotation)[0]
    assert isinstance(value, str)
    return value


def documented_frames() -> list[tuple[str, type[BaseModel]]]:
    """(union name, model) of every frame the document describes."""
    return [(name, model) for name, members in _frame_unions() for model in members]


def _close_codes() -> str:
    rows = ["| code | constant | meaning |", "| --- | --- | --- |"]
    for name, value in vars(protocol).items():
        if name.startswith("CLOSE_") and isinstance(value, int):
            meaning = _CLOSE_CODE_MEANINGS.get(name, "")
            rows.append(f"| {value} | `{name}` | {meaning} |")
    return "\n".join(rows)


def _frame_section(model: type[BaseModel], mode: Literal["validation", "serialization"]
                   ) -> str:
    lines = [f"### `{frame_type(model)}`", "", f"Model `{model.__name__}`."]
    doc = model.__dict__.get("__doc__")  # its own, not one inherited from BaseModel
    if doc:
        lines += ["", inspect.cleandoc(doc)]
    schema = json.dumps(model.model_json_schema(mode=mode), indent=2, ensure_ascii=False)
    lines += ["", "```json", schema, "```", ""]
    return "\n".join(lines)


def render_protocol_doc() -> str:
    """The full text of docs/protocol.md."""
    from django.conf import settings

    max_frame_bytes: int = settings.SONOR_WS_MAX_FRAME_BYTES
    parts = [_INTRO.format(
        cookie=settings.SONOR_SESSION_COOKIE,
        close_codes=_close_codes(),
        unauthenticated=protocol.CLOSE_UNAUTHENTICATED,
        max_frame_kib=max_frame_bytes // 1024,
        max_frame_bytes=max_frame_bytes,
    )]
    documented: dict[type[BaseModel], str] = {}
    for name, members in _frame_unions():
        heading = _UNION_HEADINGS.get(name, f"`{name}`")
        mode: Literal["validation", "serialization"] = (
            "validation" if "Client" in name else "serialization")
        parts.append(f"## {heading}\n")
        parts.append("Frame types: " + ", ".join(
            f"`{frame_type(m)}`" for m in members) + ".\n")
        for model in members:
            if model in documented:
                parts.append(f"### `{frame_type(model)}`\n\nAs under {documented[model]}.\n")
                continue
            documented[model] = heading
            parts.append(_frame_section(model, mode))
    return "\n".join(parts).rstrip("\n") + "\n"
