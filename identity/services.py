"""Identity writes: citizens, phone verification, device sessions, the access log (the
account's state is in accounts.py, housekeeping in purge.py).

Codes and tokens are stored only as SHA-256 digests; the plain value leaves once.
"""

import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chatserver.core.errors import (
    AccountInactive,
    AppError,
    CodeAttemptsExceeded,
    CodeExpired,
    CodeInvalid,
    RateLimited,
    Unauthenticated,
)
from chatserver.core.realtime import revoke_on_commit, session_group, user_group
from identity.domain import mobile_parse, register_parse
from identity.errors import SessionExpired, SmsFailed
from identity.models import (
    AccessLogEntry,
    DeviceSession,
    PhoneNumber,
    PhoneVerification,
    User,
)
from identity.selectors import SESSION_TOUCH_EVERY, session_is_expired
from identity.signals import phone_released, phone_verified, sms_code_send

log = logging.getLogger(__name__)
SMS_FAILED_RETRY_SECONDS = 60  # the hint when the operator gave none


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def citizen_create(*, register_number: str, name: str = "") -> User:
    register = register_parse(register_number)
    user, _ = User.objects.get_or_create(register_number=register.value,
                                         defaults={"name": name})
    return user


# ---- phone numbers -------------------------------------------------------------------------

def code_send(*, user: User, e164: str, purpose: str, text: str) -> PhoneVerification:
    """A one-time SMS code to `e164`; at most SONOR_PHONE_CODES_PER_HOUR per user and per
    number (counted in the shared database, so across every server)."""
    now = timezone.now()
    hour_ago = now - timedelta(hours=1)
    limit = settings.SONOR_PHONE_CODES_PER_HOUR
    recent_by_user = PhoneVerification.objects.filter(user=user, created_at__gte=hour_ago)
    recent_to_number = PhoneVerification.objects.filter(e164=e164, created_at__gte=hour_ago)
    for recent in (recent_by_user, recent_to_number):
        if recent.count() >= limit:
            oldest = recent.order_by("created_at").first()
            assert oldest is not None
            raise RateLimited((oldest.created_at + timedelta(hours=1) - now).total_seconds())
    code = f"{secrets.randbelow(1_000_000):06d}"
    verification = PhoneVerification.objects.create(
        user=user, e164=e164, purpose=purpose, code_hash=token_hash(f"{e164}:{code}"),
        expires_at=now + timedelta(seconds=settings.SONOR_PHONE_CODE_TTL),
    )
    result = sms_code_send(to=e164, text=text.format(code=code))
    if result.status != "sent":
        # Never answered as sent: the code cannot be used (an older one still can), and it
        # still counts against the hourly limit, which also bounds calls to the operator.
        PhoneVerification.objects.filter(pk=verification.pk).update(consumed_at=now)
        log.warning("%s code %s for user %s not sent: %s", purpose, verification.pk, user.pk,
                    result.status)
        raise SmsFailed(result.retry_after or SMS_FAILED_RETRY_SECONDS)
    log.info("%s code %s sent for user %s", purpose, verification.pk, user.pk)
    return verification


def code_check(*, user: User, e164: str, purpose: str, code: str, now: datetime) -> bool:
    """Consume the user's latest open code of `purpose` for `e164` if `code` is right, in the
    caller's transaction. False for a wrong code, whose attempt is saved: the caller raises
    code_wrong() after its transaction commits, so that the attempt counts."""
    verification = (
        PhoneVerification.objects.select_for_update()
        .filter(user=user, e164=e164, purpose=purpose, consumed_at__isnull=True)
        .order_by("-created_at").first()
    )
    if verification is None:
        raise CodeInvalid("No code was sent to this number; ask for one.")
    if verification.expires_at <= now:
        raise CodeExpired()
    if verification.attempts >= settings.SONOR_PHONE_CODE_ATTEMPTS:
        raise CodeAttemptsExceeded()
    if hmac.compare_digest(verification.code_hash, token_hash(f"{e164}:{(code or '').strip()}")):
        verification.consumed_at = now
        verification.save(update_fields=["consumed_at"])
        return True
    verification.attempts += 1
    verification.save(update_fields=["attempts"])
    return False


def code_wrong(*, user: User, e164: str, purpose: str) -> AppError:
    verification = (PhoneVerification.objects.filter(user=user, e164=e164, purpose=purpose)
                    .order_by("-created_at").first())
    left = settings.SONOR_PHONE_CODE_ATTEMPTS - (verification.attempts if verification else 0)
    return CodeInvalid(attempts_left=left) if left > 0 else CodeAttemptsExceeded()


def phone_verification_start(*, user: User, phone: str) -> PhoneVerification:
    """Send a one-time code to `phone`; rate-limited per number and per user."""
    return code_send(user=user, e164=mobile_parse(phone),
                     purpose=PhoneVerification.Purpose.PHONE,
                     text="Sonor: таны баталгаажуулах код {code}. Хэнд ч бүү хэлээрэй.")


def phone_verification_confirm(*, user: User, phone: str, code: str) -> PhoneNumber:
    """Bind `phone` to `user` if `code` is right. A number held by someone else moves to
    `user`: the old owner loses it (and is told), keeping none of it in the new owner's view."""
    e164 = mobile_parse(phone)
    now = timezone.now()
    purpose = PhoneVerification.Purpose.PHONE
    with transaction.atomic():
        if code_check(user=user, e164=e164, purpose=purpose, code=code, now=now):
            return _phone_bind(user=user, e164=e164, now=now)
    raise code_wrong(user=user, e164=e164, purpose=purpose)


def _phone_bind(*, user: User, e164: str, now: datetime) -> PhoneNumber:
    current = PhoneNumber.objects.select_for_update().filter(
        e164=e164, released_at__isnull=True).first()
    if current is not None and current.user_id == user.pk:
        return current  # the same citizen re-verifying keeps everything
    if current is not None:
        current.released_at = now
        current.release_reason = "reassigned"
        current.save(update_fields=["released_at", "release_reason"])
        # Receivers cancel what waits for the number and tell the old owner.
        phone_released.send(sender=PhoneNumber, user=current.user, e164=e164,
                            reason="number_changed_hands")
        # The number's new owner may hold the old owner's SIM: the old devices log out.
        DeviceSession.objects.filter(user=current.user, revoked_at__isnull=True).update(
            revoked_at=now, revoke_reason="number_lost")
        revoke_on_commit(user_group(current.user_id), "number_lost")
        log.info("number %s moved from user %s to user %s", e164[:-4] + "****",
                 current.user_id, user.pk)
    # One active number per user: a new number replaces the old one.
    replaced = PhoneNumber.objects.filter(user=user, released_at__isnull=True)
    for old_e164 in list(replaced.values_list("e164", flat=True)):
        phone_released.send(sender=PhoneNumber, user=user, e164=old_e164,
                            reason="number_replaced")
    replaced.update(released_at=now, release_reason="replaced")
    try:
        with transaction.atomic():
            phone = PhoneNumber.objects.create(user=user, e164=e164, verified_at=now)
    except IntegrityError as exc:  # a concurrent verification won the number
        raise CodeInvalid("The number was just verified by someone else; try again.") from exc
    phone_verified.send(sender=PhoneNumber, user=user, e164=e164)
    return phone


def phone_current(*, user: User) -> str | None:
    phone = PhoneNumber.objects.filter(user=user, released_at__isnull=True).first()
    return phone.e164 if phone else None


# ---- sessions ------------------------------------------------------------------------------

def session_create(
    *, user: User, login_method: str, device_name: str = "", platform: str = "",
    ip: str | None = None,
) -> tuple[DeviceSession, str]:
    """A new device session; returns it with the bearer token (shown only this once)."""
    if not user.is_active:
        raise AccountInactive()
    token = secrets.token_urlsafe(32)
    session = DeviceSession.objects.create(
        user=user, token_hash=token_hash(token), login_method=login_method,
        device_name=device_name[:120], platform=platform[:32], ip=ip,
    )
    log.info("session %s created for user %s by %s", session.pk, user.pk, login_method)
    return session, token


def session_authenticate(*, token: str) -> DeviceSession:
    """The live session behind a bearer token, or Unauthenticated / SessionExpired /
    AccountInactive. Records its use, at most once per SESSION_TOUCH_EVERY."""
    [session] = sessions_authenticate([token])
    if isinstance(session, AppError):
        raise session
    return session


def sessions_authenticate(tokens: list[str]) -> list[DeviceSession | AppError]:
    """session_authenticate for many tokens (sockets connecting at once) in one query, and
    one more for the sessions whose use is due to be recorded."""
    hashes = {token: token_hash(token) for token in tokens if token}
    sessions = {s.token_hash: s for s in DeviceSession.objects.select_related("user").filter(
        token_hash__in=set(hashes.values()), revoked_at__isnull=True)}
    now = timezone.now()
    answers: list[DeviceSession | AppError] = []
    touched: list[DeviceSession] = []
    for token in tokens:
        session = sessions.get(hashes.get(token, ""))
        if session is None:
            answers.append(Unauthenticated())
        elif not session.user.is_active:
            answers.append(AccountInactive())
        elif session_is_expired(session, now):
            session_revoke(session=session, reason="expired")
            answers.append(SessionExpired())
        else:
            if now - session.last_seen_at > SESSION_TOUCH_EVERY:
                session.last_seen_at = now
                touched.append(session)
            answers.append(session)
    if touched:
        DeviceSession.objects.filter(pk__in={s.pk for s in touched}).update(last_seen_at=now)
    return answers


def session_revoke(*, session: DeviceSession, reason: str = "logout") -> None:
    """Logout: the token stops working and the device's sockets close at once."""
    with transaction.atomic():
        updated = DeviceSession.objects.filter(pk=session.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoke_reason=reason)
        if updated:
            revoke_on_commit(session_group(session.pk), reason)
    log.info("session %s revoked (%s)", session.pk, reason)


def sessions_revoke_others(*, session: DeviceSession) -> int:
    count = 0
    for other in DeviceSession.objects.filter(user_id=session.user_id, revoked_at__isnull=True
                                              ).exclude(pk=session.pk):
        session_revoke(session=other, reason="logout")
        count += 1
    return count


def access_log_record(*, subject: User, actor_kind: str, actor_name: str, action: str) -> None:
    AccessLogEntry.objects.create(subject=subject, actor_kind=actor_kind,
                                  actor_name=actor_name, action=action)
