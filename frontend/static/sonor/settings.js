/* Settings: profile, phone and email, the preference grid, quiet hours, agency mutes,
 * sessions, the access log, the data export and closing the account. REST only. */

import { $, _, api, button, el, flash, fmt, formatTime, show, showError } from "./util.js";

const CATEGORY_LABEL = {
  service_request: () => _("Service requests"), petition: () => _("Petitions"),
  complaint: () => _("Complaints"), payment: () => _("Payments"), system: () => _("System notices"),
  security: () => _("Security"), chat: () => _("Chat messages"),
};
const CHANNELS = ["push", "sms", "email"];
const CHANNEL_LABEL = { push: () => _("Push"), sms: () => _("SMS"), email: () => _("Email") };

// "Chrome · Linux" from a User-Agent; the whole string stays in the tooltip.
function deviceLabel(userAgent) {
  const browsers = [["Edg/", "Edge"], ["OPR/", "Opera"], ["Firefox/", "Firefox"],
    ["Chrome/", "Chrome"], ["Safari/", "Safari"]];
  const systems = [["Android", "Android"], ["iPhone", "iPhone"], ["iPad", "iPad"],
    ["Windows", "Windows"], ["Mac OS X", "macOS"], ["Linux", "Linux"]];
  const find = (pairs) => (pairs.find((p) => userAgent.indexOf(p[0]) !== -1) || [])[1];
  return [find(browsers), find(systems)].filter(Boolean).join(" · ") || userAgent;
}

export function settingsScreen({ getMe, loadMe, logout, toLogin }) {
  let prefs = null;
  let agencies = new Map();

  function done(okNode, text, errorNode) {
    if (errorNode) show(errorNode, false);
    flash(okNode, text);
  }

  /* ---- preferences ------------------------------------------------------------------ */

  async function savePrefs(change, okText) {
    show($("prefs-error"), false);
    show($("prefs-ok"), false);
    const result = await api("PUT", "preferences", change);
    if (!result.ok) { showError($("prefs-error"), result); renderPrefs(); return result; }
    prefs = result.data;
    renderPrefs();
    if (okText) done($("prefs-ok"), okText, $("prefs-error"));
    return result;
  }

  function renderPrefs() {
    if (!prefs) return;
    const rows = $("pref-rows");
    rows.replaceChildren();
    for (const [category, channels] of Object.entries(prefs.channels)) {
      const tr = el("tr");
      tr.dataset.category = category;
      const label = (CATEGORY_LABEL[category] || (() => category))();
      const th = el("th", null, label);
      th.scope = "row";
      tr.append(th);
      for (const channel of CHANNELS) {
        const td = el("td");
        const box = el("input");
        box.type = "checkbox";
        box.id = "pref-" + category + "-" + channel;
        box.checked = !!channels[channel];
        const locked = prefs.locked.includes(category + "." + channel);
        box.setAttribute("aria-label", label + ": " + CHANNEL_LABEL[channel]());
        if (locked) {
          box.disabled = true;
          box.setAttribute("aria-describedby", "pref-locked-why");
          td.classList.add("locked");
          const lock = el("span", "lock", _("always"));
          lock.setAttribute("aria-hidden", "true"); // the box says it: checked and disabled
          td.append(box, lock);
        } else {
          box.addEventListener("change", () => savePrefs(
            { channels: { [category]: { [channel]: box.checked } } },
            fmt(_("Saved: %(what)s"), { what: label + " · " + CHANNEL_LABEL[channel]() })));
          td.append(box);
        }
        tr.append(td);
      }
      rows.append(tr);
    }
    $("quiet-start").value = prefs.quiet_hours ? prefs.quiet_hours.start.slice(0, 5) : "";
    $("quiet-end").value = prefs.quiet_hours ? prefs.quiet_hours.end.slice(0, 5) : "";
    $("private-previews").checked = prefs.private_previews;
    $("me-email").textContent = prefs.email
      ? prefs.email + (prefs.email_verified ? "" : " (" + _("not confirmed yet") + ")") : "—";
    renderAgencies();
  }

  function renderAgencies() {
    const list = $("agency-list");
    list.replaceChildren();
    const muted = new Set(prefs ? prefs.muted_agencies : []);
    for (const [id, name] of agencies) {
      const li = el("li");
      const label = el("label", "check");
      const box = el("input");
      box.type = "checkbox";
      box.checked = muted.has(id);
      box.addEventListener("change", () => {
        const next = new Set(prefs.muted_agencies);
        if (box.checked) next.add(id); else next.delete(id);
        savePrefs({ muted_agencies: [...next] }, box.checked
          ? fmt(_("%(name)s is muted: its notices stay in the inbox only."), { name })
          : fmt(_("%(name)s is no longer muted."), { name }));
      });
      label.append(box, " " + fmt(_("Mute %(name)s"), { name }));
      li.append(label);
      list.append(li);
    }
    show($("agencies-empty"), agencies.size === 0);
  }

  async function loadPrefs() {
    const result = await api("GET", "preferences");
    if (result.ok) { prefs = result.data; renderPrefs(); }
  }

  $("quiet-form").addEventListener("submit", (event) => {
    event.preventDefault();
    savePrefs({ quiet_hours: { start: $("quiet-start").value, end: $("quiet-end").value } },
              _("Quiet hours saved."));
  });
  $("quiet-clear").addEventListener("click", () => savePrefs({ quiet_hours: null }, _("No quiet hours.")));
  $("private-previews").addEventListener("change", (event) =>
    savePrefs({ private_previews: event.currentTarget.checked }, _("Saved.")));

  $("email-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    show($("email-ok"), false);
    const result = await api("PUT", "preferences", { email: $("email-input").value.trim() });
    if (!result.ok) { showError($("email-error"), result); return; }
    prefs = result.data;
    renderPrefs();
    $("email-input").value = "";
    done($("email-ok"), _("We sent a confirmation link to that address."), $("email-error"));
  });

  /* ---- phone ------------------------------------------------------------------------ */

  let phoneAsked = "";
  $("phone-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    show($("phone-error"), false);
    show($("phone-ok"), false);
    const result = await api("POST", "phones", { phone: $("phone-input").value.trim() });
    if (!result.ok) { showError($("phone-error"), result); return; }
    phoneAsked = result.data.phone;
    flash($("phone-ok"), fmt(_("We sent a code to %(phone)s."), { phone: phoneAsked }));
    show($("code-form"), true);
    $("code-input").value = "";
    $("code-input").focus();
  });
  $("code-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    show($("phone-error"), false);
    const result = await api("POST", "phones/verify", { phone: phoneAsked, code: $("code-input").value.trim() });
    if (!result.ok) { showError($("phone-error"), result); return; }
    show($("code-form"), false);
    $("phone-input").value = "";
    flash($("phone-ok"), fmt(_("%(phone)s is verified."), { phone: result.data.phone }));
    loadMe();
  });

  /* ---- sessions --------------------------------------------------------------------- */

  async function loadSessions() {
    const result = await api("GET", "sessions");
    if (!result.ok) { showError($("sessions-error"), result); return; }
    show($("sessions-error"), false);
    const list = $("session-list");
    list.replaceChildren();
    for (const session of result.data) {
      const li = el("li", "session" + (session.current ? " current" : ""));
      const info = el("div", "info");
      const name = el("strong", null, deviceLabel(session.device_name) || session.platform || _("Unknown device"));
      name.title = session.device_name;
      info.append(name);
      const detail = [session.login_method, session.ip || "",
        fmt(_("last seen %(time)s"), { time: formatTime(session.last_seen_at) })];
      info.append(el("small", null, detail.filter(Boolean).join(" · ")));
      if (session.current) info.append(el("em", "this", _("This device")));
      const out = button(_("Log out"), "session-logout danger", async () => {
        if (session.current) { logout(); return; }
        out.disabled = true;
        const reply = await api("DELETE", "sessions/" + session.id);
        if (reply.ok) loadSessions();
        else { out.disabled = false; showError($("sessions-error"), reply); }
      });
      out.setAttribute("aria-label", _("Log out") + ": " + name.textContent);
      li.append(info, out);
      list.append(li);
    }
  }

  $("revoke-others").addEventListener("click", async () => {
    const result = await api("POST", "sessions/revoke-others");
    if (result.ok) loadSessions();
    else showError($("sessions-error"), result);
  });

  /* ---- access log, export, closing -------------------------------------------------- */

  $("access-load").addEventListener("click", async () => {
    const result = await api("GET", "access-log");
    if (!result.ok) return;
    const rows = $("access-rows");
    rows.replaceChildren();
    for (const entry of result.data) {
      const tr = el("tr");
      tr.append(el("td", null, formatTime(entry.created_at)),
                el("td", null, entry.actor_name || entry.actor_kind), el("td", null, entry.action));
      rows.append(tr);
    }
    show($("access-log"), result.data.length > 0);
    show($("access-empty"), result.data.length === 0);
  });

  $("close-code").addEventListener("click", async () => {
    show($("close-error"), false);
    const result = await api("POST", "account/close/code");
    if (!result.ok) { showError($("close-error"), result); return; }
    done($("close-ok"), fmt(_("We sent a code to %(phone)s."), { phone: result.data.phone }), $("close-error"));
    $("close-code-input").focus();
  });
  $("close-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!window.confirm(_("Close your account for good?"))) return;
    const result = await api("POST", "account/close", { code: $("close-code-input").value.trim() });
    if (!result.ok) { showError($("close-error"), result); return; }
    toLogin("account_closed");
  });

  return {
    loadPrefs, loadSessions,
    setAgencies(known) { agencies = known; renderAgencies(); },
    getMe,
  };
}
