"""Chat in the web client: two browsers against a real server, each behind its own loopback
proxy; one of them loses its network while it sends."""

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from chatserver.models import RoomEvent
from identity.admin_services import phone_bind_verified
from identity.services import citizen_create, session_create
from tests.e2e.conftest import LiveServer
from tests.e2e.test_web_client import http_json
from tests.e2e.web_helpers import (
    PHONE,
    CuttableProxy,
    axe_check,
    browser,  # noqa: F401  (fixture)
    demo_login,
    every_screen,
    fill_and_send,
    messages_with,
    new_page,
    proxies,  # noqa: F401  (fixture)
    screenshot,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def demo_mode(settings: pytest.FixtureRequest) -> None:
    settings.SONOR_DEMO = True  # type: ignore[attr-defined]


def accept_dialogs(page: Page) -> None:
    page.on("dialog", lambda dialog: dialog.accept(dialog.default_value))


def test_two_browsers_chat_live_and_a_message_survives_a_cut_network(
    live_server_factory: Callable[..., LiveServer], browser: Browser,  # noqa: F811
    proxies: list[CuttableProxy], demo_mode: None,  # noqa: F811
) -> None:
    bat = citizen_create(register_number="УБ99011512", name="Бат-Эрдэнэ")
    phone_bind_verified(user=bat, phone="+97699112233")
    sarnai = citizen_create(register_number="УБ05211522", name="Сарнай")
    phone_bind_verified(user=sarnai, phone="+97688112233")
    bat_net, sarnai_net = CuttableProxy(), CuttableProxy()
    proxies += [bat_net, sarnai_net]
    # A small resume limit: what Бат misses while cut is more than a replay (welcome.resync);
    # no send limit, for the long history the test writes.
    server = live_server_factory(SONOR_ALLOWED_ORIGINS=f"{bat_net.url},{sarnai_net.url}",
                                 SONOR_RESUME_LIMIT="3", SONOR_CHAT_SEND_RATE="1000")
    bat_net.target_port = sarnai_net.target_port = server.port

    _, bat_page = new_page(browser)
    welcomes: list[dict[str, Any]] = []  # what the server told Бат's page on each (re)connect

    def on_socket(ws: Any) -> None:
        def on_frame(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame.get("type") == "welcome":
                welcomes.append(frame)

        ws.on("framereceived", on_frame)

    bat_page.on("websocket", on_socket)
    demo_login(bat_page, bat_net.url, bat)
    _, sarnai_page = new_page(browser, viewport=PHONE)
    demo_login(sarnai_page, sarnai_net.url, sarnai)
    for page in (bat_page, sarnai_page):
        accept_dialogs(page)
        expect(page.locator("#view-chat")).to_be_visible()  # chat is the first screen
    screenshot(bat_page, "chat-empty")

    # Бат asks to chat by Сарнай's number; she has not talked to him, so she is asked.
    bat_page.fill("#direct-phone", "8811 2233")
    bat_page.click("#direct-start")
    expect(bat_page.locator("#chat-ok")).to_contain_text("+97688112233")
    invitation = sarnai_page.locator("#invitations .invitation")
    expect(invitation).to_contain_text("Бат-Эрдэнэ")
    invitation.locator("button.accept").click()
    expect(sarnai_page.locator("#room-name")).to_have_text("Бат-Эрдэнэ")
    # The room appears on Бат's page live; he opens it.
    bat_room = bat_page.locator("#rooms .room", has_text="Сарнай")
    expect(bat_room).to_have_count(1)
    bat_room.locator("button").click()
    expect(bat_page.locator("#room-name")).to_have_text("Сарнай")

    # Typing, then a message: live on her side, and his shows "seen" once she has read it.
    bat_page.locator("#composer-text").press_sequentially("Сайн")
    expect(sarnai_page.locator("#typing")).to_contain_text("Бат-Эрдэнэ")
    fill_and_send(bat_page, "Сайн байна уу?")
    expect(messages_with(sarnai_page, "Сайн байна уу?")).to_have_count(1)
    mine = bat_page.locator("#messages .message.mine").last
    expect(mine.locator(".text")).to_have_text("Сайн байна уу?")
    expect(mine).to_have_attribute("data-status", "read")
    fill_and_send(sarnai_page, "Сайн, сайн. Та?")
    expect(messages_with(bat_page, "Сайн, сайн. Та?")).to_have_count(1)
    every_screen(bat_page, "chat")
    axe_check(sarnai_page, "chat, the room on a phone")

    # He edits his message, then deletes it: both show on her side.
    mine.locator("button.edit").click()
    expect(bat_page.locator("#composer-text")).to_have_value("Сайн байна уу?")
    bat_page.fill("#composer-text", "Сайн байна уу, Сарнай?")
    bat_page.press("#composer-text", "Enter")
    theirs = sarnai_page.locator("#messages .message.theirs").first
    expect(theirs.locator(".text")).to_have_text("Сайн байна уу, Сарнай?")
    expect(theirs.locator(".edited")).not_to_be_empty()
    mine.locator("button.delete").click()
    expect(theirs).to_have_class(re.compile(r"\bdeleted\b"))
    expect(messages_with(sarnai_page, "Сарнай?")).to_have_count(0)
    room_id = int(bat_page.locator("#rooms .room").first.get_attribute("data-room") or 0)

    # A register number in a message: the personal-data warning, then sent once confirmed.
    fill_and_send(bat_page, "Миний регистр УБ99011512")
    expect(bat_page.locator("#pii-warning")).to_be_visible()
    expect(messages_with(sarnai_page, "УБ99011512")).to_have_count(0)
    bat_page.click("#pii-send")
    expect(bat_page.locator("#pii-warning")).to_be_hidden()
    expect(messages_with(sarnai_page, "Миний регистр УБ99011512")).to_have_count(1)
    # She reports it (the suggested reason is accepted).
    sarnai_page.locator("#messages .message.theirs", has_text="УБ99011512"
                        ).locator("button.report").click()
    expect(sarnai_page.locator("#room-ok")).to_be_visible()

    # His network swallows the server's answers: what he sends stays pending...
    bat_net.blackhole()
    fill_and_send(bat_page, "Холболт тасарсан үед")
    pending = bat_page.locator("#messages .message.mine", has_text="Холболт тасарсан үед")
    expect(pending).to_have_attribute("data-status", "pending")
    # ...then drops altogether: the page says it is offline; the message is still pending.
    bat_net.cut()
    expect(bat_page.locator("#offline-banner")).to_be_visible()
    expect(bat_page.locator("#conn")).to_have_attribute("data-state", "offline")
    expect(pending).to_have_attribute("data-status", "pending")
    screenshot(bat_page, "chat-offline")
    # Meanwhile she writes more than the server replays in a resume.
    for n in range(1, 5):
        fill_and_send(sarnai_page, f"Бат аа {n}")
        expect(messages_with(sarnai_page, f"Бат аа {n}")).to_have_count(1)
    # The network is back: the page resumes (the room reloaded, as welcome.resync asks),
    # resends with the same client_msg_id, and the message exists once, on both sides and on
    # the server.
    bat_net.restore()
    expect(bat_page.locator("#conn")).to_have_attribute("data-state", "online")
    expect(bat_page.locator("#offline-banner")).to_be_hidden()
    expect(pending).to_have_count(1)
    expect(pending).to_have_attribute("data-status", re.compile("sent|read"))
    expect(messages_with(sarnai_page, "Холболт тасарсан үед")).to_have_count(1)
    for n in range(1, 5):
        expect(messages_with(bat_page, f"Бат аа {n}")).to_have_count(1)
    assert welcomes[-1]["resync"] == [f"room:{room_id}"]
    # And live again.
    fill_and_send(sarnai_page, "Одоо ирлээ")
    expect(messages_with(bat_page, "Одоо ирлээ")).to_have_count(1)
    assert RoomEvent.objects.filter(room_id=room_id, kind=RoomEvent.Kind.MESSAGE,
                                    text="Холболт тасарсан үед").count() == 1
    expect(messages_with(sarnai_page, "Холболт тасарсан үед")).to_have_count(1)

    # A group: Бат creates it with her (a contact now, so she is in at once)...
    bat_page.click(".group-create summary")
    bat_page.fill("#group-name", "Гэр бүл")
    bat_page.fill("#group-phones", "+97688112233")
    bat_page.click("#group-create")
    expect(bat_page.locator("#room-name")).to_have_text("Гэр бүл")
    group = sarnai_page.locator("#rooms .room", has_text="Гэр бүл")
    expect(group).to_have_count(1)
    # ...with a long history: she sees the newest page, and older ones as she scrolls up.
    group_id = int(bat_page.locator("#rooms .room", has_text="Гэр бүл"
                                    ).get_attribute("data-room") or 0)
    _, bat_token = session_create(user=bat, login_method="test", device_name="Phone")
    for n in range(1, 61):
        status, _ = http_json("POST", f"{server.url}/api/v1/rooms/{group_id}/messages",
                              {"client_msg_id": f"history-{n}", "text": f"Түүх {n:02d}"},
                              token=bat_token)
        assert status == 201
    fill_and_send(bat_page, "Сүүлийнх")
    # Her list shows the group's last message and what she has not read, live.
    expect(group.locator(".room-last")).to_have_text("Сүүлийнх")
    expect(group.locator(".badge")).to_have_text("61")
    expect(sarnai_page.locator("#chat-unread")).to_have_text("61")
    if sarnai_page.locator("#room-back").is_visible():
        sarnai_page.click("#room-back")  # a phone shows the list or the room
    group.locator("button").click()
    expect(messages_with(sarnai_page, "Сүүлийнх")).to_have_count(1)
    expect(sarnai_page.locator(".message .sender").last).to_have_text("Бат-Эрдэнэ")
    expect(messages_with(sarnai_page, "Түүх 01")).to_have_count(0)
    sarnai_page.locator("#messages").evaluate("list => list.scrollTop = 0")
    expect(messages_with(sarnai_page, "Түүх 01")).to_have_count(1)
    assert sarnai_page.locator("#messages .message .text").all_text_contents()[:3] == [
        "Түүх 01", "Түүх 02", "Түүх 03"]
    # He removes her: the group leaves her list at once. Then he leaves it himself.
    bat_page.click("#room-members-toggle")
    member = bat_page.locator("#member-list .member", has_text="Сарнай")
    member.locator("button.remove").click()
    expect(group).to_have_count(0)
    expect(sarnai_page.locator("#room-view")).to_be_hidden()
    expect(bat_page.locator("#messages .system", has_text="Сарнай хасагдлаа")).to_have_count(1)
    bat_page.click("#room-leave")
    expect(bat_page.locator("#rooms .room", has_text="Гэр бүл")).to_have_count(0)

    # He blocks her: what she sends now is not delivered, and she sees that it was not.
    bat_page.locator("#rooms .room", has_text="Сарнай").locator("button").click()
    bat_page.click("#room-block")
    expect(bat_page.locator("#room-ok")).to_contain_text("хориглогдлоо")
    sarnai_page.locator("#rooms .room", has_text="Бат-Эрдэнэ").locator("button").click()
    fill_and_send(sarnai_page, "Сонсож байна уу?")
    held = sarnai_page.locator("#messages .message.mine", has_text="Сонсож байна уу?")
    expect(held).to_have_attribute("data-status", "held")
    fill_and_send(bat_page, "Баяртай")  # the room goes on for him
    expect(messages_with(bat_page, "Баяртай")).to_have_count(1)
    expect(messages_with(bat_page, "Сонсож байна уу?")).to_have_count(0)
    for page in (bat_page, sarnai_page):
        assert page.errors == []  # type: ignore[attr-defined]
