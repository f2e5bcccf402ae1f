"""Broadcasts: scheduling, fan-out by the worker in batches with progress, cancellation, the
two-working-day rule for maintenance notices, and the run_worker command."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone

from chatserver.core import protocol
from chatserver.worker.jobs import worker_run_until_idle
from identity.accounts import account_close
from identity.models import User
from notify.broadcasts import broadcast_batch_process
from notify.inbox import notification_create
from notify.models import Agency, Broadcast, Notification
from notify.selectors import inbox_seq
from notify.workdays import earliest_after_working_days
from tests.conftest import JsonClient
from tests.notify.helpers import send

pytestmark = pytest.mark.django_db

Maker = Callable[..., Any]
UB = ZoneInfo("Asia/Ulaanbaatar")
ROOT = Path(__file__).resolve().parents[2]


def broadcast_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"category": "service_request", "title": "Шинэ үйлчилгээ",
                            "body": "Иргэний үнэмлэхийг онлайнаар захиалах боломжтой боллоо.",
                            "audience": "all"}
    body.update(fields)
    return body


def post_broadcast(client: JsonClient, **fields: Any) -> Any:
    return client.post("/api/agency/v1/broadcasts", broadcast_body(**fields))


def inbox_titles(user: User) -> list[str]:
    return list(Notification.objects.filter(user=user).order_by("seq")
                .values_list("title", flat=True))


def assert_gap_free(users: list[User]) -> None:
    for user in users:
        seqs = list(Notification.objects.filter(user=user).order_by("seq")
                    .values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1)), (user, seqs)
        assert inbox_seq(user=user) == len(seqs)


@pytest.fixture
def agency_key(make_agency: Callable[..., tuple[Agency, str]]) -> tuple[Agency, str]:
    """An agency that staff allowed to broadcast to every citizen."""
    return make_agency("Улсын бүртгэлийн ерөнхий газар", broadcast_all=True)


@pytest.fixture
def citizens(make_citizen: Maker) -> list[User]:
    return [make_citizen() for _ in range(5)]


# ---- to all, in batches --------------------------------------------------------------------

def test_broadcast_to_all_is_fanned_out_by_the_worker_in_batches(
        agency_client: JsonClient, citizens: list[User]) -> None:
    notification_create(user=citizens[0], category="security", title="Өмнөх", body="Өмнөх.")
    closed = citizens[4]
    account_close(user=closed)

    response = post_broadcast(agency_client)
    assert response.status_code == 202, response.json()
    created = response.json()
    assert created["status"] == "scheduled"
    assert (created["done"], created["audience"]) == (0, "all")
    # Nothing is sent in the request: the worker fans out.
    assert not Notification.objects.filter(broadcast__isnull=False).exists()

    path = f"/api/agency/v1/broadcasts/{created['id']}"
    assert broadcast_batch_process(batch_size=2)
    progress = agency_client.get(path).json()
    assert progress["status"] == "running"
    assert (progress["done"], progress["total"]) == (2, 4)
    assert progress["started_at"]

    worker_run_until_idle(batch_size=2)
    finished = agency_client.get(path).json()
    assert finished["status"] == "done"
    assert (finished["done"], finished["total"], finished["delivered"]) == (4, 4, 4)
    assert finished["finished_at"]
    for user in citizens[:4]:
        assert inbox_titles(user)[-1] == "Шинэ үйлчилгээ"
    assert inbox_titles(closed) == []
    assert_gap_free(citizens)


def test_later_sign_ups_are_not_part_of_a_running_broadcast(
        agency_client: JsonClient, citizens: list[User], make_citizen: Maker) -> None:
    post_broadcast(agency_client)
    broadcast_batch_process(batch_size=2)
    newcomer = make_citizen()
    worker_run_until_idle(batch_size=2)
    assert inbox_titles(newcomer) == []
    assert Broadcast.objects.get().done == 5


@pytest.mark.django_db(transaction=True)  # the POST is stored from the thread pool
def test_single_notifications_interleave_with_a_running_broadcast(
        agency_client: JsonClient, citizens: list[User]) -> None:
    post_broadcast(agency_client)
    broadcast_batch_process(batch_size=2)
    last = citizens[-1]  # not reached yet
    assert send(agency_client, last.register_number).status_code == 202
    worker_run_until_idle(batch_size=2)
    assert inbox_titles(last) == ["Таны лавлагаа бэлэн боллоо", "Шинэ үйлчилгээ"]
    assert_gap_free(citizens)


# ---- to a list -----------------------------------------------------------------------------

def test_broadcast_to_a_list_skips_unknown_citizens(
        agency_client: JsonClient, citizens: list[User]) -> None:
    listed = [citizens[0].register_number, citizens[2].register_number.lower(),
              citizens[0].register_number, "УБ88010112"]
    response = post_broadcast(agency_client, audience="list", register_numbers=listed)
    assert response.status_code == 202, response.json()
    assert response.json()["total"] == 3  # duplicates count once
    worker_run_until_idle(batch_size=2)
    status = agency_client.get(f"/api/agency/v1/broadcasts/{response.json()['id']}").json()
    assert (status["status"], status["done"], status["total"]) == ("done", 3, 3)
    assert (status["delivered"], status["skipped"]) == (2, 1)
    assert [bool(inbox_titles(user)) for user in citizens] == [True, False, True, False, False]


@pytest.mark.parametrize("fields, status, code", [
    ({"audience": "list", "register_numbers": ["УБ99011512", "1234567", "хх"]}, 400,
     "invalid_register_number"),
    ({"audience": "list", "register_numbers": []}, 400, "invalid_input"),
    ({"audience": "list"}, 422, "invalid_input"),
    ({"audience": "all", "register_numbers": ["УБ99011512"]}, 422, "invalid_input"),
    ({"audience": "some"}, 422, "invalid_input"),
    ({"category": "payment"}, 422, "invalid_input"),
    ({"category": "chat"}, 422, "invalid_input"),
    ({"title": "т" * 201}, 422, "invalid_input"),
    ({"body": "б" * 4001}, 422, "invalid_input"),
    ({"link": "http://e-mongolia.mn"}, 422, "invalid_input"),
    ({"title": "Засвар\x00"}, 422, "invalid_input"),
    ({"body": "Засвар\x07 хийнэ"}, 422, "invalid_input"),
    ({"starts_at": "2030-01-01T10:00:00"}, 422, "invalid_input"),  # no offset
    ({"maintenance_at": "2031-01-01T10:00:00+08:00"}, 400, "invalid_input"),  # not system
    ({"category": "system"}, 400, "invalid_input"),  # no maintenance_at
])
def test_bad_broadcasts_are_refused_and_nothing_is_stored(
        agency_client: JsonClient, fields: dict[str, Any], status: int, code: str) -> None:
    response = post_broadcast(agency_client, **fields)
    assert response.status_code == status, response.json()
    assert response.json()["code"] == code
    assert not Broadcast.objects.exists()


def test_invalid_register_numbers_are_listed(agency_client: JsonClient) -> None:
    response = post_broadcast(agency_client, audience="list",
                              register_numbers=["УБ99011512", "1234567", "хх"])
    assert response.json()["extra"]["invalid"] == ["1234567", "хх"]


def test_recipient_list_has_a_limit(agency_client: JsonClient, settings: Any) -> None:
    settings.SONOR_BROADCAST_MAX_RECIPIENTS = 2
    response = post_broadcast(agency_client, audience="list",
                              register_numbers=["УБ99011512", "УБ99011522", "УБ99011532"])
    assert response.status_code == 400
    assert response.json()["extra"]["field"] == "register_numbers"


# ---- scheduling and cancellation -----------------------------------------------------------

def test_a_scheduled_broadcast_waits_for_its_start_and_can_be_cancelled(
        agency_client: JsonClient, citizens: list[User]) -> None:
    starts_at = timezone.now() + timedelta(hours=3)
    response = post_broadcast(agency_client, starts_at=starts_at.isoformat())
    broadcast_id = response.json()["id"]
    assert not broadcast_batch_process()  # not due yet
    assert Broadcast.objects.get().status == "scheduled"

    cancelled = agency_client.post(f"/api/agency/v1/broadcasts/{broadcast_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancelled_at"]
    Broadcast.objects.update(starts_at=timezone.now())
    assert not broadcast_batch_process()
    assert not Notification.objects.exists()
    # Cancelling again is harmless.
    again = agency_client.post(f"/api/agency/v1/broadcasts/{broadcast_id}/cancel")
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")


def test_a_running_broadcast_stops_at_the_next_batch(agency_client: JsonClient,
                                                     citizens: list[User]) -> None:
    broadcast_id = post_broadcast(agency_client).json()["id"]
    broadcast_batch_process(batch_size=2)
    response = agency_client.post(f"/api/agency/v1/broadcasts/{broadcast_id}/cancel")
    assert response.json()["status"] == "cancelled"
    worker_run_until_idle(batch_size=2)
    status = agency_client.get(f"/api/agency/v1/broadcasts/{broadcast_id}").json()
    assert (status["status"], status["done"], status["total"]) == ("cancelled", 2, 5)
    assert Notification.objects.count() == 2


def test_a_finished_broadcast_cannot_be_cancelled(agency_client: JsonClient,
                                                  citizens: list[User]) -> None:
    broadcast_id = post_broadcast(agency_client).json()["id"]
    worker_run_until_idle()
    response = agency_client.post(f"/api/agency/v1/broadcasts/{broadcast_id}/cancel")
    assert response.status_code == 409
    assert response.json()["code"] == "broadcast_not_cancellable"


def test_only_the_sending_agency_sees_or_cancels_a_broadcast(
        agency_client: JsonClient, make_agency: Maker) -> None:
    broadcast_id = post_broadcast(agency_client).json()["id"]
    other = JsonClient(make_agency()[1])
    for response in [other.get(f"/api/agency/v1/broadcasts/{broadcast_id}"),
                     other.post(f"/api/agency/v1/broadcasts/{broadcast_id}/cancel"),
                     agency_client.get("/api/agency/v1/broadcasts/999999")]:
        assert response.status_code == 404
        assert response.json()["code"] == "broadcast_not_found"
    assert Broadcast.objects.get().status == "scheduled"


def test_a_retried_broadcast_with_an_idempotency_key_is_stored_once(
        agency_client: JsonClient) -> None:
    headers = {"Idempotency-Key": "maintenance-2030-01"}
    first = agency_client.post("/api/agency/v1/broadcasts", broadcast_body(), headers=headers)
    retry = agency_client.post("/api/agency/v1/broadcasts", broadcast_body(), headers=headers)
    assert (first.status_code, retry.status_code) == (202, 202)
    assert first.json()["id"] == retry.json()["id"]
    assert retry["Idempotent-Replayed"] == "true"
    changed = agency_client.post("/api/agency/v1/broadcasts", broadcast_body(title="Өөр"),
                                 headers=headers)
    assert (changed.status_code, changed.json()["code"]) == (409, "idempotency_key_reused")
    assert Broadcast.objects.count() == 1


# ---- maintenance notices: two working days ahead -------------------------------------------

def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=UB)  # type: ignore[arg-type, misc]


@pytest.mark.parametrize("notice, earliest", [
    (local(2026, 11, 23, 10, 0), local(2026, 11, 25, 10, 0)),  # Monday -> Wednesday
    (local(2026, 11, 27, 10, 0), local(2026, 12, 1, 10, 0)),  # Friday -> Tuesday
    (local(2026, 11, 28, 10, 0), local(2026, 12, 2, 0, 0)),  # Saturday -> Wednesday 00:00
    (local(2026, 11, 29, 23, 0), local(2026, 12, 2, 0, 0)),  # Sunday night -> Wednesday
    (local(2026, 11, 24, 0, 0), local(2026, 11, 26, 0, 0)),  # Tuesday midnight -> Thursday
    # Independence Day (26 Nov, yearly holiday) is not a working day.
    (local(2026, 11, 25, 10, 0), local(2026, 11, 30, 10, 0)),
    # Thursday before Naadam (10-15 July, Friday to Wednesday) -> the next Friday.
    (local(2026, 7, 9, 9, 0), local(2026, 7, 17, 9, 0)),
])
def test_earliest_maintenance_after_two_working_days(notice: datetime,
                                                     earliest: datetime) -> None:
    assert earliest_after_working_days(notice, 2) == earliest


def test_maintenance_notice_less_than_two_working_days_ahead_is_refused(
        agency_client: JsonClient) -> None:
    earliest = earliest_after_working_days(timezone.now(), 2)
    too_soon = post_broadcast(agency_client, category="system", title="Төлөвлөгөөт засвар",
                              maintenance_at=(earliest - timedelta(minutes=5)).isoformat())
    assert too_soon.status_code == 422
    body = too_soon.json()
    assert body["code"] == "maintenance_notice_too_short"
    assert body["extra"]["working_days"] == 2
    assert datetime.fromisoformat(body["extra"]["earliest_maintenance_at"]) >= earliest
    assert not Broadcast.objects.exists()

    in_time = post_broadcast(agency_client, category="system", title="Төлөвлөгөөт засвар",
                             maintenance_at=(earliest + timedelta(minutes=5)).isoformat())
    assert in_time.status_code == 202, in_time.json()
    assert in_time.json()["maintenance_at"]


def test_maintenance_notice_counts_from_its_start_time(agency_client: JsonClient,
                                                       citizen: User,
                                                       session_token: str) -> None:
    starts_at = timezone.now() + timedelta(days=10)
    earliest = earliest_after_working_days(starts_at, 2)
    refused = post_broadcast(agency_client, category="system", starts_at=starts_at.isoformat(),
                             maintenance_at=(earliest - timedelta(hours=1)).isoformat())
    assert refused.json()["code"] == "maintenance_notice_too_short"
    maintenance_at = earliest + timedelta(hours=1)
    accepted = post_broadcast(agency_client, category="system",
                              maintenance_at=maintenance_at.isoformat())
    assert accepted.status_code == 202
    worker_run_until_idle()
    [item] = JsonClient(session_token).get("/api/v1/inbox").json()["items"]
    assert item["category"] == "system"
    assert datetime.fromisoformat(item["maintenance_at"]) == maintenance_at.replace(
        microsecond=maintenance_at.microsecond // 1000 * 1000)


# ---- live and the worker process -----------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_fan_out_pushes_notify_new_and_unread_live(
        ws_connect: Maker, make_citizen: Maker, make_token: Maker, make_agency: Maker) -> None:
    citizen = await database_sync_to_async(make_citizen)()
    await database_sync_to_async(notification_create)(
        user=citizen, category="security", title="Шинэ нэвтрэлт", body="Нэвтэрлээ.")
    socket = await ws_connect(await database_sync_to_async(make_token)(citizen), ready=True)
    _, key = await database_sync_to_async(make_agency)(broadcast_all=True)
    response = await database_sync_to_async(post_broadcast)(JsonClient(key))
    assert response.status_code == 202
    assert await database_sync_to_async(broadcast_batch_process)()
    new = await socket.receive_frame()
    assert isinstance(new, protocol.NotifyNew)
    assert (new.seq, new.title, new.category) == (2, "Шинэ үйлчилгээ", "service_request")
    assert await socket.receive_frame() == protocol.NotifyUnread(count=2)


def test_run_worker_once_finishes_due_broadcasts(agency_client: JsonClient,
                                                 citizens: list[User]) -> None:
    post_broadcast(agency_client)
    call_command("run_worker", "--once", "--batch", "2", stdout=StringIO(), stderr=StringIO())
    assert Broadcast.objects.get().status == "done"
    assert Notification.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_run_worker_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    from tests.e2e.conftest import database_url

    env = {**os.environ, "DATABASE_URL": database_url(),
           "SONOR_DATA_DIR": str(django_settings.DATA_DIR)}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "run_worker", "--sleep", "0.2"], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while b"worker started" not in log_path.read_bytes():
                assert worker.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=10) == 0, log_path.read_text()
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    output = log_path.read_text()
    assert "SIGTERM, stopping" in output and "worker stopped" in output


def test_broadcast_reaches_phones_and_devices_by_each_citizens_choices(
        agency_client: JsonClient, make_citizen: Any, make_token: Any) -> None:
    from notify import preferences
    from notify.models import Delivery, DevOutboxMessage

    with_app = make_citizen(phone="+97699000001")
    JsonClient(make_token(with_app)).post("/api/v1/devices", {
        "token": "fcm-token-broadcast-1", "platform": "ios"})
    by_sms = make_citizen(phone="+97699000002")
    preferences.preference_set(user=by_sms, category="petition", channel="sms", enabled=True)
    inbox_only = make_citizen(phone="+97699000003")
    preferences.preference_set(user=inbox_only, category="petition", channel="push",
                               enabled=False)
    response = post_broadcast(agency_client, category="petition", audience="list",
                              register_numbers=[u.register_number
                                                for u in (with_app, by_sms, inbox_only)])
    assert response.status_code == 202, response.content
    worker_run_until_idle(batch_size=2)

    sent = {(m.sender_kind, m.address) for m in DevOutboxMessage.objects.all()}
    assert sent == {("push", "fcm-token-broadcast-1"), ("sms", "+97699000002")}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert all(inbox_titles(u) for u in (with_app, by_sms, inbox_only))
