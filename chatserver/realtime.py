"""The only code that touches the channel layer: group names and publish_on_commit().

The database is the source of truth; the layer only wakes live sockets and may drop
(channels-redis is at-most-once), so clients resume from sequence numbers.
Layer message types (`frame.push`, `session.revoke`) are not wire types: Channels turns
them into consumer method names (frame_push, session_revoke).
"""

import logging
from typing import Any

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
# Every authenticated socket is in `room.<id>` for each room it is a member of. Room frames
# travel as `room.push` {room, texts}: serialised once, written as is by each socket that
# still has the room in its cache. `room.join` / `room.leave` {room, texts} to a user's group
# make that user's sockets join or leave the room's group (texts: frames to write first).

def room_group(room_id: int) -> str:
    return f"room.{room_id}"


def _frame_texts(frames: list[BaseModel]) -> list[str]:
    return [frame.model_dump_json() for frame in frames]


def publish_room_on_commit(room_id: int, frames: list[BaseModel]) -> None:
    """Push room event frames, in order, to every socket in the room once the transaction
    commits."""
    message = {"type": "room.push", "room": room_id, "texts": _frame_texts(frames)}
    transaction.on_commit(lambda: _send(room_group(room_id), message))


def room_join_on_commit(user_id: int, room_id: int, frames: list[BaseModel]) -> None:
    """The user's sockets join the room's group and write `frames` (the events that made
    them members, which the room's group would deliver before they joined it)."""
    message = {"type": "room.join", "room": room_id, "texts": _frame_texts(frames)}
    transaction.on_commit(lambda: _send(user_group(user_id), message))


def room_leave_on_commit(user_id: int, room_id: int) -> None:
    """The user's sockets leave the room's group (after the frames published before this)."""
    message = {"type": "room.leave", "room": room_id, "texts": []}
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
