"""Citizen API of chat (/api/v1/rooms..., blocks, reports, invites), for apps outside the
socket. Views parse, call one service or selector, shape the answer; every room operation
checks membership in the service or selector it calls (404 not_member otherwise)."""

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from chatserver.chat import frames, messages, moderation, receipts, selectors
from chatserver.chat import invites as chat_invites
from chatserver.chat import rooms as chat_rooms
from chatserver.chat.models import Block, Membership, PendingInvite, Room
from chatserver.core import protocol
from chatserver.core.api_schemas import (
    ONE_LINE,
    PHONE,
    VISIBLE_TEXT,
    ErrorOut,
    IdIn,
    PlainStr,
    VisibleText,
)
from identity.models import User
from identity.ws_auth import request_session

router = Router(tags=["chat"])


ERRORS: dict[int, type[Schema]] = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut,
                                   409: ErrorOut, 422: ErrorOut, 429: ErrorOut}


# ---- shapes --------------------------------------------------------------------------------

class PeerOut(Schema):
    """The other member of a direct room: their name, and a number only if the caller typed
    it to reach them (and only while it is still theirs); never a number they were not
    given."""

    id: int
    name: str
    phone: str | None
    phone_status: Literal["verified", "changed_hands", "none"] = Field(
        description="verified: `phone` is the number you reached them by, still theirs; "
                    "changed_hands: that number is theirs no more (this room stays with the "
                    "person, not the number); none: you were not given a number of theirs.")


class RoomOut(Schema):
    id: int
    kind: Literal["direct", "group"]
    name: str
    role: str
    last_seq: int
    last_read_seq: int
    unread: int
    member_count: int
    created_at: datetime
    last_message: protocol.ChatMessage | None
    peer: PeerOut | None = Field(description="The other member of a direct room.")

    @staticmethod
    def of(summary: selectors.RoomSummary) -> "RoomOut":
        peer = summary.peer
        return RoomOut(
            id=summary.id, kind=summary.kind,  # type: ignore[arg-type]
            name=summary.name, role=summary.role, last_seq=summary.last_seq,
            last_read_seq=summary.last_read_seq, unread=summary.unread,
            member_count=summary.member_count, created_at=summary.created_at,
            last_message=summary.last_message,
            peer=PeerOut(id=peer.id, name=peer.name, phone=peer.phone,
                         phone_status=peer.phone_status)  # type: ignore[arg-type]
            if peer else None)


class InviteOut(Schema):
    """An invite the caller sent: waiting for an answer, or for someone to verify the
    number (the two look the same)."""

    id: int
    kind: Literal["direct", "group"]
    phone: str
    room: int | None
    created_at: datetime
    status: Literal["pending"] = "pending"

    @staticmethod
    def of(invite: PendingInvite) -> "InviteOut":
        return InviteOut(id=invite.pk, kind=invite.kind,  # type: ignore[arg-type]
                         phone=invite.e164,
                         room=invite.room_id if invite.kind == PendingInvite.Kind.GROUP else None,
                         created_at=invite.created_at)


class InvitationOut(Schema):
    """An invitation waiting for the caller's answer (as the `chat.invitation` frame)."""

    id: int
    kind: Literal["direct", "group"]
    from_user: int
    from_name: str
    room: int | None
    room_name: str
    created_at: datetime

    @staticmethod
    def of(invite: PendingInvite) -> "InvitationOut":
        return InvitationOut(**frames.invitation_frame(invite).model_dump(exclude={"type"}))


class MemberOut(Schema):
    user_id: int
    name: str
    role: str
    joined_at: datetime
    last_read_seq: int

    @staticmethod
    def of(m: Membership) -> "MemberOut":
        return MemberOut(user_id=m.user_id, name=m.user.name, role=m.role,
                         joined_at=m.joined_at, last_read_seq=m.last_read_seq)


class HistoryOut(Schema):
    room: int
    messages: list[protocol.ChatEvent]
    has_more: bool


class HistoryQuery(Schema):
    before_seq: int | None = Field(None, ge=1)
    after_seq: int | None = Field(None, ge=0)
    limit: int = Field(50, ge=1, le=200)


class MembersQuery(Schema):
    after: int = Field(0, ge=0, description="Members with a larger user id (paging).")
    limit: int = Field(500, ge=1, le=1000)


class ContactPhoneIn(Schema):
    phone: str = Field(max_length=32, json_schema_extra=PHONE)


GROUP_NAME: JsonDict = {"maxLength": 100, "pattern": ONE_LINE,
              "description": "One line of at most 100 characters."}


class GroupIn(Schema):
    name: str = Field(min_length=1, max_length=200, json_schema_extra=GROUP_NAME)
    phones: list[str] = Field(default_factory=list, max_length=200,
                              json_schema_extra={"items": {"type": "string", **PHONE}})


class GroupOut(Schema):
    room: RoomOut
    pending: list[InviteOut]


class NameIn(Schema):
    name: str = Field(min_length=1, max_length=200, json_schema_extra=GROUP_NAME)


class RoleIn(Schema):
    role: Literal["owner", "admin", "member"]


# Checked by the service after NFC normalisation and removal of invisible formatting.
MESSAGE_TEXT: JsonDict = {"minLength": 1, "maxLength": 4096, "pattern": VISIBLE_TEXT,
                "description": "At most 4,096 characters, something visible among them; "
                               "no control characters but newline and tab."}


class MessageIn(Schema):
    client_msg_id: PlainStr = Field(min_length=1, max_length=64)
    text: str = Field(max_length=16_384, json_schema_extra=MESSAGE_TEXT)
    confirm_pii: bool = False


class EditIn(Schema):
    text: str = Field(max_length=16_384, json_schema_extra=MESSAGE_TEXT)
    confirm_pii: bool = False


class SentOut(Schema):
    """As the socket's ack: seq and message_id are null when the message was not delivered."""

    seq: int | None
    message_id: int | None


class ReadIn(Schema):
    seq: int = Field(ge=0)


class ReadOut(Schema):
    unread: int


class BlockIn(Schema):
    user_id: IdIn


class BlockCreatedOut(Schema):
    """No name: a block confirms nothing about the user beyond what the caller gave."""

    user_id: int
    created_at: datetime


class BlockOut(Schema):
    user_id: int
    name: str
    created_at: datetime

    @staticmethod
    def of(block: Block) -> "BlockOut":
        return BlockOut(user_id=block.blocked_id, name=block.blocked.name,
                        created_at=block.created_at)


class ReportIn(Schema):
    """Either `message_id` or `user_id`."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["message_id"], "properties": {"message_id": {"type": "integer"},
                                                    "user_id": {"type": "null"}}},
        {"required": ["user_id"], "properties": {"user_id": {"type": "integer"},
                                                 "message_id": {"type": "null"}}},
    ]})

    message_id: IdIn | None = None
    user_id: IdIn | None = None
    reason: VisibleText = Field(min_length=1, max_length=moderation.REPORT_REASON_MAX)

    @model_validator(mode="after")
    def one_of(self) -> "ReportIn":
        if (self.message_id is None) == (self.user_id is None):
            raise ValueError("give either message_id or user_id")
        return self


class ReportOut(Schema):
    id: int
    created_at: datetime


def _room_out(user: User, room: Room) -> RoomOut:
    return RoomOut.of(selectors.room_get(user=user, room_id=room.pk))


# ---- rooms ---------------------------------------------------------------------------------

@router.get("rooms", response={200: list[RoomOut], **ERRORS})
def rooms(request: HttpRequest) -> list[RoomOut]:
    """The user's rooms, most recently active first, with the last message and the unread
    count (the same on every device)."""
    return [RoomOut.of(s) for s in selectors.room_list(user=request_session(request).user)]


@router.post("rooms/direct", response={201: RoomOut, 202: InviteOut, **ERRORS})
def room_direct(request: HttpRequest, payload: ContactPhoneIn) -> Status[Any]:
    """The direct room with whoever verified `phone`, if you have talked before (the same
    room when asked again): 201. Otherwise a message request (202): the owner of the number
    accepts or declines it, and the room appears (with their name) once they accept. A
    number no one has verified gives the same 202, held until someone verifies it."""
    user = request_session(request).user
    result = chat_rooms.room_direct_get_or_create(user=user, phone=payload.phone)
    if isinstance(result, PendingInvite):
        return Status(202, InviteOut.of(result))
    return Status(201, _room_out(user, result))


@router.post("rooms/groups", response={201: GroupOut, **ERRORS})
def group_create(request: HttpRequest, payload: GroupIn) -> Status[GroupOut]:
    """A group owned by the caller, with the caller's contacts as members; every other
    number gets an invitation (`pending`), whether or not anyone uses it."""
    user = request_session(request).user
    created = chat_rooms.group_create(creator=user, name=payload.name, phones=payload.phones)
    return Status(201, GroupOut(room=_room_out(user, created.room),
                                pending=[InviteOut.of(i) for i in created.pending]))


@router.get("rooms/{id:room_id}", response={200: RoomOut, **ERRORS})
def room_detail(request: HttpRequest, room_id: int) -> RoomOut:
    return RoomOut.of(selectors.room_get(user=request_session(request).user, room_id=room_id))


@router.patch("rooms/{id:room_id}", response={200: RoomOut, **ERRORS})
def room_rename(request: HttpRequest, room_id: int, payload: NameIn) -> RoomOut:
    """Rename a group (admins)."""
    user = request_session(request).user
    room = chat_rooms.group_rename(actor=user, room_id=room_id, name=payload.name)
    return _room_out(user, room)


@router.get("rooms/{id:room_id}/messages", response={200: HistoryOut, **ERRORS})
def room_messages(request: HttpRequest, room_id: int, query: Query[HistoryQuery]
                  ) -> HistoryOut:
    """A page of the room's stream, oldest first: after `after_seq`, else before
    `before_seq`, else the newest. The same frames as on the socket."""
    page = selectors.room_history(user=request_session(request).user, room_id=room_id,
                                  before_seq=query.before_seq, after_seq=query.after_seq,
                                  limit=query.limit)
    return HistoryOut(room=room_id, messages=page.events, has_more=page.has_more)


@router.post("rooms/{id:room_id}/messages", response={201: SentOut, **ERRORS})
def room_message_send(request: HttpRequest, room_id: int, payload: MessageIn
                      ) -> Status[SentOut]:
    """Send a message (as `chat.send`): a resend with the same client_msg_id returns the same
    seq. `pii_warning` (422) unless confirm_pii."""
    event = messages.message_send(sender=request_session(request).user, room_id=room_id,
                                  client_msg_id=payload.client_msg_id, text=payload.text,
                                  confirm_pii=payload.confirm_pii)
    return Status(201, SentOut(seq=event.seq if event else None,
                               message_id=event.pk if event else None))


@router.patch("rooms/{id:room_id}/messages/{id:message_id}",
              response={200: SentOut, **ERRORS})
def room_message_edit(request: HttpRequest, room_id: int, message_id: int, payload: EditIn
                      ) -> SentOut:
    event = messages.message_edit(user=request_session(request).user, room_id=room_id,
                                  message_id=message_id, text=payload.text,
                                  confirm_pii=payload.confirm_pii)
    return SentOut(seq=event.seq if event else None, message_id=message_id if event else None)


@router.delete("rooms/{id:room_id}/messages/{id:message_id}",
               response={204: None, **ERRORS})
def room_message_delete(request: HttpRequest, room_id: int, message_id: int) -> Status[None]:
    """Delete for everyone: a tombstone stays, the text is removed."""
    messages.message_delete(user=request_session(request).user, room_id=room_id,
                            message_id=message_id)
    return Status(204, None)


@router.post("rooms/{id:room_id}/read", response={200: ReadOut, **ERRORS})
def room_read(request: HttpRequest, room_id: int, payload: ReadIn) -> ReadOut:
    """Mark read up to `seq`; every device of the user gets `chat.unread`."""
    return ReadOut(unread=receipts.room_read(user=request_session(request).user, room_id=room_id,
                                             seq=payload.seq))


@router.get("rooms/{id:room_id}/members", response={200: list[MemberOut], **ERRORS})
def room_members(request: HttpRequest, room_id: int, query: Query[MembersQuery]
                 ) -> list[MemberOut]:
    """Members by user id, a page at a time (names and roles; no phone numbers)."""
    return [MemberOut(user_id=m.user_id, name=m.name, role=m.role, joined_at=m.joined_at,
                      last_read_seq=m.last_read_seq)
            for m in selectors.room_members(user=request_session(request).user, room_id=room_id,
                                            after_user_id=query.after, limit=query.limit)]


@router.post("rooms/{id:room_id}/members", response={201: MemberOut, 202: InviteOut, **ERRORS})
def room_member_add(request: HttpRequest, room_id: int, payload: ContactPhoneIn) -> Status[Any]:
    """Add a contact of yours who verified `phone` to a group (admins): 201. Anyone else is
    invited (202), as is a number no one has verified yet."""
    result = chat_rooms.group_member_add(actor=request_session(request).user, room_id=room_id,
                                         phone=payload.phone)
    if isinstance(result, PendingInvite):
        return Status(202, InviteOut.of(result))
    return Status(201, MemberOut.of(result))


@router.delete("rooms/{id:room_id}/members/{id:user_id}", response={204: None, **ERRORS})
def room_member_remove(request: HttpRequest, room_id: int, user_id: int) -> Status[None]:
    chat_rooms.group_member_remove(actor=request_session(request).user, room_id=room_id,
                                   user_id=user_id)
    return Status(204, None)


@router.post("rooms/{id:room_id}/members/{id:user_id}/role",
             response={200: MemberOut, **ERRORS})
def room_member_role(request: HttpRequest, room_id: int, user_id: int, payload: RoleIn
                     ) -> MemberOut:
    """Promote or demote; role owner hands ownership on (owner only)."""
    membership = chat_rooms.group_role_set(actor=request_session(request).user, room_id=room_id,
                                           user_id=user_id, role=payload.role)
    return MemberOut.of(membership)


@router.post("rooms/{id:room_id}/leave", response={204: None, **ERRORS})
def room_leave(request: HttpRequest, room_id: int) -> Status[None]:
    chat_rooms.room_leave(user=request_session(request).user, room_id=room_id)
    return Status(204, None)


# ---- invites, blocks, reports --------------------------------------------------------------

@router.get("invites", response={200: list[InviteOut], **ERRORS})
def invites(request: HttpRequest) -> list[InviteOut]:
    """The invites the caller sent that are still open (to them, all look pending)."""
    return [InviteOut.of(i) for i in selectors.invite_list(user=request_session(request).user)]


@router.delete("invites/{id:invite_id}", response={204: None, **ERRORS})
def invite_cancel(request: HttpRequest, invite_id: int) -> Status[None]:
    chat_invites.invite_cancel(user=request_session(request).user, invite_id=invite_id)
    return Status(204, None)


@router.get("invitations", response={200: list[InvitationOut], **ERRORS})
def invitations(request: HttpRequest) -> list[InvitationOut]:
    """Invitations to the caller waiting for an answer: message requests and groups."""
    return [InvitationOut.of(i)
            for i in selectors.invitation_list(user=request_session(request).user)]


@router.post("invitations/{id:invitation_id}/accept", response={200: RoomOut, **ERRORS})
def invitation_accept(request: HttpRequest, invitation_id: int) -> RoomOut:
    """Join the group, or open the direct room with the one who asked."""
    user = request_session(request).user
    room = chat_invites.invitation_accept(user=user, invitation_id=invitation_id)
    return _room_out(user, room)


@router.post("invitations/{id:invitation_id}/decline", response={204: None, **ERRORS})
def invitation_decline(request: HttpRequest, invitation_id: int) -> Status[None]:
    """The one who invited is not told."""
    chat_invites.invitation_decline(user=request_session(request).user,
                                    invitation_id=invitation_id)
    return Status(204, None)


@router.get("blocks", response={200: list[BlockOut], **ERRORS})
def blocks(request: HttpRequest) -> list[BlockOut]:
    return [BlockOut.of(b) for b in selectors.block_list(user=request_session(request).user)]


@router.post("blocks", response={201: BlockCreatedOut, **ERRORS})
def block_create(request: HttpRequest, payload: BlockIn) -> Status[BlockCreatedOut]:
    """No new direct room or message from that user; they are not told. Only users one
    shares or shared a room with: any other id is `user_not_found`, as an unused one."""
    block = moderation.user_block(blocker=request_session(request).user, user_id=payload.user_id)
    return Status(201, BlockCreatedOut(user_id=block.blocked_id, created_at=block.created_at))


@router.delete("blocks/{id:user_id}", response={204: None, **ERRORS})
def block_delete(request: HttpRequest, user_id: int) -> Status[None]:
    moderation.user_unblock(blocker=request_session(request).user, user_id=user_id)
    return Status(204, None)


@router.post("reports", response={201: ReportOut, **ERRORS})
def report_create(request: HttpRequest, payload: ReportIn) -> Status[ReportOut]:
    """Report a message (staff keep a copy of its text) or a user."""
    report = moderation.report_create(reporter=request_session(request).user, reason=payload.reason,
                                      message_id=payload.message_id, user_id=payload.user_id)
    return Status(201, ReportOut(id=report.pk, created_at=report.created_at))
