"""The device socket /ws/v1: authenticate, then route frames to ws_handlers.

Frames from the channel layer arrive already serialised (`frame.push`) and are written as is.
Room frames come from the process's RoomFanout (chatserver.realtime) into a bounded outbox
that one writer task per socket drains; a socket that falls too far behind is closed with
4408 (reconnect and resume) and its dropped frames are counted.
"""

import asyncio
import collections
import json
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from chatserver import protocol
from chatserver.chat_config import chat_setting
from chatserver.errors import (
    AppError,
    FrameTooLarge,
    InvalidInput,
    OriginForbidden,
    RateLimited,
    UnknownFrame,
)
from chatserver.metrics import FRAME_ERRORS, FRAMES_IN, FRAMES_OUT, SOCKETS_OPEN, SOCKETS_REFUSED
from chatserver.ratelimit import TokenBucket
from chatserver.realtime import room_fanout, session_group, user_group
from chatserver.services import chat_socket_close, chat_socket_open, chat_socket_seen
from chatserver.ws_handlers import HANDLERS
from identity.models import DeviceSession
from identity.selectors import session_end_reason
from identity.ws_auth import scope_authenticate

log = logging.getLogger(__name__)

ROOM_FRAMES_DROPPED = Counter(
    "sonor_room_frames_dropped_total",
    "Room frames dropped because a socket fell too far behind (it is closed with 4408)")
SOCKETS_TOO_SLOW = Counter("sonor_sockets_too_slow_total", "Sockets closed for falling behind")


class DeviceConsumer(AsyncWebsocketConsumer):
    session: DeviceSession
    groups_joined: list[str]
    # Rooms this socket follows: a cache for cheap checks; the services stay authoritative.
    # Kept current by room.join layer messages and by the fan-out (room_left).
    room_ids: set[int]
    typing_sent_at: dict[int, float]
    follower_user_id: int = 0
    outbox: collections.deque[str]
    writer: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.groups_joined = []
        self.room_ids = set()
        self.typing_sent_at = {}
        self.outbox = collections.deque()
        self.outbox_ready = asyncio.Event()
        self.too_slow = False
        # Accept first: a close code only reaches the client on an open socket.
        await self.accept()
        try:
            self.session = await database_sync_to_async(scope_authenticate)(self.scope)
        except OriginForbidden:
            SOCKETS_REFUSED.labels("origin").inc()
            await self.close(code=protocol.CLOSE_ORIGIN_FORBIDDEN)
            return
        except AppError as exc:
            log.info("socket refused: %s", exc.code)
            SOCKETS_REFUSED.labels(exc.code).inc()
            await self.close(code=protocol.CLOSE_UNAUTHENTICATED)
            return
        SOCKETS_OPEN.inc()
        self.session_checked_at = time.monotonic()
        self.bucket = TokenBucket(settings.SONOR_WS_RATE_PER_SECOND, settings.SONOR_WS_RATE_BURST)
        for group in (user_group(self.session.user_id), session_group(self.session.pk)):
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        # After joining the user's group, so that a room.join sent meanwhile is not lost.
        self.follower_user_id = self.session.user_id
        self.writer = asyncio.get_running_loop().create_task(self._write_room_frames())
        room_ids = await database_sync_to_async(chat_socket_open)(
            user_id=self.session.user_id, session_id=self.session.pk,
            channel_name=self.channel_name)
        self.presence_at = time.monotonic()
        for room_id in room_ids:
            await self._room_follow(room_id)
        # A revocation between the check above and joining the groups would be missed.
        await self._session_still_live(force=True)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "bucket"):
            SOCKETS_OPEN.dec()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        fanout = room_fanout()
        for room_id in list(self.room_ids):
            await fanout.unfollow(room_id, self)
        self.room_ids.clear()
        if self.writer is not None:
            self.writer.cancel()
        if hasattr(self, "presence_at"):
            await database_sync_to_async(chat_socket_close)(channel_name=self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not hasattr(self, "bucket"):
            return  # closing: not authenticated
        if not await self._session_still_live():
            return
        await self._presence_refresh()
        request_id: str | None = None
        try:
            raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8")
            if len(raw.encode("utf-8")) > settings.SONOR_WS_MAX_FRAME_BYTES:
                raise FrameTooLarge()
            data = json.loads(raw)
            request_id = _request_id(data)
            wait = self.bucket.take()
            if wait:
                raise RateLimited(wait)
            frame = protocol.client_frame_adapter.validate_python(data)
            FRAMES_IN.labels(frame.type).inc()
            replies = await HANDLERS[frame.type](self, frame)
        except ValidationError as exc:
            await self._send_error(request_id, _invalid(exc))
            return
        except (ValueError, UnicodeDecodeError):  # not JSON or not UTF-8
            await self._send_error(request_id, InvalidInput("Frames are UTF-8 JSON objects."))
            return
        except AppError as exc:
            await self._send_error(request_id, exc)
            return
        for reply in replies:
            await self.send_frame(reply)

    async def send_frame(self, frame: BaseModel) -> None:
        FRAMES_OUT.inc()
        await self.send(text_data=frame.model_dump_json())

    async def _send_error(self, request_id: str | None, exc: AppError) -> None:
        FRAME_ERRORS.labels(exc.code).inc()
        await self.send_frame(protocol.ErrorFrame(
            id=request_id, code=exc.code, message=exc.message, extra=exc.extra))

    async def _session_still_live(self, force: bool = False) -> bool:
        """The layer may drop a revocation: re-check the session now and then, lazily."""
        elapsed = time.monotonic() - self.session_checked_at
        if not force and elapsed < settings.SONOR_WS_SESSION_RECHECK:
            return True
        self.session_checked_at = time.monotonic()
        reason = await database_sync_to_async(session_end_reason)(session_id=self.session.pk)
        if reason is not None:
            await self._revoked(reason)
            return False
        return True

    async def _presence_refresh(self) -> None:
        """Keep this socket counted as live (chat_offline_members) while the client talks."""
        if time.monotonic() - self.presence_at < chat_setting("SONOR_CHAT_PRESENCE_TTL") / 3:
            return
        self.presence_at = time.monotonic()
        await database_sync_to_async(chat_socket_seen)(channel_name=self.channel_name)

    async def _room_follow(self, room_id: int) -> None:
        if room_id not in self.room_ids:
            self.room_ids.add(room_id)
            await room_fanout().follow(room_id, self)

    # ---- room frames (RoomFollower): queued by the fan-out, written by one task ----

    def room_frames(self, texts: list[str]) -> None:
        if self.too_slow:
            return
        if len(self.outbox) + len(texts) > chat_setting("SONOR_CHAT_SOCKET_BUFFER"):
            ROOM_FRAMES_DROPPED.inc(len(self.outbox) + len(texts))
            SOCKETS_TOO_SLOW.inc()
            log.warning("socket of user %s fell behind: closed, %s frames dropped",
                        self.follower_user_id, len(self.outbox) + len(texts))
            self.outbox.clear()
            self.too_slow = True
        else:
            self.outbox.extend(texts)
        self.outbox_ready.set()

    def room_left(self, room_id: int) -> None:
        """The user left the room (the fan-out has handed over the frames saying so)."""
        self.room_ids.discard(room_id)
        self.typing_sent_at.pop(room_id, None)

    async def _write_room_frames(self) -> None:
        try:
            while True:
                await self.outbox_ready.wait()
                self.outbox_ready.clear()
                if self.too_slow:
                    await self.close(code=protocol.CLOSE_TOO_SLOW)
                    return
                if self.outbox and not await self._session_still_live():
                    return
                while self.outbox:
                    FRAMES_OUT.inc()
                    await self.send(text_data=self.outbox.popleft())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client went away while frames were queued
            log.debug("room frames to a closed socket: %s", exc)

    async def _revoked(self, reason: str) -> None:
        await self.send_frame(protocol.SessionRevoked(reason=reason))
        await self.close(code=protocol.CLOSE_UNAUTHENTICATED)

    # ---- channel-layer messages (not wire types) ----

    async def frame_push(self, event: dict[str, Any]) -> None:
        if not await self._session_still_live():
            return
        FRAMES_OUT.inc()
        await self.send(text_data=event["text"])

    async def session_revoke(self, event: dict[str, Any]) -> None:
        await self._revoked(event["reason"])

    async def room_join(self, event: dict[str, Any]) -> None:
        """This user became a member: queue the events that did it, then follow the room (so
        that its later frames come after them)."""
        if not hasattr(self, "bucket") or event["room"] in self.room_ids:
            return
        self.room_frames(event["texts"])
        await self._room_follow(event["room"])


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
