"""Which sessions have a live socket (chat push skips them)."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from chatserver.chat.config import chat_setting
from chatserver.chat.models import SocketPresence


def chat_presence_apply(*, opened: list[tuple[str, int, int]], seen: list[str],
                        closed: list[str]) -> None:
    """Presence of many sockets in one transaction (each process collects them for about a
    second: chatserver/sockets/consumers.py PresenceBook): `opened` (socket name, user id, session
    id) are live from now, `seen` talked, `closed` are gone. Stale rows of the opening users
    (a process that died) go too."""
    now = timezone.now()
    stale = now - timedelta(seconds=chat_setting("SONOR_CHAT_PRESENCE_TTL"))
    with transaction.atomic():
        if opened:
            SocketPresence.objects.filter(user_id__in={user_id for _, user_id, _ in opened},
                                          seen_at__lt=stale).delete()
            SocketPresence.objects.bulk_create(
                [SocketPresence(channel_name=name, user_id=user_id, session_id=session_id,
                                connected_at=now, seen_at=now)
                 for name, user_id, session_id in opened], ignore_conflicts=True)
        if seen:
            SocketPresence.objects.filter(channel_name__in=seen).update(seen_at=now)
        if closed:
            SocketPresence.objects.filter(channel_name__in=closed).delete()
