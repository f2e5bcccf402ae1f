"""Inbox writes and direct sends. Every notification is committed before it is published."""

import logging

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models import F

from chatserver import protocol
from chatserver.realtime import publish_on_commit, user_group
from identity.models import User
from notify.models import InboxState, Notification
from notify.senders.base import OutboundMessage, SendResult
from notify.senders.registry import sender_for

log = logging.getLogger(__name__)


def _inbox_seq_next(*, user: User) -> int:
    """Allocate the user's next inbox seq; the row lock serialises concurrent writers."""
    InboxState.objects.get_or_create(user=user)
    InboxState.objects.filter(user=user).update(last_seq=F("last_seq") + 1)
    return InboxState.objects.select_for_update().get(user=user).last_seq


def unread_count(*, user: User) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True,
                                       archived_at__isnull=True).count()


def notification_frame(notification: Notification) -> protocol.NotifyNew:
    return protocol.NotifyNew(
        id=notification.pk, seq=notification.seq, category=notification.category,
        title=notification.title, body=notification.body, link=notification.link,
        created_at=notification.created_at,
    )


@transaction.atomic
def notification_create(
    *, user: User, category: str, title: str, body: str, link: str = ""
) -> Notification:
    """Store a notification in the user's inbox and push it live to every device on commit."""
    seq = _inbox_seq_next(user=user)
    notification = Notification.objects.create(
        user=user, seq=seq, category=category, title=title, body=body, link=link
    )
    publish_on_commit(user_group(user.pk), notification_frame(notification))
    publish_on_commit(user_group(user.pk), protocol.NotifyUnread(count=unread_count(user=user)))
    log.info("notification %s seq %s (%s) for user %s", notification.pk, seq, category, user.pk)
    return notification


def sms_send_now(*, to: str, text: str) -> SendResult:
    """Send one SMS at once (verification codes), outside the inbox and its preferences."""
    result: SendResult = async_to_sync(sender_for("sms").send)(
        OutboundMessage(kind="sms", address=to, body=text)
    )
    log.info("sms to %s: %s %s", to[:-4] + "****", result.status, result.detail)
    return result


@transaction.atomic
def notifications_mark_read(*, user: User, ids: list[int]) -> int:
    """Mark the user's own notifications read; every device gets the new unread count."""
    from django.utils import timezone

    updated = Notification.objects.filter(user=user, pk__in=ids, read_at__isnull=True).update(
        read_at=timezone.now())
    if updated:
        publish_on_commit(user_group(user.pk),
                          protocol.NotifyUnread(count=unread_count(user=user)))
    return updated
