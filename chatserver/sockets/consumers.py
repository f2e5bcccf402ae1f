"""The device socket /ws/v1: authenticate, then route frames to ws_handlers.

A socket has no channel-layer channel of its own: the process's LocalHub (chatserver.core.realtime)
follows the groups of its user, its session and its rooms, and hands each layer message to
`hub_deliver`, which queues already serialised frames in a bounded outbox. A writer task,
alive only while the outbox has frames, drains it; a socket that falls too far behind is
closed with 4408 (reconnect and resume) and its dropped frames are counted. One task per
process re-checks every local session in one query (SessionWatcher), in case the layer
dropped a revocation.

Why not a plain Channels consumer: bench/README.md has the numbers. Per socket, Channels
opens a layer channel with its own receive loop (a Redis subscription each on the pub/sub
layer, an O(sockets) sweep each on the in-memory one) and hops to the sync thread on every
incoming frame to close old database connections (database_sync_to_async does that already
around every database call here).
"""

import asyncio
import collections
import json
import logging
import time
import uuid
from typing import Any

import redis
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from chatserver.chat.config import chat_setting
from chatserver.chat.presence import chat_presence_apply
from chatserver.chat.selectors import room_ids_by_user
from chatserver.core import protocol
from chatserver.core.batching import batcher
from chatserver.core.eager import start_eagerly
from chatserver.core.errors import (
    AppError,
    FrameTooLarge,
    InvalidInput,
    OriginForbidden,
    RateLimited,
    ServiceUnavailable,
    UnknownFrame,
)
from chatserver.core.loop_local import LoopLocal
from chatserver.core.metrics import (
    FRAME_ERRORS,
    FRAMES_IN,
    FRAMES_OUT,
    SOCKETS_OPEN,
    SOCKETS_REFUSED,
)
from chatserver.core.ratelimit import TokenBucket
from chatserver.core.realtime import LocalHub, local_hub, room_group, session_group, user_group
from chatserver.sockets.wire import OutFrame, frames_write, websocket_protocol
from chatserver.sockets.ws_handlers import HANDLERS
from identity.models import DeviceSession
from identity.selectors import session_end_reasons
from identity.services import sessions_authenticate
from identity.ws_auth import scope_client, scope_token

log = logging.getLogger(__name__)

# A database or Redis that does not answer (restarting, failing over).
STORE_DOWN = (OperationalError, InterfaceError, redis.exceptions.ConnectionError,
              redis.exceptions.TimeoutError)

ROOM_FRAMES_DROPPED = Counter(
    "sonor_room_frames_dropped_total",
    "Room frames dropped because a socket fell too far behind (it is closed with 4408)")
SOCKETS_TOO_SLOW = Counter("sonor_sockets_too_slow_total", "Sockets closed for falling behind")
SOCKETS_FLOODING = Counter("sonor_sockets_flooding_total",
                           "Sockets closed with 4429 for sending too many refused frames")

# Each frame type's counter, looked up once (labels() takes a lock and checks its arguments:
# seen in the profile of every incoming frame).
_FRAMES_IN_BY_TYPE = {kind: FRAMES_IN.labels(kind) for kind in HANDLERS}

# A socket's writer while it runs in the caller's step (see _write_soon).
_WRITING = object()
# Control items in a socket's outbox, between its frames (OutFrame).
_REVOKED = "revoked"
_TOO_SLOW = "too_slow"


def _sockets_authenticate(tokens: list[str]) -> list[tuple[DeviceSession, list[int]] | AppError]:
    """Each connecting socket's live session and the rooms it follows: two queries for all
    the sockets of a batch. What changes before a socket has joined its groups (a
    revocation, a new room) is caught by the SessionWatcher's look at fresh sockets, within
    SONOR_WS_FRESH_RECHECK."""
    sessions = sessions_authenticate(tokens)
    rooms = room_ids_by_user(user_ids=[s.user_id for s in sessions
                                       if isinstance(s, DeviceSession)])
    return [s if isinstance(s, AppError) else (s, rooms[s.user_id]) for s in sessions]


_socket_authenticator = batcher(_sockets_authenticate, what="socket authentications")


def _fresh_sockets_check(*, session_ids: list[int], user_ids: list[int]
                         ) -> tuple[dict[int, str], dict[int, list[int]]]:
    return (session_end_reasons(session_ids=session_ids),
            room_ids_by_user(user_ids=user_ids))


class DeviceConsumer(AsyncWebsocketConsumer):
    session: DeviceSession | None = None
    hub: LocalHub
    # Rooms this socket follows: a cache for cheap checks; the services stay authoritative.
    room_ids: set[int]
    typing_sent_at: dict[int, float]
    outbox: collections.deque[OutFrame | tuple[str, str]]
    websocket: Any = None  # the websockets protocol under uvicorn (see chatserver/sockets/wire.py)
    writer: "asyncio.Future[None] | object | None" = None
    too_slow: bool = False
    closing: bool = False
    handling: bool = False
    address: str = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # No per-socket layer channel (see the module docstring): the hub delivers.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        self.websocket = websocket_protocol(send)
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes old database connections here, in the sync thread, for every
        # frame; database_sync_to_async already does it around each call that needs one.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.room_ids = set()
        self.typing_sent_at = {}
        self.outbox = collections.deque()
        # A unique name for presence rows; not a layer channel.
        self.channel_name = f"socket.{uuid.uuid4().hex}"
        # Accept first: a close code only reaches the client on an open socket.
        await self.accept()
        try:
            session, room_ids = await _socket_authenticator().send(scope_token(self.scope))
            self.hub = local_hub()
            await self.hub.ready()  # the process's layer channel, made at its first socket
        except OriginForbidden:
            SOCKETS_REFUSED.labels("origin").inc()
            await self.close(code=protocol.CLOSE_ORIGIN_FORBIDDEN)
            return
        except AppError as exc:
            log.info("socket refused: %s", exc.code)
            SOCKETS_REFUSED.labels(exc.code).inc()
            await self.close(code=protocol.CLOSE_UNAUTHENTICATED)
            return
        except STORE_DOWN as exc:  # the client connects again later
            log.warning("socket refused, a store is unreachable: %s", exc)
            SOCKETS_REFUSED.labels("unavailable").inc()
            await self.close(code=protocol.CLOSE_TRY_AGAIN_LATER)
            return
        self.address = scope_client(self.scope)[0] or ""
        if not _counts.admit(user_id=session.user_id, address=self.address):
            SOCKETS_REFUSED.labels("too_many_sockets").inc()
            log.info("socket of user %s from %s refused: too many sockets",
                     session.user_id, self.address)
            await self.close(code=protocol.CLOSE_RATE_LIMITED)
            return
        self.session = session
        SOCKETS_OPEN.inc()
        self.bucket = TokenBucket(settings.SONOR_WS_RATE_PER_SECOND, settings.SONOR_WS_RATE_BURST)
        self.refused = TokenBucket(settings.SONOR_WS_REFUSED_PER_SECOND,
                                   settings.SONOR_WS_REFUSED_BURST)
        await self.hub.subscribe(user_group(session.user_id), self)
        await self.hub.subscribe(session_group(session.pk), self)
        _watcher().fresh(session_id=session.pk, user_id=session.user_id)
        self.presence = _presence_book()
        self.presence.opened(self.channel_name, session.user_id, session.pk)
        self.presence_at = time.monotonic()
        for room_id in room_ids:
            await self._room_follow(room_id)

    async def disconnect(self, code: int) -> None:
        session = self.session
        if session is None:
            return
        self.session = None
        self.closing = True
        SOCKETS_OPEN.dec()
        _counts.release(user_id=session.user_id, address=self.address)
        self.hub.unsubscribe(user_group(session.user_id), self)
        self.hub.unsubscribe(session_group(session.pk), self)
        for room_id in self.room_ids:
            self.hub.unsubscribe(room_group(room_id), self)
        self.room_ids.clear()
        if isinstance(self.writer, asyncio.Future):
            self.writer.cancel()
        if hasattr(self, "presence"):
            self.presence.closed(self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None or self.closing:
            return  # not authenticated, or closing
        request_id: str | None = None
        raw = text_data if text_data is not None else bytes_data or b""
        try:
            # Every frame spends from the budget before it costs any parsing.
            wait = self.bucket.take()
            if wait:
                request_id = _cheap_request_id(raw)
                raise RateLimited(wait)
            if len(raw) > settings.SONOR_WS_MAX_FRAME_BYTES or (
                    isinstance(raw, str) and len(raw.encode()) > settings.SONOR_WS_MAX_FRAME_BYTES):
                raise FrameTooLarge()
            if text_data is None:
                raise InvalidInput("Frames are JSON in text frames, not binary.")
            data = json.loads(raw)
            request_id = _request_id(data)
            frame = protocol.client_frame_adapter.validate_python(data)
        except ValidationError as exc:
            await self._refuse(request_id, _invalid(exc))
            return
        except (ValueError, UnicodeDecodeError):  # not JSON or not UTF-8
            await self._refuse(request_id, InvalidInput("Frames are UTF-8 JSON objects."))
            return
        except AppError as exc:
            await self._refuse(request_id, exc)
            return
        _FRAMES_IN_BY_TYPE[frame.type].inc()
        self._presence_refresh()
        # Frames published while the handler runs (its own effects among them) wait in the
        # outbox, so that the client reads the answer first.
        self.handling = True
        try:
            replies = await HANDLERS[frame.type](self, frame)
        except AppError as exc:
            replies = [_error_frame(request_id, exc)]
        except STORE_DOWN as exc:  # nothing was done: the client retries, the socket stays
            log.warning("%s refused, a store is unreachable: %s", frame.type, exc)
            replies = [_error_frame(request_id, ServiceUnavailable())]
        finally:
            self.handling = False
        # The answer first, then what waited behind it: one write for the lot (an ack and
        # the sender's own message, in a busy room). The writer counts them out.
        self.outbox.extendleft(OutFrame(reply.model_dump_json()) for reply in reversed(replies))
        self._write_soon()

    async def _refuse(self, request_id: str | None, exc: AppError) -> None:
        """Answer a frame refused before any handler ran; close a socket that keeps
        sending them."""
        if self.refused.take():
            SOCKETS_FLOODING.inc()
            log.warning("socket of user %s closed: too many refused frames",
                        self.session.user_id if self.session else None)
            self.closing = True
            await self.close(code=protocol.CLOSE_RATE_LIMITED)
            return
        await self._send_error(request_id, exc)

    async def send_frame(self, frame: BaseModel) -> None:
        FRAMES_OUT.inc()
        await frames_write(self.base_send, self.websocket, [OutFrame(frame.model_dump_json())])

    async def _send_error(self, request_id: str | None, exc: AppError) -> None:
        await self.send_frame(_error_frame(request_id, exc))

    def _presence_refresh(self) -> None:
        """Keep this socket counted as live (chat_offline_members) while the client talks."""
        if time.monotonic() - self.presence_at < chat_setting("SONOR_CHAT_PRESENCE_TTL") / 3:
            return
        self.presence_at = time.monotonic()
        self.presence.seen(self.channel_name)

    async def _room_follow(self, room_id: int) -> None:
        if room_id not in self.room_ids and self.session is not None:
            self.room_ids.add(room_id)
            await self.hub.subscribe(room_group(room_id), self)

    # ---- layer messages from the hub (not wire types): queued, written by one task ----

    def hub_deliver(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "room.push":
            self._queue(_frames(message))
            if self.session is not None and self.session.user_id in message.get("leave", ()):
                self._room_left(message["room"])
        elif kind == "frame.push":
            self._queue(_frames(message))
        elif kind == "session.revoke":
            self._queue([(_REVOKED, message["reason"])])
        elif kind == "room.join":
            if message["room"] not in self.room_ids:
                # The frames that made this user a member come before the room's own.
                self._queue(_frames(message))
                asyncio.ensure_future(self._room_follow(message["room"]))

    def _room_left(self, room_id: int) -> None:
        """The user left the room (its frames saying so are queued)."""
        if room_id in self.room_ids:
            self.room_ids.discard(room_id)
            self.typing_sent_at.pop(room_id, None)
            self.hub.unsubscribe(room_group(room_id), self)

    def _queue(self, items: list[Any]) -> None:
        if self.too_slow or self.session is None:
            return
        if len(self.outbox) + len(items) > chat_setting("SONOR_CHAT_SOCKET_BUFFER"):
            dropped = len(self.outbox) + len(items)
            ROOM_FRAMES_DROPPED.inc(dropped)
            SOCKETS_TOO_SLOW.inc()
            log.warning("socket of user %s fell behind: closed, %s frames dropped",
                        self.session.user_id, dropped)
            self.outbox.clear()
            self.too_slow = True
            items = [(_TOO_SLOW, "")]
        self.outbox.extend(items)
        self._write_soon()

    def _write_soon(self) -> None:
        if self.writer is None and self.outbox and not self.handling:
            # Written now, in this step; a task only for a write that has to wait.
            self.writer = _WRITING
            task = start_eagerly(self._write_outbox())
            if self.writer is _WRITING:  # still running: it waits, as `task`
                self.writer = task

    async def _write_outbox(self) -> None:
        send, websocket = self.base_send, self.websocket
        written = 0
        try:
            while self.outbox and not self.handling:
                item = self.outbox.popleft()
                if isinstance(item, OutFrame):
                    frames = [item]  # and those behind it, up to a control item: one write
                    while self.outbox and isinstance(head := self.outbox[0], OutFrame):
                        self.outbox.popleft()
                        frames.append(head)
                    written += len(frames)
                    await frames_write(send, websocket, frames)
                elif item[0] == _REVOKED:
                    await self._revoked(item[1])
                    return
                else:
                    await self.close(code=protocol.CLOSE_TOO_SLOW)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client went away while frames were queued
            log.debug("frames to a closed socket: %s", exc)
        finally:
            FRAMES_OUT.inc(written)
            self.writer = None

    async def _revoked(self, reason: str) -> None:
        self.closing = True
        self.outbox.clear()
        await self.send_frame(protocol.SessionRevoked(reason=reason))
        await self.close(code=protocol.CLOSE_UNAUTHENTICATED)


class _SocketCounts:
    """Open sockets per account and per client address in this process."""

    def __init__(self) -> None:
        self.per_user: collections.Counter[int] = collections.Counter()
        self.per_address: collections.Counter[str] = collections.Counter()

    def admit(self, *, user_id: int, address: str) -> bool:
        if (self.per_user[user_id] >= settings.SONOR_WS_MAX_SOCKETS_PER_USER
                or self.per_address[address] >= settings.SONOR_WS_MAX_SOCKETS_PER_ADDRESS):
            return False
        self.per_user[user_id] += 1
        self.per_address[address] += 1
        return True

    def release(self, *, user_id: int, address: str) -> None:
        for counter, key in ((self.per_user, user_id), (self.per_address, address)):
            counter[key] -= 1  # type: ignore[index]
            if counter[key] <= 0:  # type: ignore[index]
                del counter[key]  # type: ignore[attr-defined]


_counts = _SocketCounts()


class PresenceBook:
    """Per process: sockets opened, talking and closed, written together about once a second
    (chat_presence_apply) instead of a write per socket event; offline push reads presence
    with a TTL of minutes, so a second's delay changes nothing for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.opened_: list[tuple[str, int, int]] = []
        self.seen_: set[str] = set()
        self.closed_: list[str] = []
        self.task: asyncio.Task[None] | None = None

    def opened(self, name: str, user_id: int, session_id: int) -> None:
        self.opened_.append((name, user_id, session_id))
        self._flush_soon()

    def seen(self, name: str) -> None:
        self.seen_.add(name)
        self._flush_soon()

    def closed(self, name: str) -> None:
        self.closed_.append(name)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self.task is None:
            self.task = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(settings.SONOR_CHAT_PRESENCE_FLUSH)
            opened, seen, closed = self.opened_, list(self.seen_), self.closed_
            self.opened_, self.seen_, self.closed_ = [], set(), []
            await database_sync_to_async(chat_presence_apply)(
                opened=opened, seen=seen, closed=closed)
        except Exception:
            log.exception("writing socket presence failed")
        finally:
            self.task = None
            if self.opened_ or self.seen_ or self.closed_:
                self._flush_soon()


_presence_book = LoopLocal(PresenceBook).get


class SessionWatcher:
    """Per process, the database's word on open sockets, in batches:
    - fresh sockets, SONOR_WS_FRESH_RECHECK after they joined their groups: one query for
      all of them says which sessions ended and which rooms their users are in (what changed
      between a socket's authentication and its joining, whose events it did not hear);
    - every socket, every SONOR_WS_SESSION_RECHECK seconds: which sessions ended (the layer
      may have dropped a revocation)."""

    CHUNK = 500

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.task: asyncio.Task[None] | None = None
        self.fresh_ids: dict[int, int] = {}  # session id -> user id
        self.fresh_task: asyncio.Task[None] | None = None

    def fresh(self, *, session_id: int, user_id: int) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        self.fresh_ids[session_id] = user_id
        if self.fresh_task is None:
            self.fresh_task = asyncio.ensure_future(self._check_fresh())

    async def _check_fresh(self) -> None:
        try:
            await asyncio.sleep(settings.SONOR_WS_FRESH_RECHECK)
            fresh, self.fresh_ids = self.fresh_ids, {}
            ended, rooms = await database_sync_to_async(_fresh_sockets_check)(
                session_ids=list(fresh), user_ids=sorted(set(fresh.values())))
            self._revoke(ended)
            hub = local_hub()
            for user_id, room_ids in rooms.items():
                for room_id in room_ids:  # sockets already following it ignore this
                    hub.deliver_local(user_group(user_id),
                                      {"type": "room.join", "room": room_id, "texts": []})
        except Exception:
            log.exception("check of fresh sockets failed")
        finally:
            self.fresh_task = None
            if self.fresh_ids:
                self.fresh_task = asyncio.ensure_future(self._check_fresh())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, settings.SONOR_WS_SESSION_RECHECK))
            try:
                await self.check_now()
            except Exception:
                log.exception("session re-check failed")

    async def check_now(self) -> None:
        prefix = session_group(0)[:-1]
        ids = [int(group[len(prefix):]) for group in local_hub().groups
               if group.startswith(prefix)]
        for start in range(0, len(ids), self.CHUNK):
            self._revoke(await database_sync_to_async(session_end_reasons)(
                session_ids=ids[start:start + self.CHUNK]))

    def _revoke(self, ended: dict[int, str]) -> None:
        hub = local_hub()
        for session_id, reason in ended.items():
            hub.deliver_local(session_group(session_id),
                              {"type": "session.revoke", "reason": reason})


_watcher = LoopLocal(SessionWatcher).get


def _frames(message: dict[str, Any]) -> list[OutFrame]:
    """A layer message's frames, framed by the first local socket that gets it: the hub hands
    the same message to every socket of the group."""
    frames = message.get("frames")
    if frames is None:
        frames = message["frames"] = [OutFrame(text) for text in message["texts"]]
    return frames


def _error_frame(request_id: str | None, exc: AppError) -> protocol.ErrorFrame:
    FRAME_ERRORS.labels(exc.code).inc()
    return protocol.ErrorFrame(id=request_id, code=exc.code, message=exc.message,
                               extra=exc.extra)


def _cheap_request_id(raw: str | bytes) -> str | None:
    """The id of a frame refused for its rate, read only when that costs next to nothing."""
    if len(raw) > 1024:
        return None
    try:
        return _request_id(json.loads(raw))
    except (ValueError, UnicodeDecodeError):
        return None


def _request_id(data: Any) -> str | None:
    """The `id` of a frame that may fail validation, so that its error can carry it."""
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


def _invalid(exc: ValidationError) -> AppError:
    errors = exc.errors()
    if errors and errors[0]["type"] in ("union_tag_invalid", "union_tag_not_found",
                                         "model_attributes_type"):
        return UnknownFrame()
    return InvalidInput(errors=[{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
                                for e in errors[:10]])
