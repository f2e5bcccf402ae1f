/* Small helpers shared by the pages: DOM building, the REST API, translated strings.
 * Text from the server is always inserted with textContent, never as markup. */

// Django's JavaScript catalog (/jsi18n/, loaded before the modules) defines gettext and
// interpolate (fmt below does the named kind); without it the English source strings show.
export const _ = (text) => (globalThis.gettext ? globalThis.gettext(text) : text);
/** "%(name)s wrote" with {name: ...}. */
export function fmt(text, values) {
  return text.replace(/%\((\w+)\)s/g, (_m, key) => String(values[key] ?? ""));
}

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function button(text, className, onClick) {
  const node = el("button", className, text);
  node.type = "button";
  if (onClick) node.addEventListener("click", onClick);
  return node;
}

export function show(node, visible) {
  node.hidden = !visible;
}

export function wsUrl(path) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

/** A call to /api/v1 with the session cookie: {status, ok, data}; never throws. */
export async function api(method, path, body) {
  const options = {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
  };
  if (body !== undefined) options.body = JSON.stringify(body);
  let response;
  try {
    response = await fetch("/api/v1/" + path, options);
  } catch (err) {
    return { status: 0, ok: false, data: { code: "network", message: "network error" } };
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (err) { data = null; }
  }
  return { status: response.status, ok: response.ok, data };
}

// What the error codes a citizen meets mean, in their language; the server's own message
// (English) is shown for any other code.
const ERROR_TEXT = {
  network: () => _("Network error. Check the connection and try again."),
  disconnected: () => _("Not connected. Try again when the connection is back."),
  code_invalid: () => _("The code is wrong."),
  code_expired: () => _("The code has expired. Ask for a new one."),
  code_attempts_exceeded: () => _("Too many wrong attempts. Ask for a new code."),
  invalid_phone_number: () => _("That phone number is not valid."),
  phone_not_mobile: () => _("Only mobile numbers can be verified."),
  phone_not_verified: () => _("Verify your phone number to use chat."),
  rate_limited: () => _("Too many requests. Wait a moment and try again."),
  invalid_input: () => _("Some of what you entered is not valid."),
  unauthenticated: () => _("Please log in."),
  not_found: () => _("Not found."),
  not_member: () => _("You are not a member of this chat."),
  self_chat: () => _("That is your own number."),
  user_blocked: () => _("You blocked this user; unblock them first."),
  role_forbidden: () => _("Your role in this group does not allow that."),
  not_your_message: () => _("You can only change your own messages."),
  message_deleted: () => _("The message was deleted."),
  text_empty: () => _("The message is empty."),
  text_too_long: () => _("Messages may be at most 4,096 characters."),
  room_full: () => _("The group is full."),
  not_a_group: () => _("Only groups have members to manage."),
  confirmation_required: () => _("Ask for a confirmation code first."),
  no_verified_phone: () => _("You have no verified phone number."),
};

export function errorText(resultOrError) {
  const data = resultOrError.data || resultOrError;
  const known = ERROR_TEXT[data.code];
  if (known) return known();
  return data.message || (resultOrError.status ? "HTTP " + resultOrError.status : _("Something went wrong."));
}

export function showError(node, resultOrError) {
  node.textContent = typeof resultOrError === "string" ? resultOrError : errorText(resultOrError);
  show(node, true);
}

export function flash(node, text) {
  node.textContent = text;
  show(node, true);
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** Local time as 2024-05-01 14:03: the same on every browser, whatever its locale data. */
export function formatTime(value) {
  const d = new Date(value);
  if (isNaN(d.getTime())) return "";
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
    pad(d.getHours()) + ":" + pad(d.getMinutes());
}

export function formatClock(value) {
  const d = new Date(value);
  if (isNaN(d.getTime())) return "";
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return pad(d.getHours()) + ":" + pad(d.getMinutes());
  return formatTime(value);
}

/** The language switch (a form posting to Django's set_language) comes back to the same
 *  screen: the fragment (#inbox, #settings) is not sent to the server otherwise. */
export function keepPlaceOnLanguageSwitch() {
  const form = document.querySelector("form.lang-switch");
  if (!form) return;
  form.addEventListener("submit", () => {
    form.elements.next.value = location.pathname + location.search + location.hash;
  });
}
