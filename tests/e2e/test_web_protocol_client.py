"""The protocol client module (frontend/static/sonor/client.js) in a real browser, against a
scripted socket: the cases a live server rarely shows on demand (4408, 4429, 4401, 4403, a
gap in a stream, a lost ack, jitter bounds). The module is loaded from a real server, as the
pages load it."""

from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.conftest import LiveServer
from tests.e2e.web_helpers import browser, new_page  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

# A WebSocket stand-in the test drives: it records what the client sends, and delivers
# server frames and close codes when told.
FAKE_SOCKET = """
window.FakeSocket = class FakeSocket {
  constructor(url) {
    FakeSocket.all.push(this);
    this.url = url; this.readyState = 0; this.sent = [];
    setTimeout(() => { this.readyState = 1; this.onopen && this.onopen(); }, 0);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code = 1000) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose && this.onclose({ code }), 0);
  }
  frame(frame) { this.onmessage({ data: JSON.stringify(frame) }); }
  drop(code) { this.readyState = 3; this.onclose({ code }); }
  last(type) { return [...this.sent].reverse().find((f) => f.type === type); }
};
FakeSocket.all = [];
window.tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));
window.welcome = (socket, extra = {}) => socket.frame({
  type: "welcome", id: socket.last("hello").id, user: { id: 7, name: "Бат", phone: null },
  session_id: 1, server_time: "2026-01-01T00:00:00Z", inbox_seq: 10, unread: 0, resync: [],
  ...extra });
"""


def run(page: Page, body: str) -> Any:
    """Run `body` (an async function body that gets SonorClient and returns a value)."""
    return page.evaluate(
        "async (body) => { const { SonorClient } = await import('/static/sonor/client.js');"
        " return await (new Function('SonorClient', 'return (async () => {' + body + '})()'))"
        "(SonorClient); }", body)


@pytest.fixture
def page(server: LiveServer, browser: Browser) -> Page:  # noqa: F811
    _, page = new_page(browser)
    page.goto(f"{server.url}/healthz")
    page.add_script_tag(content=FAKE_SOCKET)
    return page


def test_resume_dedupe_gap_and_resync(page: Page) -> None:
    result = run(page, """
      const client = new SonorClient({ url: "ws://x/ws/v1", WebSocketImpl: FakeSocket });
      const seen = [], resyncs = [];
      client.on("chat.message", (m) => seen.push(m.seq));
      client.on("resync", (r) => resyncs.push(r.stream));
      client.trackRoom(5, 3);
      client.start(); await tick();
      const socket = FakeSocket.all[0];
      const hello = socket.last("hello");
      welcome(socket);
      const msg = (seq) => ({ type: "chat.message", room: 5, seq, id: seq, sender: 2,
                              text: "t", sent_at: "2026-01-01T00:00:00Z", client_msg_id: null });
      socket.frame(msg(4)); socket.frame(msg(4)); socket.frame(msg(3));   // a repeat, an old one
      socket.frame(msg(6));                                               // a gap: not applied
      await tick();
      const again = socket.sent.filter((f) => f.type === "hello").length;
      welcome(socket, { resync: ["room:9", "inbox"], inbox_seq: 20 });
      socket.frame(msg(5)); socket.frame(msg(6));                         // the replay
      return { hello, seen, again, resyncs, inbox: client.inboxSeq };
    """)
    assert result["hello"]["resume"] == {"rooms": {"5": 3}}  # no inbox seq known yet
    assert result["again"] == 2  # the gap asked for a resume on the same socket
    assert result["seen"] == [4, 5, 6]
    assert result["resyncs"] == ["room:9", "inbox"]
    assert result["inbox"] == 20


def test_pending_message_is_resent_with_the_same_id_after_a_reconnect(page: Page) -> None:
    result = run(page, """
      const client = new SonorClient({ url: "ws://x/ws/v1", WebSocketImpl: FakeSocket,
                                       random: () => 0 });
      const states = [];
      client.on("outbox", (item) => states.push(item.status));
      client.start(); await tick();
      let socket = FakeSocket.all[0];
      welcome(socket); await tick();
      const item = client.send(5, "Сайн уу");
      const first = socket.last("chat.send");
      socket.drop(1006);                      // the ack never came
      const pendingAfterDrop = item.status;
      await tick(600);                        // backoff: 500 ms with this random
      socket = FakeSocket.all[1];
      const beforeWelcome = socket.sent.filter((f) => f.type === "chat.send").length;
      welcome(socket); await tick();
      const second = socket.last("chat.send");
      socket.frame({ type: "ack", id: second.id, seq: 8, message_id: 80 });
      await tick();
      const sendsOffline = (() => {
        socket.drop(1006);
        const offline = client.send(5, "offline");
        return offline.status;
      })();
      return { first, second, pendingAfterDrop, beforeWelcome, states, status: item.status,
               seq: item.seq, sendsOffline, sentWhileOffline: socket.sent.length };
    """)
    assert result["first"]["client_msg_id"] == result["second"]["client_msg_id"]
    assert result["first"]["id"] != result["second"]["id"]
    assert result["pendingAfterDrop"] == "pending"
    assert result["beforeWelcome"] == 0  # resent only after hello is answered
    assert (result["status"], result["seq"]) == ("sent", 8)
    assert result["states"] == ["pending", "sent", "pending"]
    assert result["sendsOffline"] == "pending"


def test_close_codes_and_backoff(page: Page) -> None:
    result = run(page, """
      const delays = {};
      async function closeWith(code, random, drops = 1) {
        FakeSocket.all = [];
        const client = new SonorClient({ url: "ws://x/ws/v1", WebSocketImpl: FakeSocket,
                                         random: () => random });
        let last = null;
        client.on("state", (s) => { last = s; });
        client.start(); await tick();
        for (let i = 0; i < drops; i++) {
          FakeSocket.all[FakeSocket.all.length - 1].drop(code);
          if (i < drops - 1) { client._reconnectNow(); await tick(); }
        }
        const result = { state: last.state, retryInMs: last.retryInMs,
                         sockets: FakeSocket.all.length };
        client.stop();
        return result;
      }
      return {
        lost: await closeWith(1006, 0), lostMax: await closeWith(1006, 1),
        lostThird: await closeWith(1006, 0, 3),
        rateLimited: await closeWith(4429, 0), tooSlow: await closeWith(4408, 0),
        revoked: await closeWith(4401, 0), refused: await closeWith(4403, 0),
      };
    """)
    assert result["lost"] == {"state": "offline", "retryInMs": 500, "sockets": 1}
    assert result["lostMax"]["retryInMs"] == 1000
    assert result["lostThird"]["retryInMs"] == 2000  # 1 s, 2 s, 4 s: half of it at least
    assert result["rateLimited"]["retryInMs"] == 2000
    assert result["tooSlow"]["retryInMs"] == 0  # resume at once
    assert result["revoked"]["state"] == "revoked"
    assert result["refused"]["state"] == "refused"


def test_unsent_messages_outlive_the_page_in_storage_per_user(page: Page) -> None:
    result = run(page, """
      const storage = new Map();
      const store = { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v),
                      removeItem: (k) => storage.delete(k) };
      const first = new SonorClient({ url: "ws://x/ws/v1", WebSocketImpl: FakeSocket,
                                      storage: store });
      first.start(); await tick();
      welcome(FakeSocket.all[0]); await tick();
      FakeSocket.all[0].drop(1006);
      const item = first.send(5, "Ачаалахаас өмнө");    // typed offline, then the page reloads
      const kept = JSON.parse(storage.get("sonor.outbox.7"));
      first.stop();

      const other = new SonorClient({ url: "ws://x/ws/v1", WebSocketImpl: FakeSocket,
                                      storage: store });
      other.start(); await tick();
      let socket = FakeSocket.all[FakeSocket.all.length - 1];
      welcome(socket, { user: { id: 8, name: "Сарнай", phone: null } }); await tick();
      const sentByAnotherUser = socket.sent.filter((f) => f.type === "chat.send").length;
      other.stop();

      const again = new SonorClient({ url: "ws://x/ws/v1", WebSocketImpl: FakeSocket,
                                      storage: store });
      again.start(); await tick();
      socket = FakeSocket.all[FakeSocket.all.length - 1];
      welcome(socket); await tick();
      const resent = socket.last("chat.send");
      socket.frame({ type: "ack", id: resent.id, seq: 9, message_id: 90 });
      await tick();
      return { kept, clientMsgId: item.clientMsgId, sentByAnotherUser, resent,
               left: storage.has("sonor.outbox.7") };
    """)
    assert [k["text"] for k in result["kept"]] == ["Ачаалахаас өмнө"]
    assert result["sentByAnotherUser"] == 0  # kept per user
    assert result["resent"]["client_msg_id"] == result["clientMsgId"]
    assert result["resent"]["text"] == "Ачаалахаас өмнө"
    assert result["left"] is False  # acked: nothing kept
