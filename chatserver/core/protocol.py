"""The wire contract of /ws/v1 and /ws/v1/login: one typed model per frame type.

Imports nothing of ours but the shared string patterns (chatserver.core.api_schemas).
docs/protocol.md is generated from these models (`manage.py protocol_docs`)
and a test fails when the two disagree.
"""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from chatserver.core.api_schemas import NO_CONTROLS

RequestId = Annotated[str, Field(min_length=1, max_length=64)]
Seq = Annotated[int, Field(ge=0)]


class Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- client -> server (/ws/v1) -------------------------------------------------------------

class ResumeState(Frame):
    rooms: dict[str, Seq] = Field(default_factory=dict, max_length=10_000)
    inbox: Seq | None = None


class Hello(Frame):
    """First frame after connect: the client's last seen seqs; answered by `welcome`."""

    type: Literal["hello"]
    id: RequestId
    resume: ResumeState = Field(default_factory=ResumeState)


class Ping(Frame):
    type: Literal["ping"]
    id: RequestId


class NotifyRead(Frame):
    """Mark inbox notifications read on every device."""

    type: Literal["notify.read"]
    id: RequestId
    ids: list[int] = Field(min_length=1, max_length=500)


# Chat texts are checked exactly by the service (NFC, 4,096 characters after normalisation);
# this bound only keeps absurd frames out before that.
ChatText = Annotated[str, Field(max_length=16_384)]
RoomId = Annotated[int, Field(ge=1)]
# No control characters: the id is stored (PostgreSQL refuses NUL in text).
ClientMsgId = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_CONTROLS)]


class ChatSend(Frame):
    """Send a message. Answered by `ack` with the message's `seq` and `message_id`; a resend
    with the same `client_msg_id` is answered with the same seq and stores nothing new.
    `confirm_pii: true` sends text that was refused with `pii_warning`."""

    type: Literal["chat.send"]
    id: RequestId
    room: RoomId
    client_msg_id: ClientMsgId
    text: ChatText
    confirm_pii: bool = False


class ChatEdit(Frame):
    """Edit one's own message; everyone in the room gets `chat.updated`."""

    type: Literal["chat.edit"]
    id: RequestId
    room: RoomId
    message_id: int
    text: ChatText
    confirm_pii: bool = False


class ChatDelete(Frame):
    """Delete a message for everyone (one's own; in groups, admins may delete any): a tombstone
    stays, the text is removed from the server."""

    type: Literal["chat.delete"]
    id: RequestId
    room: RoomId
    message_id: int


class ChatRead(Frame):
    """Mark the room read up to `seq`: the user's other devices get `chat.unread`, the other
    members a `chat.receipt` (`chat.receipts` in large groups)."""

    type: Literal["chat.read"]
    id: RequestId
    room: RoomId
    seq: Seq


class ChatTyping(Frame):
    """The user is typing; forwarded at most every few seconds, never stored."""

    type: Literal["chat.typing"]
    id: RequestId
    room: RoomId


class ChatHistoryRequest(Frame):
    """A page of the room's stream: events before `before_seq` (newest page when neither is
    given) or after `after_seq`, oldest first. Answered by `chat.history`."""

    type: Literal["chat.history"]
    id: RequestId
    room: RoomId
    before_seq: Seq | None = None
    after_seq: Seq | None = None
    limit: int = Field(default=50, ge=1, le=50)


ClientFrame = Annotated[
    Hello | Ping | NotifyRead | ChatSend | ChatEdit | ChatDelete | ChatRead | ChatTyping
    | ChatHistoryRequest,
    Field(discriminator="type"),
]
client_frame_adapter: TypeAdapter[
    Hello | Ping | NotifyRead | ChatSend | ChatEdit | ChatDelete | ChatRead | ChatTyping
    | ChatHistoryRequest
] = TypeAdapter(ClientFrame)


# ---- server -> client (/ws/v1) -------------------------------------------------------------

class Ack(Frame):
    """Success. For `chat.send`, `seq` and `message_id` of the stored message (both null when
    the message was not delivered, which the sender is not told more about)."""

    type: Literal["ack"] = "ack"
    id: RequestId
    seq: Seq | None = None
    message_id: int | None = None


class ErrorFrame(Frame):
    """Answer to a failed request (`id` set) or a refused frame (`id` null when unreadable)."""

    type: Literal["error"] = "error"
    id: str | None
    code: str
    message: str
    extra: dict[str, object] = Field(default_factory=dict)


class WelcomeUser(Frame):
    id: int
    name: str
    phone: str | None


class Welcome(Frame):
    """Answer to `hello`; missed events follow it in order, then `resync` where too old."""

    type: Literal["welcome"] = "welcome"
    id: RequestId
    user: WelcomeUser
    session_id: int
    server_time: datetime
    inbox_seq: Seq
    unread: int
    resync: list[str] = Field(default_factory=list)


class Pong(Frame):
    type: Literal["pong"] = "pong"
    id: RequestId


class NotifyNew(Frame):
    type: Literal["notify.new"] = "notify.new"
    id: int
    seq: Seq
    category: str
    title: str
    body: str
    link: str
    created_at: datetime


class NotifyUnread(Frame):
    type: Literal["notify.unread"] = "notify.unread"
    count: int


class SessionRevoked(Frame):
    """Sent before the server closes the socket (code 4401). `reason`: logout,
    account_closed, suspended, number_lost (the phone number passed to someone else), or
    expired (the session's idle or absolute lifetime ran out)."""

    type: Literal["session.revoked"] = "session.revoked"
    reason: str


# ---- chat (server -> client, /ws/v1) -------------------------------------------------------
# Room events (chat.message, chat.updated, chat.member, chat.room) carry the room's `seq`:
# gap-free and strictly increasing per room. A client may see one twice (live and in a
# resume), so it drops an event whose seq it already has.

class ChatMessage(Frame):
    """A message, in its current state (`edited_at` once edited; `deleted` with empty text
    once deleted for everyone)."""

    type: Literal["chat.message"] = "chat.message"
    room: int
    seq: Seq
    id: int
    sender: int | None
    text: str
    sent_at: datetime
    client_msg_id: str | None
    edited_at: datetime | None = None
    deleted: bool = False


class ChatUpdated(Frame):
    """An edit (new `text`) or a deletion (`deleted`, empty text) of message `message_id`."""

    type: Literal["chat.updated"] = "chat.updated"
    room: int
    seq: Seq
    message_id: int | None
    text: str
    edited_at: datetime | None
    deleted: bool
    by: int | None


class ChatMember(Frame):
    """A membership change: `user` joined (added `by` someone, or created the room), left,
    was removed, or got a new `role` (owner, admin, member)."""

    type: Literal["chat.member"] = "chat.member"
    room: int
    seq: Seq
    user: int | None
    name: str
    action: Literal["joined", "left", "removed", "role"]
    role: str
    by: int | None


class ChatRoomRenamed(Frame):
    """The group's name, set at creation (the room's first event) or renamed `by` an admin."""

    type: Literal["chat.room"] = "chat.room"
    room: int
    seq: Seq
    name: str
    by: int | None


ChatEvent = Annotated[ChatMessage | ChatUpdated | ChatMember | ChatRoomRenamed,
                      Field(discriminator="type")]


class ChatReceipt(Frame):
    """`user` has read the room up to `seq` (rooms up to the aggregate threshold)."""

    type: Literal["chat.receipt"] = "chat.receipt"
    room: int
    user: int
    seq: Seq


class ChatReceipts(Frame):
    """Large groups: `read_by` of the room's `members` have read up to `seq` (sent at most every
    few seconds per room)."""

    type: Literal["chat.receipts"] = "chat.receipts"
    room: int
    seq: Seq
    read_by: int
    members: int


class ChatTypingEvent(Frame):
    """`user` is typing in `room` (clients show it for a few seconds; never stored)."""

    type: Literal["chat.typing"] = "chat.typing"
    room: int
    user: int


class ChatHistory(Frame):
    """Answer to a `chat.history` request: consecutive events of the room, oldest first;
    `has_more` when there are more in the asked direction."""

    type: Literal["chat.history"] = "chat.history"
    id: RequestId
    room: int
    messages: list[ChatEvent]
    has_more: bool


class ChatUnread(Frame):
    """The room's unread count after a read on any of the user's devices."""

    type: Literal["chat.unread"] = "chat.unread"
    room: int
    count: int
    last_read_seq: Seq


class ChatInvitation(Frame):
    """Someone the user has not talked to asks to chat (`kind` direct: a message request) or
    invites them to the group `room` named `room_name`. Nothing happens until the user
    accepts (`POST /api/v1/invitations/{id}/accept`) or declines it; the inviter is not told
    of a decline. `GET /api/v1/invitations` lists the open ones (for clients that were
    offline)."""

    type: Literal["chat.invitation"] = "chat.invitation"
    id: int
    kind: Literal["direct", "group"]
    from_user: int
    from_name: str
    room: int | None
    room_name: str
    created_at: datetime


ServerFrame = (
    Ack | ErrorFrame | Welcome | Pong | NotifyNew | NotifyUnread | SessionRevoked
    | ChatMessage | ChatUpdated | ChatMember | ChatRoomRenamed | ChatReceipt | ChatReceipts
    | ChatTypingEvent | ChatHistory | ChatUnread | ChatInvitation
)


# ---- QR login socket (/ws/v1/login, unauthenticated) ---------------------------------------

class QrCode(Frame):
    """A new single-use login code, replaced before it expires: `svg` is the QR to show and
    `code` the text it encodes (`sonor-login:<token>`), for clients that draw their own."""

    type: Literal["qr.code"] = "qr.code"
    svg: str
    code: str
    expires_at: datetime


class QrScanned(Frame):
    """A logged-in device looked the code up and is being asked to approve."""

    type: Literal["qr.scanned"] = "qr.scanned"


class LoginApproved(Frame):
    """The new session's token: delivered only to the socket that showed the code."""

    type: Literal["login.approved"] = "login.approved"
    token: str
    user_name: str


class LoginDenied(Frame):
    type: Literal["login.denied"] = "login.denied"


LoginServerFrame = QrCode | QrScanned | LoginApproved | LoginDenied

CLOSE_UNAUTHENTICATED = 4401
CLOSE_ORIGIN_FORBIDDEN = 4403
CLOSE_RATE_LIMITED = 4429
# "Try again later" (as HTTP 503): the database or Redis did not answer at connect. Not
# RFC 6455's 1013: daphne's WebSocket library refuses to send that code.
CLOSE_TRY_AGAIN_LATER = 4503
# The socket fell too far behind the room frames sent to it: reconnect and resume with hello.
CLOSE_TOO_SLOW = 4408
