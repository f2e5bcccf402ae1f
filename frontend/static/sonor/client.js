/* The Sonor protocol client: owns the device socket (/ws/v1). Plain ES module, no build
 * step, no dependency. docs/writing-a-client.md explains it for app developers.
 *
 *   const client = new SonorClient({ url: "wss://host/ws/v1" });
 *   client.on("chat.message", (m) => ...);      // every room event arrives once, in seq order
 *   client.on("state", (s) => ...);             // connecting, online, offline, revoked, refused
 *   client.trackRoom(roomId, lastSeq);          // rooms to resume (e.g. from GET /api/v1/rooms)
 *   client.start();
 *   const item = client.send(roomId, "Сайн уу"); // pending until its ack; resent after a reconnect
 *
 * What it guarantees the code above it:
 * - Room events (chat.message, chat.updated, chat.member, chat.room) and inbox events
 *   (notify.new) are delivered exactly once and without gaps: an event whose seq it already
 *   has is dropped; a gap triggers `hello` again, whose replay fills it in order.
 * - After every (re)connect it sends `hello` with the last seq of each stream. A stream the
 *   server lists in `welcome.resync` is announced with a "resync" event: reload it over REST
 *   and call trackRoom()/setInboxSeq() with the new head.
 * - A message sent with send() keeps its client_msg_id until the server acks it; after a
 *   reconnect it is sent again with the same id, and the server stores it once.
 * - Reconnects back off exponentially with jitter (longer after 4429); 4408 (too slow)
 *   reconnects at once and resumes; 4401 (revoked) and 4403 (origin refused) stop for good.
 */

export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_ORIGIN_FORBIDDEN = 4403;
export const CLOSE_TOO_SLOW = 4408;
export const CLOSE_RATE_LIMITED = 4429;

const ROOM_EVENTS = new Set(["chat.message", "chat.updated", "chat.member", "chat.room"]);
const PING_EVERY_MS = 25000;
const PONG_WAIT_MS = 10000;
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 30000;

/** A request the server answered with `error`: `code`, `message` and `extra` as sent. */
export class SonorError extends Error {
  constructor(code, message, extra) {
    super(message || code);
    this.code = code;
    this.extra = extra || {};
  }
}

function randomId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + Math.random().toString(36).slice(2);
}

export class SonorClient {
  /**
   * url: the socket's address (ws:// or wss://). A browser on the server's own origin is
   * authenticated by its session cookie; an app passes a `WebSocketImpl` whose constructor
   * (given the url) opens the socket with `Authorization: Bearer <token>` (React Native's
   * WebSocket takes headers as its third argument). `random` is for tests of the backoff.
   */
  constructor({ url, WebSocketImpl = globalThis.WebSocket, random = Math.random,
                storage = null } = {}) {
    this.url = url;
    this.WebSocketImpl = WebSocketImpl;
    this.random = random;
    // Where unsent messages outlive the client (a Web Storage: sessionStorage keeps them
    // across a page reload); per user, read after the first welcome says who that is.
    this.storage = storage;
    this.state = "idle";
    this.user = null;              // welcome.user
    this.sessionId = null;
    this.roomSeqs = new Map();     // room id -> last seq applied
    this.inboxSeq = null;          // last inbox seq applied (null: not known yet)
    this.outbox = new Map();       // client_msg_id -> {room, text, confirmPii, status, ...}
    this.socket = null;
    this.requests = new Map();     // request id -> {resolve, reject}
    this.listeners = new Map();
    this.attempt = 0;
    this.nextId = 1;
    this.timers = { reconnect: null, ping: null, pong: null };
    this.stopped = true;
    this.welcomed = false;
    this.resumeAgain = false;      // a gap was seen while a hello was on its way
    this.helloInFlight = false;
    this.revokedReason = null;
    this._onOnline = () => { if (this.state === "offline") this._reconnectNow(); };
  }

  /* ---- events -------------------------------------------------------------------------- */

  /** Listen to a server frame type ("chat.message", "notify.new", ...) or to the client's
   *  own events: state, welcome, resync, outbox, revoked. Returns an unsubscribe function. */
  on(type, callback) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(callback);
    return () => this.listeners.get(type).delete(callback);
  }

  _emit(type, payload) {
    for (const callback of this.listeners.get(type) || []) {
      try { callback(payload); } catch (err) { console.error(err); }
    }
  }

  _setState(state, detail) {
    this.state = state;
    this._emit("state", { state, ...(detail || {}) });
  }

  /* ---- streams ------------------------------------------------------------------------- */

  /** Resume `room` from `seq` (its newest event the caller has); never moves backwards. */
  trackRoom(room, seq) {
    const known = this.roomSeqs.get(room);
    if (known === undefined || seq > known) this.roomSeqs.set(room, seq);
  }

  forgetRoom(room) {
    this.roomSeqs.delete(room);
  }

  setInboxSeq(seq) {
    if (this.inboxSeq === null || seq > this.inboxSeq) this.inboxSeq = seq;
  }

  /* ---- connection ---------------------------------------------------------------------- */

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    globalThis.addEventListener?.("online", this._onOnline);
    this._connect();
  }

  stop() {
    this.stopped = true;
    globalThis.removeEventListener?.("online", this._onOnline);
    this._clearTimers();
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close(1000);
      this.socket = null;
    }
    this._failRequests("stopped");
  }

  get online() {
    return this.state === "online";
  }

  _connect() {
    this._clearTimers();
    this.welcomed = false;
    this._setState("connecting", { attempt: this.attempt });
    const socket = new this.WebSocketImpl(this.url);
    this.socket = socket;
    socket.onopen = () => this._hello();
    socket.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (err) { return; }
      this._receive(frame);
    };
    socket.onclose = (event) => this._closed(socket, event.code);
  }

  _closed(socket, code) {
    if (socket !== this.socket) return;
    this.socket = null;
    this._clearTimers();
    this._failRequests("disconnected");
    for (const item of this.outbox.values()) if (item.status === "sending") item.status = "pending";
    if (this.stopped) return;
    if (code === CLOSE_UNAUTHENTICATED) {
      this.stopped = true;
      this._setState("revoked", { reason: this.revokedReason });
      this._emit("revoked", { reason: this.revokedReason });
      return;
    }
    if (code === CLOSE_ORIGIN_FORBIDDEN) {
      this.stopped = true;
      this._setState("refused", { code });
      return;
    }
    // Backoff with jitter, so that a server restart is not met by every client at once.
    let delay;
    if (code === CLOSE_TOO_SLOW) {
      delay = this.random() * BACKOFF_FIRST_MS; // not the network: resume at once
    } else {
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt) *
        (code === CLOSE_RATE_LIMITED ? 4 : 1);
      delay = base / 2 + this.random() * base / 2;
      this.attempt += 1;
    }
    this._setState("offline", { code, retryInMs: delay });
    this.timers.reconnect = setTimeout(() => this._connect(), delay);
  }

  _reconnectNow() {
    if (this.stopped || this.socket) return;
    this._connect();
  }

  _clearTimers() {
    clearTimeout(this.timers.reconnect);
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.pong);
  }

  _failRequests(code) {
    const requests = this.requests;
    this.requests = new Map();
    for (const { reject } of requests.values()) reject(new SonorError(code, code));
  }

  /* ---- requests ------------------------------------------------------------------------ */

  _write(frame) {
    if (!this.socket || this.socket.readyState !== 1) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  _requestNow(frame) {
    const id = "r" + this.nextId++;
    const full = { ...frame, id };
    return new Promise((resolve, reject) => {
      if (!this._write(full)) { reject(new SonorError("disconnected", "disconnected")); return; }
      this.requests.set(id, { resolve, reject });
    });
  }

  /** Send a request frame (without `id`); resolves with its answer (`ack`, `pong`,
   *  `chat.history`), rejects with SonorError (the server's `error`, or "disconnected"). */
  request(frame) {
    if (!this.online) return Promise.reject(new SonorError("disconnected", "disconnected"));
    return this._requestNow(frame);
  }

  _hello() {
    const rooms = {};
    for (const [room, seq] of this.roomSeqs) rooms[String(room)] = seq;
    const resume = { rooms };
    if (this.inboxSeq !== null) resume.inbox = this.inboxSeq;
    this.helloInFlight = true;
    this.resumeAgain = false;
    this._requestNow({ type: "hello", resume }).catch(() => {});
  }

  _resume() {
    // A gap: ask for what is missing (once at a time; the welcome's replay is in order).
    if (!this.welcomed) return;
    if (this.helloInFlight) { this.resumeAgain = true; return; }
    this._hello();
  }

  _startPing() {
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => {
      this.request({ type: "ping" }).catch(() => {});
      // No pong in time: the connection is dead though no close was seen (a lost network).
      clearTimeout(this.timers.pong);
      this.timers.pong = setTimeout(() => this.socket && this.socket.close(), PONG_WAIT_MS);
    }, PING_EVERY_MS);
  }

  /* ---- frames from the server ---------------------------------------------------------- */

  _receive(frame) {
    // Answers carry the request's string id; events such as notify.new carry numeric ids.
    const waiting = typeof frame.id === "string" ? this.requests.get(frame.id) : null;
    if (waiting) {
      this.requests.delete(frame.id);
      if (frame.type === "error") waiting.reject(new SonorError(frame.code, frame.message, frame.extra));
      else waiting.resolve(frame);
    }
    switch (frame.type) {
      case "welcome": return this._welcome(frame);
      case "pong": clearTimeout(this.timers.pong); return;
      case "ack": case "error": case "chat.history": return;
      case "session.revoked":
        this.revokedReason = frame.reason;
        return;
      case "notify.new": return this._inboxEvent(frame);
    }
    if (ROOM_EVENTS.has(frame.type)) return this._roomEvent(frame);
    this._emit(frame.type, frame); // notify.unread, chat.receipt(s), chat.typing, ...
  }

  _welcome(frame) {
    this.helloInFlight = false;
    const first = !this.welcomed;
    this.welcomed = true;
    this.user = frame.user;
    this.sessionId = frame.session_id;
    this.attempt = 0;
    if (first) {
      this._setState("online");
      this._startPing();
    }
    this._emit("welcome", frame);
    for (const stream of frame.resync) {
      if (stream === "inbox") this.inboxSeq = frame.inbox_seq;
      this._emit("resync", { stream, room: stream.startsWith("room:") ? Number(stream.slice(5)) : null });
    }
    if (this.inboxSeq === null) this.inboxSeq = frame.inbox_seq;
    if (first) this._outboxRestore();
    // The replay follows the welcome on the socket; queued messages go after it.
    setTimeout(() => {
      if (this.resumeAgain) this._resume();
      if (first) this._flushOutbox();
    }, 0);
  }

  _inboxEvent(frame) {
    if (this.inboxSeq !== null) {
      if (frame.seq <= this.inboxSeq) return;           // seen already (live and resumed)
      if (frame.seq > this.inboxSeq + 1) { this._resume(); return; } // a gap: resume fills it
    }
    this.inboxSeq = frame.seq;
    this._emit("notify.new", frame);
  }

  _roomEvent(frame) {
    const known = this.roomSeqs.get(frame.room);
    if (known !== undefined) {
      if (frame.seq <= known) return;
      if (frame.seq > known + 1) { this._resume(); return; }
    }
    // A room not tracked yet (just joined): its events start here.
    this.roomSeqs.set(frame.room, frame.seq);
    if (frame.type === "chat.message" && frame.client_msg_id && frame.sender === this.user?.id) {
      this._sent(frame.client_msg_id, frame.seq, frame.id);
    }
    this._emit(frame.type, frame);
  }

  /* ---- sending messages ---------------------------------------------------------------- */

  /** Queue a message for `room`; returns its outbox item ({clientMsgId, status, ...}).
   *  status: pending (not acked yet), sent, failed (with `error`). "outbox" events tell
   *  every change. */
  send(room, text, { confirmPii = false, clientMsgId = randomId() } = {}) {
    const item = { clientMsgId, room, text, confirmPii, status: "pending", error: null,
                   seq: null, messageId: null };
    this.outbox.set(clientMsgId, item);
    this._outboxChanged(item);
    this._sendItem(item);
    return item;
  }

  /** Send a failed message again (e.g. after the user confirmed a pii_warning). */
  retry(clientMsgId, { confirmPii } = {}) {
    const item = this.outbox.get(clientMsgId);
    if (!item || item.status === "sent") return;
    if (confirmPii !== undefined) item.confirmPii = confirmPii;
    item.status = "pending";
    item.error = null;
    this._outboxChanged(item);
    this._sendItem(item);
  }

  /** Give up a failed or pending message (it may still arrive if the server had it). */
  discard(clientMsgId) {
    const item = this.outbox.get(clientMsgId);
    if (!item) return;
    this.outbox.delete(clientMsgId);
    item.status = "discarded";
    this._outboxChanged(item);
  }

  pending() {
    return [...this.outbox.values()];
  }

  _outboxChanged(item) {
    this._emit("outbox", item);
    this._outboxSave();
  }

  _storageKey() {
    return this.user ? "sonor.outbox." + this.user.id : null;
  }

  _outboxSave() {
    const key = this._storageKey();
    if (!this.storage || !key) return;
    const unsent = [...this.outbox.values()].map(({ clientMsgId, room, text, confirmPii }) =>
      ({ clientMsgId, room, text, confirmPii }));
    try {
      if (unsent.length) this.storage.setItem(key, JSON.stringify(unsent));
      else this.storage.removeItem(key);
    } catch (err) { /* storage full or refused: the messages stay in memory */ }
  }

  _outboxRestore() {
    const key = this._storageKey();
    if (!this.storage || !key) return;
    let saved = [];
    try { saved = JSON.parse(this.storage.getItem(key) || "[]"); } catch (err) { saved = []; }
    for (const { clientMsgId, room, text, confirmPii } of saved) {
      if (this.outbox.has(clientMsgId)) continue;
      const item = { clientMsgId, room, text, confirmPii, status: "pending", error: null,
                     seq: null, messageId: null };
      this.outbox.set(clientMsgId, item);
      this._emit("outbox", item);
    }
  }

  /** Forget the unsent messages kept in storage (on logout: they are the user's text). */
  forgetStored() {
    const key = this._storageKey();
    if (this.storage && key) this.storage.removeItem(key);
  }

  _flushOutbox() {
    for (const item of this.outbox.values()) if (item.status === "pending") this._sendItem(item);
  }

  _sendItem(item) {
    if (!this.online || item.status !== "pending") return; // sent after the next welcome
    item.status = "sending";
    this._requestNow({ type: "chat.send", room: item.room, client_msg_id: item.clientMsgId,
                       text: item.text, confirm_pii: item.confirmPii })
      .then((ack) => {
        if (ack.seq === null || ack.seq === undefined) this._sent(item.clientMsgId, null, null);
        else this._sent(item.clientMsgId, ack.seq, ack.message_id);
      })
      .catch((err) => {
        if (!this.outbox.has(item.clientMsgId) || item.status !== "sending") return;
        if (err.code === "disconnected" || err.code === "stopped") {
          item.status = "pending"; // the ack may be lost: resent with the same id
          return;
        }
        if (err.code === "rate_limited") {
          item.status = "pending";
          setTimeout(() => this._sendItem(item), 1000 * (err.extra.retry_after || 1));
          return;
        }
        item.status = "failed";
        item.error = err;
        this._outboxChanged(item);
      });
  }

  _sent(clientMsgId, seq, messageId) {
    const item = this.outbox.get(clientMsgId);
    if (!item) return;
    this.outbox.delete(clientMsgId);
    item.status = "sent";
    item.seq = seq;
    item.messageId = messageId;
    this._outboxChanged(item);
  }

  /* ---- the other requests, named ------------------------------------------------------- */

  edit(room, messageId, text, { confirmPii = false } = {}) {
    return this.request({ type: "chat.edit", room, message_id: messageId, text, confirm_pii: confirmPii });
  }

  delete(room, messageId) {
    return this.request({ type: "chat.delete", room, message_id: messageId });
  }

  read(room, seq) {
    return this.request({ type: "chat.read", room, seq });
  }

  typing(room) {
    return this.request({ type: "chat.typing", room });
  }

  /** A page of `room`'s stream, oldest first ({messages, has_more}). History pages do not
   *  move the room's resume point: live events and resume do. */
  history(room, { beforeSeq = null, afterSeq = null, limit = 50 } = {}) {
    const frame = { type: "chat.history", room, limit };
    if (beforeSeq !== null) frame.before_seq = beforeSeq;
    if (afterSeq !== null) frame.after_seq = afterSeq;
    return this.request(frame);
  }

  inboxRead(ids) {
    return this.request({ type: "notify.read", ids });
  }
}
