"""Crash test of the delivery pipeline: a worker is killed with SIGKILL in the middle of a
batch; another worker takes over its leased rows when the lease runs out and finishes.
Counted at the real-protocol peers: a local FCM v1 endpoint, an SMSC speaking SMPP and an
SMTP server with TLS."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from identity.admin_services import phone_bind_verified
from identity.services import citizen_create, session_create
from notify import preferences
from notify.inbox import notification_create
from notify.models import Delivery, NotifySettings
from tests.e2e.conftest import ROOT, database_url
from tests.fakes.fcm import FakeFcm
from tests.fakes.smsc import FakeSmsc
from tests.fakes.smtp import FakeSmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


CITIZENS = 15
NOTICES_EACH = 4


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_worker", "--sleep", "0.1"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_worker_loses_nothing_and_sends_nothing_twice_but_the_one_in_flight(
        fcm_server: FakeFcm, smtp_server: FakeSmtpServer, smsc: FakeSmsc,
        tmp_path: Path) -> None:
    for i in range(CITIZENS):
        user = citizen_create(register_number=f"УБ990115{i:02d}", name=f"Иргэн {i}")
        phone_bind_verified(user=user, phone=f"+9768811{i:04d}")
        session, _ = session_create(user=user, login_method="test")
        preferences.device_register(session=session, token=f"fcm-token-{i:03d}-xxxxxxxx",
                                    platform="android")
        for channel in ("email", "sms"):
            preferences.preference_set(user=user, category="service_request",
                                       channel=channel, enabled=True)
        NotifySettings.objects.update_or_create(user=user, defaults={
            "email": f"citizen{i}@example.mn", "email_verified_at": timezone.now()})
        for n in range(NOTICES_EACH):
            with transaction.atomic():
                notification_create(user=user, category="service_request",
                                    title=f"Мэдэгдэл {n}",
                                    body=f"Таны хүсэлт {n} шийдвэрлэгдлээ.")
    total = CITIZENS * NOTICES_EACH * 3  # push, SMS and email
    assert Delivery.objects.filter(status="pending").count() == total

    env = {**os.environ, "DATABASE_URL": database_url(),
           "SONOR_FCM_CREDENTIALS": str(fcm_server.credentials_path),
           "SONOR_FCM_URL": fcm_server.send_url, "SONOR_SMTP_URL": smtp_server.url(),
           "SONOR_SMPP_URL": smsc.url(),
           "SONOR_DELIVERY_LEASE_SECONDS": "2", "SONOR_DELIVERY_BATCH": "20"}
    log = tmp_path / "workers.log"
    first = start_worker(env, log)
    try:
        wait_for(lambda: Delivery.objects.filter(status="sent").count() >= total // 4,
                 60, "the first worker to send a quarter")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert Delivery.objects.filter(status="sending").exists(), "killed mid-batch"

        second = start_worker(env, log)
        try:
            wait_for(lambda: not Delivery.objects.exclude(status="sent").exists(), 90,
                     f"every delivery sent\n{log.read_text(errors='replace')}")
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()

    pushes = Counter((m["token"], m["data"]["notification_id"]) for m in fcm_server.messages)
    mails = Counter(mail.message["Message-ID"] for mail in smtp_server.received)
    texts = Counter((m.destination_addr, m.text)
                    for i in range(CITIZENS) for m in smsc.messages_to(f"9768811{i:04d}"))
    expected = CITIZENS * NOTICES_EACH
    # Every delivery arrived.
    assert (len(pushes), len(mails), len(texts)) == (expected, expected, expected)
    duplicates = sum(c - 1 for counter in (pushes, mails, texts) for c in counter.values())
    # Sends are recorded one by one, so only a message in flight at the kill can go twice.
    assert duplicates <= 1, (pushes, mails, texts)
