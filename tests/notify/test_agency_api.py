"""The agency API: notify one citizen, read the delivery status, keys, errors, rate limit,
OpenAPI, and the staff admin for agencies and keys."""

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from chatserver.core import protocol
from chatserver.core.errors import InvalidInput
from identity.accounts import account_close
from identity.models import AccessLogEntry, User
from notify.agency_sends import notification_fields_validate
from notify.agency_services import api_key_authenticate, api_key_revoke, api_key_rotate
from notify.models import Agency, AgencyApiKey, Notification
from tests.conftest import JsonClient
from tests.notify.helpers import send

# The agency POST stores from the thread pool, outside the test's transaction.
pytestmark = pytest.mark.django_db(transaction=True)

Maker = Callable[..., Any]


def inbox_of(token: str) -> dict[str, Any]:
    response = JsonClient(token).get("/api/v1/inbox")
    assert response.status_code == 200, response.json()
    return response.json()


# ---- sending -------------------------------------------------------------------------------

def test_notification_lands_in_the_citizens_inbox(agency_client: JsonClient, citizen: User,
                                                  session_token: str) -> None:
    response = send(agency_client, citizen.register_number.lower())  # any letter case
    assert response.status_code == 202, response.json()
    notification_id = response.json()["id"]

    inbox = inbox_of(session_token)
    assert inbox["unread"] == 1
    [item] = inbox["items"]
    assert item["id"] == notification_id
    assert item["seq"] == 1
    assert item["title"] == "Таны лавлагаа бэлэн боллоо"
    assert item["agency"]["name"] == "Улсын бүртгэлийн ерөнхий газар"
    assert item["reference"] == "REQ-42"
    assert item["link"] == "https://e-mongolia.mn/requests/42"
    assert item["read_at"] is None


def test_payment_notice_carries_amount_and_due_date(agency_client: JsonClient, citizen: User,
                                                    session_token: str) -> None:
    response = send(agency_client, citizen.register_number, category="payment",
                    title="Төлбөрийн мэдэгдэл", amount_mnt=25_000, due_date="2026-12-31")
    assert response.status_code == 202, response.json()
    [item] = inbox_of(session_token)["items"]
    assert (item["category"], item["amount_mnt"], item["due_date"]) == (
        "payment", 25_000, "2026-12-31")


@pytest.mark.parametrize("fields", [
    {"category": "chat"},
    {"category": "news"},
    {"title": "т" * 201},
    {"title": "   "},
    {"body": "б" * 4001},
    {"body": ""},
    {"link": "http://e-mongolia.mn/requests/42"},
    {"link": "javascript:alert(1)"},
    {"reference": "R" * 101},
    # Control characters (PostgreSQL refuses NUL; no reader wants the others), and text
    # with nothing visible in it.
    {"title": "Лавлагаа\x00"},
    {"title": "Лавлагаа\nбэлэн"},
    {"title": "\x1fЛавлагаа"},  # a control character that stripping would remove
    {"title": "\u200b"},
    {"body": "Бэлэн\x00 боллоо"},
    {"body": "Бэлэн\x1b[31m боллоо"},
    {"body": "\x85"},
    {"link": "https://e-mongolia.mn/\x00"},
    {"reference": "REQ\x00-42"},
    {"reference": "REQ\r\n42"},
    {"category": "payment"},  # no amount or due date
    {"category": "payment", "amount_mnt": 1000},
    {"category": "payment", "amount_mnt": 0, "due_date": "2026-12-31"},
    {"category": "payment", "amount_mnt": -5, "due_date": "2026-12-31"},
    {"category": "payment", "amount_mnt": 12.5, "due_date": "2026-12-31"},
    {"amount_mnt": 1000, "due_date": "not a date"},
    {"titel": "a typo of a field"},
])
def test_a_bad_field_is_422_and_nothing_is_stored(agency_client: JsonClient, citizen: User,
                                                  fields: dict[str, Any]) -> None:
    response = send(agency_client, citizen.register_number, **fields)
    assert response.status_code == 422, response.json()
    body = response.json()
    assert body["code"] == "invalid_input"
    assert body["message"] and body["extra"]["errors"]
    assert not Notification.objects.exists()


@pytest.mark.parametrize("fields", [
    {"title": "Засвар\x00"}, {"body": "\x00"}, {"link": "https://a.mn/\x7f"},
    {"reference": "\x1c"}])
def test_every_caller_of_the_service_gets_the_same_text_rules(fields: dict[str, str]) -> None:
    # The admin and other callers reach the service without the API's schema.
    text = {"title": "Засвар", "body": "Маргааш засвар хийнэ.", "link": "", "reference": "",
            **fields}
    with pytest.raises(InvalidInput) as refused:
        notification_fields_validate(category="system", title=text["title"],
                                     body=text["body"], link=text["link"],
                                     reference=text["reference"])
    assert refused.value.extra["field"] == next(iter(fields))


def test_newline_and_tab_stay_in_the_body(agency_client: JsonClient, citizen: User,
                                          session_token: str) -> None:
    response = send(agency_client, citizen.register_number,
                    body="  Таны лавлагаа бэлэн боллоо.\n\tХүлээн авах: 3-р давхар  ")
    assert response.status_code == 202, response.json()
    [item] = inbox_of(session_token)["items"]
    assert item["body"] == "Таны лавлагаа бэлэн боллоо.\n\tХүлээн авах: 3-р давхар"


def test_a_body_that_is_not_json_is_invalid_input(agency_client: JsonClient) -> None:
    response = agency_client.client.post(
        "/api/agency/v1/notifications", "{not json", content_type="application/json",
        headers={"Authorization": f"Bearer {agency_client.token}"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"


def test_an_oversized_request_is_413(agency_client: JsonClient, citizen: User,
                                     settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = send(agency_client, citizen.register_number, body="б" * 20_000)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert not Notification.objects.exists()


def test_unknown_or_unreachable_citizen_is_404(agency_client: JsonClient,
                                               make_citizen: Maker) -> None:
    closed = make_citizen()
    account_close(user=closed)
    for register in ["УБ88010112",  # valid, but nobody with it uses the service
                     "1234567",  # an organisation's register
                     closed.register_number]:
        response = send(agency_client, register)
        assert response.status_code == 404, register
        assert response.json()["code"] == "citizen_not_found"
    assert not Notification.objects.exists()


def test_malformed_register_number_is_refused(agency_client: JsonClient) -> None:
    for register in ["УБ990115", "AB99011512", "УБ99131512"]:
        response = send(agency_client, register)
        assert response.status_code == 400, register
        assert response.json()["code"] == "invalid_register_number"
    assert not Notification.objects.exists()


# ---- API keys ------------------------------------------------------------------------------

def test_requests_without_a_live_key_are_401(citizen: User, session_token: str,
                                             agency_key: tuple[Agency, str]) -> None:
    agency, key = agency_key
    for token in [None, "sk_nope", session_token, key + "x"]:
        response = send(JsonClient(token), citizen.register_number)
        assert response.status_code == 401, token
        assert response.json()["code"] == "unauthenticated"
    api_key_revoke(api_key=AgencyApiKey.objects.get(agency=agency))
    response = send(JsonClient(key), citizen.register_number)
    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")
    assert not Notification.objects.exists()


def test_rotation_keeps_the_old_key_for_the_grace_period(citizen: User,
                                                         agency_key: tuple[Agency, str]
                                                         ) -> None:
    agency, old_key = agency_key
    old = AgencyApiKey.objects.get(agency=agency)
    new_key = api_key_rotate(api_key=old)
    assert new_key != old_key
    old.refresh_from_db()
    assert old.expires_at is not None
    assert abs(old.expires_at - (timezone.now() + timedelta(hours=24))) < timedelta(minutes=1)
    for key in (old_key, new_key):
        assert send(JsonClient(key), citizen.register_number,
                    reference=key[:11]).status_code == 202

    # Rotating again ends the first key's grace at once when the grace is over.
    newer_key = api_key_rotate(api_key=AgencyApiKey.objects.get(key_hash__isnull=False,
                                                                prefix=new_key[3:11]),
                               grace=timedelta(0))
    assert send(JsonClient(new_key), citizen.register_number).status_code == 401
    assert send(JsonClient(newer_key), citizen.register_number,
                reference="newer").status_code == 202
    assert api_key_authenticate(key=old_key) == agency  # its own grace still runs


def test_grace_period_comes_from_settings(agency_key: tuple[Agency, str],
                                          settings: Any) -> None:
    settings.SONOR_API_KEY_ROTATION_GRACE_HOURS = 0
    agency, old_key = agency_key
    new_key = api_key_rotate(api_key=AgencyApiKey.objects.get(agency=agency))
    response = JsonClient(old_key).get("/api/agency/v1/notifications/1")
    assert response.status_code == 401
    assert JsonClient(new_key).get("/api/agency/v1/notifications/1").status_code == 404


def test_a_key_sees_only_its_own_agency(make_agency: Maker, citizen: User) -> None:
    _, key_a = make_agency()
    _, key_b = make_agency()
    sent = send(JsonClient(key_a), citizen.register_number).json()
    response = JsonClient(key_b).get(f"/api/agency/v1/notifications/{sent['id']}")
    assert response.status_code == 404
    assert response.json()["code"] == "notification_not_found"
    assert not AccessLogEntry.objects.exists()


# ---- delivery status -----------------------------------------------------------------------

def test_delivery_status_follows_read_archive_and_each_read_is_access_logged(
        agency_client: JsonClient, citizen: User, session_token: str) -> None:
    notification_id = send(agency_client, citizen.register_number).json()["id"]
    path = f"/api/agency/v1/notifications/{notification_id}"

    status = agency_client.get(path)
    assert status.status_code == 200
    body = status.json()
    assert (body["id"], body["reference"], body["reported"]) == (notification_id, "REQ-42",
                                                                 False)
    [inbox] = body["channels"]
    assert inbox["channel"] == "inbox"
    assert inbox["status"] == "stored"
    assert inbox["stored_at"] and inbox["read_at"] is None
    assert inbox["attempts"] == [{"at": inbox["stored_at"], "status": "stored", "detail": ""}]

    citizen_client = JsonClient(session_token)
    citizen_client.post("/api/v1/inbox/read", {"ids": [notification_id]})
    inbox = agency_client.get(path).json()["channels"][0]
    assert inbox["status"] == "read" and inbox["read_at"]

    citizen_client.post(f"/api/v1/inbox/{notification_id}/archive")
    inbox = agency_client.get(path).json()["channels"][0]
    assert inbox["status"] == "archived" and inbox["archived_at"]

    log = citizen_client.get("/api/v1/access-log").json()
    assert [e["action"] for e in log] == [
        f"read delivery status of notification {notification_id}"] * 3
    assert {(e["actor_kind"], e["actor_name"]) for e in log} == {
        ("agency", "Улсын бүртгэлийн ерөнхий газар")}


def test_a_misaddressed_report_shows_in_the_delivery_status(
        agency_client: JsonClient, citizen: User, session_token: str) -> None:
    notification_id = send(agency_client, citizen.register_number).json()["id"]
    response = JsonClient(session_token).post(f"/api/v1/inbox/{notification_id}/report",
                                              {"reason": "Би энэ хүсэлтийг гаргаагүй"})
    assert response.status_code == 200
    body = agency_client.get(f"/api/agency/v1/notifications/{notification_id}").json()
    assert body["reported"] is True
    inbox = body["channels"][0]
    assert inbox["status"] == "reported"
    assert inbox["reported_at"]
    assert inbox["report_reason"] == "Би энэ хүсэлтийг гаргаагүй"


# ---- rate limit ----------------------------------------------------------------------------

def test_each_agency_has_its_own_rate_limit(make_agency: Maker, citizen: User,
                                            settings: Any) -> None:
    settings.SONOR_AGENCY_RATE_PER_MINUTE = 3
    _, key_a = make_agency()
    _, key_b = make_agency()
    client_a = JsonClient(key_a)
    for n in range(3):
        assert send(client_a, citizen.register_number, reference=f"R{n}").status_code == 202
    refused = send(client_a, citizen.register_number, reference="R3")
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 0 < refused.json()["extra"]["retry_after"] <= 60
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert Notification.objects.count() == 3
    # Another agency is not slowed by the first one.
    assert send(JsonClient(key_b), citizen.register_number).status_code == 202


# ---- live ----------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_every_device_gets_notify_new_and_unread_live(
        ws_connect: Maker, make_citizen: Maker, make_token: Maker,
        make_agency: Maker) -> None:
    citizen = await database_sync_to_async(make_citizen)()
    phone = await ws_connect(await database_sync_to_async(make_token)(citizen), ready=True)
    tablet = await ws_connect(await database_sync_to_async(make_token)(citizen), ready=True)
    _, key = await database_sync_to_async(make_agency)()

    response = await database_sync_to_async(send)(JsonClient(key), citizen.register_number)
    assert response.status_code == 202
    for socket in (phone, tablet):
        new = await socket.receive_frame()
        assert isinstance(new, protocol.NotifyNew)
        assert (new.id, new.seq, new.title) == (response.json()["id"], 1,
                                                "Таны лавлагаа бэлэн боллоо")
        assert await socket.receive_frame() == protocol.NotifyUnread(count=1)


# ---- OpenAPI -------------------------------------------------------------------------------

def test_openapi_documents_both_apis_and_their_errors() -> None:
    client = Client()
    agency = client.get("/api/agency/v1/openapi.json").json()
    assert set(agency["paths"]) == {
        "/api/agency/v1/notifications", "/api/agency/v1/notifications/{notification_id}",
        "/api/agency/v1/broadcasts", "/api/agency/v1/broadcasts/{broadcast_id}",
        "/api/agency/v1/broadcasts/{broadcast_id}/cancel",
    }
    post = agency["paths"]["/api/agency/v1/notifications"]["post"]
    assert {"202", "404", "409", "422", "429"} <= set(post["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert set(agency["components"]["schemas"]["ErrorOut"]["properties"]) == {
        "code", "message", "extra"}
    assert agency["components"]["securitySchemes"]

    citizen = client.get("/api/v1/openapi.json").json()
    for path in ["/api/v1/inbox", "/api/v1/inbox/read",
                 "/api/v1/inbox/{notification_id}/archive",
                 "/api/v1/inbox/{notification_id}/report", "/api/v1/export"]:
        assert path in citizen["paths"]
    assert client.get("/api/agency/v1/docs").status_code == 200


# ---- staff admin ---------------------------------------------------------------------------

@pytest.fixture
def staff_client(db: None) -> Client:
    staff = User.objects.create_superuser(register_number="УБ70010112", password="x" * 12,
                                          name="Ажилтан")
    client = Client()
    client.force_login(staff)
    return client


def _shown_keys(html: str) -> list[str]:
    return re.findall(r"sk_[A-Za-z0-9]{8}_[A-Za-z0-9_-]+", html)


def test_staff_create_an_agency_in_the_admin_and_see_its_key_once(
        staff_client: Client, citizen: User) -> None:
    form = staff_client.get("/admin/notify/agency/add/").content.decode()
    # Offered checked: every category but security.
    assert re.search(r'value="service_request"[^>]*checked', form)
    assert not re.search(r'value="security"[^>]*checked', form)
    response = staff_client.post("/admin/notify/agency/add/", {
        "name": "Татварын ерөнхий газар", "categories": ["service_request", "payment"],
        "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0",
    })
    assert response.status_code == 200, response.content[:500]
    [key] = _shown_keys(response.content.decode())
    assert "no-store" in response["Cache-Control"]
    agency = Agency.objects.get(name="Татварын ерөнхий газар")
    assert (agency.categories, agency.broadcast_all) == (["service_request", "payment"], False)
    assert api_key_authenticate(key=key) == agency
    assert send(JsonClient(key), citizen.register_number).status_code == 202
    # The change page lists the key by its prefix only.
    page = staff_client.get(f"/admin/notify/agency/{agency.pk}/change/").content.decode()
    assert key[3:11] in page and key not in page


def test_staff_rotate_and_revoke_keys_in_the_admin(staff_client: Client,
                                                   agency_key: tuple[Agency, str]) -> None:
    agency, old_key = agency_key
    old = AgencyApiKey.objects.get(agency=agency)
    response = staff_client.post("/admin/notify/agencyapikey/", {
        "action": "rotate", "_selected_action": [old.pk]})
    [new_key] = _shown_keys(response.content.decode())
    assert api_key_authenticate(key=new_key) == agency
    assert api_key_authenticate(key=old_key) == agency  # grace period

    staff_client.post("/admin/notify/agencyapikey/", {
        "action": "revoke", "_selected_action": [old.pk]})
    assert JsonClient(old_key).get("/api/agency/v1/notifications/1").status_code == 401
    assert api_key_authenticate(key=new_key) == agency


def test_a_staff_read_of_a_notification_is_access_logged(
        staff_client: Client, agency_client: JsonClient, citizen: User,
        session_token: str) -> None:
    notification_id = send(agency_client, citizen.register_number).json()["id"]
    page = staff_client.get(f"/admin/notify/notification/{notification_id}/change/")
    assert page.status_code == 200
    [entry] = JsonClient(session_token).get("/api/v1/access-log").json()
    assert entry["actor_kind"] == "staff"
    assert entry["actor_name"] == "УБ70010112"
    assert entry["action"] == f"read notification {notification_id}"
