"""A number that passes to a new owner carries none of the old owner's waiting SMS, and a
closed account gets nothing more on any channel; the ledger says why."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from identity.accounts import account_close
from identity.models import User
from identity.services import _phone_bind, session_create
from notify import preferences
from notify.delivery import deliveries_process
from notify.inbox import notification_create
from notify.models import Delivery, DevOutboxMessage, Notification, NotifySettings

pytestmark = pytest.mark.django_db

NUMBER = "+97688112233"


def run_worker_until_idle() -> None:
    while deliveries_process(worker_id="w1"):
        pass


def sms_to(number: str) -> list[str]:
    return list(DevOutboxMessage.objects.filter(sender_kind="sms", address=number)
                .values_list("body", flat=True))


def bind(user: User, e164: str) -> None:
    with transaction.atomic():
        _phone_bind(user=user, e164=e164, now=timezone.now())


@pytest.fixture
def old_owner(make_citizen: Any) -> User:
    user = make_citizen(phone=NUMBER)
    preferences.preference_set(user=user, category="payment", channel="sms", enabled=True)
    return user


def payment_notice(user: User) -> Notification:
    return notification_create(user=user, category="payment", title="Төлбөр",
                               body="Таны төлбөрийн хугацаа маргааш дуусна.")


def escalation_due() -> None:
    """Time passes: the escalation SMS is due."""
    Delivery.objects.filter(channel="sms").update(next_attempt_at=timezone.now())


def test_a_number_that_moves_to_another_citizen_gets_none_of_the_old_owners_sms(
        old_owner: User, make_citizen: Any) -> None:
    payment_notice(old_owner)
    sms = Delivery.objects.get(channel="sms")
    assert (sms.address, sms.status, sms.escalation) == (NUMBER, "pending", True)

    bind(make_citizen(), NUMBER)  # the operator gave the number to someone else

    sms.refresh_from_db()
    assert (sms.status, sms.last_error) == ("cancelled", "cancelled: number_changed_hands")
    escalation_due()
    run_worker_until_idle()
    assert sms_to(NUMBER) == []


def test_a_replaced_number_gets_none_of_the_waiting_sms(old_owner: User) -> None:
    payment_notice(old_owner)
    bind(old_owner, "+97699887766")  # the citizen moved to a new number

    sms = Delivery.objects.get(channel="sms")
    assert (sms.status, sms.last_error) == ("cancelled", "cancelled: number_replaced")
    escalation_due()
    run_worker_until_idle()
    assert sms_to(NUMBER) == []


def test_an_sms_a_dead_worker_held_when_the_number_moved_is_not_sent(
        old_owner: User, make_citizen: Any) -> None:
    payment_notice(old_owner)
    # A worker leased it, then died; its lease runs out after the number moved.
    Delivery.objects.filter(channel="sms").update(
        status="sending", leased_by="dead-worker", lease_until=timezone.now() + timedelta(60))
    bind(make_citizen(), NUMBER)
    Delivery.objects.filter(channel="sms").update(lease_until=timezone.now())

    run_worker_until_idle()

    sms = Delivery.objects.get(channel="sms")
    assert (sms.status, sms.last_error) == ("cancelled", "cancelled: number_changed_hands")
    assert sms_to(NUMBER) == []


def test_a_closed_account_gets_no_push_sms_or_email(old_owner: User) -> None:
    session, _ = session_create(user=old_owner, login_method="test", device_name="Pixel")
    preferences.device_register(session=session, token="fcm-token-closing", platform="android")
    NotifySettings.objects.create(user=old_owner, email="bat@example.mn",
                                  email_verified_at=timezone.now())
    preferences.preference_set(user=old_owner, category="payment", channel="email",
                               enabled=True)
    payment_notice(old_owner)
    assert sorted(Delivery.objects.values_list("channel", flat=True)) == ["email", "push", "sms"]
    Delivery.objects.update(next_attempt_at=timezone.now() + timedelta(minutes=5))

    account_close(user=old_owner)

    assert set(Delivery.objects.values_list("status", "last_error")) == {
        ("cancelled", "cancelled: account_closed")}
    Delivery.objects.update(next_attempt_at=timezone.now())
    run_worker_until_idle()
    assert not DevOutboxMessage.objects.exists()


def test_a_closed_accounts_leased_delivery_is_not_sent(old_owner: User) -> None:
    payment_notice(old_owner)
    Delivery.objects.update(status="sending", leased_by="dead-worker",
                            lease_until=timezone.now() - timedelta(seconds=1))
    account_close(user=old_owner)
    escalation_due()
    run_worker_until_idle()
    assert Delivery.objects.get().last_error == "cancelled: account_closed"
    assert not DevOutboxMessage.objects.exists()
