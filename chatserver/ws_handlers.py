"""One small async function per client frame type: parse is done, call a service, answer."""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from pydantic import BaseModel

from chatserver import protocol
from chatserver.selectors import welcome_build
from notify.services import notifications_mark_read

if TYPE_CHECKING:
    from chatserver.consumers import DeviceConsumer

Handler = Callable[["DeviceConsumer", Any], Awaitable[list[BaseModel]]]


async def hello(conn: "DeviceConsumer", frame: protocol.Hello) -> list[BaseModel]:
    return await database_sync_to_async(welcome_build)(
        session=conn.session, request_id=frame.id, resume=frame.resume)


async def ping(conn: "DeviceConsumer", frame: protocol.Ping) -> list[BaseModel]:
    return [protocol.Pong(id=frame.id)]


async def notify_read(conn: "DeviceConsumer", frame: protocol.NotifyRead) -> list[BaseModel]:
    await database_sync_to_async(notifications_mark_read)(user=conn.session.user, ids=frame.ids)
    return [protocol.Ack(id=frame.id)]


HANDLERS: dict[str, Handler] = {
    "hello": hello,
    "ping": ping,
    "notify.read": notify_read,
}
