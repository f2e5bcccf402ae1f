"""The worker's purge job deletes QR logins, phone codes and sessions that ended long ago,
and nothing that can still be used."""

import secrets
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from chatserver.worker.jobs import default_jobs
from identity.models import DeviceSession, PhoneVerification, QrLogin, User
from identity.services import session_authenticate, session_create

pytestmark = pytest.mark.django_db


def days_ago(days: float) -> Any:
    return timezone.now() - timedelta(days=days)


def qr_login(expires_at: Any) -> QrLogin:
    return QrLogin.objects.create(token_hash=secrets.token_hex(32), channel_name="c",
                                  expires_at=expires_at)


def code(user: User, expires_at: Any) -> PhoneVerification:
    return PhoneVerification.objects.create(user=user, e164="+97688001122", code_hash="0" * 64,
                                            expires_at=expires_at)


def session(user: User, **fields: Any) -> tuple[DeviceSession, str]:
    created, token = session_create(user=user, login_method="test")
    DeviceSession.objects.filter(pk=created.pk).update(**fields)
    return created, token


def purge_job() -> Any:
    [job] = [job for job in default_jobs() if job.name == "purge"]
    return job


def test_what_ended_long_ago_is_purged_and_what_is_valid_stays(citizen: User) -> None:
    idle, longest = settings.SONOR_SESSION_IDLE_DAYS, settings.SONOR_SESSION_MAX_DAYS
    qr_login(days_ago(31))
    recent_qr = qr_login(days_ago(29))
    live_qr = qr_login(timezone.now() + timedelta(seconds=60))
    code(citizen, days_ago(31))
    recent_code = code(citizen, days_ago(29))
    live_code = code(citizen, timezone.now() + timedelta(minutes=5))
    session(citizen, revoked_at=days_ago(91), revoke_reason="logout")
    recent_logout, _ = session(citizen, revoked_at=days_ago(89), revoke_reason="logout")
    session(citizen, last_seen_at=days_ago(idle + 91))
    session(citizen, created_at=days_ago(longest + 91), last_seen_at=days_ago(1))
    recently_idle, _ = session(citizen, last_seen_at=days_ago(idle + 1))
    live, live_token = session(citizen, created_at=days_ago(longest - 1),
                               last_seen_at=days_ago(idle - 1))

    job = purge_job()
    assert job.run()

    assert set(QrLogin.objects.values_list("pk", flat=True)) == {recent_qr.pk, live_qr.pk}
    assert set(PhoneVerification.objects.values_list("pk", flat=True)) == {
        recent_code.pk, live_code.pk}
    assert set(DeviceSession.objects.values_list("pk", flat=True)) == {
        recent_logout.pk, recently_idle.pk, live.pk}
    assert session_authenticate(token=live_token).pk == live.pk

    qr_login(days_ago(40))
    assert not job.run()  # at most every PURGE_EVERY_SECONDS
    assert QrLogin.objects.count() == 3
