/* The login page (/login): a rotating QR code over /ws/v1/login. The session token reaches
 * this script once, on approval, and is traded at once for an HttpOnly cookie. */

import { $, _, api, errorText, keepPlaceOnLanguageSwitch, show, wsUrl } from "./util.js";

// session.revoked reasons, shown when the app sends the user here; never text from the URL.
const LOGOUT_REASONS = {
  logout: () => _("You are logged out."),
  number_lost: () => _("Your phone number was verified by another citizen, so every device was logged out."),
  suspended: () => _("Your account is suspended."),
  account_closed: () => _("Your account is closed."),
  expired: () => _("Your session has expired. Please log in again."),
};

const qr = $("qr");
const placeholder = $("qr-placeholder");
const status = $("login-status");
const retry = $("login-retry");
let socket = null;
let finished = false; // approved or denied: a close is expected

function setStatus(text, kind) {
  status.textContent = text;
  status.className = "status" + (kind ? " " + kind : "");
  status.dataset.state = kind || "";
}

function showQr(svg) {
  // Our own server's SVG, shown as an image, not inserted as markup: an SVG in <img> runs
  // no script and loads nothing.
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

/* The app in this same document: its shell (topbar and main of the page at /) replaces the
 * login card, then app.js starts as it would at /. The cookie set by auth/cookie rides on
 * the fetch and on the app's socket; nothing here ever holds the session. */
async function openApp() {
  const response = await fetch("/", { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (!response.ok) throw new Error("app page: HTTP " + response.status);
  const shell = new DOMParser().parseFromString(await response.text(), "text/html");
  if (shell.body.dataset.page !== "app") throw new Error("app page: not the app");
  // Parsed, not inserted as text: the shell's <script> elements never run, app.js is imported.
  document.title = shell.title;
  document.querySelector("header.topbar").replaceWith(document.adoptNode(shell.querySelector("header.topbar")));
  document.getElementById("main").replaceWith(document.adoptNode(shell.getElementById("main")));
  document.body.dataset.page = "app";
  history.replaceState(null, "", "/");
  await import("./app.js");
}

async function approved(frame) {
  setStatus(_("Logging in…") + " (" + frame.user_name + ")", "good");
  const result = await api("POST", "auth/cookie", { token: frame.token });
  if (result.status !== 204) {
    stop(_("Could not log in:") + " " + errorText(result));
    return;
  }
  // If the shell cannot be loaded here, the page at / (with the cookie now set) does it.
  openApp().catch(() => location.replace("/"));
}

function start() {
  finished = false;
  show(retry, false);
  setStatus(_("Connecting…"));
  socket = new WebSocket(wsUrl("/ws/v1/login"));
  socket.onmessage = (event) => {
    let frame;
    try { frame = JSON.parse(event.data); } catch (err) { return; }
    switch (frame.type) {
      case "qr.code":
        showQr(frame.svg);
        setStatus(_("Scan the QR code"));
        break;
      case "qr.scanned":
        qr.classList.add("dim");
        setStatus(_("Confirm on your phone."), "wait");
        break;
      case "login.denied":
        finished = true;
        stop(_("The login was denied."));
        socket.close();
        break;
      case "login.approved":
        finished = true;
        socket.close();
        approved(frame);
        break;
    }
  };
  socket.onclose = (event) => {
    if (finished) return;
    if (event.code === 4429) stop(_("Too many attempts. Wait a moment."));
    else if (event.code === 4403) stop(_("Logging in from this address is not allowed."));
    else stop(_("Disconnected."));
  };
}

const reason = new URLSearchParams(location.search).get("reason");
if (Object.prototype.hasOwnProperty.call(LOGOUT_REASONS, reason)) {
  $("login-reason").textContent = LOGOUT_REASONS[reason]();
  $("login-reason").dataset.reason = reason;
  show($("login-reason"), true);
}

retry.addEventListener("click", start);
keepPlaceOnLanguageSwitch();
api("GET", "me").then((result) => {
  if (result.status === 200) location.replace("/");
  else start();
});
