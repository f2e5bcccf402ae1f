/* Sonor web client: the login page (/login) and the app (/). Plain JS, no build step.
 *
 * The session token never reaches this script except once, on QR login, when it is traded
 * at once for an HttpOnly cookie; every later request and socket is authenticated by that
 * cookie (same origin). Text from the server is always inserted with textContent.
 */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // Mongolian for the error codes a user meets here; the server's message follows as a hint.
  const ERRORS_MN = {
    code_invalid: "Код буруу байна.",
    code_expired: "Кодын хугацаа дууссан. Шинэ код авна уу.",
    code_attempts_exceeded: "Хэт олон буруу оролдлого. Шинэ код авна уу.",
    invalid_phone_number: "Утасны дугаар буруу байна.",
    phone_not_mobile: "Зөвхөн гар утасны дугаар баталгаажуулна.",
    rate_limited: "Хэт олон хүсэлт. Түр хүлээгээд дахин оролдоно уу.",
    invalid_input: "Оруулсан утга буруу байна.",
    unauthenticated: "Нэвтрэх шаардлагатай.",
    not_found: "Олдсонгүй.",
  };

  // session.revoked reasons, shown on the login page the app goes to.
  const LOGOUT_REASONS = {
    logout: "Та системээс гарлаа. (You are logged out.)",
    number_lost: "Таны утасны дугаарыг өөр иргэн баталгаажуулсан тул бүх төхөөрөмжөөс гарлаа. " +
      "(Your phone number passed to someone else: every device was logged out.)",
    suspended: "Таны бүртгэл түр түдгэлзсэн байна. (Your account is suspended.)",
    account_closed: "Таны бүртгэл хаагдсан. (Your account is closed.)",
  };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function wsUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  async function api(method, path, body) {
    const options = {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
    };
    if (body !== undefined) options.body = JSON.stringify(body);
    let response;
    try {
      response = await fetch("/api/v1/" + path, options);
    } catch (err) {
      return { status: 0, ok: false, data: { code: "network", message: "Сүлжээний алдаа (network error)" } };
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (err) { data = null; }
    }
    return { status: response.status, ok: response.ok, data: data };
  }

  function errorText(result) {
    const data = result.data || {};
    const mn = ERRORS_MN[data.code];
    const message = data.message || ("HTTP " + result.status);
    return mn ? mn + " (" + message + ")" : message;
  }

  function showError(node, result) {
    node.textContent = typeof result === "string" ? result : errorText(result);
    show(node, true);
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // Local time as 2024-05-01 14:03: the same on every browser, whatever its locale data.
  function formatTime(value) {
    const d = new Date(value);
    if (isNaN(d.getTime())) return "";
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  // "Chrome · Linux" from a User-Agent; the whole string stays in the tooltip.
  function deviceLabel(userAgent) {
    const browsers = [["Edg/", "Edge"], ["OPR/", "Opera"], ["Firefox/", "Firefox"],
      ["Chrome/", "Chrome"], ["Safari/", "Safari"]];
    const systems = [["Android", "Android"], ["iPhone", "iPhone"], ["iPad", "iPad"],
      ["Windows", "Windows"], ["Mac OS X", "macOS"], ["Linux", "Linux"]];
    const find = (pairs) => (pairs.find((p) => userAgent.indexOf(p[0]) !== -1) || [])[1];
    const label = [find(browsers), find(systems)].filter(Boolean).join(" · ");
    return label || userAgent;
  }

  /* ---- /login ------------------------------------------------------------------------- */

  function loginPage() {
    const qr = $("qr");
    const placeholder = $("qr-placeholder");
    const status = $("login-status");
    const retry = $("login-retry");
    let socket = null;
    let finished = false; // approved or denied: a close is expected

    function setStatus(text, kind) {
      status.textContent = text;
      status.className = "status" + (kind ? " " + kind : "");
    }

    function showQr(svg) {
      // The SVG is from our own server, yet it is shown as an image, not inserted as
      // markup: an SVG in <img> runs no script and loads nothing.
      qr.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg);
      qr.classList.remove("dim");
      show(qr, true);
      show(placeholder, false);
    }

    function stop(text) {
      setStatus(text, "bad");
      qr.classList.add("dim");
      show(retry, true);
    }

    async function approved(frame) {
      setStatus("Нэвтэрч байна… (" + frame.user_name + ")", "good");
      const result = await api("POST", "auth/cookie", { token: frame.token });
      if (result.status === 204) {
        location.replace("/");
      } else {
        stop("Нэвтэрч чадсангүй: " + errorText(result));
      }
    }

    function start() {
      finished = false;
      show(retry, false);
      setStatus("Холбогдож байна… (connecting)");
      socket = new WebSocket(wsUrl("/ws/v1/login"));
      socket.onmessage = function (event) {
        let frame;
        try { frame = JSON.parse(event.data); } catch (err) { return; }
        switch (frame.type) {
          case "qr.code":
            showQr(frame.svg);
            setStatus("QR кодыг уншуулна уу");
            break;
          case "qr.scanned":
            qr.classList.add("dim");
            setStatus("Утсан дээрээ зөвшөөрнө үү. (Confirm on your phone)", "wait");
            break;
          case "login.denied":
            finished = true;
            stop("Нэвтрэхээс татгалзлаа. (Login denied)");
            socket.close();
            break;
          case "login.approved":
            finished = true;
            socket.close();
            approved(frame);
            break;
        }
      };
      socket.onclose = function (event) {
        if (finished) return;
        if (event.code === 4429) stop("Хэт олон оролдлого. Түр хүлээнэ үү. (Too many attempts)");
        else if (event.code === 4403) stop("Энэ хаягаас нэвтрэх боломжгүй. (Origin not allowed)");
        else stop("Холболт тасарлаа. (Disconnected)");
      };
    }

    // Why the app sent us here; only known reasons are shown, never text from the URL.
    const reason = new URLSearchParams(location.search).get("reason");
    if (Object.prototype.hasOwnProperty.call(LOGOUT_REASONS, reason)) {
      $("login-reason").textContent = LOGOUT_REASONS[reason];
      show($("login-reason"), true);
    }

    retry.addEventListener("click", start);
    api("GET", "me").then(function (result) {
      if (result.status === 200) location.replace("/");
      else start();
    });
  }

  /* ---- / (the app) ------------------------------------------------------------------- */

  function appPage() {
    const list = $("notifications");
    const unreadBadge = $("unread");
    const conn = $("conn");
    let me = null;
    let socket = null;
    let lastSeq = 0; // last inbox seq seen: a reconnect resumes from it
    let nextId = 1;
    let attempt = 0;
    let pingTimer = null;
    let leaving = false;
    const pending = new Map(); // request id -> callback(frame)
    const items = new Map(); // notification id -> <li>

    function toLogin(reason) {
      if (leaving) return;
      leaving = true;
      location.replace("/login" + (reason ? "?reason=" + encodeURIComponent(reason) : ""));
    }

    // A 401 from the API: when the socket is open, its `session.revoked` (which says why) is
    // probably on the way, so give it a moment to win.
    function unauthorized() {
      if (socket && socket.readyState === WebSocket.OPEN) setTimeout(toLogin, 1500);
      else toLogin();
    }

    function setConn(text, kind) {
      conn.textContent = text;
      conn.className = "conn" + (kind ? " " + kind : "");
    }

    function send(frame, onReply) {
      if (!socket || socket.readyState !== WebSocket.OPEN) return false;
      frame.id = "c" + nextId++;
      if (onReply) pending.set(frame.id, onReply);
      socket.send(JSON.stringify(frame));
      return true;
    }

    function renderMe() {
      $("me-name").textContent = me.name || me.register_number;
      $("me-register").textContent = me.register_number;
      $("me-phone").textContent = me.phone || "— (баталгаажаагүй / none)";
    }

    async function loadMe() {
      const result = await api("GET", "me");
      if (result.status === 401) { unauthorized(); return false; }
      if (!result.ok) { setConn(errorText(result), "bad"); return false; }
      me = result.data;
      renderMe();
      return true;
    }

    function setUnread(count) {
      unreadBadge.textContent = String(count);
      unreadBadge.classList.toggle("zero", count === 0);
    }

    function markItemRead(li) {
      li.classList.add("read");
      const button = li.querySelector("button.mark-read");
      if (button) button.remove();
    }

    // `item` is a `notify.new` frame or an item of GET /api/v1/inbox (which adds read_at,
    // agency and payment details); the list stays ordered by seq, newest first.
    function addNotification(item) {
      if (item.seq > lastSeq) lastSeq = item.seq;
      if (items.has(item.id)) return;
      const li = el("li", "notification");
      li.dataset.seq = String(item.seq);
      const head = el("div", "head");
      head.append(el("strong", "title", item.title), el("time", "time", formatTime(item.created_at)));
      li.append(head);
      if (item.agency && item.agency.name) li.append(el("div", "agency", item.agency.name));
      li.append(el("p", "body", item.body));
      if (item.amount_mnt) {
        const due = item.due_date ? ", хугацаа (due) " + item.due_date : "";
        li.append(el("p", "amount", "Төлөх дүн (amount): " + item.amount_mnt.toLocaleString("en-US") + " ₮" + due));
      }
      if (item.link && /^https:\/\//i.test(item.link)) {
        const link = el("a", "link", item.link);
        link.href = item.link;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        li.append(link);
      }
      if (item.read_at) {
        li.classList.add("read");
      } else {
        const button = el("button", "mark-read", "Уншсан ");
        button.type = "button";
        button.append(el("small", null, "Mark read"));
        button.addEventListener("click", function () {
          button.disabled = true;
          const sent = send({ type: "notify.read", ids: [item.id] }, function (reply) {
            if (reply.type === "ack") markItemRead(li);
            else button.disabled = false;
          });
          if (!sent) button.disabled = false;
        });
        li.append(button);
      }
      items.set(item.id, li);
      const after = Array.from(list.children).find((other) => Number(other.dataset.seq) < item.seq);
      list.insertBefore(li, after || null);
      show($("inbox-empty"), false);
    }

    // The first page of the inbox with read state; the socket then resumes after its newest.
    async function loadInbox() {
      const result = await api("GET", "inbox?limit=50");
      if (result.status === 401) { unauthorized(); return; }
      if (!result.ok) return; // the socket's resume from seq 0 lists them instead
      list.replaceChildren();
      items.clear();
      for (const item of result.data.items) addNotification(item);
      show($("inbox-empty"), result.data.items.length === 0);
      setUnread(result.data.unread);
    }

    function onFrame(frame) {
      if (frame.id && pending.has(frame.id)) {
        const callback = pending.get(frame.id);
        pending.delete(frame.id);
        callback(frame);
      }
      switch (frame.type) {
        case "welcome":
          attempt = 0;
          setConn("Холбогдсон (online)", "good");
          setUnread(frame.unread);
          if (frame.resync && frame.resync.indexOf("inbox") !== -1) {
            // Too much was missed for a replay: reload the inbox, go on from the head.
            lastSeq = Math.max(lastSeq, frame.inbox_seq);
            loadInbox();
          }
          break;
        case "notify.new":
          addNotification(frame);
          if (frame.category === "security") { loadMe(); loadSessions(); }
          break;
        case "notify.unread":
          setUnread(frame.count);
          break;
        case "session.revoked":
          toLogin(frame.reason);
          break;
        case "error":
          if (frame.code === "rate_limited") setConn("Хэт олон хүсэлт (rate limited)", "bad");
          break;
      }
    }

    function connect() {
      setConn(attempt ? "Дахин холбогдож байна… (reconnecting)" : "Холбогдож байна… (connecting)", "wait");
      socket = new WebSocket(wsUrl("/ws/v1")); // the session cookie goes along: same origin
      socket.onopen = function () {
        send({ type: "hello", resume: { inbox: lastSeq } });
        pingTimer = setInterval(function () { send({ type: "ping" }); }, 25000);
      };
      socket.onmessage = function (event) {
        let frame;
        try { frame = JSON.parse(event.data); } catch (err) { return; }
        onFrame(frame);
      };
      socket.onclose = function (event) {
        clearInterval(pingTimer);
        pending.clear();
        if (leaving) return;
        if (event.code === 4401) { toLogin(); return; }
        if (event.code === 4403) { setConn("Энэ хаягаас холбогдох боломжгүй (origin not allowed)", "bad"); return; }
        // Backoff with jitter: 1 s, 2 s, 4 s … up to 30 s (longer when rate limited).
        const base = Math.min(30000, 1000 * Math.pow(2, attempt)) * (event.code === 4429 ? 4 : 1);
        attempt += 1;
        setConn("Холболт тасарлаа, дахин холбогдоно… (offline)", "bad");
        setTimeout(connect, base / 2 + Math.random() * base / 2);
      };
    }

    /* sessions */

    async function loadSessions() {
      const result = await api("GET", "sessions");
      const box = $("session-list");
      if (result.status === 401) { unauthorized(); return; }
      if (!result.ok) { showError($("sessions-error"), result); return; }
      show($("sessions-error"), false);
      box.replaceChildren();
      for (const session of result.data) {
        const li = el("li", "session" + (session.current ? " current" : ""));
        const info = el("div", "info");
        const name = el("strong", null, deviceLabel(session.device_name) || session.platform ||
          "Тодорхойгүй төхөөрөмж (unknown device)");
        name.title = session.device_name;
        info.append(name);
        const detail = [session.login_method, session.ip || "", "сүүлд: " + formatTime(session.last_seen_at)];
        info.append(el("small", null, detail.filter(Boolean).join(" · ")));
        if (session.current) info.append(el("em", "this", "Энэ төхөөрөмж (this device)"));
        const button = el("button", "session-logout", "Гарах ");
        button.type = "button";
        button.append(el("small", null, "Log out"));
        button.addEventListener("click", async function () {
          if (session.current) { logout(); return; }
          button.disabled = true;
          const reply = await api("DELETE", "sessions/" + session.id);
          if (reply.ok) loadSessions();
          else { button.disabled = false; showError($("sessions-error"), reply); }
        });
        li.append(info, button);
        box.append(li);
      }
    }

    async function logout() {
      leaving = true;
      await api("POST", "logout");
      location.replace("/login?reason=logout");
    }

    $("logout").addEventListener("click", logout);
    $("revoke-others").addEventListener("click", async function () {
      const result = await api("POST", "sessions/revoke-others");
      if (result.ok) loadSessions();
      else showError($("sessions-error"), result);
    });

    /* phone verification */

    let phoneAsked = "";
    $("phone-form").addEventListener("submit", async function (event) {
      event.preventDefault();
      show($("phone-error"), false);
      show($("phone-ok"), false);
      const phone = $("phone-input").value.trim();
      const result = await api("POST", "phones", { phone: phone });
      if (!result.ok) { showError($("phone-error"), result); return; }
      phoneAsked = result.data.phone;
      $("phone-ok").textContent = phoneAsked + " руу код илгээлээ. (Code sent)";
      show($("phone-ok"), true);
      show($("code-form"), true);
      $("code-input").value = "";
      $("code-input").focus();
    });
    $("code-form").addEventListener("submit", async function (event) {
      event.preventDefault();
      show($("phone-error"), false);
      const result = await api("POST", "phones/verify", { phone: phoneAsked, code: $("code-input").value.trim() });
      if (!result.ok) { showError($("phone-error"), result); return; }
      show($("code-form"), false);
      $("phone-input").value = "";
      $("phone-ok").textContent = result.data.phone + " баталгаажлаа. (Verified)";
      show($("phone-ok"), true);
      loadMe();
    });

    loadMe().then(async function (ok) {
      if (!ok) return;
      loadSessions();
      await loadInbox();
      connect();
    });
  }

  const page = document.body.dataset.page;
  if (page === "login") loginPage();
  else if (page === "app") appPage();
})();
