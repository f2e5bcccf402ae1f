"""One small async function per client frame type: parse is done, call a service, answer.

A handler sees the socket only through `Connection` (what it reads of the device socket), so
this module does not import the consumer that calls it."""

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from channels.db import database_sync_to_async
from pydantic import BaseModel

from chatserver.chat import messages, receipts
from chatserver.chat.config import chat_setting
from chatserver.chat.errors import NotMember
from chatserver.chat.selectors import room_history
from chatserver.core import protocol
from chatserver.core.realtime import publish_room_now
from chatserver.sockets.message_writer import message_writer
from chatserver.sockets.welcome import welcome_build
from identity.models import DeviceSession
from notify.inbox import notifications_mark_read


class Connection(Protocol):
    """The authenticated device socket, as handlers see it (DeviceConsumer)."""

    session: DeviceSession | None  # set once authenticated: handlers run only after that
    room_ids: set[int]
    typing_sent_at: dict[int, float]


Handler = Callable[[Connection, Any], Awaitable[list[BaseModel]]]


def _session(conn: Connection) -> DeviceSession:
    assert conn.session is not None  # the consumer routes frames only while authenticated
    return conn.session


# Reads, in the thread pool: after a restart every phone says hello at once, and on the one
# sync thread their queries would wait on each other.
_welcome_build = database_sync_to_async(welcome_build, thread_sensitive=False)
_room_history = database_sync_to_async(room_history, thread_sensitive=False)


async def hello(conn: Connection, frame: protocol.Hello) -> list[BaseModel]:
    return await _welcome_build(
        session=_session(conn), request_id=frame.id, resume=frame.resume)


async def ping(conn: Connection, frame: protocol.Ping) -> list[BaseModel]:
    return [protocol.Pong(id=frame.id)]


async def notify_read(conn: Connection, frame: protocol.NotifyRead) -> list[BaseModel]:
    await database_sync_to_async(notifications_mark_read)(user=_session(conn).user, ids=frame.ids)
    return [protocol.Ack(id=frame.id)]


# ---- chat ----------------------------------------------------------------------------------

_room_read = database_sync_to_async(receipts.room_read, thread_sensitive=False)


async def chat_send(conn: Connection, frame: protocol.ChatSend) -> list[BaseModel]:
    event = await message_writer().send(messages.SendRequest(
        sender=_session(conn).user, room_id=frame.room, client_msg_id=frame.client_msg_id,
        text=frame.text, confirm_pii=frame.confirm_pii))
    if event is None:  # held: the sender is not told why
        return [protocol.Ack(id=frame.id)]
    return [protocol.Ack(id=frame.id, seq=event.seq, message_id=event.pk)]


async def chat_edit(conn: Connection, frame: protocol.ChatEdit) -> list[BaseModel]:
    event = await database_sync_to_async(messages.message_edit)(
        user=_session(conn).user, room_id=frame.room, message_id=frame.message_id,
        text=frame.text, confirm_pii=frame.confirm_pii)
    if event is None:
        return [protocol.Ack(id=frame.id)]
    return [protocol.Ack(id=frame.id, seq=event.seq, message_id=frame.message_id)]


async def chat_delete(conn: Connection, frame: protocol.ChatDelete) -> list[BaseModel]:
    event = await database_sync_to_async(messages.message_delete)(
        user=_session(conn).user, room_id=frame.room, message_id=frame.message_id)
    return [protocol.Ack(id=frame.id, seq=event.seq, message_id=frame.message_id)]


async def chat_read(conn: Connection, frame: protocol.ChatRead) -> list[BaseModel]:
    await _room_read(user=_session(conn).user, room_id=frame.room, seq=frame.seq)
    return [protocol.Ack(id=frame.id)]


async def chat_typing(conn: Connection, frame: protocol.ChatTyping) -> list[BaseModel]:
    """Forwarded at most every SONOR_CHAT_TYPING_INTERVAL per socket and room; never stored."""
    if frame.room not in conn.room_ids:
        raise NotMember()
    now = time.monotonic()
    if now - conn.typing_sent_at.get(frame.room, -1e9) >= chat_setting(
            "SONOR_CHAT_TYPING_INTERVAL"):
        conn.typing_sent_at[frame.room] = now
        if await database_sync_to_async(receipts.room_typing_allowed)(
                user=_session(conn).user, room_id=frame.room):
            await publish_room_now(frame.room, protocol.ChatTypingEvent(
                room=frame.room, user=_session(conn).user_id))
    return [protocol.Ack(id=frame.id)]


async def chat_history(conn: Connection, frame: protocol.ChatHistoryRequest
                       ) -> list[BaseModel]:
    page = await _room_history(
        user=_session(conn).user, room_id=frame.room, before_seq=frame.before_seq,
        after_seq=frame.after_seq, limit=frame.limit)
    return [protocol.ChatHistory(id=frame.id, room=frame.room, messages=page.events,
                                 has_more=page.has_more)]


HANDLERS: dict[str, Handler] = {
    "hello": hello,
    "ping": ping,
    "notify.read": notify_read,
    "chat.send": chat_send,
    "chat.edit": chat_edit,
    "chat.delete": chat_delete,
    "chat.read": chat_read,
    "chat.typing": chat_typing,
    "chat.history": chat_history,
}
