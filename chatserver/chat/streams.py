"""Room streams: every write to a room allocates its seq with ONE statement that also checks
the actor's membership (and, for messages, the verified phone and a block); the room row's
lock serialises the room's writers until the transaction ends."""

from django.db import connection

from chatserver.chat.errors import NotMember, PhoneNotVerified, UserBlocked
from chatserver.chat.models import Block, Membership, Room
from identity.models import PhoneNumber, User

ROOM_TABLE = Room._meta.db_table
MEMBERSHIP_TABLE = Membership._meta.db_table
BLOCK_TABLE = Block._meta.db_table
PHONE_TABLE = PhoneNumber._meta.db_table


class Unchanged(Exception):
    """Raised inside a transaction to roll it back (and give back its seq) when the request
    changes nothing; carries what to answer."""

    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value


def seq_allocate(*, room_id: int, actor_id: int, count: int = 1, require_phone: bool = False,
                 respect_blocks: bool = False) -> int | None:
    """Bump the room's head by `count` if `actor_id` is an active member (with a verified
    phone, and in a direct room not blocked by the other member, when asked); returns the new
    head, or None when a condition failed. Caller holds a transaction: the UPDATE takes the
    room row's lock until it ends."""
    sql = [
        f"UPDATE {ROOM_TABLE} SET last_seq = last_seq + %s WHERE id = %s",
        f"AND EXISTS (SELECT 1 FROM {MEMBERSHIP_TABLE} m WHERE m.room_id = %s"
        " AND m.user_id = %s AND m.left_at IS NULL)",
    ]
    params: list[int] = [count, room_id, room_id, actor_id]
    if require_phone:
        sql.append(f"AND EXISTS (SELECT 1 FROM {PHONE_TABLE} p WHERE p.user_id = %s"
                   " AND p.released_at IS NULL)")
        params.append(actor_id)
    if respect_blocks:  # either way round, in direct rooms
        sql.append(
            f"AND (kind = 'group' OR NOT EXISTS (SELECT 1 FROM {BLOCK_TABLE} b"
            f" JOIN {MEMBERSHIP_TABLE} o ON o.room_id = %s"
            " AND ((b.blocker_id = o.user_id AND b.blocked_id = %s)"
            " OR (b.blocked_id = o.user_id AND b.blocker_id = %s))))")
        params.extend([room_id, actor_id, actor_id])
    sql.append("RETURNING last_seq")
    with connection.cursor() as cursor:
        cursor.execute(" ".join(sql), params)
        row = cursor.fetchone()
    return int(row[0]) if row else None


def seq_allocate_or_raise(*, room_id: int, actor: User, count: int = 1,
                          require_phone: bool = False) -> int:
    seq = seq_allocate(room_id=room_id, actor_id=actor.pk, count=count,
                       require_phone=require_phone)
    if seq is None:
        allocation_failed(room_id=room_id, actor=actor, require_phone=require_phone)
        raise NotMember()
    return seq


def allocation_failed(*, room_id: int, actor: User, require_phone: bool) -> None:
    """Say why an allocation failed (the slow path only); returns if the other member of the
    direct room blocked the actor (who is not told)."""
    if require_phone and not has_verified_phone(actor):
        raise PhoneNotVerified()
    if not Membership.objects.filter(room_id=room_id, user=actor, left_at__isnull=True).exists():
        raise NotMember()
    if Block.objects.filter(blocker=actor, blocked__chat_memberships__room_id=room_id).exists():
        raise UserBlocked()


def has_verified_phone(user: User) -> bool:
    return PhoneNumber.objects.filter(user=user, released_at__isnull=True).exists()


def require_verified_phone(user: User) -> None:
    if not has_verified_phone(user):
        raise PhoneNotVerified()
