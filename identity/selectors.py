"""Identity reads."""

from django.db.models import QuerySet

from chatserver.errors import NotFound
from identity.models import AccessLogEntry, DeviceSession, User


def session_list(*, user: User) -> QuerySet[DeviceSession]:
    return DeviceSession.objects.filter(user=user, revoked_at__isnull=True).order_by(
        "-last_seen_at")


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
    return None


def session_end_reason(*, session_id: int) -> str | None:
    """Why a session no longer admits its device (None while it does): the revocation's
    reason, or the account's status."""
    session = DeviceSession.objects.select_related("user").filter(pk=session_id).first()
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
