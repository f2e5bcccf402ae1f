"""The only code that touches the channel layer: group names, publishing, and the hub that
hands layer messages to this process's sockets.

The database is the source of truth; the layer only wakes live sockets and may drop
(channels-redis is at-most-once), so clients resume from sequence numbers.

Delivery, per process:

    service --publish_*_on_commit--> layer group (user.N, session.N, room.N)
                                          |  one layer channel per process, not per socket
                                          v
                                     LocalHub ----> each local socket subscribed to the group
                                                    (hub_deliver: queue, never block)

Every layer message names its `group`, so that the hub, subscribed once to each group that a
local socket follows, hands it to exactly those sockets: a process learns of an event once
(one Redis message per process with the pub/sub layer), a socket costs no layer channel, no
receive loop and no layer subscription of its own, and a frame is serialised once by its
publisher (and framed once per process by the sockets). Message types (`frame.push`,
`room.push`, `room.join`, `session.revoke`) are not wire types.
"""

import asyncio
import logging
from collections import deque
from typing import Any, Protocol

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from pydantic import BaseModel

from chatserver.core.loop_local import LoopLocal

log = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def session_group(session_id: int) -> str:
    return f"session.{session_id}"


def room_group(room_id: int) -> str:
    return f"room.{room_id}"


def _send(group: str, message: dict[str, Any]) -> None:
    message["group"] = group
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
    texts = [frame.model_dump_json()]
    transaction.on_commit(lambda: _send(group, {"type": "frame.push", "texts": texts}))


def publish_many_on_commit(items: list[tuple[str, BaseModel]], *, wait: bool = True) -> None:
    """Push many (group, frame) pairs after commit, in order for each group, through one
    event-loop entry, one layer message per group. With wait=False, a batch running in a
    thread for an event loop hands them to that loop's publisher and goes on (see
    layer_send_many)."""
    texts_by_group: dict[str, list[str]] = {}
    for group, frame in items:
        texts_by_group.setdefault(group, []).append(frame.model_dump_json())
    messages = [(group, {"type": "frame.push", "texts": texts, "group": group})
                for group, texts in texts_by_group.items()]
    if messages:
        transaction.on_commit(lambda: layer_send_many(messages, wait=wait))


def layer_send_many(messages: list[tuple[str, dict[str, Any]]], *, wait: bool = True) -> None:
    """group_send each (group, message), in order, from sync code in one loop entry.

    With wait=False, in a thread that an event loop called through sync_to_async (a batch),
    the messages join that loop's publisher, which sends everything handed to it in order,
    and this returns at once: the batch does not wait for the busy loop to publish them."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None) if not wait else None
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(_publisher_add, messages)
        return
    async_to_sync(_group_send_all)(messages)


async def _group_send_all(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Send them in order, at once (chatserver.core.layers: group_send_many)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send_many(messages)
    except Exception:  # what was committed stands; clients resume from seqs
        log.exception("channel layer group_send_many of %s messages (%s, …) failed",
                      len(messages), messages[0][0])


class _Publisher:
    """A loop's queue of layer messages from batch threads, sent in the order handed over."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: deque[tuple[str, dict[str, Any]]] = deque()
        self.task: asyncio.Task[None] | None = None

    def add(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        self.queue.extend(messages)
        if self.task is None:
            self.task = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.queue:
                messages = list(self.queue)
                self.queue.clear()
                await _group_send_all(messages)
        finally:
            self.task = None


_publishers = LoopLocal(_Publisher)


def _publisher_add(messages: list[tuple[str, dict[str, Any]]]) -> None:
    _publishers.get().add(messages)


def revoke_on_commit(group: str, reason: str) -> None:
    """Tell every socket in `group` that its session ended; they send session.revoked, close."""
    transaction.on_commit(lambda: _send(group, {"type": "session.revoke", "reason": reason}))


def send_to_channel(channel_name: str, message: dict[str, Any]) -> None:
    """Deliver a layer message to one socket (QR login hands the session only to its asker)."""
    transaction.on_commit(lambda: _layer_call("send", channel_name, message))


# ---- chat rooms ----------------------------------------------------------------------------
# Room frames travel as `room.push` {room, texts} to the group `room.<id>`. `room.join`
# {room, texts} to a user's group makes that user's sockets start following the room (texts:
# the frames that made them members, written first); `leave` in a room.push makes the listed
# users' sockets stop following it once they have its frames.

def room_push_message(room_id: int, frames: list[BaseModel],
                      leave_user_ids: tuple[int, ...] = ()) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "room.push", "room": room_id,
                               "texts": [frame.model_dump_json() for frame in frames],
                               "group": room_group(room_id)}
    if leave_user_ids:
        message["leave"] = list(leave_user_ids)
    return message


def publish_room_on_commit(room_id: int, frames: list[BaseModel],
                           leave_user_ids: tuple[int, ...] = ()) -> None:
    """Push room event frames, in order, to every socket following the room once the
    transaction commits; then the sockets of `leave_user_ids` stop following it (in the same
    message, so that they get the frames saying they left)."""
    message = room_push_message(room_id, frames, leave_user_ids)
    transaction.on_commit(lambda: _send(room_group(room_id), message))


def publish_rooms_on_commit(items: list[tuple[int, list[BaseModel]]], *,
                            wait: bool = True) -> None:
    """publish_room_on_commit for several rooms through one event-loop entry (`wait`: see
    layer_send_many)."""
    messages = [(room_group(room_id), room_push_message(room_id, frames))
                for room_id, frames in items]
    if messages:
        transaction.on_commit(lambda: layer_send_many(messages, wait=wait))


def room_join_on_commit(user_id: int, room_id: int, frames: list[BaseModel]) -> None:
    """The user's sockets follow the room and first write `frames` (the events that made
    them members, which the room's group would deliver before they followed it)."""
    message = {"type": "room.join", "room": room_id,
               "texts": [frame.model_dump_json() for frame in frames]}
    transaction.on_commit(lambda: _send(user_group(user_id), message))


async def publish_room_now(room_id: int, frame: BaseModel) -> None:
    """Ephemeral frames (typing) from async code: nothing to commit, best effort."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(room_group(room_id), room_push_message(room_id, [frame]))
    except Exception:
        log.exception("channel layer group_send to room %s failed", room_id)


def publish_user_on_commit(user_id: int, frame: BaseModel) -> None:
    """A frame for every socket of one user (read state on the other devices)."""
    publish_on_commit(user_group(user_id), frame)


# ---- the hub -------------------------------------------------------------------------------

class Subscriber(Protocol):
    def hub_deliver(self, message: dict[str, Any]) -> None:
        """Take a layer message for a group this socket follows; must not block."""


class LocalHub:
    """Per process (and event loop): one channel-layer channel, added to every group that
    some local socket follows; each message arrives once and goes to that group's local
    subscribers. Layer group_add/discard calls run one at a time, in order, so that a
    discard of a group's last subscriber never overtakes a later add."""

    # Layers forget group members after `group_expiry` (a day by default): say it again.
    REFRESH_SECONDS = 3600.0
    RETRY_SECONDS = 2.0

    def __init__(self, layer: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.layer = layer
        self.loop = loop
        self.groups: dict[str, set[Subscriber]] = {}
        self.channel_name = ""
        self._started: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ops: asyncio.Queue[tuple[str, str, asyncio.Future[None] | None]] = asyncio.Queue()
        self._retrying: set[str] = set()  # groups whose group_add failed, tried again

    async def _start(self) -> None:
        self.channel_name = await self.layer.new_channel(prefix="hub.")
        self._tasks = [self.loop.create_task(coro) for coro in
                       (self._receive_forever(), self._layer_ops(), self._refresh())]

    async def ready(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        started = self._started
        try:
            await asyncio.shield(started)
        except Exception:  # the layer did not answer (Redis down): the next socket tries again
            if self._started is started:
                self._started = None
            raise

    async def subscribe(self, group: str, subscriber: Subscriber) -> None:
        """Deliver the group's messages to `subscriber` from now on (awaits the layer when
        this process did not follow the group yet)."""
        await self.ready()
        subscribers = self.groups.get(group)
        if subscribers is not None:
            subscribers.add(subscriber)
            return
        self.groups[group] = {subscriber}
        done = self.loop.create_future()
        self._ops.put_nowait(("group_add", group, done))
        await done

    def unsubscribe(self, group: str, subscriber: Subscriber) -> None:
        """Stop at once; the layer hears of it in the background."""
        subscribers = self.groups.get(group)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self.groups[group]
            self._ops.put_nowait(("group_discard", group, None))

    def deliver_local(self, group: str, message: dict[str, Any]) -> None:
        for subscriber in tuple(self.groups.get(group, ())):
            subscriber.hub_deliver(message)

    async def _layer_ops(self) -> None:
        while True:
            method, group, done = await self._ops.get()
            await self._layer_op(method, group)
            if done is not None and not done.done():
                done.set_result(None)

    async def _layer_op(self, method: str, group: str) -> None:
        # A group emptied and followed again before its discard ran: keep it.
        if method == "group_discard" and group in self.groups:
            return
        # No local socket follows it any more (a retry or a refresh after the last one left).
        if method == "group_add" and group not in self.groups:
            self._retrying.discard(group)
            return
        try:
            await getattr(self.layer, method)(group, self.channel_name)
        except Exception as exc:  # sockets still resume from seqs; say so in the log
            if method != "group_add":
                log.exception("channel layer %s of %s failed", method, group)
                return
            # The layer is down (Redis restarting): follow the group once it is back, not
            # at the next refresh an hour later.
            if group not in self._retrying:
                self._retrying.add(group)
                log.warning("channel layer group_add of %s failed, retrying every %ss: %s",
                            group, self.RETRY_SECONDS, exc)
            self.loop.call_later(self.RETRY_SECONDS, self._ops.put_nowait,
                                 ("group_add", group, None))
            return
        self._retrying.discard(group)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.REFRESH_SECONDS)
            for group in list(self.groups):
                self._ops.put_nowait(("group_add", group, None))

    async def _receive_forever(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("hub receive failed")
                await asyncio.sleep(1)
                continue
            group = message.get("group")
            if group is None:
                log.warning("layer message without a group: %s", message.get("type"))
                continue
            self.deliver_local(group, message)


_hubs: dict[int, LocalHub] = {}


def local_hub() -> LocalHub:
    """This process's hub for the running event loop and the current layer."""
    loop = asyncio.get_running_loop()
    layer = get_channel_layer()
    hub = _hubs.get(id(loop))
    if hub is None or hub.loop is not loop or hub.layer is not layer:
        hub = _hubs[id(loop)] = LocalHub(layer, loop)
    return hub
