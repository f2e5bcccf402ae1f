/* The inbox: notices from agencies, live over the socket, with read, archive and report. */

import { $, _, api, button, el, fmt, formatTime, show, showError } from "./util.js";

// Symbols every system font has (no emoji font needed); the label says it in words.
const CATEGORIES = {
  service_request: { icon: "✎", label: () => _("Service request") },
  petition: { icon: "✉", label: () => _("Petition") },
  complaint: { icon: "⚑", label: () => _("Complaint") },
  payment: { icon: "₮", label: () => _("Payment") },
  system: { icon: "⚙", label: () => _("System") },
  security: { icon: "⚠", label: () => _("Security") },
  chat: { icon: "☎", label: () => _("Chat") },
};

const DELIVERY_STATUS = {
  pending: () => _("waiting"), sending: () => _("sending"), sent: () => _("sent"),
  failed: () => _("failed"), invalid: () => _("address not valid"), expired: () => _("expired"),
  cancelled: () => _("cancelled"), delivered: () => _("delivered"),
  undelivered: () => _("not delivered"),
};
const CHANNEL_NAME = { push: () => _("Push"), sms: () => _("SMS"), email: () => _("Email") };

export function inboxScreen({ client, onAgencies, onSecurity }) {
  const list = $("notifications");
  const items = new Map(); // notification id -> <li>
  const agencies = new Map(); // agency id -> name, for the mute settings
  let archived = false;

  function setUnread(count) {
    const badge = $("unread");
    badge.textContent = String(count);
    badge.classList.toggle("zero", count === 0);
  }

  function markItemRead(li) {
    li.classList.add("read");
    const read = li.querySelector("button.mark-read");
    if (read) read.remove();
  }

  function removeItem(id) {
    const li = items.get(id);
    if (li) li.remove();
    items.delete(id);
    show($("inbox-empty"), items.size === 0);
  }

  // `item` is a `notify.new` frame or an item of GET /api/v1/inbox (which adds read_at,
  // agency, payment details and deliveries); the list stays ordered by seq, newest first.
  function addNotification(item) {
    if (items.has(item.id)) return;
    const category = CATEGORIES[item.category] || { icon: "•", label: () => item.category };
    const li = el("li", "notification cat-" + item.category);
    li.dataset.seq = String(item.seq);
    li.dataset.id = String(item.id);
    const head = el("div", "head");
    const icon = el("span", "icon", category.icon);
    icon.setAttribute("aria-hidden", "true");
    const title = el("strong", "title", item.title);
    const time = el("time", "time", formatTime(item.created_at));
    time.dateTime = item.created_at;
    head.append(icon, title, time);
    li.append(head);
    const meta = el("div", "meta");
    meta.append(el("span", "category", category.label()));
    if (item.agency) meta.append(" · ", el("span", "agency", item.agency.name));
    li.append(meta);
    if (item.agency) agencies.set(item.agency.id, item.agency.name);
    li.append(el("p", "body", item.body));
    if (item.amount_mnt) {
      const amount = fmt(_("Amount due: %(amount)s ₮"), { amount: item.amount_mnt.toLocaleString("en-US") });
      const due = item.due_date ? " · " + fmt(_("due %(date)s"), { date: item.due_date }) : "";
      li.append(el("p", "amount", amount + due));
    }
    if (item.maintenance_at) {
      li.append(el("p", "maintenance", fmt(_("Maintenance begins %(time)s"), { time: formatTime(item.maintenance_at) })));
    }
    if (item.link && /^https:\/\//i.test(item.link)) {
      const link = el("a", "link", item.link);
      link.href = item.link;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      li.append(link);
    }
    if (item.deliveries && item.deliveries.length) {
      const deliveries = el("ul", "deliveries");
      deliveries.setAttribute("aria-label", _("Also sent by"));
      for (const d of item.deliveries) {
        const name = (CHANNEL_NAME[d.channel] || (() => d.channel))();
        const status = (DELIVERY_STATUS[d.status] || (() => d.status))();
        const chip = el("li", "delivery " + d.status, name + ": " + status);
        chip.dataset.channel = d.channel;
        deliveries.append(chip);
      }
      li.append(deliveries);
    }
    const actions = el("div", "actions");
    li.append(actions);
    if (item.read_at) {
      li.classList.add("read");
    } else {
      actions.append(button(_("Mark read"), "mark-read", async (event) => {
        const read = event.currentTarget;
        read.disabled = true;
        try {
          await client.inboxRead([item.id]);
          markItemRead(li);
        } catch (err) {
          const result = await api("POST", "inbox/read", { ids: [item.id] });
          if (result.ok) { markItemRead(li); setUnread(result.data.unread); } else read.disabled = false;
        }
      }));
    }
    if (!item.archived_at) {
      actions.append(button(_("Archive"), "secondary archive", async () => {
        const result = await api("POST", "inbox/" + item.id + "/archive");
        if (result.ok) removeItem(item.id);
        else showError($("inbox-error"), result);
      }));
    }
    actions.append(button(_("Not for me"), "secondary report", async () => {
      const reason = window.prompt(_("This notice was meant for someone else? Say why (the agency sees it)."),
                                   _("Not addressed to me"));
      if (!reason) return;
      const result = await api("POST", "inbox/" + item.id + "/report", { reason });
      if (!result.ok) { showError($("inbox-error"), result); return; }
      removeItem(item.id);
      setUnread(result.data.unread);
    }));
    items.set(item.id, li);
    const after = Array.from(list.children).find((other) => Number(other.dataset.seq) < item.seq);
    list.insertBefore(li, after || null);
    show($("inbox-empty"), false);
  }

  // The first page of the inbox with read state; live events add to it.
  let arrivedWhileLoading = null; // notify.new frames seen while a page is on its way

  async function loadInbox() {
    arrivedWhileLoading = [];
    const result = await api("GET", "inbox?limit=50" + (archived ? "&archived=true" : ""));
    const arrived = arrivedWhileLoading;
    arrivedWhileLoading = null;
    if (!result.ok) return result;
    list.replaceChildren();
    items.clear();
    for (const item of result.data.items) addNotification(item);
    // A notice stored after the page was read is not in it: keep the live copy.
    if (!archived) for (const frame of arrived) addNotification(frame);
    show($("inbox-empty"), items.size === 0);
    setUnread(result.data.unread);
    onAgencies(agencies);
    return result;
  }

  client.on("notify.new", (frame) => {
    if (arrivedWhileLoading) arrivedWhileLoading.push(frame);
    if (!archived) addNotification(frame);
    if (frame.category === "security") onSecurity();
    // The live frame has no delivery details; the list's own item has them.
    api("GET", "inbox?limit=5").then((result) => {
      if (!result.ok) return;
      const fresh = result.data.items.find((i) => i.id === frame.id);
      if (fresh && items.has(frame.id) && !archived) {
        const old = items.get(frame.id);
        items.delete(frame.id);
        addNotification(fresh);
        old.replaceWith(items.get(frame.id));
        onAgencies(agencies);
      }
    });
  });
  client.on("notify.unread", (frame) => {
    setUnread(frame.count);
    if (frame.count === 0) for (const li of items.values()) markItemRead(li);
  });
  client.on("welcome", (frame) => setUnread(frame.unread));
  client.on("resync", ({ stream }) => { if (stream === "inbox") loadInbox(); });

  $("read-all").addEventListener("click", async () => {
    const result = await api("POST", "inbox/read", { all: true });
    if (!result.ok) { showError($("inbox-error"), result); return; }
    for (const li of items.values()) markItemRead(li);
    setUnread(result.data.unread);
  });
  $("show-archived").addEventListener("change", (event) => {
    archived = event.currentTarget.checked;
    loadInbox();
  });

  return { loadInbox, agencies };
}
