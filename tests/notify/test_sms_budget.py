"""An agency's daily SMS budget is never overspent, not even by workers racing for it: what
does not fit waits for the next local day, and an SMS that did not go gives its parts back."""

import threading
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from identity.models import User
from notify import preferences
from notify.delivery import deliveries_process
from notify.inbox import notification_create
from notify.models import Agency, Delivery, DevOutboxMessage, SmsBudgetDay

BODY = "Төлбөрийн мэдэгдэл"  # one UCS-2 part


def sms_citizens(make_citizen: Any, count: int) -> list[User]:
    users = [make_citizen(phone=f"+976881{n:05d}") for n in range(count)]
    for user in users:
        preferences.preference_set(user=user, category="service_request", channel="sms",
                                   enabled=True)
    return users


def notify_all(users: list[User], agency: Agency) -> None:
    for user in users:
        notification_create(user=user, category="service_request", agency=agency,
                            title="Төлбөр", body=BODY)


def sent_parts() -> int:
    return sum(Delivery.objects.filter(channel="sms", status="sent")
               .values_list("parts", flat=True))


def assert_the_rest_waits_for_tomorrow(expected: int) -> None:
    held = Delivery.objects.filter(channel="sms", status="pending")
    assert held.count() == expected
    for delivery in held:
        assert delivery.last_error == "the agency's daily SMS budget is used up"
        local_next = timezone.localtime(delivery.next_attempt_at)
        assert (local_next.hour, local_next.minute) == (0, 0)
        assert local_next.date() > timezone.localdate()


@pytest.mark.django_db
def test_one_worker_sends_up_to_the_budget_and_holds_the_rest(make_citizen: Any) -> None:
    agency = Agency.objects.create(name="Татварын газар", sms_daily_budget_parts=3)
    notify_all(sms_citizens(make_citizen, 5), agency)
    while deliveries_process(worker_id="w1", batch_size=1):
        pass
    assert sent_parts() == 3
    assert DevOutboxMessage.objects.filter(sender_kind="sms").count() == 3
    assert_the_rest_waits_for_tomorrow(2)
    assert SmsBudgetDay.objects.get(agency=agency).parts == 3


@pytest.mark.django_db
def test_an_sms_that_did_not_go_gives_its_parts_back(make_citizen: Any) -> None:
    agency = Agency.objects.create(name="Нийгмийн даатгал", sms_daily_budget_parts=1)
    [user] = sms_citizens(make_citizen, 1)
    notify_all([user], agency)
    delivery = Delivery.objects.get(channel="sms")
    Delivery.objects.filter(pk=delivery.pk).update(expires_at=timezone.now())
    deliveries_process(worker_id="w1")  # expired unsent: no parts taken
    notify_all([user], agency)
    while deliveries_process(worker_id="w1"):
        pass
    assert sent_parts() == 1
    assert SmsBudgetDay.objects.get(agency=agency).parts == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="SQLite runs one writer at a time: workers cannot race there")
def test_racing_workers_never_send_more_parts_than_the_budget(make_citizen: Any) -> None:
    budget, workers = 3, 6
    agency = Agency.objects.create(name="Замын цагдаа", sms_daily_budget_parts=budget)
    notify_all(sms_citizens(make_citizen, 12), agency)
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(worker_id: str) -> None:
        try:
            start.wait()
            while deliveries_process(worker_id=worker_id, batch_size=1):
                pass
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sent_parts() == budget
    assert DevOutboxMessage.objects.filter(sender_kind="sms").count() == budget
    assert_the_rest_waits_for_tomorrow(12 - budget)
