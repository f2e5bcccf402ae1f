/* The app at /: chat, inbox and settings over one protocol client. */

import { SonorClient } from "./client.js";
import { chatScreen } from "./chat.js";
import { inboxScreen } from "./inbox.js";
import { settingsScreen } from "./settings.js";
import { $, _, api, keepPlaceOnLanguageSwitch, show, wsUrl } from "./util.js";

let me = null;
let leaving = false;
// The session cookie goes along; unsent messages survive a reload of the tab.
const client = new SonorClient({ url: wsUrl("/ws/v1"), storage: window.sessionStorage });

function toLogin(reason) {
  if (leaving) return;
  leaving = true;
  client.forgetStored(); // the session is over: its unsent text is not kept
  client.stop();
  location.replace("/login" + (reason ? "?reason=" + encodeURIComponent(reason) : ""));
}

async function logout() {
  leaving = true;
  client.forgetStored();
  client.stop();
  await api("POST", "logout");
  location.replace("/login?reason=logout");
}

function renderMe() {
  $("me-name").textContent = me.name || me.register_number;
  $("me-register").textContent = me.register_number;
  $("me-phone").textContent = me.phone || "— (" + _("not verified") + ")";
}

async function loadMe() {
  const result = await api("GET", "me");
  if (result.status === 401) { toLogin(); return false; }
  if (!result.ok) return false;
  me = result.data;
  renderMe();
  return true;
}

/* ---- connection state ------------------------------------------------------------- */

const CONN_TEXT = {
  connecting: () => _("Connecting…"),
  online: () => _("Online"),
  offline: () => _("Offline, reconnecting…"),
  refused: () => _("This address may not connect."),
  revoked: () => _("Logged out"),
};

client.on("state", ({ state }) => {
  const conn = $("conn");
  conn.dataset.state = state;
  conn.textContent = CONN_TEXT[state] ? CONN_TEXT[state]() : state;
  conn.className = "conn " + (state === "online" ? "good" : state === "connecting" ? "wait" : "bad");
  show($("offline-banner"), state === "offline" || state === "refused");
});
client.on("revoked", ({ reason }) => toLogin(reason));

/* ---- sections --------------------------------------------------------------------- */

const VIEWS = ["chat", "inbox", "settings"];

function route() {
  // Chat needs a verified phone: without one, the app opens at the phone form.
  const fallback = me && !me.phone ? "settings" : "chat";
  const name = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : fallback;
  for (const view of VIEWS) {
    show($("view-" + view), view === name);
    const tab = $("nav-" + view);
    if (view === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  document.body.dataset.view = name;
}

/* ---- start ------------------------------------------------------------------------ */

const settings = settingsScreen({ getMe: () => me, loadMe, logout, toLogin });
const chat = chatScreen({ client, me: () => me });
const inbox = inboxScreen({
  client,
  onAgencies: (agencies) => settings.setAgencies(agencies),
  onSecurity: () => { loadMe(); settings.loadSessions(); },
});

$("logout").addEventListener("click", logout);
keepPlaceOnLanguageSwitch();
window.addEventListener("hashchange", route);
route();

(async () => {
  if (!(await loadMe())) return;
  route();
  if (!me.phone && !location.hash) $("phone").scrollIntoView();
  // The rooms first: their seqs are where the socket resumes them.
  await chat.loadRooms();
  // The inbox after the first welcome: from then on every notice arrives live or resumed.
  const stop = client.on("welcome", () => { stop(); inbox.loadInbox(); });
  client.start();
  chat.loadInvitations();
  settings.loadSessions();
  settings.loadPrefs();
})();
