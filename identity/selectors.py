"""Identity reads (and the socket's session re-check, which also records the session's use)."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from chatserver.core.errors import NotFound
from identity.models import AccessLogEntry, DeviceSession, User

# Last use is written at most this often: not a write on every request or frame.
SESSION_TOUCH_EVERY = timedelta(minutes=5)


def session_expires_at(session: DeviceSession) -> datetime:
    """When the session ends whatever its use (SONOR_SESSION_MAX_DAYS after its login)."""
    return session.created_at + timedelta(days=settings.SONOR_SESSION_MAX_DAYS)


def session_idle_expires_at(session: DeviceSession) -> datetime:
    """When the session ends if it is not used before (SONOR_SESSION_IDLE_DAYS after its
    last use, known to within SESSION_TOUCH_EVERY)."""
    return min(session.last_seen_at + timedelta(days=settings.SONOR_SESSION_IDLE_DAYS),
               session_expires_at(session))


def session_is_expired(session: DeviceSession, now: datetime | None = None) -> bool:
    return session_idle_expires_at(session) <= (now or timezone.now())


def session_touch(session: DeviceSession) -> None:
    """Record that the session was used, at most once per SESSION_TOUCH_EVERY."""
    now = timezone.now()
    if now - session.last_seen_at > SESSION_TOUCH_EVERY:
        DeviceSession.objects.filter(pk=session.pk).update(last_seen_at=now)
        session.last_seen_at = now


def session_list(*, user: User) -> QuerySet[DeviceSession]:
    """The user's live sessions (expired ones are not shown, whether or not marked yet)."""
    now = timezone.now()
    return DeviceSession.objects.filter(
        user=user, revoked_at__isnull=True,
        last_seen_at__gt=now - timedelta(days=settings.SONOR_SESSION_IDLE_DAYS),
        created_at__gt=now - timedelta(days=settings.SONOR_SESSION_MAX_DAYS),
    ).order_by("-last_seen_at")


def session_get_own(*, user: User, session_id: int) -> DeviceSession:
    session = session_list(user=user).filter(pk=session_id).first()
    if session is None:
        raise NotFound("No such session.")
    return session


def access_log_list(*, user: User, limit: int = 200) -> QuerySet[AccessLogEntry]:
    return AccessLogEntry.objects.filter(subject=user).order_by("-created_at")[:limit]


def _end_reason(session: DeviceSession) -> str | None:
    if session.revoked_at is not None:
        return session.revoke_reason or "logout"
    if session.user.status != User.Status.ACTIVE:
        return str(session.user.status)
    if session_is_expired(session):
        DeviceSession.objects.filter(pk=session.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoke_reason="expired")
        return "expired"
    session_touch(session)
    return None


def session_end_reason(*, session_id: int) -> str | None:
    """Why a session no longer admits its device (None while it does): the revocation's
    reason, the account's status, or `expired` (idle or absolute lifetime). A live socket
    re-checking counts as use of its session (session_touch)."""
    session = next(iter(DeviceSession.objects.select_related("user").filter(pk=session_id)[:1]),
                   None)
    if session is None:
        return "logout"
    return _end_reason(session)


def session_end_reasons(*, session_ids: list[int]) -> dict[int, str]:
    """session_end_reason for many sessions in one query: only the ended ones."""
    sessions = {s.pk: s for s in DeviceSession.objects.select_related("user")
                .filter(pk__in=session_ids)}
    ended = {pk: "logout" for pk in session_ids if pk not in sessions}
    for pk, session in sessions.items():
        reason = _end_reason(session)
        if reason is not None:
            ended[pk] = reason
    return ended
