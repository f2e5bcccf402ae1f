"""Generated hostile frames on /ws/v1 (hypothesis): malformed JSON, JSON that is not an
object, unknown types, known types with a wrong, missing or extra field, oversized and binary
frames, and floods. Each gets the error or close code docs/protocol.md documents, nothing is
stored, and the socket still works afterwards: the next valid chat.send is stored with the
next seq of its room."""

import json
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from chatserver.core import protocol
from chatserver.models import Membership, RoomEvent
from chatserver.sockets.ws_handlers import HANDLERS
from identity.models import User
from notify.inbox import notification_create
from notify.models import Notification
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import direct_room, send

pytestmark = pytest.mark.django_db(transaction=True)
chat_user = chat_helpers.chat_user
fresh_cache = chat_helpers.fresh_cache

MAX_FRAME = 64 * 1024
KNOWN_TYPES = ("hello", "ping", "notify.read", "chat.send", "chat.edit", "chat.delete",
               "chat.read", "chat.typing", "chat.history")
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# (frame to send: str for a text frame, bytes for a binary one; expected code; expected id)
Case = tuple[str | bytes, str, str | None]

# ---- strategies ----------------------------------------------------------------------------

no_surrogates = st.characters(exclude_categories=["Cs"])
letters = st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)  # never numeric
fractions = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda value: not value.is_integer())
containers = st.one_of(st.lists(st.integers(), max_size=3),
                       st.dictionaries(letters, st.integers(), max_size=2))
valid_ids = st.text(alphabet=no_surrogates, min_size=1, max_size=64)

# Values the protocol's models refuse, per kind of field (pydantic's lax mode takes "5" for
# an int and "yes" for a bool, so those are not here).
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "id": st.one_of(st.just(""), st.text(alphabet="x", min_size=65, max_size=80),
                    st.integers(), st.booleans(), st.none(), containers),
    "text": st.one_of(st.integers(), st.booleans(), st.none(), containers,
                      st.just("x" * 16_385)),
    "room": st.one_of(st.integers(max_value=0), letters, fractions, st.none(), containers),
    "int": st.one_of(letters, fractions, st.none(), containers),
    "seq": st.one_of(st.integers(max_value=-1), letters, fractions, st.none(), containers),
    "optional_seq": st.one_of(st.integers(max_value=-1), letters, fractions, containers),
    "limit": st.one_of(st.integers(max_value=0), st.integers(min_value=51), letters,
                       fractions, st.none(), containers),
    "bool": st.one_of(st.sampled_from(["maybe", "2", "sure"]), st.integers(min_value=2),
                      fractions, st.none(), containers),
    "ids": st.one_of(st.just([]), st.lists(letters, min_size=1, max_size=3),
                     st.just(list(range(1, 502))), st.integers(), letters, st.none(),
                     st.dictionaries(letters, st.integers(), max_size=2)),
    "resume": st.one_of(st.integers(), letters, st.none(), st.lists(st.integers(), max_size=2),
                        st.just({"inbox": -1}), st.just({"rooms": {"1": -1}}),
                        st.just({"rooms": []}), st.just({"since": 1})),
}
# Field kinds of each client frame; optional fields are marked with a "?" prefix.
FIELDS: dict[str, dict[str, str]] = {
    "hello": {"id": "id", "resume": "?resume"},
    "ping": {"id": "id"},
    "notify.read": {"id": "id", "ids": "ids"},
    "chat.send": {"id": "id", "room": "room", "client_msg_id": "id", "text": "text",
                  "confirm_pii": "?bool"},
    "chat.edit": {"id": "id", "room": "room", "message_id": "int", "text": "text",
                  "confirm_pii": "?bool"},
    "chat.delete": {"id": "id", "room": "room", "message_id": "int"},
    "chat.read": {"id": "id", "room": "room", "seq": "seq"},
    "chat.typing": {"id": "id", "room": "room"},
    "chat.history": {"id": "id", "room": "room", "before_seq": "?optional_seq",
                     "after_seq": "?optional_seq", "limit": "?limit"},
}
# Every client frame type is fuzzed.
assert set(FIELDS) == set(KNOWN_TYPES) == set(HANDLERS)


@dataclass(frozen=True)
class Target:
    """What valid frames act on: a room of the citizen, their message in it and a notice."""
    token: str
    room_id: int
    message_id: int
    notification_id: int


def valid_frame(kind: str, request_id: str, target: Target) -> dict[str, Any]:
    """A frame of `kind` that the server would carry out (and, most of them, store)."""
    room_id = target.room_id
    fields: dict[str, dict[str, Any]] = {
        "hello": {"resume": {"inbox": 0}},
        "ping": {},
        "notify.read": {"ids": [target.notification_id]},
        "chat.send": {"room": room_id, "client_msg_id": request_id, "text": "Сайн уу"},
        "chat.edit": {"room": room_id, "message_id": target.message_id, "text": "засав"},
        "chat.delete": {"room": room_id, "message_id": target.message_id},
        "chat.read": {"room": room_id, "seq": 2},
        "chat.typing": {"room": room_id},
        "chat.history": {"room": room_id, "limit": 10},
    }
    return fields[kind] | {"type": kind, "id": request_id}


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


@st.composite
def broken_field(draw: st.DrawFn, target: Target) -> Case:
    """A known frame type with one field of a wrong type or out of range, a required field
    missing, or a field the model does not have: invalid_input, with the id when it is one."""
    kind = draw(st.sampled_from(KNOWN_TYPES))
    request_id = draw(valid_ids)
    frame = valid_frame(kind, request_id, target)
    how = draw(st.sampled_from(["wrong", "missing", "extra"]))
    if how == "missing" and kind != "hello":  # hello's only other field has a default
        field = draw(st.sampled_from([name for name, field_kind in FIELDS[kind].items()
                                      if not field_kind.startswith("?")]))
        del frame[field]
    elif how == "extra":
        frame[draw(letters.filter(lambda name: name not in frame))] = draw(
            st.one_of(st.integers(), letters, st.none()))
    else:
        field = draw(st.sampled_from(sorted(FIELDS[kind])))
        frame[field] = draw(WRONG[FIELDS[kind][field].lstrip("?")])
    still_has_id = frame.get("id") == request_id
    return json.dumps(frame), "invalid_input", request_id if still_has_id else None


@st.composite
def unknown_type(draw: st.DrawFn) -> Case:
    """An object whose type is missing, not a string or no frame type: unknown_frame."""
    frame: dict[str, Any] = draw(st.dictionaries(letters.filter(lambda k: k not in ("type", "id")),
                                                 st.integers(), max_size=3))
    kind = draw(st.one_of(st.none(), st.integers(), containers,
                          st.text(alphabet=no_surrogates, max_size=20).filter(
                              lambda t: t not in KNOWN_TYPES)))
    if kind is not None or draw(st.booleans()):
        frame["type"] = kind
    request_id = draw(st.one_of(st.none(), valid_ids))
    if request_id is not None:
        frame["id"] = request_id
    return json.dumps(frame), "unknown_frame", request_id


def hostile_frames(target: Target) -> st.SearchStrategy[Case]:
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(alphabet=no_surrogates, max_size=10),
        lambda inner: st.lists(inner, max_size=3), max_leaves=5)
    return st.one_of(
        # Not JSON at all (cut-off objects included): invalid_input, no id.
        st.text(alphabet=no_surrogates, min_size=1, max_size=200).filter(_not_json).map(
            lambda text: (text, "invalid_input", None)),
        st.sampled_from(['{"type": "ping", "id": "p1"', '{"type": "ping", id: "p1"}',
                         "{'type': 'ping'}", '{"type": "ping",}']).map(
            lambda text: (text, "invalid_input", None)),
        # JSON that is not an object: unknown_frame, no id.
        json_values.map(lambda value: (json.dumps(value), "unknown_frame", None)),
        unknown_type(),
        broken_field(target),
        # Oversized, even when otherwise valid: frame_too_large, no id (not parsed).
        st.integers(min_value=1, max_value=4096).map(lambda over: (
            json.dumps(valid_frame("chat.send", "big", target)
                       | {"text": "x" * (MAX_FRAME + over)}), "frame_too_large", None)),
        # Binary frames, a valid request's bytes included: invalid_input, no id.
        st.one_of(st.binary(min_size=1, max_size=64),
                  st.sampled_from(KNOWN_TYPES).map(lambda kind: json.dumps(
                      valid_frame(kind, "bin", target)).encode())).map(
            lambda data: (data, "invalid_input", None)),
    )


# ---- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def target(chat_user: Callable[..., User], make_token: Callable[..., str], settings: Any
           ) -> Target:
    """A citizen in a direct room with one message of theirs in it and an unread notice.
    Every example ends with a send: the per-user send limit would refuse the later ones."""
    settings.SONOR_CHAT_SEND_RATE = 10_000
    me, other = chat_user("Fuzz"), chat_user("Peer")
    room = direct_room(me, other)
    send(other, room)
    message = send(me, room)
    notice = notification_create(user=me, category="service_request", title="Өргөдөл",
                                 body="Хүлээн авлаа.")
    return Target(token=make_token(me), room_id=room.pk, message_id=message.pk,
                  notification_id=notice.pk)


@database_sync_to_async
def stored() -> tuple[int, ...]:
    """What a frame could have written: room events (sends, edits, deletions), the text
    state of messages, read marks of rooms and of the inbox."""
    return (RoomEvent.objects.count(),
            RoomEvent.objects.filter(edited_at__isnull=False).count(),
            RoomEvent.objects.filter(deleted_at__isnull=False).count(),
            sum(Membership.objects.values_list("last_read_seq", flat=True)),
            Notification.objects.filter(read_at__isnull=False).count())


@database_sync_to_async
def last_seq(room_id: int) -> int:
    return RoomEvent.objects.filter(room_id=room_id).order_by("-seq").values_list(
        "seq", flat=True)[0]


# ---- tests ---------------------------------------------------------------------------------

async def expect_close_after_events(socket: Any, code: int) -> None:
    """The socket closes with `code`; room messages (events) may come before the close."""
    while True:
        message = await socket.receive_output(3)
        if message.get("type") == "websocket.send" and '"chat.message"' in message["text"]:
            continue
        assert message == {"type": "websocket.close", "code": code}, message
        return


async def next_answer(socket: Any) -> BaseModel:
    """The next frame that is not a room's message: messages are events, which may come
    between answers (an earlier example's send, a live event before `welcome`)."""
    frame: BaseModel = await socket.receive_frame()
    while isinstance(frame, protocol.ChatMessage):
        frame = await socket.receive_frame()
    return frame


@FUZZ
@given(data=st.data())
async def test_hostile_frames_get_their_documented_error_and_store_nothing(
        ws_connect: Callable[..., Awaitable[Any]], target: Target, data: st.DataObject) -> None:
    cases = data.draw(st.lists(hostile_frames(target), min_size=1, max_size=8))
    before = await stored()
    socket = await ws_connect(target.token)
    try:
        for payload, _, _ in cases:
            if isinstance(payload, bytes):
                await socket.send_to(bytes_data=payload)
            else:
                await socket.send_to(text_data=payload)
        for payload, code, request_id in cases:
            error = await next_answer(socket)
            assert isinstance(error, protocol.ErrorFrame), (payload, error)
            assert (error.code, error.id) == (code, request_id), (payload, error)
            if code == "invalid_input" and isinstance(payload, str) and not _not_json(payload):
                assert error.extra["errors"], error  # names the field of a readable frame
        assert await stored() == before, "a refused frame stored something"
        # The socket is as it was: a valid send is stored with the room's next seq.
        seq_before = await last_seq(target.room_id)
        await socket.send_json_to(valid_frame("chat.send", "after", target)
                                  | {"client_msg_id": f"after-{seq_before}"})
        ack = await next_answer(socket)
        assert isinstance(ack, protocol.Ack), ack
        assert (ack.id, ack.seq) == ("after", seq_before + 1)
        assert await last_seq(target.room_id) == seq_before + 1
    finally:
        await socket.disconnect()  # one user's sockets are capped


def flood_model(kinds: list[str], burst: int, refused_burst: int) -> list[str]:
    """What docs/protocol.md promises for a flood sent faster than the budget refills: each
    frame spends from the socket's bucket; over it, `rate_limited`; every refused frame
    (garbage or over the rate) spends from the refused budget; past that the socket is
    closed with 4429 and nothing more is read."""
    tokens, refusals, answers = burst, refused_burst, []
    for kind in kinds:
        if tokens:
            tokens -= 1
            if kind == "send":
                answers.append("ack")
                continue
            answer = "invalid_input"
        else:
            answer = "rate_limited"
        if not refusals:
            answers.append("close")
            break
        refusals -= 1
        answers.append(answer)
    return answers


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(["send", "garbage"]), min_size=1, max_size=40),
       burst=st.integers(min_value=1, max_value=15),
       refused_burst=st.integers(min_value=1, max_value=8))
async def test_a_flood_is_answered_as_documented_and_stores_exactly_what_was_acked(
        ws_connect: Callable[..., Awaitable[Any]], target: Target, settings: Any,
        kinds: list[str], burst: int, refused_burst: int) -> None:
    # Budgets that do not refill during the flood, so that the answers are exact.
    settings.SONOR_WS_RATE_BURST, settings.SONOR_WS_RATE_PER_SECOND = burst, 0.001
    settings.SONOR_WS_REFUSED_BURST, settings.SONOR_WS_REFUSED_PER_SECOND = refused_burst, 0.001
    expected = flood_model(kinds, burst, refused_burst)
    first_seq = await last_seq(target.room_id) + 1
    socket = await ws_connect(target.token)
    try:
        for n, kind in enumerate(kinds):  # all at once, before reading any answer
            frame = (valid_frame("chat.send", f"{first_seq}-{n}", target) | {"id": f"f{n}"}
                     if kind == "send" else {"type": "chat.send", "id": f"f{n}", "room": "x"})
            await socket.send_to(text_data=json.dumps(frame))
        answers: list[str] = []
        acked_seqs: list[int] = []
        for n, answer in enumerate(expected):
            if answer == "close":
                await expect_close_after_events(socket, protocol.CLOSE_RATE_LIMITED)
                answers.append("close")
                break
            reply = await next_answer(socket)
            assert getattr(reply, "id", None) == f"f{n}", reply  # answered in order
            if isinstance(reply, protocol.Ack):
                answers.append("ack")
                assert reply.seq is not None, reply
                acked_seqs.append(reply.seq)
            else:
                assert isinstance(reply, protocol.ErrorFrame), reply
                answers.append(reply.code)
                if reply.code == "rate_limited":
                    assert float(str(reply.extra["retry_after"])) > 0
        assert answers == expected
        # Exactly the acked messages are stored, with the next seqs of the room, in order.
        assert acked_seqs == list(range(first_seq, first_seq + len(acked_seqs)))
        assert await last_seq(target.room_id) == first_seq + len(acked_seqs) - 1
    finally:
        await socket.disconnect()
