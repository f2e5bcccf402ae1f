"""SMS through the pipeline to a local SMSC speaking SMPP: sent, receipts update the
delivery, and an agency's daily budget of parts holds the rest until tomorrow."""

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from identity.models import User
from notify import preferences
from notify.delivery import deliveries_process
from notify.inbox import notification_create
from notify.models import Agency, Delivery
from notify.senders.registry import sender_for
from tests.fakes.smsc import FakeSmsc

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def smpp_configured(smsc: FakeSmsc, settings: Any) -> Iterator[FakeSmsc]:
    settings.SONOR_SMPP_URL = smsc.url()
    sender_for.cache_clear()
    yield smsc
    sender = sender_for("sms")
    sender_for.cache_clear()
    sender.close()  # type: ignore[attr-defined]


@pytest.fixture
def sms_citizen(citizen: User) -> User:
    for category in ("service_request", "payment"):
        preferences.preference_set(user=citizen, category=category, channel="sms",
                                   enabled=True)
    return citizen


def wait_until(predicate: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_sms_is_sent_over_smpp_and_the_receipt_marks_it_delivered(
        smpp_configured: FakeSmsc, sms_citizen: User) -> None:
    notification = notification_create(user=sms_citizen, category="service_request",
                                        title="Лавлагаа", body="Таны лавлагаа бэлэн боллоо.")
    while deliveries_process(worker_id="w1"):
        pass
    number = sms_citizen.phones.get().e164.lstrip("+")
    [received] = smpp_configured.messages_to(number)
    assert received.text == "Таны лавлагаа бэлэн боллоо."
    delivery = Delivery.objects.get(notification=notification, channel="sms")
    assert (delivery.status, delivery.parts) == ("sent", 1)

    smpp_configured.send_receipt(delivery.provider_id, "DELIVRD")
    assert wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == "delivered")
    assert Delivery.objects.get(pk=delivery.pk).receipt_at is not None


def test_an_agency_past_its_daily_sms_budget_waits_for_tomorrow(
        smpp_configured: FakeSmsc, sms_citizen: User) -> None:
    agency = Agency.objects.create(name="Төлбөрийн газар", sms_daily_budget_parts=2)
    for n in range(3):  # one UCS-2 part each
        notification_create(user=sms_citizen, category="service_request", agency=agency,
                            title="Төлбөр", body=f"Төлбөрийн мэдэгдэл {n}")
    while deliveries_process(worker_id="w1"):
        pass
    number = sms_citizen.phones.get().e164.lstrip("+")
    assert len(smpp_configured.messages_to(number)) == 2
    held = Delivery.objects.get(channel="sms", status="pending")
    assert held.last_error == "the agency's daily SMS budget is used up"
    local_next = timezone.localtime(held.next_attempt_at)
    assert (local_next.hour, local_next.minute) == (0, 0)
    assert local_next.date() > timezone.localdate()
