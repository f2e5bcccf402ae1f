"""Chat rooms, their event streams, held invites, blocks, reports and socket presence.

A room is a stream: every message, edit, deletion, membership change and rename is one
RoomEvent with the room's next `seq` (gap-free, strictly increasing). Rooms are keyed by user
ids, never by phone numbers, so a recycled number's next owner inherits nothing.

    Room.last_seq  <-- one UPDATE ... RETURNING allocates the next seq(s) and takes the row
         |             lock that serialises writers of this room (chatserver/chat/streams.py)
         +-- RoomEvent (room, seq)  message | edit | delete | member | rename
         +-- Membership (room, user)  role, joined_seq .. left_seq, last_read_seq
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Room(models.Model):
    class Kind(models.TextChoices):
        DIRECT = "direct"
        GROUP = "group"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    name = models.CharField(max_length=100, blank=True)
    # "<smaller user id>:<larger user id>" for direct rooms: one room per pair.
    direct_key = models.CharField(max_length=41, null=True, blank=True, unique=True)
    last_seq = models.BigIntegerField(default=0)
    member_count = models.IntegerField(default=0)
    member_limit = models.IntegerField(default=10_000)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["created_by", "kind", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} room {self.pk}"


class Membership(models.Model):
    """A user's place in a room. Leaving keeps the row (left_at, left_seq); a member sees the
    stream from joined_seq on (and, after leaving, up to left_seq)."""

    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    # Both foreign keys are covered by the composite indexes below.
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships",
                             db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="chat_memberships", db_index=False)
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(default=timezone.now)
    joined_seq = models.BigIntegerField(default=1)
    left_at = models.DateTimeField(null=True, blank=True)
    left_seq = models.BigIntegerField(null=True, blank=True)
    last_read_seq = models.BigIntegerField(default=0)
    # Direct rooms: the other member's number as this member typed it (to start the room or
    # to find it again). The only number of theirs this member is ever shown, and only while
    # it is still theirs: a contact is never told a new number.
    known_phone = models.CharField(max_length=16, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="membership_room_user_unique"),
        ]
        indexes = [
            models.Index(fields=["user", "left_at"]),
            models.Index(fields=["room", "left_at"]),
        ]


class RoomEvent(models.Model):
    """One event of a room's stream. Message rows also carry their current state (text,
    edited_at, deleted_at); a deletion blanks the text here and in the message's edit events."""

    class Kind(models.TextChoices):
        MESSAGE = "message"
        EDIT = "edit"
        DELETE = "delete"
        MEMBER = "member"
        RENAME = "rename"

    class Action(models.TextChoices):
        JOINED = "joined"
        LEFT = "left"
        REMOVED = "removed"
        ROLE = "role"

    # Few indexes: one INSERT per message is the hot path. (room, seq) and
    # (room, sender, client_msg_id) cover the room and sender keys.
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="events",
                             db_index=False)
    seq = models.BigIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="+", db_index=False)
    # NULL, not "": the unique constraint below applies only where an id was given.
    client_msg_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    text = models.TextField(blank=True)
    target = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="+")
    subject = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="+", db_index=False)
    action = models.CharField(max_length=8, choices=Action.choices, blank=True)
    role = models.CharField(max_length=8, choices=Membership.Role.choices, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="room_event_seq_unique"),
            models.UniqueConstraint(
                fields=["room", "sender", "client_msg_id"],
                condition=Q(client_msg_id__isnull=False),
                name="room_event_client_msg_id_unique",
            ),
        ]


class PendingInvite(models.Model):
    """An invitation to a direct room with the inviter (kind direct: a message request) or to
    the group `room` (kind group), sent to the number `e164`.

    - `invitee` null: no one has verified the number; held until someone does, then the
      invitation waits for them (invitee set).
    - `invitee` set: waits for that citizen to accept (resolved_at, room) or decline
      (declined_at). Nobody is put in a room with someone they have not talked to without
      saying yes. The inviter is never told of a decline or a block: their invite looks
      pending until it expires, exactly like one to a number no one uses.
    """

    class Kind(models.TextChoices):
        DIRECT = "direct"
        GROUP = "group"

    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.DIRECT)
    inviter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="chat_invites_sent")
    e164 = models.CharField(max_length=16)
    invitee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                on_delete=models.CASCADE, related_name="chat_invitations")
    room = models.ForeignKey(Room, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                      on_delete=models.SET_NULL, related_name="+")
    declined_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["e164", "resolved_at"]),
            models.Index(fields=["inviter", "created_at"]),
            models.Index(fields=["invitee", "resolved_at"]),
        ]


class Block(models.Model):
    """`blocker` gets no new direct room or message from `blocked`, who is not told."""

    blocker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="chat_blocks")
    blocked = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="block_unique"),
        ]
        indexes = [models.Index(fields=["blocked", "blocker"])]


class Report(models.Model):
    """A report of a message or a user, for the staff queue. `text` is a copy of the message
    as it was when reported: it survives the sender deleting the message."""

    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                 related_name="chat_reports_made")
    reported_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                      related_name="chat_reports_received")
    event = models.ForeignKey(RoomEvent, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    room = models.ForeignKey(Room, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    text = models.TextField(blank=True)
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    handled_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    resolution = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [models.Index(fields=["handled_at", "created_at"])]


class SocketPresence(models.Model):
    """One row per live device socket, in any process: `seen_at` is refreshed while the
    socket talks, and a row older than SONOR_CHAT_PRESENCE_TTL counts as gone (a process that
    died without closing its sockets)."""

    channel_name = models.CharField(max_length=200, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="+")
    session_id = models.BigIntegerField()
    connected_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["user", "seen_at"])]
