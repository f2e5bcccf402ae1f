"""Agency keys carry scopes that staff set. Attacks: an agency key sends a fake security
notice ("your account was logged in; call us"), broadcasts to every citizen, or probes
register numbers to learn who uses the service."""

from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from identity.accounts import account_close, user_suspend
from identity.models import User
from notify.agency_services import api_key_authenticate
from notify.models import Agency, Broadcast, Notification
from tests.conftest import JsonClient
from tests.notify.helpers import send

pytestmark = pytest.mark.django_db
Maker = Callable[..., Any]


def broadcast(client: JsonClient, **fields: Any) -> Any:
    body = {"category": "service_request", "title": "Шинэ үйлчилгээ",
            "body": "Иргэний үнэмлэхийг онлайнаар захиалах боломжтой боллоо.",
            "audience": "all", **fields}
    return client.post("/api/agency/v1/broadcasts", body)


@pytest.mark.django_db(transaction=True)  # the POST is stored from the thread pool
def test_an_agency_cannot_send_security_notices_unless_staff_grant_it(
        agency_client: JsonClient, citizen: User, make_agency: Maker) -> None:
    fake = {"category": "security", "title": "Таны бүртгэлд нэвтэрсэн байна",
            "body": "Та биш бол 7000-0000 дугаарт залгана уу."}
    response = send(agency_client, citizen.register_number, **fake)
    assert response.status_code == 403
    assert response.json()["code"] == "scope_forbidden"
    assert "security" not in response.json()["extra"]["allowed_categories"]
    assert not Notification.objects.exists()

    _, granted = make_agency(categories=["service_request", "security"])
    assert send(JsonClient(granted), citizen.register_number, **fake).status_code == 202


@pytest.mark.django_db(transaction=True)  # the POST is stored from the thread pool
def test_a_category_outside_the_scopes_is_refused_before_any_lookup(
        make_agency: Maker, citizen: User) -> None:
    _, key = make_agency(categories=["petition"])
    client = JsonClient(key)
    # The answer is the same for a citizen who uses the service and one who does not.
    known = send(client, citizen.register_number)
    unknown = send(client, "УБ88010112")
    assert known.status_code == unknown.status_code == 403
    assert known.json() == unknown.json()
    assert send(client, citizen.register_number, category="petition").status_code == 202


def test_only_staff_allowed_agencies_broadcast_to_everyone(
        agency_client: JsonClient, citizen: User, make_agency: Maker) -> None:
    response = broadcast(agency_client)
    assert response.status_code == 403
    assert response.json()["code"] == "scope_forbidden"
    assert not Broadcast.objects.exists()
    # A list of its own citizens is still allowed.
    listed = broadcast(agency_client, audience="list", register_numbers=[citizen.register_number])
    assert listed.status_code == 202, listed.content
    # A security broadcast to a list is a security notice all the same.
    assert broadcast(agency_client, audience="list", category="security",
                     register_numbers=[citizen.register_number]).status_code == 403

    _, key = make_agency(broadcast_all=True)
    assert broadcast(JsonClient(key)).status_code == 202


@pytest.mark.django_db(transaction=True)  # the POST is stored from the thread pool
def test_closed_unknown_and_organisation_registers_answer_alike(
        agency_client: JsonClient, make_citizen: Maker) -> None:
    closed, suspended = make_citizen(), make_citizen()
    account_close(user=closed)
    user_suspend(user=suspended)
    answers = [send(agency_client, register).json()
               for register in ("УБ88010112", closed.register_number)]
    assert answers[0] == answers[1]
    assert answers[0]["code"] == "citizen_not_found"
    assert send(agency_client, "1234567").json()["code"] == "citizen_not_found"
    # A suspension is staff's business: the agency's notice is stored as for anyone.
    assert send(agency_client, suspended.register_number).status_code == 202


def test_create_agency_sets_the_scopes() -> None:
    out = StringIO()
    call_command("create_agency", "Цагдаагийн ерөнхий газар", "--categories",
                 "service_request,security", "--broadcast-all", stdout=out, stderr=StringIO())
    key = next(line for line in out.getvalue().splitlines() if line.startswith("api_key="))
    agency = api_key_authenticate(key=key.removeprefix("api_key="))
    assert (agency.categories, agency.broadcast_all) == (["service_request", "security"], True)

    call_command("create_agency", "Татварын газар", stdout=StringIO(), stderr=StringIO())
    default = Agency.objects.get(name="Татварын газар")
    assert "security" not in default.categories and not default.broadcast_all
    with pytest.raises(CommandError, match="Unknown categories: chat"):
        call_command("create_agency", "Өөр", "--categories", "chat", stdout=StringIO(),
                     stderr=StringIO())
