"""Idempotency-Key on POST /api/agency/v1/notifications: a retry returns the first result,
also when the duplicates arrive at the same moment (real threads, real connections)."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from identity.models import User
from notify.agency_sends import AgencySend, agency_notifications_send_batch
from notify.models import Agency, Notification
from notify.selectors import inbox_seq
from tests.conftest import JsonClient
from tests.notify.helpers import notification_body, send

Maker = Callable[..., Any]


@pytest.mark.django_db(transaction=True)
def test_a_retry_returns_the_first_result(agency_client: JsonClient, citizen: User) -> None:
    first = send(agency_client, citizen.register_number, key="req-42-done")
    retry = send(agency_client, citizen.register_number, key="req-42-done")
    assert (first.status_code, retry.status_code) == (202, 202)
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Notification.objects.count() == 1
    assert inbox_seq(user=citizen) == 1


@pytest.mark.django_db(transaction=True)
def test_a_reused_key_with_a_different_body_is_409(agency_client: JsonClient,
                                                   citizen: User, make_citizen: Maker) -> None:
    first = send(agency_client, citizen.register_number, key="k-1").json()
    other = make_citizen().register_number
    for register, changed in [(citizen.register_number, {"title": "Өөр гарчиг"}),
                              (citizen.register_number, {"reference": "REQ-43"}),
                              (other, {})]:
        response = send(agency_client, register, key="k-1", **changed)
        assert response.status_code == 409, changed
        assert response.json()["code"] == "idempotency_key_reused"
        assert response.json()["extra"]["notification_id"] == first["id"]
    assert Notification.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_same_meaning_in_another_spelling_is_a_retry(agency_client: JsonClient,
                                                     citizen: User) -> None:
    first = send(agency_client, citizen.register_number, key="k-2").json()
    retry = send(agency_client, f" {citizen.register_number.lower()} ", key="k-2",
                 title="  Таны лавлагаа бэлэн боллоо ")
    assert (retry.status_code, retry.json()["id"]) == (202, first["id"])


@pytest.mark.django_db(transaction=True)
def test_keys_belong_to_one_agency(make_agency: Maker, citizen: User) -> None:
    a = send(JsonClient(make_agency()[1]), citizen.register_number, key="same").json()
    b = send(JsonClient(make_agency()[1]), citizen.register_number, key="same").json()
    assert a["id"] != b["id"]
    assert [n.seq for n in Notification.objects.order_by("seq")] == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_an_error_does_not_use_up_the_key(agency_client: JsonClient, citizen: User) -> None:
    refused = send(agency_client, citizen.register_number, key="k-3", link="http://x.mn")
    assert refused.status_code == 422
    accepted = send(agency_client, citizen.register_number, key="k-3")
    assert accepted.status_code == 202


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("key", ["", "x" * 201, "with space", "tab\tkey"])
def test_a_malformed_key_is_refused(agency_client: JsonClient, citizen: User,
                                    key: str) -> None:
    response = agency_client.post("/api/agency/v1/notifications",
                                  notification_body(citizen.register_number),
                                  headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.json()["extra"]["field"] == "Idempotency-Key"
    assert not Notification.objects.exists()


def _concurrently(count: int, request: Callable[[int], Any]) -> list[Any]:
    """Run request(i) in `count` threads released together; each closes its connection."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = request(i)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_duplicates_store_one_notification(
        agency_key: tuple[Agency, str], citizen: User) -> None:
    _, key = agency_key
    responses = _concurrently(10, lambda i: send(JsonClient(key), citizen.register_number,
                                                 key="payment-2026-0042"))
    assert [r.status_code for r in responses] == [202] * 10, [r.content for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.has_header("Idempotent-Replayed") for r in responses) == 9
    assert Notification.objects.count() == 1
    # The losers' seqs were rolled back with them: the stream has no gap.
    assert inbox_seq(user=citizen) == 1
    assert Notification.objects.get().seq == 1


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_different_keys_get_gap_free_seqs(
        agency_key: tuple[Agency, str], citizen: User) -> None:
    _, key = agency_key
    responses = _concurrently(10, lambda i: send(JsonClient(key), citizen.register_number,
                                                 key=f"k-{i}", reference=f"R-{i}"))
    assert [r.status_code for r in responses] == [202] * 10
    assert sorted(Notification.objects.values_list("seq", flat=True)) == list(range(1, 11))
    assert inbox_seq(user=citizen) == 10


@pytest.mark.django_db(transaction=True)
def test_a_retry_is_found_through_the_key_index_not_by_reading_the_agencys_notices(
        agency_key: tuple[Agency, str], citizen: User) -> None:
    """The retry's lookup must stay one index probe however many notices the agency has
    sent: the unique index on (agency, key) is partial, and SQLite uses it only for a query
    that states its condition (before, it read every notice of the agency)."""
    agency, _ = agency_key
    request = AgencySend(agency=agency, register_number=citizen.register_number,
                         category="service_request", title="Лавлагаа", body="Бэлэн боллоо",
                         idempotency_key="req-7")
    [(first, replayed)] = agency_notifications_send_batch([request])  # type: ignore[misc]
    assert not replayed
    with CaptureQueriesContext(connection) as queries:
        [(again, replayed)] = agency_notifications_send_batch([request])  # type: ignore[misc]
    assert (again.pk, replayed) == (first.pk, True)
    lookups = [q["sql"] for q in queries.captured_queries  # the reads by key
               if "idempotency_key" in q["sql"].partition(" WHERE ")[2]
               and q["sql"].lstrip().startswith("SELECT")]
    assert lookups, "the retry was answered without reading the key"
    explain = "EXPLAIN" if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # a tiny table: ask for an index if one serves
            cursor.execute("SET enable_seqscan = off")
        try:
            for sql in lookups:
                cursor.execute(f"{explain} {sql}")
                plan = " ".join(str(column) for row in cursor.fetchall() for column in row)
                assert "notification_idempotency_unique" in plan, plan
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("RESET enable_seqscan")
