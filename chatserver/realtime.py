"""The only code that touches the channel layer: group names and publish_on_commit().

The database is the source of truth; the layer only wakes live sockets and may drop
(channels-redis is at-most-once), so clients resume from sequence numbers.
Layer message types (`frame.push`, `session.revoke`) are not wire types: Channels turns
them into consumer method names (frame_push, session_revoke).
"""

import asyncio
import logging
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from pydantic import BaseModel

log = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def session_group(session_id: int) -> str:
    return f"session.{session_id}"


def _send(group: str, message: dict[str, Any]) -> None:
    _layer_call("group_send", group, message)


def _layer_call(method: str, target: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(getattr(layer, method))(target, message)
    except Exception:  # what was committed stands; clients resume from seqs
        log.exception("channel layer %s to %s failed", method, target)


def publish_on_commit(group: str, frame: BaseModel) -> None:
    """Push a wire frame to every socket in `group` once the transaction commits.

    The frame is serialised once here; each process writes the same text to its sockets.
    """
    text = frame.model_dump_json()
    transaction.on_commit(lambda: _send(group, {"type": "frame.push", "text": text}))


def publish_many_on_commit(items: list[tuple[str, BaseModel]]) -> None:
    """Push many (group, frame) pairs, in order, after commit through one event-loop
    entry: a broadcast batch pays for one async_to_sync, not one per frame."""
    messages = [(group, {"type": "frame.push", "text": frame.model_dump_json()})
                for group, frame in items]

    async def send_all() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        for group, message in messages:
            try:
                await layer.group_send(group, message)
            except Exception:  # what was committed stands; clients resume from seqs
                log.exception("channel layer group_send to %s failed", group)

    if messages:
        transaction.on_commit(async_to_sync(send_all))


def revoke_on_commit(group: str, reason: str) -> None:
    """Tell every socket in `group` that its session ended; they send session.revoked, close."""
    transaction.on_commit(lambda: _send(group, {"type": "session.revoke", "reason": reason}))


def send_to_channel(channel_name: str, message: dict[str, Any]) -> None:
    """Deliver a layer message to one socket (QR login hands the session only to its asker)."""
    transaction.on_commit(lambda: _layer_call("send", channel_name, message))


# ---- chat rooms ----------------------------------------------------------------------------
# Room frames travel as `room.push` {room, texts} to the group `room.<id>`: serialised once by
# the publisher. The group's members are not sockets but one channel per server process (the
# RoomFanout below), which writes the same texts to each local socket following the room: a
# process learns of a room event once (one Redis message per process with the pub/sub layer),
# whatever the number of its sockets in the room. `room.join` {room, texts} to a user's group
# makes that user's sockets start following the room (texts: the frames that made them
# members, written first); `leave` in a room.push makes the listed users' sockets stop
# following it once they have its frames.

def room_group(room_id: int) -> str:
    return f"room.{room_id}"


def _frame_texts(frames: list[BaseModel]) -> list[str]:
    return [frame.model_dump_json() for frame in frames]


def publish_room_on_commit(room_id: int, frames: list[BaseModel],
                           leave_user_ids: tuple[int, ...] = ()) -> None:
    """Push room event frames, in order, to every socket following the room once the
    transaction commits; then the sockets of `leave_user_ids` stop following it (in the same
    message, so that they get the frames saying they left)."""
    message: dict[str, Any] = {"type": "room.push", "room": room_id,
                               "texts": _frame_texts(frames)}
    if leave_user_ids:
        message["leave"] = list(leave_user_ids)
    transaction.on_commit(lambda: _send(room_group(room_id), message))


def room_join_on_commit(user_id: int, room_id: int, frames: list[BaseModel]) -> None:
    """The user's sockets join the room's group and write `frames` (the events that made
    them members, which the room's group would deliver before they joined it)."""
    message = {"type": "room.join", "room": room_id, "texts": _frame_texts(frames)}
    transaction.on_commit(lambda: _send(user_group(user_id), message))


async def publish_room_now(room_id: int, frame: BaseModel) -> None:
    """Ephemeral frames (typing) from async code: nothing to commit, best effort."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "room.push", "room": room_id, "texts": [frame.model_dump_json()]}
    try:
        await layer.group_send(room_group(room_id), message)
    except Exception:
        log.exception("channel layer group_send to room %s failed", room_id)


def publish_user_on_commit(user_id: int, frame: BaseModel) -> None:
    """A frame for every socket of one user (read state on the other devices)."""
    publish_on_commit(user_group(user_id), frame)


class RoomFollower(Protocol):
    follower_user_id: int

    def room_frames(self, texts: list[str]) -> None:
        """Queue already serialised frames for writing; must not block."""

    def room_left(self, room_id: int) -> None:
        """The follower's user left the room; it is no longer followed."""


class RoomFanout:
    """Per process (and event loop): one channel-layer channel in the group of every room that
    some local socket follows; each room frame arrives once and is handed to each local
    follower, which buffers and writes it."""

    def __init__(self, layer: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.layer = layer
        self.loop = loop
        self.followers: dict[int, set[RoomFollower]] = {}
        self.channel_name = ""
        self._started: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    # Layers forget group members after `group_expiry` (a day by default): say it again.
    REFRESH_SECONDS = 3600.0

    async def _start(self) -> None:
        self.channel_name = await self.layer.new_channel(prefix="rooms.")
        self._task = self.loop.create_task(self._run())
        self._refresher = self.loop.create_task(self._refresh())

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.REFRESH_SECONDS)
            for room_id in list(self.followers):
                try:
                    await self.layer.group_add(room_group(room_id), self.channel_name)
                except Exception:
                    log.exception("channel layer group_add of room %s failed", room_id)

    async def follow(self, room_id: int, follower: RoomFollower) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await self._started
        followers = self.followers.get(room_id)
        if followers is not None:
            followers.add(follower)
            return
        self.followers[room_id] = {follower}
        try:
            await self.layer.group_add(room_group(room_id), self.channel_name)
        except Exception:  # the socket still resumes from seqs; say so in the log
            log.exception("channel layer group_add of room %s failed", room_id)

    async def unfollow(self, room_id: int, follower: RoomFollower) -> None:
        followers = self.followers.get(room_id)
        if followers is None:
            return
        followers.discard(follower)
        if not followers:
            del self.followers[room_id]
            try:
                await self.layer.group_discard(room_group(room_id), self.channel_name)
            except Exception:
                log.exception("channel layer group_discard of room %s failed", room_id)

    async def _run(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("room fan-out receive failed")
                await asyncio.sleep(1)
                continue
            if message.get("type") != "room.push":
                continue
            room_id = message["room"]
            texts = message["texts"]
            for follower in tuple(self.followers.get(room_id, ())):
                follower.room_frames(texts)
            leaving = message.get("leave")
            if leaving:
                for follower in tuple(self.followers.get(room_id, ())):
                    if follower.follower_user_id in leaving:
                        follower.room_left(room_id)
                        await self.unfollow(room_id, follower)


_fanouts: dict[int, RoomFanout] = {}


def room_fanout() -> RoomFanout:
    """This process's room fan-out for the running event loop and the current layer."""
    loop = asyncio.get_running_loop()
    layer = get_channel_layer()
    fanout = _fanouts.get(id(loop))
    if fanout is None or fanout.loop is not loop or fanout.layer is not layer:
        fanout = _fanouts[id(loop)] = RoomFanout(layer, loop)
    return fanout
