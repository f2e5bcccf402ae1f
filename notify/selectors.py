"""Inbox reads."""

from identity.models import User
from notify.models import InboxState, Notification


def inbox_seq(*, user: User) -> int:
    state = InboxState.objects.filter(user=user).first()
    return state.last_seq if state else 0


def inbox_since(*, user: User, after_seq: int, limit: int) -> list[Notification] | None:
    """Notifications after `after_seq` in order, or None when more than `limit` were missed
    (the client must resync the inbox instead of getting a partial answer)."""
    rows = list(
        Notification.objects.filter(user=user, seq__gt=after_seq).order_by("seq")[: limit + 1]
    )
    return None if len(rows) > limit else rows
