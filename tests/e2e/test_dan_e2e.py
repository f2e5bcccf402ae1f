"""DAN login in a real browser (Debian's chromium through Playwright) against a real server
process and the local DAN peer (tests/fakes/dan.py): the login page -> DAN's consent page ->
back signed in. The HTTP-level errors are in tests/identity/test_dan_login.py.
"""

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from identity.admin_services import phone_bind_verified
from identity.models import DeviceSession, User
from identity.services import citizen_create
from notify.models import DevOutboxMessage
from tests.e2e.conftest import LiveServer
from tests.e2e.test_web_client import browser, new_page  # noqa: F401  (fixture)
from tests.fakes.dan import Citizen, FakeDan, running

pytestmark = pytest.mark.e2e


@pytest.fixture
def dan_server(live_server_factory: Callable[..., LiveServer]
               ) -> Iterator[tuple[LiveServer, FakeDan]]:
    """A server configured for the local DAN; DAN knows the server's callback once it runs."""
    with running(citizens=[Citizen("УП95041873", "Дорж", "Болд")]) as dan:
        server = live_server_factory(SONOR_DAN_URL=dan.url, SONOR_DAN_CLIENT_ID=dan.client_id,
                                     SONOR_DAN_CLIENT_SECRET=dan.client_secret)
        dan.redirect_uri = f"{server.url}/dan/callback"
        yield server, dan


def consent_at_dan(page: Page, server: LiveServer, dan: FakeDan, *, register_number: str,
                   decision: str = "allow") -> None:
    page.goto(f"{server.url}/login")
    page.click("#dan-login")
    expect(page).to_have_url(re.compile(rf"^{re.escape(dan.url)}/oauth2/authorize\?"))
    expect(page.locator("body")).to_contain_text("WS100101_getCitizenIDCardInfo")
    page.fill("input[name=regnum]", register_number)
    page.click(f"button[value={decision}]")


def test_a_new_citizen_logs_in_with_dan_then_verifies_a_phone(
        dan_server: tuple[LiveServer, FakeDan], browser: Browser) -> None:  # noqa: F811
    server, dan = dan_server
    context, page = new_page(browser)

    consent_at_dan(page, server, dan, register_number="УП95041873")

    expect(page).to_have_url(f"{server.url}/#phone")
    expect(page.locator("#me-name")).to_have_text("Дорж Болд")  # the registry's names
    expect(page.locator("#me-register")).to_have_text("УП95041873")
    expect(page.locator("#me-phone")).to_contain_text("—")
    expect(page.locator("#conn")).to_have_attribute("data-state", "online")
    expect(page.locator("#session-list .session.current")).to_contain_text("dan")
    (cookie,) = [c for c in context.cookies() if c["name"] == "sonor_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not [c for c in context.cookies() if c["name"] == "sonor_dan" and c["value"]]
    user = User.objects.get(register_number="УП95041873")
    assert user.identity_checked_by == "dan"

    # Chat needs a verified phone (terms 14.2): the page is at the phone form.
    expect(page.locator("#phone-form")).to_be_in_viewport()
    page.fill("#phone-input", "+976 8811 4455")
    page.click("#phone-send")
    expect(page.locator("#code-form")).to_be_visible()
    sms = DevOutboxMessage.objects.filter(sender_kind="sms", address="+97688114455"
                                          ).latest("created_at")
    match = re.search(r"\b(\d{6})\b", sms.body)
    assert match, sms.body
    page.fill("#code-input", match.group(1))
    page.click("#code-verify")
    expect(page.locator("#me-phone")).to_have_text("+97688114455")
    assert page.errors == []  # type: ignore[attr-defined]


def test_an_existing_citizen_logs_in_and_a_denial_logs_nobody_in(
        dan_server: tuple[LiveServer, FakeDan], browser: Browser) -> None:  # noqa: F811
    server, dan = dan_server
    bat = citizen_create(register_number="УБ99011512", name="Бат-Эрдэнэ")
    phone_bind_verified(user=bat, phone="+97699112233")

    context, page = new_page(browser)
    consent_at_dan(page, server, dan, register_number="УБ99011512")
    expect(page).to_have_url(f"{server.url}/")
    expect(page.locator("#me-name")).to_have_text("Бат-Эрдэнэ")
    expect(page.locator("#me-phone")).to_have_text("+97699112233")
    expect(page.locator("#conn")).to_have_attribute("data-state", "online")

    other, denied = new_page(browser)
    consent_at_dan(denied, server, dan, register_number="УБ99011512", decision="deny")
    expect(denied.locator("h1")).to_contain_text("ДАН-аар нэвтэрч чадсангүй")
    expect(denied.locator("#error-message")).to_contain_text("зөвшөөрөөгүй")
    expect(denied.locator("#error-message")).to_contain_text("did not allow DAN")
    assert not [c for c in other.cookies() if c["name"] == "sonor_session"]
    assert DeviceSession.objects.filter(user=bat).count() == 1
    assert page.errors == [] and denied.errors == []  # type: ignore[attr-defined]
