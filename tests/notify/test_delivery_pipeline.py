"""The delivery pipeline on the embedded senders (the development outbox): planning by
preferences, quiet hours, escalation, cancellation on read, expiry, leases, two workers."""

import threading
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from identity.models import User
from notify import preferences
from notify.delivery import deliveries_process, quiet_hours_end
from notify.inbox import notification_create, notifications_mark_read
from notify.models import Delivery, DeliveryAttempt, DevOutboxMessage, NotifySettings
from tests.conftest import JsonClient

pytestmark = pytest.mark.django_db


def notify(user: User, category: str = "service_request", **kw: Any) -> Any:
    return notification_create(user=user, category=category, title="Лавлагаа бэлэн",
                                body="Таны лавлагаа бэлэн боллоо.", **kw)


def outbox(kind: str) -> list[DevOutboxMessage]:
    return list(DevOutboxMessage.objects.filter(sender_kind=kind).order_by("pk"))


def run_worker_until_idle(worker_id: str = "w1") -> None:
    while deliveries_process(worker_id=worker_id):
        pass


@pytest.fixture
def phone_app(citizen: User, make_token: Any) -> tuple[User, JsonClient]:
    """A citizen whose app registered its push token."""
    client = JsonClient(make_token(citizen, "Pixel"))
    response = client.post("/api/v1/devices", {"token": "fcm-token-pixel-0001",
                                               "platform": "android", "name": "Pixel"})
    assert response.status_code == 201, response.content
    return citizen, client


def test_push_is_on_by_default_and_arrives_once(phone_app: tuple[User, JsonClient]) -> None:
    user, _ = phone_app
    notification = notify(user)
    delivery = Delivery.objects.get(notification=notification)
    assert (delivery.channel, delivery.status) == ("push", "pending")

    run_worker_until_idle()

    pushes = outbox("push")
    assert [(p.address, p.title) for p in pushes] == [("fcm-token-pixel-0001", "Лавлагаа бэлэн")]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 1)
    assert DeliveryAttempt.objects.get(delivery=delivery).status == "sent"
    assert not outbox("sms") and not outbox("email")


def test_sms_and_email_are_opt_in(phone_app: tuple[User, JsonClient]) -> None:
    user, client = phone_app
    response = client.put("/api/v1/preferences",
                          {"channels": {"service_request": {"sms": True, "push": False}}})
    assert response.status_code == 200, response.content
    assert response.json()["channels"]["service_request"] == {
        "push": False, "sms": True, "email": False}
    notify(user)
    run_worker_until_idle()
    assert [m.address for m in outbox("sms")] == [user.phones.get().e164]
    assert not outbox("push")


def test_security_push_cannot_be_switched_off(phone_app: tuple[User, JsonClient]) -> None:
    user, client = phone_app
    response = client.put("/api/v1/preferences", {"channels": {"security": {"push": False}}})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_input")
    assert client.get("/api/v1/preferences").json()["channels"]["security"]["push"] is True
    notify(user, "security")
    run_worker_until_idle()
    assert len(outbox("push")) == 1


def test_every_change_is_recorded(phone_app: tuple[User, JsonClient]) -> None:
    user, client = phone_app
    client.put("/api/v1/preferences", {"private_previews": True,
                                       "quiet_hours": {"start": "22:00", "end": "07:00"}})
    changes = set(user.preference_changes.values_list("what", "value"))
    assert ("private_previews", "True") in changes
    assert ("quiet_hours", "22:00:00-07:00:00") in changes


def test_quiet_hours_defer_push_but_not_security(phone_app: tuple[User, JsonClient]) -> None:
    user, _ = phone_app
    now_local = timezone.localtime()
    start = (now_local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (now_local + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    preferences.preferences_update(user=user, quiet_hours=(start, end))

    deferred = Delivery.objects.get(notification=notify(user))
    urgent = Delivery.objects.get(notification=notify(user, "security"))
    run_worker_until_idle()

    assert [p.title for p in outbox("push")] == ["Лавлагаа бэлэн"]  # only the security one
    deferred.refresh_from_db()
    urgent.refresh_from_db()
    assert (urgent.status, deferred.status) == ("sent", "pending")
    assert deferred.next_attempt_at > timezone.now() + timedelta(minutes=50)


def test_quiet_hours_across_midnight() -> None:
    settings_row = NotifySettings(quiet_start=time(22, 0), quiet_end=time(7, 0))
    tz = timezone.get_current_timezone()
    late = datetime(2026, 11, 22, 23, 30, tzinfo=tz)
    end = quiet_hours_end(notify_settings=settings_row, now=late)
    assert end is not None and (end.day, end.hour) == (23, 7)
    noon = datetime(2026, 11, 22, 12, 0, tzinfo=tz)
    assert quiet_hours_end(notify_settings=settings_row, now=noon) is None


def test_payment_sms_is_an_escalation_cancelled_by_a_read(
        phone_app: tuple[User, JsonClient]) -> None:
    user, client = phone_app
    client.put("/api/v1/preferences", {"channels": {"payment": {"sms": True}}})
    first = notify(user, "payment")
    second = notify(user, "payment")
    sms = {d.notification_id: d for d in Delivery.objects.filter(channel="sms")}
    assert all(d.escalation and d.next_attempt_at > timezone.now() for d in sms.values())

    notifications_mark_read(user=user, ids=[first.pk])  # read on some device
    # Time passes: the escalation is due.
    Delivery.objects.filter(channel="sms").update(next_attempt_at=timezone.now())
    run_worker_until_idle()

    assert Delivery.objects.get(pk=sms[first.pk].pk).status == "cancelled"
    assert Delivery.objects.get(pk=sms[second.pk].pk).status == "sent"
    assert len(outbox("sms")) == 1


def test_expired_delivery_is_never_sent(phone_app: tuple[User, JsonClient]) -> None:
    user, _ = phone_app
    delivery = Delivery.objects.get(notification=notify(user))
    Delivery.objects.filter(pk=delivery.pk).update(expires_at=timezone.now())
    run_worker_until_idle()
    delivery.refresh_from_db()
    assert delivery.status == "expired"
    assert not outbox("push")


def test_a_dead_workers_lease_runs_out_and_another_sends(
        phone_app: tuple[User, JsonClient]) -> None:
    user, _ = phone_app
    delivery = Delivery.objects.get(notification=notify(user))
    Delivery.objects.filter(pk=delivery.pk).update(
        status="sending", leased_by="dead-worker", lease_until=timezone.now() + timedelta(60))
    assert not deliveries_process(worker_id="w2")  # still leased: left alone
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now())
    run_worker_until_idle("w2")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.leased_by) == ("sent", "w2")
    assert len(outbox("push")) == 1


def test_muted_agency_sends_to_the_inbox_only(phone_app: tuple[User, JsonClient],
                                              make_agency: Any) -> None:
    user, client = phone_app
    agency, _ = make_agency()
    response = client.put("/api/v1/preferences", {"muted_agencies": [agency.pk]})
    assert response.json()["muted_agencies"] == [agency.pk]
    notification = notify(user, agency=agency)
    assert not Delivery.objects.filter(notification=notification).exists()
    assert user.notifications.filter(pk=notification.pk).exists()


def test_logged_out_device_gets_no_push(phone_app: tuple[User, JsonClient]) -> None:
    user, client = phone_app
    assert client.post("/api/v1/logout").status_code == 204
    notify(user)
    assert not Delivery.objects.filter(channel="push").exists()


def test_private_previews_hide_the_text(phone_app: tuple[User, JsonClient]) -> None:
    user, client = phone_app
    client.put("/api/v1/preferences", {"private_previews": True})
    notify(user)
    run_worker_until_idle()
    assert [(p.title, p.body) for p in outbox("push")] == [("Лавлагаа бэлэн", "")]


def test_email_is_used_only_after_its_link_is_opened(
        phone_app: tuple[User, JsonClient]) -> None:
    user, client = phone_app
    response = client.put("/api/v1/preferences", {
        "email": "bat@example.mn", "channels": {"service_request": {"email": True}}})
    assert response.json()["email_verified"] is False
    notify(user)
    assert not Delivery.objects.filter(channel="email").exists()

    link = outbox("email")[0].body.split(": ")[-1]
    assert JsonClient().get(link.removeprefix("http://127.0.0.1:8000")).status_code == 200
    assert client.get("/api/v1/preferences").json()["email_verified"] is True
    notify(user)
    run_worker_until_idle()
    assert [m.address for m in outbox("email")][-1] == "bat@example.mn"
    bad = client.put("/api/v1/preferences", {"email": "not an address"})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_input")


@pytest.mark.django_db(transaction=True)
def test_two_workers_send_each_delivery_exactly_once(make_citizen: Any, make_token: Any) -> None:
    users = [make_citizen() for _ in range(20)]
    for i, user in enumerate(users):
        JsonClient(make_token(user)).post("/api/v1/devices", {
            "token": f"fcm-token-{i:04d}-abcdef", "platform": "android"})
    for user in users:
        for _ in range(5):
            notify(user)
    errors: list[BaseException] = []

    def work(worker_id: str) -> None:
        try:
            run_worker_until_idle(worker_id)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert Delivery.objects.filter(status="sent").count() == 100
    assert len(outbox("push")) == 100


@pytest.mark.django_db(transaction=True)  # the POST is stored from the thread pool
def test_delivery_status_shows_to_the_agency_and_on_the_inbox_item(
        phone_app: tuple[User, JsonClient], agency_client: JsonClient) -> None:
    user, client = phone_app
    response = agency_client.post("/api/agency/v1/notifications", {
        "register_number": user.register_number, "category": "service_request",
        "title": "Лавлагаа бэлэн", "body": "Таны лавлагаа бэлэн боллоо."})
    assert response.status_code == 202, response.content
    notification_id = response.json()["id"]
    status_url = f"/api/agency/v1/notifications/{notification_id}"
    channels = {c["channel"]: c for c in agency_client.get(status_url).json()["channels"]}
    assert channels["push"]["status"] == "pending" and channels["push"]["attempts"] == []

    run_worker_until_idle()

    push = {c["channel"]: c for c in agency_client.get(status_url).json()["channels"]}["push"]
    assert push["status"] == "sent" and push["sent_at"]
    assert [a["status"] for a in push["attempts"]] == ["sent"]
    assert "fcm-token" not in str(push)  # the citizen's addresses stay private
    item = client.get("/api/v1/inbox").json()["items"][0]
    assert [(d["channel"], d["status"]) for d in item["deliveries"]] == [("push", "sent")]


@pytest.fixture
def fcm_configured(fcm_server: Any, settings: Any) -> Any:
    from notify.senders.registry import sender_for

    settings.SONOR_FCM_CREDENTIALS = str(fcm_server.credentials_path)
    settings.SONOR_FCM_URL = fcm_server.send_url
    sender_for.cache_clear()
    yield fcm_server
    sender_for.cache_clear()


def test_a_dead_fcm_token_removes_the_device_and_quota_errors_retry_later(
        fcm_configured: Any, make_citizen: Any, make_token: Any) -> None:
    from notify.models import Device

    user = make_citizen()
    for token in ("fcm-token-gone-000001", "fcm-token-busy-000002"):  # two phones
        JsonClient(make_token(user)).post("/api/v1/devices",
                                          {"token": token, "platform": "android"})
    fcm_configured.fail("fcm-token-gone-000001", "UNREGISTERED")
    fcm_configured.fail("fcm-token-busy-000002", "QUOTA_EXCEEDED", retry_after="120", times=1)
    notification = notify(user)
    run_worker_until_idle()

    gone = Delivery.objects.get(notification=notification, address="fcm-token-gone-000001")
    busy = Delivery.objects.get(notification=notification, address="fcm-token-busy-000002")
    assert gone.status == "invalid"
    assert not Device.objects.filter(token="fcm-token-gone-000001").exists()
    assert (busy.status, busy.attempts) == ("pending", 1)
    assert busy.next_attempt_at > timezone.now() + timedelta(seconds=100)
    assert DeliveryAttempt.objects.get(delivery=busy).status == "retry"

    Delivery.objects.filter(pk=busy.pk).update(next_attempt_at=timezone.now())
    run_worker_until_idle()
    busy.refresh_from_db()
    assert (busy.status, busy.attempts) == ("sent", 2)
    assert fcm_configured.accepted_tokens() == {"fcm-token-busy-000002": 1}
