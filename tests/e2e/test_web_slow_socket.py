"""A browser that falls behind a busy room, against a real server: its socket is closed with
4408 (too slow), and the page reconnects by itself, shows the last message and counts every
one unread."""

import os
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from chatserver.models import Room
from identity.admin_services import phone_bind_verified
from identity.models import User
from identity.services import citizen_create, session_create
from tests.chatserver.chat_helpers import direct_room
from tests.e2e.conftest import LiveServer
from tests.e2e.test_web_client import http_json, wait_until
from tests.e2e.web_helpers import (
    TIMEOUT_MS,
    CuttableProxy,
    browser,  # noqa: F401  (fixture)
    close_codes,
    demo_login,
    new_page,
    proxies,  # noqa: F401  (fixture)
    record_close_codes,
)

pytestmark = [
    pytest.mark.e2e,
    # daphne's transport takes every write into its own buffer, without back-pressure: the
    # socket's outbox never fills, so 4408 is a uvicorn promise (docs/operations.md).
    pytest.mark.skipif(os.environ.get("SONOR_E2E_SERVER") == "daphne",
                       reason="daphne buffers writes itself: no slow-socket close"),
]

BURST_MAX = 400  # messages at most (loopback buffers held about 180 of these here)
BIG = "🐎" * 4000  # large frames (4 bytes a character) fill the paused buffers sooner


@pytest.fixture
def demo_mode(settings: Any) -> None:
    settings.SONOR_DEMO = True


@pytest.fixture
def chat_pair(transactional_db: None) -> tuple[User, User, Room]:
    """Бат and Сарнай with their direct room; made before the browser starts (its loop
    would make the room's publish refuse to run in this thread)."""
    bat = citizen_create(register_number="УБ99011512", name="Бат-Эрдэнэ")
    phone_bind_verified(user=bat, phone="+97699112233")
    sarnai = citizen_create(register_number="УБ05211522", name="Сарнай")
    phone_bind_verified(user=sarnai, phone="+97688112233")
    return bat, sarnai, direct_room(sarnai, bat)


def test_a_page_that_falls_behind_is_closed_with_4408_and_catches_up_by_itself(
    live_server_factory: Callable[..., LiveServer], chat_pair: tuple[User, User, Room],
    browser: Browser, proxies: list[CuttableProxy], demo_mode: None,  # noqa: F811
) -> None:
    bat, sarnai, room = chat_pair
    _, sarnai_token = session_create(user=sarnai, login_method="test", device_name="Phone")
    # Бат's network: a small receive buffer, so that a pause backs the server up soon.
    net = CuttableProxy(receive_buffer=4096)
    proxies.append(net)
    # A socket may have 20 frames waiting (more than a reconnect's own reads and receipts
    # queue up); Сарнай may send as fast as she likes.
    server = live_server_factory(SONOR_ALLOWED_ORIGINS=net.url, SONOR_CHAT_SOCKET_BUFFER="20",
                                 SONOR_CHAT_SEND_RATE="100000")
    net.target_port = server.port

    _, page = new_page(browser)
    record_close_codes(page)
    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws) if ws.url.endswith("/ws/v1") else None)
    demo_login(page, net.url, bat)
    # What the connection badge shows, every change of it (the offline spell is short).
    page.evaluate("""() => {
      const conn = document.getElementById("conn");
      window.connStates = [conn.dataset.state];
      // Each record's old value: no state is missed when several change in one task.
      new MutationObserver((records) => {
        for (const record of records) window.connStates.push(record.oldValue);
        window.connStates.push(conn.dataset.state);
      }).observe(conn, { attributeFilter: ["data-state"], attributeOldValue: true });
    }""")
    room_item = page.locator("#rooms .room", has_text="Сарнай")
    expect(room_item).to_have_count(1)

    # Бат's tab stops reading; Сарнай writes until the server gives up on his socket.
    net.pause()
    sent = 0
    while "fell behind" not in server.log():
        assert sent < BURST_MAX, "the server never closed the slow socket"
        status, body = http_json("POST", f"{server.url}/api/v1/rooms/{room.pk}/messages",
                                 {"client_msg_id": f"burst-{sent}", "text": f"№{sent} {BIG}"},
                                 token=sarnai_token)
        assert status == 201, body
        sent += 1
    net.restore()

    # The page reads what was on the wire, sees 4408, reconnects at once and resumes: the
    # room shows the last message and counts every one unread, once, without a reload.
    expect(room_item.locator(".room-last")).to_contain_text(f"№{sent - 1} ", timeout=TIMEOUT_MS)
    expect(page.locator("#chat-unread")).to_have_text(str(sent), timeout=TIMEOUT_MS)
    # Closed as too slow (once, or again if catching up fell behind too), and every close
    # was followed by a reconnect of its own; the page ends online.
    wait_until(page, lambda: len(sockets) == len(close_codes(page)) + 1
               and page.locator("#conn").get_attribute("data-state") == "online")
    codes = close_codes(page)
    assert codes and set(codes) == {4408}, codes
    states = page.evaluate("window.connStates")
    assert "offline" in states, states  # the user saw it reconnect
    assert page.errors == []  # type: ignore[attr-defined]
