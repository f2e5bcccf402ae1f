"""Helpers shared by the chat tests: verified citizens, rooms, frames and a fresh cache."""

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.db import close_old_connections, connection
from pydantic import BaseModel

from chatserver.chat import invites as chat_invites
from chatserver.chat import messages as chat_messages
from chatserver.chat import rooms as chat_rooms
from chatserver.chat.models import PendingInvite, Room, RoomEvent
from chatserver.core import protocol
from identity.models import User

_numbers = itertools.count(1)


def new_phone() -> str:
    """A valid, unused Mongolian mobile number (Skytel's 91 range; other tests use 88 and 99)."""
    return f"+97691{next(_numbers) % 1_000_000:06d}"


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    """Rate-limit windows live in the cache and user ids repeat between transactional tests."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def chat_user(make_citizen: Callable[..., User]) -> Callable[..., User]:
    """chat_user(name="...") -> a citizen with a verified number of their own."""

    def make(name: str = "Иргэн") -> User:
        return make_citizen(phone=new_phone(), name=name)

    return make


def phone_of(user: User) -> str:
    return user.phones.get(released_at__isnull=True).e164


def direct_room(a: User, b: User) -> Room:
    """The direct room of a and b: a asks by b's number, b accepts (if they had not)."""
    answer = chat_rooms.room_direct_get_or_create(user=a, phone=phone_of(b))
    if isinstance(answer, PendingInvite):
        answer = chat_invites.invitation_accept(user=b, invitation_id=answer.pk)
    assert isinstance(answer, Room)
    return answer


def group(owner: User, *members: User, name: str = "Бүлэг") -> Room:
    """A group of `owner`; each invited member accepts, in order."""
    created = chat_rooms.group_create(creator=owner, name=name,
                                      phones=[phone_of(m) for m in members])
    for invite in created.pending:
        if invite.invitee is not None:
            chat_invites.invitation_accept(user=invite.invitee, invitation_id=invite.pk)
    created.room.refresh_from_db()
    return created.room


def member_add(actor: User, room: Room, user: User) -> None:
    """`actor` adds `user` to the group by number; an invited `user` accepts."""
    answer = chat_rooms.group_member_add(actor=actor, room_id=room.pk, phone=phone_of(user))
    if isinstance(answer, PendingInvite):
        chat_invites.invitation_accept(user=user, invitation_id=answer.pk)


_counter = itertools.count(1)


def send(user: User, room: Room | int, text: str = "Сайн уу", **kw: Any) -> RoomEvent:
    room_id = room if isinstance(room, int) else room.pk
    event = chat_messages.message_send(sender=user, room_id=room_id,
                                       client_msg_id=kw.pop("client_msg_id", f"c{next(_counter)}"),
                                       text=text, **kw)
    assert event is not None
    return event


def seqs(room: Room | int) -> list[int]:
    room_id = room if isinstance(room, int) else room.pk
    return list(RoomEvent.objects.filter(room_id=room_id).order_by("seq")
                .values_list("seq", flat=True))


adirect_room = database_sync_to_async(direct_room)
agroup = database_sync_to_async(group)
asend = database_sync_to_async(send)
aseqs = database_sync_to_async(seqs)


def frames_of(frames: list[BaseModel], kind: type[BaseModel]) -> list[Any]:
    return [f for f in frames if isinstance(f, kind)]


async def drain(socket: Any, timeout: float = 0.3) -> list[BaseModel]:
    """Every frame the socket receives until it has been quiet for `timeout` seconds."""
    received = []
    while not await socket.receive_nothing(timeout=timeout):
        received.append(await socket.receive_frame())
    return received


async def receive_until(socket: Any, kind: type[BaseModel], timeout: float = 3) -> Any:
    """The first frame of `kind`, skipping the others."""
    while True:
        frame = await socket.receive_frame(timeout)
        if isinstance(frame, kind):
            return frame


def ack_of(frame: BaseModel) -> protocol.Ack:
    assert isinstance(frame, protocol.Ack), frame
    return frame


def error_of(frame: BaseModel, code: str) -> protocol.ErrorFrame:
    assert isinstance(frame, protocol.ErrorFrame), frame
    assert frame.code == code, frame
    return frame


def in_thread(fn, *args):  # type: ignore[no-untyped-def]
    """Run fn in a worker thread of a test, closing that thread's database connection."""
    try:
        return fn(*args)
    finally:
        close_old_connections()
        connection.close()
