"""The web client in a real browser (Debian's chromium driven by Playwright) against a real
server process: demo login, live agency notices, phone verification and a number that moves
to someone else, sessions and logout, QR login.

Needs `apt-get install chromium` (/usr/bin/chromium) and the `playwright` Python package;
no browser is downloaded (`playwright install` is never run).
"""

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from identity.admin_services import phone_bind_verified
from identity.login.demo import demo_login_link_create
from identity.models import User
from identity.services import citizen_create, session_create
from notify.agency_services import agency_create
from notify.models import DevOutboxMessage
from tests.e2e.conftest import LiveServer
from tests.e2e.web_helpers import (
    TIMEOUT_MS,
    browser,  # noqa: F401  (fixture)
    close_codes,
    record_close_codes,
)

pytestmark = pytest.mark.e2e


BAT = ("УБ99011512", "Бат-Эрдэнэ", "+97699112233")
SARNAI = ("УБ05211522", "Сарнай")


@pytest.fixture
def demo_mode(settings: Any) -> None:
    settings.SONOR_DEMO = True  # demo links are made in this process, used by the server


def new_page(browser: Browser) -> tuple[BrowserContext, Page]:  # noqa: F811
    """A fresh browser profile (its own cookies); `page.errors` collects script errors and
    Content-Security-Policy violations, which the tests expect to stay empty."""
    context = browser.new_context(locale="mn-MN", viewport={"width": 1000, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.errors = errors  # type: ignore[attr-defined]
    return context, page


def demo_login(page: Page, server: LiveServer, user: User) -> None:
    token = demo_login_link_create(user=user)
    page.goto(f"{server.url}/demo/login/{token}")
    expect(page).to_have_url(f"{server.url}/")
    expect(page.locator("#me-name")).to_have_text(user.name)
    expect(page.locator("#conn")).to_have_attribute("data-state", "online")  # welcome


def http_json(method: str, url: str, body: dict[str, Any] | None = None, *,
              token: str | None = None, headers: dict[str, str] | None = None,
              ) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method=method,
                                     data=json.dumps(body).encode() if body else None,
                                     headers=headers or {})
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else {}


def wait_until(page: Page, condition: Callable[[], bool]) -> None:
    """Poll a condition on data that Playwright's event handlers fill in."""
    for _ in range(TIMEOUT_MS // 50):
        if condition():
            return
        page.wait_for_timeout(50)  # runs Playwright's loop, so events get dispatched
    raise AssertionError("timed out")


def page_fetch_status(page: Page, path: str) -> int:
    status: int = page.evaluate(
        "path => fetch(path, {credentials: 'same-origin'}).then(r => r.status)", path)
    return status


def test_demo_login_then_live_notices_and_a_number_that_moves(
    server: LiveServer, browser: Browser, demo_mode: None  # noqa: F811
) -> None:
    bat = citizen_create(register_number=BAT[0], name=BAT[1])
    phone_bind_verified(user=bat, phone=BAT[2])
    sarnai = citizen_create(register_number=SARNAI[0], name=SARNAI[1])
    _, agency_key = agency_create(name="Улсын бүртгэлийн ерөнхий газар")

    # Бат logs in with a one-time demo link and sees his profile.
    bat_context, bat_page = new_page(browser)
    token = demo_login_link_create(user=bat)
    bat_page.goto(f"{server.url}/demo/login/{token}")
    expect(bat_page).to_have_url(f"{server.url}/")
    expect(bat_page.locator("#me-name")).to_have_text("Бат-Эрдэнэ")
    expect(bat_page.locator("#me-register")).to_have_text("УБ99011512")
    expect(bat_page.locator("#me-phone")).to_have_text("+97699112233")
    expect(bat_page.locator("#conn")).to_have_attribute("data-state", "online")
    expect(bat_page.locator("#unread")).to_have_text("0")
    bat_page.click("#nav-inbox")
    expect(bat_page.locator("#inbox-empty")).to_be_visible()
    # The session lives in an HttpOnly, SameSite=Strict cookie that no script can read.
    (cookie,) = [c for c in bat_context.cookies() if c["name"] == "sonor_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "sonor_session" not in bat_page.evaluate("document.cookie")
    expect(bat_page.locator("#session-list .session.current")).to_contain_text("demo")

    # The link worked once.
    _, reuse_page = new_page(browser)
    response = reuse_page.goto(f"{server.url}/demo/login/{token}")
    assert response is not None and response.status == 400
    expect(reuse_page.locator("#error-message")).to_contain_text("аль хэдийн ашиглагдсан")
    assert not [c for c in reuse_page.context.cookies() if c["name"] == "sonor_session"]

    # An agency notifies him through its API: the open page shows it at once.
    status, accepted = http_json(
        "POST", f"{server.url}/api/agency/v1/notifications",
        {"register_number": "УБ99011512", "category": "service_request",
         "title": "Таны лавлагаа бэлэн боллоо",
         "body": "Оршин суугаа хаягийн лавлагааг татаж авна уу.",
         "link": "https://e-mongolia.mn/"},
        token=agency_key, headers={"Idempotency-Key": "web-client-1"})
    assert status == 202, accepted
    notice = bat_page.locator("#notifications .notification")
    expect(notice).to_have_count(1)
    expect(notice.locator(".title")).to_have_text("Таны лавлагаа бэлэн боллоо")
    expect(notice.locator(".body")).to_have_text("Оршин суугаа хаягийн лавлагааг татаж авна уу.")
    expect(notice.locator("a.link")).to_have_attribute("href", "https://e-mongolia.mn/")
    expect(bat_page.locator("#unread")).to_have_text("1")
    expect(bat_page.locator("#inbox-empty")).to_be_hidden()
    bat_page.screenshot(path="/tmp/sonor-app.png", full_page=True)

    # He reads it: the count drops on his page (and on every other device of his).
    notice.locator("button.mark-read").click()
    expect(bat_page.locator("#unread")).to_have_text("0")
    expect(notice).to_have_class(re.compile(r"\bread\b"))
    # A reload lists it again, read, with the agency's name.
    bat_page.reload()  # the inbox stays the screen shown (#inbox)
    expect(bat_page.locator("#conn")).to_have_attribute("data-state", "online")
    expect(notice).to_have_class(re.compile(r"\bread\b"))
    expect(notice.locator(".agency")).to_have_text("Улсын бүртгэлийн ерөнхий газар")
    expect(bat_page.locator("#unread")).to_have_text("0")

    # Сарнай, on her own browser, verifies the number Бат had: the operator gave it to her.
    _, sarnai_page = new_page(browser)
    demo_login(sarnai_page, server, sarnai)
    sarnai_page.click("#nav-settings")
    expect(sarnai_page.locator("#me-phone")).to_contain_text("—")
    expect(sarnai_page.locator("#code-form")).to_be_hidden()
    sarnai_page.fill("#phone-input", "+976 9911 2233")
    sarnai_page.click("#phone-send")
    expect(sarnai_page.locator("#code-form")).to_be_visible()
    expect(sarnai_page.locator("#phone-ok")).to_contain_text("+97699112233")
    sms = DevOutboxMessage.objects.filter(sender_kind="sms", address="+97699112233"
                                          ).latest("created_at")
    match = re.search(r"\b(\d{6})\b", sms.body)
    assert match, sms.body
    code = match.group(1)
    # The demo outbox page shows the same code.
    outbox_page = sarnai_page.context.new_page()
    outbox_page.goto(f"{server.url}/demo/outbox")
    expect(outbox_page.locator("table.outbox tbody tr").first).to_contain_text(code)
    outbox_page.close()

    sarnai_page.fill("#code-input", "000000" if code != "000000" else "111111")
    sarnai_page.click("#code-verify")
    expect(sarnai_page.locator("#phone-error")).to_contain_text("Код буруу")
    expect(sarnai_page.locator("#me-phone")).to_contain_text("—")
    sarnai_page.fill("#code-input", code)
    sarnai_page.click("#code-verify")
    expect(sarnai_page.locator("#me-phone")).to_have_text("+97699112233")
    expect(sarnai_page.locator("#phone-error")).to_be_hidden()

    # Бат's devices are logged out at once (whoever holds the number may hold his old SIM),
    # and his login page says why.
    expect(bat_page).to_have_url(f"{server.url}/login?reason=number_lost")
    expect(bat_page.locator("#login-reason")).to_contain_text("өөр иргэн баталгаажуулсан")
    # Logged in again, he finds the security notice on top, unread, and no number.
    demo_login(bat_page, server, bat)
    expect(bat_page.locator("#me-phone")).to_contain_text("—")
    expect(notice).to_have_count(2)
    expect(notice.first.locator(".title")).to_have_text("Утасны дугаар өөр хүнд шилжлээ")
    expect(notice.first).not_to_have_class(re.compile(r"\bread\b"))
    expect(bat_page.locator("#unread")).to_have_text("1")
    for page in (bat_page, sarnai_page):
        assert page.errors == []  # type: ignore[attr-defined]


def test_logout_and_log_out_everywhere_else(
    server: LiveServer, browser: Browser, demo_mode: None  # noqa: F811
) -> None:
    bat = citizen_create(register_number=BAT[0], name=BAT[1])
    _, laptop = new_page(browser)
    demo_login(laptop, server, bat)
    _, office = new_page(browser)
    record_close_codes(office)
    demo_login(office, server, bat)

    # Both browsers are listed; the laptop ends every other session: the office page, whose
    # socket is told at once, goes to the login page.
    laptop.reload()
    laptop.click("#nav-settings")
    expect(laptop.locator("#session-list .session")).to_have_count(2)
    laptop.click("#revoke-others")
    expect(office).to_have_url(f"{server.url}/login?reason=logout")
    assert close_codes(office) == [4401]  # the server closed its socket: revoked
    expect(office.locator("#login-reason")).to_have_attribute("data-reason", "logout")
    expect(office.locator("#login-reason")).to_contain_text("Та системээс гарлаа")
    expect(laptop.locator("#session-list .session")).to_have_count(1)
    assert page_fetch_status(office, "/api/v1/me") == 401

    # The laptop logs out with the button.
    laptop.click("#logout")
    expect(laptop).to_have_url(f"{server.url}/login?reason=logout")
    expect(laptop.locator("#qr")).to_be_visible()
    assert page_fetch_status(laptop, "/api/v1/me") == 401
    # The app page sends a logged-out browser to the login page.
    laptop.goto(f"{server.url}/")
    expect(laptop).to_have_url(f"{server.url}/login")
    expect(laptop.locator("#login-reason")).to_be_hidden()
    for page in (laptop, office):
        assert page.errors == []  # type: ignore[attr-defined]


def test_qr_login_denied_then_approved_by_a_logged_in_phone(
    server: LiveServer, browser: Browser  # noqa: F811
) -> None:
    bat = citizen_create(register_number=BAT[0], name=BAT[1])
    _, phone_token = session_create(user=bat, login_method="test", device_name="Phone")
    _, page = new_page(browser)
    codes: list[str] = []

    def on_socket(ws: Any) -> None:
        def on_frame(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame.get("type") == "qr.code":
                codes.append(frame["code"])

        if ws.url.endswith("/ws/v1/login"):
            ws.on("framereceived", on_frame)

    page.on("websocket", on_socket)
    page.goto(f"{server.url}/login")
    qr = page.locator("#qr")
    expect(qr).to_be_visible()
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    expect(page.locator("#login-hint")).to_contain_text("Сонор аппаар уншуулж")
    expect(page.locator(".demo-note")).to_contain_text("/demo/login/")
    wait_until(page, lambda: page.evaluate("document.getElementById('qr').naturalWidth") > 0)
    page.screenshot(path="/tmp/sonor-login.png", full_page=True)
    wait_until(page, lambda: bool(codes))
    assert codes[-1].startswith("sonor-login:")

    # The phone scans the first code and denies it.
    first = codes[-1].removeprefix("sonor-login:")
    status, request = http_json("POST", f"{server.url}/api/v1/qr/lookup", {"token": first},
                                token=phone_token)
    assert status == 200, request
    expect(page.locator("#login-status")).to_contain_text("Утсан дээрээ зөвшөөрнө үү")
    status, _ = http_json("POST", f"{server.url}/api/v1/qr/deny", {"token": first},
                          token=phone_token)
    assert status == 204
    expect(page.locator("#login-status")).to_contain_text("татгалзлаа")
    expect(page.locator("#login-retry")).to_be_visible()

    # Retry shows a new code; the phone approves it and the page is logged in.
    count = len(codes)
    page.click("#login-retry")
    expect(page.locator("#login-retry")).to_be_hidden()
    expect(qr).not_to_have_class(re.compile(r"\bdim\b"))
    wait_until(page, lambda: len(codes) > count)
    second = codes[-1].removeprefix("sonor-login:")
    assert second != first
    status, request = http_json("POST", f"{server.url}/api/v1/qr/lookup", {"token": second},
                                token=phone_token)
    assert status == 200, request
    assert "Chrome" in request["requester_device"]  # the phone is shown who asks
    # A mark on this document: a navigation (or a reload) would drop it.
    page.evaluate("window.sonorSameDocument = 'login page'")
    status, created = http_json("POST", f"{server.url}/api/v1/qr/approve", {"token": second},
                                token=phone_token)
    assert status == 200, created
    # The login card gives way to the app in place: the tabs, the connection, the chats.
    expect(page.locator("#nav-chat")).to_be_visible()
    expect(page.locator("#qr")).to_have_count(0)
    expect(page).to_have_url(f"{server.url}/")
    expect(page).to_have_title("Сонор")
    assert page.evaluate("window.sonorSameDocument") == "login page"
    expect(page.locator("#conn")).to_have_attribute("data-state", "online")
    # No verified phone yet: the app opens at the phone form, as it does at /.
    expect(page.locator("#phone-input")).to_be_visible()
    expect(page.locator("#me-name")).to_have_text("Бат-Эрдэнэ")
    expect(page.locator("#conn")).to_have_attribute("data-state", "online")
    expect(page.locator("#session-list .session.current")).to_contain_text("qr")
    # The new session is the one the phone was told about.
    assert page.evaluate("fetch('/api/v1/me').then(r => r.json()).then(b => b.session_id)"
                         ) == created["session_id"]
    assert page.errors == []  # type: ignore[attr-defined]


def test_demo_pages_are_not_found_outside_demo_mode(live_server_factory: Any) -> None:
    server = live_server_factory(SONOR_DEMO="0")
    for path in ("/demo/outbox", "/demo/login/anything"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{server.url}{path}", timeout=10)
        assert info.value.code == 404
    with urllib.request.urlopen(f"{server.url}/login", timeout=10) as response:
        page = response.read().decode()
        assert "demo-note" not in page
        assert "'self'" in response.headers["Content-Security-Policy"]
