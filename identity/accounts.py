"""The account's state: the citizen closes it (with an SMS code or a fresh login), staff
suspend it and lift the suspension. No data is deleted."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatserver.core.realtime import revoke_on_commit, user_group
from identity.errors import ConfirmationRequired, NoVerifiedPhone
from identity.models import DeviceSession, PhoneVerification, User
from identity.services import code_check, code_send, code_wrong, phone_current
from identity.signals import account_closed

log = logging.getLogger(__name__)


def session_account_close_code(*, session: DeviceSession) -> PhoneVerification:
    """An SMS code to the user's verified phone that confirms closing the account."""
    e164 = phone_current(user=session.user)
    if e164 is None:
        raise NoVerifiedPhone()
    return code_send(user=session.user, e164=e164,
                     purpose=PhoneVerification.Purpose.ACCOUNT_CLOSE,
                     text="Sonor: бүртгэлээ хаах код {code}. Та хүсээгүй бол бүү хэлээрэй.")


def account_close_confirmed(*, session: DeviceSession, code: str = "") -> None:
    """The citizen asks to close their account from `session`. A stolen or forgotten token
    must not be enough: it needs a code sent to the verified phone
    (session_account_close_code), or a login in the last SONOR_ACCOUNT_CLOSE_FRESH_MINUTES."""
    user = session.user
    now = timezone.now()
    fresh = now - session.created_at <= timedelta(
        minutes=settings.SONOR_ACCOUNT_CLOSE_FRESH_MINUTES)
    if not code:
        if not fresh:
            raise ConfirmationRequired()
        account_close(user=user)
        log.info("user %s confirmed closing by a fresh login", user.pk)
        return
    e164 = phone_current(user=user)
    if e164 is None:
        raise NoVerifiedPhone()
    purpose = PhoneVerification.Purpose.ACCOUNT_CLOSE
    with transaction.atomic():
        if code_check(user=user, e164=e164, purpose=purpose, code=code, now=now):
            account_close(user=user)
            log.info("user %s confirmed closing by an SMS code", user.pk)
            return
    raise code_wrong(user=user, e164=e164, purpose=purpose)


@transaction.atomic
def account_close(*, user: User) -> None:
    """Close the account: every session ends; no data is deleted (the citizen's request
    goes through account_close_confirmed)."""
    User.objects.filter(pk=user.pk).update(status=User.Status.CLOSED,
                                           status_changed_at=timezone.now())
    DeviceSession.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoke_reason="account_closed")
    revoke_on_commit(user_group(user.pk), "account_closed")
    account_closed.send(sender=User, user=user)
    log.info("user %s closed their account", user.pk)


@transaction.atomic
def user_suspend(*, user: User, by: User | None = None) -> None:
    """Staff suspension: live sockets close at once and every token is refused while it
    lasts; sessions are kept, so lifting it restores access. No data is deleted."""
    User.objects.filter(pk=user.pk).update(status=User.Status.SUSPENDED,
                                           status_changed_at=timezone.now())
    revoke_on_commit(user_group(user.pk), "suspended")
    log.warning("user %s suspended by %s", user.pk, by.pk if by else "system")


@transaction.atomic
def user_unsuspend(*, user: User, by: User | None = None) -> None:
    User.objects.filter(pk=user.pk).update(status=User.Status.ACTIVE,
                                           status_changed_at=timezone.now())
    log.warning("user %s unsuspended by %s", user.pk, by.pk if by else "system")
