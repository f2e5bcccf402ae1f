"""The wire contract of /ws/v1 and /ws/v1/login: one typed model per frame type.

Leaf module. docs/protocol.md is generated from these models (`manage.py protocol_docs`)
and a test fails when the two disagree.
"""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

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


ClientFrame = Annotated[Hello | Ping | NotifyRead, Field(discriminator="type")]
client_frame_adapter: TypeAdapter[Hello | Ping | NotifyRead] = TypeAdapter(ClientFrame)


# ---- server -> client (/ws/v1) -------------------------------------------------------------

class Ack(Frame):
    type: Literal["ack"] = "ack"
    id: RequestId


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
    """Sent before the server closes the socket (code 4401) on logout or suspension."""

    type: Literal["session.revoked"] = "session.revoked"
    reason: str


ServerFrame = Ack | ErrorFrame | Welcome | Pong | NotifyNew | NotifyUnread | SessionRevoked


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
