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


def revoke_on_commit(group: str, reason: str) -> None:
    """Tell every socket in `group` that its session ended; they send session.revoked, close."""
    transaction.on_commit(lambda: _send(group, {"type": "session.revoke", "reason": reason}))


def send_to_channel(channel_name: str, message: dict[str, Any]) -> None:
    """Deliver a layer message to one socket (QR login hands the session only to its asker)."""
    transaction.on_commit(lambda: _layer_call("send", channel_name, message))
