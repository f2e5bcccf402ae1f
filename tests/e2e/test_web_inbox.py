"""The web client's inbox and settings in a real browser against a real server: live agency
notices, the preference grid driving the delivery pipeline, archive and report, the access
log and data export, the language switch, closing the account; every screen scanned by
axe-core and photographed at phone and desktop width."""

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, expect

from identity.admin_services import phone_bind_verified
from identity.services import citizen_create
from notify.agency_services import agency_create
from notify.models import Delivery, DevOutboxMessage
from tests.e2e.conftest import LiveServer
from tests.e2e.test_web_client import http_json, wait_until
from tests.e2e.web_helpers import (
    browser,  # noqa: F401  (fixture)
    demo_login,
    every_screen,
    new_page,
    screenshot,
)

pytestmark = pytest.mark.e2e

REGISTER = "УБ99011512"


@pytest.fixture
def demo_mode(settings: Any) -> None:
    settings.SONOR_DEMO = True


def notify(server: LiveServer, key: str, idempotency: str, **fields: Any) -> int:
    status, accepted = http_json(
        "POST", f"{server.url}/api/agency/v1/notifications",
        {"register_number": REGISTER, **fields}, token=key,
        headers={"Idempotency-Key": idempotency})
    assert status == 202, accepted
    return int(accepted["id"])


def test_inbox_and_settings_live_with_preferences_language_and_accessibility(
    live_server_factory: Callable[..., LiveServer], browser: Browser,  # noqa: F811
    demo_mode: None,
) -> None:
    # The delivery worker runs inside the server, so that what it sends can be watched.
    server = live_server_factory(SONOR_EMBEDDED_WORKER="1", SONOR_WORKER_SLEEP="0.2")
    bat = citizen_create(register_number=REGISTER, name="Бат-Эрдэнэ")
    phone_bind_verified(user=bat, phone="+97699112233")
    agency, key = agency_create(name="Улсын бүртгэлийн ерөнхий газар")

    # The login screen, before anything else.
    _, login = new_page(browser)
    login.goto(f"{server.url}/login")
    expect(login.locator("#qr")).to_be_visible()
    every_screen(login, "login")
    login.goto(f"{server.url}/demo/login/not-a-link")
    expect(login.locator("#error-message")).to_contain_text("буруу")
    every_screen(login, "error")

    _, page = new_page(browser)
    page.on("dialog", lambda dialog: dialog.accept(dialog.default_value))  # suggested text
    demo_login(page, server.url, bat)
    expect(page.locator("#view-chat")).to_be_visible()
    every_screen(page, "chat-list")
    page.click("#nav-inbox")
    expect(page.locator("#inbox-empty")).to_be_visible()

    # A payment notice from an agency appears at once, with its unread badge.
    payment_id = notify(server, key, "web-pay-1", category="payment",
                        title="Үл хөдлөх хөрөнгийн албан татвар",
                        body="2026 оны татвараа төлнө үү.", amount_mnt=125000,
                        due_date="2026-12-31")
    payment = page.locator(f'#notifications .notification[data-id="{payment_id}"]')
    expect(payment.locator(".title")).to_have_text("Үл хөдлөх хөрөнгийн албан татвар")
    expect(payment.locator(".amount")).to_contain_text("125,000 ₮")
    expect(payment.locator(".amount")).to_contain_text("2026-12-31")
    expect(payment.locator(".category")).to_have_text("Төлбөр")
    expect(page.locator("#unread")).to_have_text("1")
    expect(page.locator("#nav-inbox")).to_have_accessible_name(
        re.compile(r"Мэдэгдэл\s*1\s*уншаагүй мэдэгдэл"))

    # Settings: the grid shows the locked cell locked, and SMS for service requests goes on.
    page.click("#nav-settings")
    expect(page.locator("#pref-security-push")).to_be_disabled()
    expect(page.locator("#pref-security-push")).to_be_checked()
    sms = page.locator("#pref-service_request-sms")
    expect(sms).not_to_be_checked()
    sms.check()
    expect(page.locator("#prefs-ok")).to_be_visible()
    every_screen(page, "settings")

    # With it on, a service-request notice goes out by SMS too...
    first = notify(server, key, "web-sr-1", category="service_request",
                   title="Лавлагаа бэлэн", body="Таны лавлагаа бэлэн боллоо.")
    wait_until(page, lambda: DevOutboxMessage.objects.filter(
        sender_kind="sms", address="+97699112233").exists())
    page.click("#nav-inbox")
    first_item = page.locator(f'.notification[data-id="{first}"]')
    expect(first_item.locator('.delivery[data-channel="sms"]')).to_be_visible()
    # ...and with it off again, the next one does not.
    page.click("#nav-settings")
    page.locator("#prefs-ok").evaluate("node => node.hidden = true")
    sms.uncheck()
    expect(page.locator("#prefs-ok")).to_be_visible()
    expect(sms).not_to_be_checked()
    second = notify(server, key, "web-sr-2", category="service_request",
                    title="Өргөдөл хүлээн авлаа", body="Таны өргөдлийг хүлээн авлаа.")
    assert Delivery.objects.filter(notification_id=first, channel="sms").count() == 1
    assert not Delivery.objects.filter(notification_id=second, channel="sms").exists()
    page.click("#nav-inbox")
    second_item = page.locator(f'.notification[data-id="{second}"]')
    expect(second_item.locator(".title")).to_have_text("Өргөдөл хүлээн авлаа")
    expect(page.locator("#unread")).to_have_text("3")
    every_screen(page, "inbox")

    # Read one, archive one, report the payment as not his, then read all.
    first_item.locator("button.mark-read").click()
    expect(page.locator("#unread")).to_have_text("2")
    expect(first_item).to_have_class(re.compile(r"\bread\b"))
    second_item.locator("button.archive").click()
    expect(second_item).to_have_count(0)
    page.check("#show-archived")
    expect(second_item).to_have_count(1)
    page.uncheck("#show-archived")
    expect(second_item).to_have_count(0)
    payment.locator("button.report").click()
    expect(payment).to_have_count(0)
    status, reported = http_json("GET", f"{server.url}/api/agency/v1/notifications/{payment_id}",
                                 token=key)
    assert status == 200 and reported["reported"], reported
    page.click("#read-all")
    expect(page.locator("#unread")).to_have_text("0")

    # A maintenance notice (a broadcast, fanned out by the worker) says when it begins.
    begins = datetime.now(UTC) + timedelta(days=14)
    status, broadcast = http_json(
        "POST", f"{server.url}/api/agency/v1/broadcasts",
        {"category": "system", "audience": "list", "register_numbers": [REGISTER],
         "title": "Системийн засвар", "body": "Үйлчилгээ түр зогсоно.",
         "maintenance_at": begins.isoformat()},
        token=key, headers={"Idempotency-Key": "web-maintenance-1"})
    assert status == 202, broadcast
    maintenance = page.locator(".notification", has_text="Системийн засвар")
    expect(maintenance.locator(".maintenance")).to_contain_text(
        begins.astimezone(ZoneInfo("Asia/Ulaanbaatar")).strftime("%Y-%m-%d"))
    expect(maintenance.locator(".category")).to_have_text("Систем")
    expect(page.locator("#unread")).to_have_text("1")

    # Quiet hours, and muting the agency (listed from the inbox), are stored.
    page.click("#nav-settings")
    page.fill("#quiet-start", "22:00")
    page.fill("#quiet-end", "07:00")
    page.click("#quiet-save")
    expect(page.locator("#prefs-ok")).to_contain_text("Чимээгүй цагийг хадгаллаа")
    mute = page.locator("#agency-list label", has_text="Улсын бүртгэлийн ерөнхий газар")
    mute.locator("input").check()
    expect(page.locator("#prefs-ok")).to_contain_text("чимээгүй боллоо")
    stored = page.evaluate("fetch('/api/v1/preferences').then(r => r.json())")
    assert stored["muted_agencies"] == [agency.pk]
    assert stored["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}
    page.click("#quiet-clear")
    expect(page.locator("#quiet-start")).to_have_value("")

    # The access log and the data export.
    page.click("#access-load")
    expect(page.locator("#access-log, #access-empty").first).to_be_visible()
    with page.expect_download() as download_info:
        page.click("#export")
    exported = json.loads(Path(download_info.value.path()).read_text())
    assert exported["profile"]["register_number"] == REGISTER
    outbox = page.context.new_page()
    outbox.goto(f"{server.url}/demo/outbox")
    expect(outbox.locator("table.outbox tbody tr").first).to_contain_text("+97699112233")
    every_screen(outbox, "demo-outbox")
    outbox.close()

    # English by the switch, for the page and for the script's strings; back to Mongolian.
    expect(page.locator("html")).to_have_attribute("lang", "mn")
    expect(page.locator("#nav-chat")).to_contain_text("Чат")
    page.click("#lang-en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#view-settings")).to_be_visible()  # the same screen
    expect(page.locator("#nav-chat")).to_contain_text("Chat")
    expect(page.locator("#conn")).to_have_text("Online")
    expect(page.locator("#pref-rows")).to_contain_text("Service requests")
    screenshot(page, "settings-english")
    page.click("#lang-mn")
    expect(page.locator("html")).to_have_attribute("lang", "mn")
    expect(page.locator("#conn")).to_have_text("Холбогдсон")

    # Closing the account, minutes after logging in, needs no code: every device is out.
    page.click("#nav-settings")
    page.click("#close-box summary")
    page.click("#close-confirm")
    expect(page).to_have_url(f"{server.url}/login?reason=account_closed")
    expect(page.locator("#login-reason")).to_have_attribute("data-reason", "account_closed")
    for p in (page, login):
        assert p.errors == []  # type: ignore[attr-defined]
