"""Wire frames from chat rows: what a device is sent for a stream event or an invitation."""

from chatserver.chat.models import PendingInvite, RoomEvent
from chatserver.core import protocol

ChatEventFrame = (protocol.ChatMessage | protocol.ChatUpdated | protocol.ChatMember
                  | protocol.ChatRoomRenamed)


def message_frame(event: RoomEvent) -> protocol.ChatMessage:
    return protocol.ChatMessage(
        room=event.room_id, seq=event.seq, id=event.pk, sender=event.sender_id,
        text=event.text, sent_at=event.created_at, client_msg_id=event.client_msg_id,
        edited_at=event.edited_at, deleted=event.deleted_at is not None)


def invitation_frame(invite: PendingInvite) -> protocol.ChatInvitation:
    """What the invitee is shown: who asks (name and id) and, for a group, which one."""
    return protocol.ChatInvitation(
        id=invite.pk, kind=invite.kind,  # type: ignore[arg-type]
        from_user=invite.inviter_id, from_name=invite.inviter.name,
        room=invite.room_id if invite.kind == PendingInvite.Kind.GROUP else None,
        room_name=invite.room.name if invite.room and invite.kind == PendingInvite.Kind.GROUP
        else "", created_at=invite.created_at)


def member_frame(event: RoomEvent, *, subject_name: str) -> protocol.ChatMember:
    return protocol.ChatMember(
        room=event.room_id, seq=event.seq, user=event.subject_id, name=subject_name,
        action=event.action,  # type: ignore[arg-type]
        role=event.role, by=event.sender_id)


def event_frame(event: RoomEvent) -> ChatEventFrame:
    """The wire frame of any stream event. Edit and delete events need `target` loaded, member
    events `subject` (select_related)."""
    kind = event.kind
    if kind == RoomEvent.Kind.MESSAGE:
        return message_frame(event)
    if kind == RoomEvent.Kind.MEMBER:
        return member_frame(event, subject_name=event.subject.name if event.subject else "")
    if kind == RoomEvent.Kind.RENAME:
        return protocol.ChatRoomRenamed(room=event.room_id, seq=event.seq, name=event.text,
                                        by=event.sender_id)
    target = event.target
    if kind == RoomEvent.Kind.EDIT:
        return protocol.ChatUpdated(
            room=event.room_id, seq=event.seq, message_id=event.target_id, text=event.text,
            edited_at=event.created_at,
            deleted=target is not None and target.deleted_at is not None, by=event.sender_id)
    return protocol.ChatUpdated(  # delete
        room=event.room_id, seq=event.seq, message_id=event.target_id, text="",
        edited_at=target.edited_at if target else None, deleted=True, by=event.sender_id)
