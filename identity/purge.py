"""Housekeeping: what has ended is deleted after a while, in short transactions (the
worker's purge job)."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from identity.models import DeviceSession, PhoneVerification, QrLogin

log = logging.getLogger(__name__)

# How long what has ended is kept: QR logins and phone codes a month after they expired
# (for support questions about a login or a code); sessions three months after they were
# revoked or expired (the citizen's login history in their data export). Nothing that can
# still be used is ever purged.
PURGE_CODES_AFTER = timedelta(days=30)
PURGE_SESSIONS_AFTER = timedelta(days=90)
PURGE_CHUNK = 1000  # rows per DELETE: short transactions, short locks


def _purge(rows: QuerySet[Model]) -> int:
    deleted = 0
    while ids := list(rows.values_list("pk", flat=True)[:PURGE_CHUNK]):
        deleted += rows.model._default_manager.filter(pk__in=ids).delete()[1].get(
            rows.model._meta.label, 0)
    return deleted


def identity_purge(*, now: datetime | None = None) -> dict[str, int]:
    """Delete QR logins, phone codes and sessions that ended long enough ago; the numbers
    deleted by kind. Run by the worker's purge job."""
    now = now or timezone.now()
    codes_before, sessions_before = now - PURGE_CODES_AFTER, now - PURGE_SESSIONS_AFTER
    ended_sessions = (
        Q(revoked_at__lt=sessions_before)
        | Q(revoked_at__isnull=True, last_seen_at__lt=sessions_before - timedelta(
            days=settings.SONOR_SESSION_IDLE_DAYS))
        | Q(revoked_at__isnull=True, created_at__lt=sessions_before - timedelta(
            days=settings.SONOR_SESSION_MAX_DAYS)))
    purged = {
        "qr_logins": _purge(QrLogin.objects.filter(expires_at__lt=codes_before)),
        "phone_codes": _purge(PhoneVerification.objects.filter(expires_at__lt=codes_before)),
        "sessions": _purge(DeviceSession.objects.filter(ended_sessions)),
    }
    if any(purged.values()):
        log.info("purged %s", purged)
    return purged
