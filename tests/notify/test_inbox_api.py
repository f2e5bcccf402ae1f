"""The citizen's inbox over REST: cursor pages, filters, read, archive, report misaddressed,
live unread counts, and the data export."""

from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chatserver.core import protocol
from identity.models import DeviceSession, User
from identity.services import access_log_record, token_hash
from notify.agency_sends import agency_notification_send
from notify.inbox import notification_create
from notify.models import Agency, Notification
from tests.conftest import JsonClient

pytestmark = pytest.mark.django_db

Maker = Callable[..., Any]


def agency_sends(agency: Agency, user: User, n: int, **fields: Any) -> Notification:
    values: dict[str, Any] = {"category": "service_request", "title": f"Мэдэгдэл {n}",
                              "body": "Таны хүсэлтийг шийдвэрлэлээ.", "reference": f"R-{n}"}
    values.update(fields)
    notification, _ = agency_notification_send(agency=agency,
                                               register_number=user.register_number, **values)
    return notification


@pytest.fixture
def inbox_of_five(citizen: User, make_agency: Maker) -> dict[str, Any]:
    """Five notifications: seqs 1-5, two agencies, one payment, one security notice."""
    tax, _ = make_agency("Татвар")
    police, _ = make_agency("Цагдаа")
    rows = [
        agency_sends(tax, citizen, 1),
        agency_sends(police, citizen, 2, category="complaint"),
        agency_sends(tax, citizen, 3, category="payment", amount_mnt=9000,
                     due_date="2026-12-01"),
        notification_create(user=citizen, category="security", title="Шинэ нэвтрэлт",
                            body="Таны бүртгэлд шинэ төхөөрөмжөөс нэвтэрлээ."),
        agency_sends(police, citizen, 5),
    ]
    return {"rows": rows, "tax": tax, "police": police}


def ids(page: dict[str, Any]) -> list[int]:
    return [item["id"] for item in page["items"]]


def test_pages_newest_first_with_an_opaque_cursor(api_client: JsonClient,
                                                  inbox_of_five: dict[str, Any]) -> None:
    rows = inbox_of_five["rows"]
    first = api_client.get("/api/v1/inbox?limit=2").json()
    assert [item["seq"] for item in first["items"]] == [5, 4]
    assert first["unread"] == 5
    cursor = first["next_cursor"]
    assert cursor and not cursor.isdigit()
    second = api_client.get(f"/api/v1/inbox?limit=2&cursor={cursor}").json()
    assert [item["seq"] for item in second["items"]] == [3, 2]
    third = api_client.get(f"/api/v1/inbox?limit=2&cursor={second['next_cursor']}").json()
    assert ids(third) == [rows[0].pk]
    assert third["next_cursor"] is None

    # A notification that arrives meanwhile does not shift the older pages.
    agency_sends(inbox_of_five["tax"], rows[0].user, 6)
    again = api_client.get(f"/api/v1/inbox?limit=2&cursor={cursor}").json()
    assert [item["seq"] for item in again["items"]] == [3, 2]

    payment = second["items"][0]
    assert (payment["category"], payment["amount_mnt"], payment["due_date"]) == (
        "payment", 9000, "2026-12-01")
    assert payment["agency"] == {"id": inbox_of_five["tax"].pk, "name": "Татвар"}


def test_filters_by_category_unread_and_agency(api_client: JsonClient,
                                               inbox_of_five: dict[str, Any]) -> None:
    rows = inbox_of_five["rows"]
    assert ids(api_client.get("/api/v1/inbox?category=complaint").json()) == [rows[1].pk]
    police = inbox_of_five["police"].pk
    assert ids(api_client.get(f"/api/v1/inbox?agency={police}").json()) == [rows[4].pk,
                                                                           rows[1].pk]
    api_client.post("/api/v1/inbox/read", {"ids": [rows[4].pk, rows[0].pk]})
    assert ids(api_client.get("/api/v1/inbox?unread=true").json()) == [
        rows[3].pk, rows[2].pk, rows[1].pk]
    assert ids(api_client.get("/api/v1/inbox?unread=false").json()) == [rows[4].pk, rows[0].pk]


@pytest.mark.parametrize("query, status, code", [
    ("cursor=not-a-cursor", 400, "invalid_cursor"),
    ("cursor=aW5ib3g6eA", 400, "invalid_cursor"),  # "inbox:x"
    ("limit=0", 422, "invalid_input"),
    ("limit=101", 422, "invalid_input"),
    ("category=news", 422, "invalid_input"),
])
def test_bad_queries_are_refused(api_client: JsonClient, query: str, status: int,
                                 code: str) -> None:
    response = api_client.get(f"/api/v1/inbox?{query}")
    assert response.status_code == status
    assert response.json()["code"] == code


def test_inbox_needs_a_session(inbox_of_five: dict[str, Any]) -> None:
    response = JsonClient().get("/api/v1/inbox")
    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")


def test_read_by_ids_or_all(api_client: JsonClient, inbox_of_five: dict[str, Any],
                            make_citizen: Maker) -> None:
    rows = inbox_of_five["rows"]
    stranger = notification_create(user=make_citizen(), category="system", title="Засвар",
                                   body="Системийн засвар.")
    response = api_client.post("/api/v1/inbox/read", {"ids": [rows[0].pk, stranger.pk]})
    assert response.json() == {"updated": 1, "unread": 4}
    stranger.refresh_from_db()
    assert stranger.read_at is None  # someone else's notification is untouched
    assert api_client.post("/api/v1/inbox/read", {"ids": [rows[0].pk]}).json() == {
        "updated": 0, "unread": 4}
    assert api_client.post("/api/v1/inbox/read", {"all": True}).json() == {
        "updated": 4, "unread": 0}


@pytest.mark.parametrize("body", [{}, {"ids": []}, {"ids": [1], "all": True},
                                  {"all": False}, {"ids": list(range(501))}])
def test_read_needs_ids_or_all(api_client: JsonClient, body: dict[str, Any]) -> None:
    response = api_client.post("/api/v1/inbox/read", body)
    assert (response.status_code, response.json()["code"]) == (422, "invalid_input")


def test_archive_moves_it_out_of_the_inbox(api_client: JsonClient,
                                           inbox_of_five: dict[str, Any]) -> None:
    rows = inbox_of_five["rows"]
    response = api_client.post(f"/api/v1/inbox/{rows[2].pk}/archive")
    assert response.status_code == 200
    assert response.json()["archived_at"]
    page = api_client.get("/api/v1/inbox").json()
    assert rows[2].pk not in ids(page)
    assert page["unread"] == 4
    assert ids(api_client.get("/api/v1/inbox?archived=true").json()) == [rows[2].pk]
    # Archiving twice is harmless.
    assert api_client.post(f"/api/v1/inbox/{rows[2].pk}/archive").status_code == 200


def test_only_ones_own_notification_can_be_archived_or_reported(
        api_client: JsonClient, make_citizen: Maker) -> None:
    other = notification_create(user=make_citizen(), category="system", title="Засвар",
                                body="Системийн засвар.")
    for path, body in [(f"/api/v1/inbox/{other.pk}/archive", None),
                       (f"/api/v1/inbox/{other.pk}/report", {"reason": "Миний биш"}),
                       ("/api/v1/inbox/999999/archive", None)]:
        response = api_client.post(path, body)
        assert response.status_code == 404, path
        assert response.json()["code"] == "notification_not_found"
    other.refresh_from_db()
    assert other.archived_at is None and other.reported_at is None


def test_report_hides_it_and_records_it_for_the_agency(api_client: JsonClient,
                                                       inbox_of_five: dict[str, Any]) -> None:
    rows = inbox_of_five["rows"]
    response = api_client.post(f"/api/v1/inbox/{rows[1].pk}/report",
                               {"reason": "Энэ гомдлыг би гаргаагүй, өөр хүнийх"})
    assert response.status_code == 200
    assert response.json()["unread"] == 4
    page = api_client.get("/api/v1/inbox").json()
    assert rows[1].pk not in ids(page)
    assert page["unread"] == 4
    assert rows[1].pk not in ids(api_client.get("/api/v1/inbox?archived=true").json())
    # Reported once: it is gone from the reporter's view.
    again = api_client.post(f"/api/v1/inbox/{rows[1].pk}/report", {"reason": "дахин"})
    assert again.status_code == 404
    # Kept for the agency and for staff.
    reported = Notification.objects.get(pk=rows[1].pk)
    assert reported.reported_at is not None
    assert reported.report_reason == "Энэ гомдлыг би гаргаагүй, өөр хүнийх"
    assert Notification.objects.filter(agency=inbox_of_five["police"],
                                       reported_at__isnull=False).count() == 1


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "ш" * 501}])
def test_report_needs_a_reason(api_client: JsonClient, inbox_of_five: dict[str, Any],
                               body: dict[str, Any]) -> None:
    response = api_client.post(f"/api/v1/inbox/{inbox_of_five['rows'][0].pk}/report", body)
    assert (response.status_code, response.json()["code"]) == (422, "invalid_input")


@pytest.mark.django_db(transaction=True)
async def test_read_archive_and_report_push_the_unread_count_to_every_device(
        ws_connect: Maker, make_citizen: Maker, make_token: Maker) -> None:
    citizen = await database_sync_to_async(make_citizen)()
    rows = [await database_sync_to_async(notification_create)(
        user=citizen, category="service_request", title=f"Мэдэгдэл {n}", body="Бэлэн боллоо.")
        for n in range(3)]
    phone_token = await database_sync_to_async(make_token)(citizen)
    tablet = await ws_connect(await database_sync_to_async(make_token)(citizen), ready=True)
    phone = JsonClient(phone_token)

    for path, body, count in [("/api/v1/inbox/read", {"ids": [rows[0].pk]}, 2),
                              (f"/api/v1/inbox/{rows[1].pk}/archive", None, 1),
                              (f"/api/v1/inbox/{rows[2].pk}/report", {"reason": "Миний биш"},
                               0)]:
        response = await database_sync_to_async(phone.post)(path, body)
        assert response.status_code == 200
        assert await tablet.receive_frame() == protocol.NotifyUnread(count=count)


def test_export_holds_the_users_own_data_without_secrets(
        citizen: User, session_token: str, make_citizen: Maker,
        inbox_of_five: dict[str, Any]) -> None:
    other = make_citizen(name="Өөр иргэн")
    notification_create(user=other, category="system", title="Бусдын мэдэгдэл", body="Бусад.")
    access_log_record(subject=citizen, actor_kind="agency", actor_name="Татвар",
                      action="read delivery status of notification 1")
    response = JsonClient(session_token).get("/api/v1/export")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith('attachment; filename="sonor-export-')
    text = response.content.decode()
    data = response.json()

    assert data["profile"]["register_number"] == citizen.register_number
    assert [p["phone"] for p in data["phones"]] == [citizen.phones.get().e164]
    [session] = data["sessions"]
    assert session["id"] == DeviceSession.objects.get(user=citizen).pk
    assert "token_hash" not in session
    assert token_hash(session_token) not in text and session_token not in text
    assert [n["seq"] for n in data["inbox"]] == [1, 2, 3, 4, 5]
    assert data["inbox"][2]["amount_mnt"] == 9000
    assert data["access_log"][0]["actor_name"] == "Татвар"
    assert "Бусдын мэдэгдэл" not in text and other.register_number not in text


def test_other_packages_add_their_part_to_the_export(citizen: User, session_token: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from notify import selectors

    monkeypatch.setattr(selectors, "EXPORT_SECTIONS", dict(selectors.EXPORT_SECTIONS))
    selectors.export_section_register(
        "preferences", lambda user: {"register_number": user.register_number, "sms": False})
    data = JsonClient(session_token).get("/api/v1/export").json()
    assert data["preferences"] == {"register_number": citizen.register_number, "sms": False}
