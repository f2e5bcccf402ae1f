"""Read state (unread counts, receipts to the other members) and typing."""


from django.core.cache import cache
from django.db import transaction

from chatserver.chat.config import chat_setting
from chatserver.chat.errors import NotMember
from chatserver.chat.membership import active_membership
from chatserver.chat.models import Block, Membership, Room
from chatserver.chat.push import chat_pushes_on_read
from chatserver.chat.selectors import room_unread_count
from chatserver.core import protocol
from chatserver.core.realtime import publish_room_on_commit, publish_user_on_commit
from identity.models import User


def room_read(*, user: User, room_id: int, seq: int) -> int:
    """Mark the room read up to `seq` (never backwards; capped at the room's head). Returns
    the unread count, which every device of the user gets as `chat.unread`; the other members
    get a receipt (an aggregate count, at most every few seconds, in large groups)."""
    with transaction.atomic():
        room = Room.objects.filter(pk=room_id).values("last_seq", "member_count").first()
        if room is None:
            raise NotMember()
        seq = min(seq, room["last_seq"])
        read_before = active_membership(room_id=room_id, user_id=user.pk).last_read_seq
        updated = Membership.objects.filter(
            room_id=room_id, user=user, left_at__isnull=True, last_read_seq__lt=seq,
        ).update(last_read_seq=seq)
        membership = active_membership(room_id=room_id, user_id=user.pk)
        count = room_unread_count(room_id=room_id, user_id=user.pk,
                                  last_read_seq=membership.last_read_seq)
        if not updated:
            return count
        chat_pushes_on_read(user_id=user.pk, room_id=room_id, after_seq=read_before, seq=seq)
        publish_user_on_commit(user.pk, protocol.ChatUnread(
            room=room_id, count=count, last_read_seq=membership.last_read_seq))
        if room["member_count"] <= chat_setting("SONOR_CHAT_RECEIPTS_AGGREGATE_ABOVE"):
            publish_room_on_commit(room_id, [protocol.ChatReceipt(room=room_id, user=user.pk,
                                                                  seq=seq)])
        elif cache.add(f"chat-receipts:{room_id}", 1,
                       timeout=chat_setting("SONOR_CHAT_RECEIPTS_AGGREGATE_SECONDS")):
            read_by = Membership.objects.filter(room_id=room_id, left_at__isnull=True,
                                                last_read_seq__gte=seq).count()
            publish_room_on_commit(room_id, [protocol.ChatReceipts(
                room=room_id, seq=seq, read_by=read_by, members=room["member_count"])])
    return count


def room_typing_allowed(*, user: User, room_id: int) -> bool:
    """Whether a typing frame from `user` may go to the room: raises NotMember; False when
    the other member of a direct room blocked the user (who is not told)."""
    kind = Room.objects.filter(pk=room_id, memberships__user=user,
                               memberships__left_at__isnull=True).values_list("kind", flat=True
                                                                              ).first()
    if kind is None:
        raise NotMember()
    if kind == Room.Kind.DIRECT:
        return not Block.objects.filter(
            blocked=user, blocker__chat_memberships__room_id=room_id).exists()
    return True
