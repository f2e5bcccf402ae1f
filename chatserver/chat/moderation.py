"""Blocks and reports."""

import logging

from django.utils import timezone

from chatserver.chat.config import chat_setting
from chatserver.chat.errors import MessageNotFound, ReportInvalid, UserNotFound
from chatserver.chat.membership import user_route_throttle
from chatserver.chat.models import Block, Membership, Report, RoomEvent
from chatserver.chat.selectors import user_visible_get
from chatserver.core.errors import InvalidInput
from chatserver.core.throttle import throttle_check
from identity.models import User

log = logging.getLogger(__name__)


REPORT_REASON_MAX = 500


def user_block(*, blocker: User, user_id: int) -> Block:
    """From now on `user_id` gets no new direct room with `blocker` and their messages and
    typing in it are held; they are not told. (In groups, clients hide blocked users.) Only
    a user the blocker can see (user_visible_get) can be blocked; others are UserNotFound."""
    user_route_throttle(blocker)
    user_visible_get(viewer=blocker, user_id=user_id)
    block, _ = Block.objects.get_or_create(blocker=blocker, blocked_id=user_id)
    return block


def user_unblock(*, blocker: User, user_id: int) -> None:
    """Lift a block; invitations the blocked user sent meanwhile show again."""
    user_route_throttle(blocker)
    deleted, _ = Block.objects.filter(blocker=blocker, blocked_id=user_id).delete()
    if not deleted:
        raise UserNotFound("You have not blocked this user.")


def report_create(*, reporter: User, reason: str, message_id: int | None = None,
                  user_id: int | None = None) -> Report:
    """Report a message (a copy of its text is kept for staff, even if it is deleted later)
    or a user to the staff queue. Only messages and users one can see can be reported."""
    reason = (reason or "").strip()
    if (message_id is None) == (user_id is None) or not reason:
        raise ReportInvalid()
    if len(reason) > REPORT_REASON_MAX:
        raise InvalidInput(f"A reason is at most {REPORT_REASON_MAX} characters.")
    throttle_check(key=f"chat-report:{reporter.pk}",
                   limit=chat_setting("SONOR_CHAT_REPORTS_PER_HOUR"), window_seconds=3600)
    if message_id is not None:
        event = RoomEvent.objects.select_related("sender").filter(
            pk=message_id, kind=RoomEvent.Kind.MESSAGE).first()
        membership = event and Membership.objects.filter(
            room_id=event.room_id, user=reporter, left_at__isnull=True,
            joined_seq__lte=event.seq).first()
        if event is None or membership is None or event.sender is None:
            raise MessageNotFound()
        if event.sender_id == reporter.pk:
            raise ReportInvalid("You cannot report your own message.")
        report = Report.objects.create(reporter=reporter, reported_user=event.sender,
                                       event=event, room_id=event.room_id, text=event.text,
                                       reason=reason)
    else:
        assert user_id is not None
        user_route_throttle(reporter)
        user_visible_get(viewer=reporter, user_id=user_id)
        report = Report.objects.create(reporter=reporter, reported_user_id=user_id,
                                       reason=reason)
    log.warning("chat report %s by user %s against user %s", report.pk, reporter.pk,
                report.reported_user_id)
    return report


def report_handle(*, report: Report, staff: User, resolution: str) -> Report:
    report.handled_at = timezone.now()
    report.handled_by = staff
    report.resolution = resolution[:200]
    report.save(update_fields=["handled_at", "handled_by", "resolution"])
    return report
