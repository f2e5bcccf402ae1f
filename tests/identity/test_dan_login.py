"""DAN login over HTTP: Django's test client is the browser, tests/fakes/dan.py is DAN.

Each test walks the real flow (/dan/login -> DAN's consent -> /dan/callback), and each error
a citizen can meet ends on a page that says what happened in Mongolian and English and
changes nothing: no citizen, no session, no cookie.
"""

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.core.cache import cache
from django.test import Client

from identity.accounts import account_close, user_suspend
from identity.models import AccessLogEntry, DeviceSession, User
from notify.agency_services import agency_create
from tests.conftest import JsonClient
from tests.fakes.dan import CITIZEN_SERVICE, Citizen, FakeDan, running
from tests.loopback import free_port
from tests.notify.helpers import send

CALLBACK = "http://testserver/dan/callback"
NEW_CITIZEN = Citizen("УП95041873", "Дорж", "Болд")


@pytest.fixture
def dan_peer(settings: Any, db: None) -> Iterator[FakeDan]:
    cache.clear()  # login starts are counted per address in the cache
    with running(redirect_uri=CALLBACK) as peer:
        settings.SONOR_DAN_AUTHORIZE_URL = f"{peer.url}/oauth2/authorize"
        settings.SONOR_DAN_TOKEN_URL = f"{peer.url}/oauth2/token"
        settings.SONOR_DAN_SERVICE_URL = f"{peer.url}/oauth2/api/v1/service"
        settings.SONOR_DAN_CLIENT_ID = peer.client_id
        settings.SONOR_DAN_CLIENT_SECRET = peer.client_secret
        settings.SONOR_DAN_REDIRECT_URL = ""  # derived from the request: CALLBACK
        settings.SONOR_DAN_TIMEOUT = 5.0
        yield peer
    cache.clear()


def start(browser: Client) -> str:
    """The browser clicks "Log in with DAN": returns DAN's authorization URL."""
    response = browser.get("/dan/login")
    assert response.status_code == 302, response.content
    assert response.cookies["sonor_dan"]["httponly"]
    assert response.cookies["sonor_dan"]["samesite"] == "Lax"
    return str(response["Location"])


def consent(authorize_url: str, *, decision: str = "allow",
            citizen: Citizen = NEW_CITIZEN) -> str:
    """The citizen at DAN: the consent page, then allow or deny. Returns our callback URL."""
    with httpx.Client(timeout=5) as dan_browser:
        page = dan_browser.get(authorize_url)
        assert page.status_code == 200, page.text
        assert CITIZEN_SERVICE in page.text
        form = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        form.update(decision=decision, regnum=citizen.register_number,
                    lastname=citizen.lastname, firstname=citizen.firstname)
        answer = dan_browser.post(f"{authorize_url.split('?')[0]}", data=form)
    assert answer.status_code == 302
    callback = str(answer.headers["Location"])
    assert callback.startswith(f"{CALLBACK}?")
    return callback


def back(browser: Client, callback: str) -> Any:
    """DAN's redirect lands in the browser."""
    url = urlsplit(callback)
    return browser.get(url.path, {k: v[0] for k, v in parse_qs(url.query).items()})


def login(browser: Client, citizen: Citizen = NEW_CITIZEN) -> Any:
    return back(browser, consent(start(browser), citizen=citizen))


def counts() -> tuple[int, int, int]:
    return (User.objects.count(), DeviceSession.objects.count(),
            AccessLogEntry.objects.count())


def assert_error_page(response: Any, status: int, mongolian: str, english: str) -> None:
    """The error page in both languages; no session cookie given, the binding cleared."""
    assert response.status_code == status
    text = response.content.decode()
    assert mongolian in text and english in text
    assert "ДАН-аар нэвтэрч чадсангүй" in text and "DAN login failed" in text
    assert "sonor_session" not in response.cookies
    if "sonor_dan" in response.cookies:
        assert response.cookies["sonor_dan"].value == ""


# ---- signing in --------------------------------------------------------------------------

def test_a_new_citizen_signs_up_with_the_registry_names_and_is_sent_to_verify_a_phone(
        dan_peer: FakeDan) -> None:
    browser = Client()
    authorize_url = start(browser)
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
    assert (query["response_type"], query["client_id"], query["redirect_uri"],
            query["code_challenge_method"]) == ("code", dan_peer.client_id, CALLBACK, "S256")
    assert json.loads(base64.b64decode(query["scope"])) == [
        {"services": [CITIZEN_SERVICE], "wsdl": "https://xyp.gov.mn/citizen-1.5.0/ws?WSDL"}]

    response = back(browser, consent(authorize_url))

    assert response.status_code == 302 and response["Location"] == "/#phone"
    cookie = response.cookies["sonor_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert response.cookies["sonor_dan"].value == ""  # the binding is spent
    me = browser.get("/api/v1/me").json()
    assert (me["register_number"], me["name"], me["phone"]) == ("УП95041873", "Дорж Болд", None)
    assert me["identity_checked_by"] == "dan" and me["identity_checked_at"]
    session = DeviceSession.objects.get(pk=me["session_id"])
    assert (session.login_method, session.platform) == ("dan", "web")
    entry = AccessLogEntry.objects.get(subject_id=me["id"])
    assert (entry.actor_kind, entry.actor_name) == ("system", "ДАН (DAN)")
    # The code went back with the PKCE verifier and the client secret in the form.
    [exchange] = dan_peer.token_requests
    assert exchange["code_verifier"] and exchange["client_secret"] == dan_peer.client_secret
    assert exchange["redirect_uri"] == CALLBACK


def test_an_existing_citizen_gets_a_session_and_keeps_their_account(
        dan_peer: FakeDan, make_citizen: Callable[..., User]) -> None:
    user = make_citizen(phone="+97699001122", name="Бат")
    before = User.objects.count()

    response = login(Client(), Citizen(user.register_number, "Батын", "Бат-Эрдэнэ"))

    assert response.status_code == 302 and response["Location"] == "/"
    assert User.objects.count() == before
    user.refresh_from_db()
    assert (user.name, user.identity_checked_by) == ("Бат", "dan")
    assert DeviceSession.objects.get(user=user).login_method == "dan"


def test_a_dan_login_to_an_existing_account_is_announced_in_the_inbox(
        dan_peer: FakeDan, make_citizen: Callable[..., User]) -> None:
    user = make_citizen(phone="+97699001133", name="Сараа")
    browser = Client(HTTP_USER_AGENT="Firefox on Linux")

    login(browser, Citizen(user.register_number, "", ""))

    inbox = browser.get("/api/v1/inbox").json()
    [notice] = inbox["items"]
    assert (notice["category"], notice["title"]) == ("security", "Шинэ нэвтрэлт")
    assert notice["body"].startswith(
        "ДАН-аар таны бүртгэлд нэвтэрлээ: Firefox on Linux, 127.0.0.1.")
    assert inbox["unread"] == 1


def test_signing_up_through_dan_brings_no_login_notice(dan_peer: FakeDan) -> None:
    browser = Client()
    login(browser)
    inbox = browser.get("/api/v1/inbox").json()
    assert (inbox["items"], inbox["unread"]) == ([], 0)


@pytest.mark.django_db(transaction=True)  # the agency POST is stored from the thread pool
def test_agencies_see_whether_the_recipient_was_identity_checked_by_dan(
        dan_peer: FakeDan, make_citizen: Callable[..., User]) -> None:
    checked, unchecked = make_citizen(), make_citizen()
    login(Client(), Citizen(checked.register_number, "", ""))
    agency = JsonClient(agency_create(name="Татварын ерөнхий газар")[1])
    for user, expected in ((checked, "dan"), (unchecked, None)):
        notification_id = send(agency, user.register_number).json()["id"]
        status = agency.get(f"/api/agency/v1/notifications/{notification_id}").json()
        assert status["recipient_identity_checked_by"] == expected


@pytest.mark.parametrize(("act", "mongolian", "english"), [
    (lambda user: user_suspend(user=user), "портал түр түдгэлзүүлсэн",
     "suspended by the portal"),
    (lambda user: account_close(user=user), "эзэмшигч нь хаасан", "closed by its owner"),
])
def test_a_suspended_or_closed_account_is_refused_with_its_reason(
        dan_peer: FakeDan, make_citizen: Callable[..., User], act: Callable[[User], None],
        mongolian: str, english: str) -> None:
    user = make_citizen()
    act(user)
    before = counts()

    response = login(Client(), Citizen(user.register_number, "Батын", "Бат"))

    assert_error_page(response, 403, mongolian, english)
    assert counts() == before
    user.refresh_from_db()
    assert user.identity_checked_at is None


# ---- what goes wrong ---------------------------------------------------------------------

def test_consent_denied_logs_nobody_in(dan_peer: FakeDan) -> None:
    browser = Client()
    before = counts()
    callback = consent(start(browser), decision="deny")
    assert "error=access_denied" in callback

    assert_error_page(back(browser, callback), 403, "зөвшөөрөөгүй", "did not allow DAN")
    assert counts() == before
    assert dan_peer.token_requests == []


def test_a_callback_without_a_state_or_from_another_browser_is_refused(
        dan_peer: FakeDan) -> None:
    victim, attacker = Client(), Client()
    start(victim)
    # The attacker's own code and state, planted in the victim's browser (login CSRF).
    planted = consent(start(attacker))
    before = counts()

    assert_error_page(back(victim, planted), 400, "энэ хөтчөөс эхлээгүй",
                      "not started in this browser")
    assert_error_page(victim.get("/dan/callback", {"code": "x"}), 400,
                      "энэ хөтчөөс эхлээгүй", "not started in this browser")
    assert_error_page(Client().get("/dan/callback"), 400, "энэ хөтчөөс эхлээгүй",
                      "not started in this browser")
    assert counts() == before
    assert dan_peer.token_requests == []  # no code was traded


def test_a_state_works_once(dan_peer: FakeDan) -> None:
    browser = Client()
    authorize_url = start(browser)
    binding = browser.cookies["sonor_dan"].value
    callback = consent(authorize_url)
    assert back(browser, callback).status_code == 302
    before = counts()

    browser.cookies["sonor_dan"] = binding  # even with the browser's binding put back
    assert_error_page(back(browser, callback), 400, "аль хэдийн ашиглагдсан",
                      "already used")
    assert counts() == before
    assert len(dan_peer.token_requests) == 1  # the replay never reached DAN


def test_a_used_code_is_refused_by_dan(dan_peer: FakeDan) -> None:
    browser = Client()
    first = consent(start(browser))
    assert back(browser, first).status_code == 302
    used_code = parse_qs(urlsplit(first).query)["code"][0]
    # A fresh state of this browser's, with the used code.
    fresh_state = parse_qs(urlsplit(start(browser)).query)["state"][0]
    before = counts()

    response = browser.get("/dan/callback", {"code": used_code, "state": fresh_state})

    assert_error_page(response, 400, "ДАН нэвтрэх кодыг хүлээн авсангүй",
                      "did not accept the login code")
    assert counts() == before


def test_an_expired_code_is_refused_by_dan(dan_peer: FakeDan) -> None:
    dan_peer.code_ttl = 0
    browser = Client()
    callback = consent(start(browser))
    before = counts()

    assert_error_page(back(browser, callback), 400, "хугацаа нь дууссан", "it expired")
    assert counts() == before


def test_dan_unreachable(dan_peer: FakeDan, settings: Any) -> None:
    browser = Client()
    callback = consent(start(browser))
    settings.SONOR_DAN_TOKEN_URL = f"http://127.0.0.1:{free_port()}/oauth2/token"
    before = counts()

    assert_error_page(back(browser, callback), 503, "хугацаандаа хариу өгсөнгүй",
                      "did not answer in time")
    assert counts() == before


def test_dan_too_slow(dan_peer: FakeDan, settings: Any) -> None:
    settings.SONOR_DAN_TIMEOUT = 0.3
    browser = Client()
    callback = consent(start(browser))
    dan_peer.hold()  # the token endpoint keeps the request unanswered
    before = counts()
    try:
        response = back(browser, callback)
    finally:
        dan_peer.release()

    assert_error_page(response, 503, "хугацаандаа хариу өгсөнгүй", "did not answer in time")
    assert counts() == before


@pytest.mark.parametrize(("register_number", "english"), [
    ("", "has no register number"),
    ("AB1234", "malformed register number"),
    ("УБ99133112", "malformed register number"),  # month 13
    ("1234567", "malformed register number"),  # an organisation's
])
def test_an_answer_without_a_valid_register_number_logs_nobody_in(
        dan_peer: FakeDan, register_number: str, english: str) -> None:
    before = counts()

    response = login(Client(), Citizen(register_number, "Дорж", "Болд"))

    assert_error_page(response, 502, "хүчинтэй регистрийн дугаар алга", english)
    assert counts() == before


def test_register_numbers_from_dan_are_normalised(dan_peer: FakeDan) -> None:
    login(Client(), Citizen(" уп 95041873", "Дорж", "Болд"))
    assert User.objects.filter(register_number="УП95041873").exists()


# ---- configuration -----------------------------------------------------------------------

def test_without_configuration_there_is_no_button_and_the_routes_say_so(
        settings: Any, db: None) -> None:
    settings.SONOR_DAN_CLIENT_ID = ""
    browser = Client()
    assert "/dan/login" not in browser.get("/login").content.decode()
    for path in ("/dan/login", "/dan/callback"):
        response = browser.get(path, {"code": "c", "state": "s"})
        assert response.status_code == 404
        text = response.content.decode()
        assert "ДАН-аар нэвтрэх боломж тохируулагдаагүй" in text
        assert "DAN login is not configured" in text
        assert "sonor_dan" not in browser.cookies or not browser.cookies["sonor_dan"].value


def test_the_login_page_offers_dan_when_configured(dan_peer: FakeDan) -> None:
    page = Client().get("/login").content.decode()
    assert 'href="/dan/login"' in page and "ДАН-аар нэвтрэх" in page


def test_login_starts_are_rate_limited_per_address(dan_peer: FakeDan) -> None:
    browser = Client()
    for _ in range(30):
        start(browser)
    response = browser.get("/dan/login")
    assert response.status_code == 429
    assert "Хэт олон оролдлого" in response.content.decode()
