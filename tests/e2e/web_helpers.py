"""Shared pieces of the browser tests of the web client (test_web_*.py): the browser, pages
at phone and desktop width with their screenshots, demo login, and a loopback TCP proxy that
can cut a browser's network."""

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from identity.login.demo import demo_login_link_create
from identity.models import User

CHROMIUM = os.environ.get("SONOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
TIMEOUT_MS = 15_000
ROOT = Path(__file__).resolve().parents[2]
# Screenshots of every screen (gitignored); SONOR_TEST_ARTIFACTS points elsewhere.
ARTIFACTS = Path(os.environ.get("SONOR_TEST_ARTIFACTS", ROOT / "test-artifacts"))
DESKTOP: ViewportSize = {"width": 1200, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 780}


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    # Playwright's sync API runs its loop in a greenlet of this thread: Django's guard
    # would refuse the test's own synchronous ORM calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()
        connections.close_all()


def new_page(browser: Browser, *, viewport: ViewportSize | None = None
             ) -> tuple[BrowserContext, Page]:
    """A fresh browser profile; `page.errors` collects script errors and CSP violations."""
    context = browser.new_context(locale="mn-MN", timezone_id="Asia/Ulaanbaatar",
                                  viewport=viewport or DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.errors = errors  # type: ignore[attr-defined]
    return context, page


def record_close_codes(page: Page) -> None:
    """Record the close code of every device socket (/ws/v1) the page's documents open, in
    the tab's sessionStorage (it outlives a navigation to the login page); read them with
    close_codes()."""
    page.add_init_script("""
      const Native = window.WebSocket;
      window.WebSocket = class extends Native {
        constructor(url, ...rest) {
          super(url, ...rest);
          if (!String(url).endsWith("/ws/v1")) return;
          this.addEventListener("close", (event) => {
            const codes = JSON.parse(sessionStorage.getItem("test.closeCodes") || "[]");
            sessionStorage.setItem("test.closeCodes", JSON.stringify([...codes, event.code]));
          });
        }
      };
    """)


def close_codes(page: Page) -> list[int]:
    return list(page.evaluate('JSON.parse(sessionStorage.getItem("test.closeCodes") || "[]")'))


def demo_login(page: Page, base_url: str, user: User) -> None:
    token = demo_login_link_create(user=user)
    page.goto(f"{base_url}/demo/login/{token}")
    expect(page).to_have_url(f"{base_url}/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "online")


def screenshot(page: Page, name: str) -> Path:
    """A screenshot of the page as it is now, under the artifacts directory."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    path = ARTIFACTS / f"{name}-{'phone' if width < 700 else 'desktop'}.png"
    page.screenshot(path=str(path))
    return path


class CuttableProxy:
    """A loopback TCP proxy in front of the server: `blackhole()` silently drops what the
    server sends (a network that swallows answers), `cut()` closes every connection and
    refuses new ones, `pause()` stops reading what the server sends (a reader that falls
    behind: the server's writes back up), `restore()` heals all three. `receive_buffer`
    shrinks the proxy's receive buffer towards the server, so that a pause backs up soon.
    Threads; stops with close()."""

    def __init__(self, receive_buffer: int | None = None) -> None:
        self.receive_buffer = receive_buffer
        self.reading = threading.Event()
        self.reading.set()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.target_port = 0
        self.refusing = False
        self.dropping = False
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing or not self.target_port:
                client.close()
                continue
            try:
                upstream = socket.socket()
                if self.receive_buffer:  # before connect: it sets the window offered
                    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
                upstream.settimeout(5)
                upstream.connect(("127.0.0.1", self.target_port))
                upstream.settimeout(None)
            except OSError:
                upstream.close()
                client.close()
                continue
            with self.lock:
                self.open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True
                             ).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True
                             ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, downstream: bool) -> None:
        try:
            while True:
                if downstream:
                    self.reading.wait()
                data = source.recv(65536 if not self.receive_buffer else 1024)
                if not data:
                    break
                if downstream and self.dropping:
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def blackhole(self) -> None:
        self.dropping = True

    def pause(self) -> None:
        self.reading.clear()

    def cut(self) -> None:
        self.refusing = True
        with self.lock:
            sockets, self.open = self.open, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.dropping = False

    def restore(self) -> None:
        self.dropping = False
        self.refusing = False
        self.reading.set()

    def close(self) -> None:
        self.closed = True
        self.reading.set()
        self.cut()
        self.listener.close()


@pytest.fixture
def proxies() -> Iterator[list[CuttableProxy]]:
    made: list[CuttableProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def axe_check(page: Page, screen: str) -> None:
    """No serious or critical accessibility violation on the page as it is now (axe-core,
    bundled by axe-playwright-python: nothing is fetched)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"]
           if v.get("impact") in ("serious", "critical")]
    assert not bad, f"{screen}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}" for v in bad)


def every_screen(page: Page, name: str) -> None:
    """Scan and photograph the screen as it is now, at desktop and at phone width."""
    size = page.viewport_size or DESKTOP
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        axe_check(page, f"{name} at {viewport['width']}px")
        screenshot(page, name)
    page.set_viewport_size(size)


def fill_and_send(page: Page, text: str) -> None:
    page.fill("#composer-text", text)
    page.press("#composer-text", "Enter")


def messages_with(page: Page, text: str) -> Any:
    return page.locator("#messages .message .text", has_text=text)
