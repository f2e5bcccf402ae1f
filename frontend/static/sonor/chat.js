/* The chat screens: room list, invitations, one room's messages, group members. Everything
 * live comes from the protocol client (client.js); REST for lists and management. */

import { $, _, api, button, el, errorText, flash, fmt, formatClock, show, showError } from "./util.js";

const TYPING_SHOWN_MS = 5000;
const TYPING_SEND_EVERY_MS = 3000;

export function chatScreen({ client, me }) {
  const rooms = new Map();          // room id -> RoomOut (kept current by events)
  const invitations = new Map();    // invitation id -> ChatInvitation
  let current = null;               // the open room's state
  let typingSentAt = 0;
  let editing = null;               // {messageId, li} while the composer edits a message
  let piiPending = null;            // what waits for the personal-data confirmation

  const roomList = $("rooms");
  const messages = $("messages");

  /* ---- room list -------------------------------------------------------------------- */

  function roomTitle(room) {
    if (room.kind === "direct" && room.peer) return room.peer.name || room.peer.phone || room.name;
    return room.name || _("Group");
  }

  function preview(room) {
    const m = room.last_message;
    if (!m) return _("No messages yet");
    if (m.deleted) return _("Message deleted");
    return (m.sender === me().id ? _("You: ") : "") + m.text;
  }

  function sortedRooms() {
    const at = (room) => room.last_message ? Date.parse(room.last_message.sent_at) : Date.parse(room.created_at);
    return [...rooms.values()].sort((a, b) => at(b) - at(a));
  }

  function renderRooms() {
    roomList.replaceChildren();
    for (const room of sortedRooms()) {
      const li = el("li", "room" + (current && current.id === room.id ? " current" : ""));
      li.dataset.room = String(room.id);
      const open = el("button", "room-button");
      open.type = "button";
      const name = el("span", "room-name", roomTitle(room));
      const last = el("span", "room-last", preview(room));
      open.append(name, last);
      if (room.unread > 0) {
        const badge = el("span", "badge", room.unread);
        badge.setAttribute("aria-label", fmt(_("%(count)s unread"), { count: room.unread }));
        open.append(badge);
      }
      if (current && current.id === room.id) open.setAttribute("aria-current", "true");
      open.addEventListener("click", () => openRoom(room.id));
      li.append(open);
      roomList.append(li);
    }
    show($("rooms-empty"), rooms.size === 0);
    const total = [...rooms.values()].reduce((sum, room) => sum + room.unread, 0);
    const badge = $("chat-unread");
    badge.textContent = String(total);
    badge.classList.toggle("zero", total === 0);
  }

  // A room as the REST API gives it: a snapshot up to its last_seq. Live events above that
  // seq change it (see chat.message); a snapshot older than what is known is ignored.
  function roomPut(room) {
    const known = rooms.get(room.id);
    if (known && known.last_seq > room.last_seq) return;
    rooms.set(room.id, room);
    client.trackRoom(room.id, room.last_seq);
    renderRooms();
  }

  const fetching = new Map(); // room id -> its GET in flight (events of a new room come in bursts)
  function roomFetch(roomId) {
    if (!fetching.has(roomId)) {
      fetching.set(roomId, api("GET", "rooms/" + roomId).then((result) => {
        fetching.delete(roomId);
        if (result.ok) roomPut(result.data);
        return result;
      }));
    }
    return fetching.get(roomId);
  }

  async function loadRooms() {
    const result = await api("GET", "rooms");
    if (!result.ok) return result;
    rooms.clear();
    for (const room of result.data) {
      rooms.set(room.id, room);
      client.trackRoom(room.id, room.last_seq);
    }
    renderRooms();
    return result;
  }

  function roomDrop(roomId) {
    rooms.delete(roomId);
    client.forgetRoom(roomId);
    if (current && current.id === roomId) closeRoom();
    renderRooms();
  }

  /* ---- invitations ------------------------------------------------------------------ */

  function renderInvitations() {
    const list = $("invitations");
    list.replaceChildren();
    for (const invitation of invitations.values()) {
      const li = el("li", "invitation");
      const text = invitation.kind === "group"
        ? fmt(_("%(name)s invites you to the group %(group)s"), { name: invitation.from_name, group: invitation.room_name })
        : fmt(_("%(name)s wants to chat with you"), { name: invitation.from_name });
      li.append(el("span", null, text));
      li.append(button(_("Accept"), "accept", async () => {
        const result = await api("POST", "invitations/" + invitation.id + "/accept");
        invitations.delete(invitation.id);
        renderInvitations();
        if (!result.ok) { showError($("chat-error"), result); return; }
        roomPut(result.data);
        openRoom(result.data.id);
      }));
      li.append(button(_("Decline"), "secondary decline", async () => {
        await api("POST", "invitations/" + invitation.id + "/decline");
        invitations.delete(invitation.id);
        renderInvitations();
      }));
      list.append(li);
    }
    show($("invitations-box"), invitations.size > 0);
  }

  async function loadInvitations() {
    const result = await api("GET", "invitations");
    if (!result.ok) return;
    invitations.clear();
    for (const invitation of result.data) invitations.set(invitation.id, invitation);
    renderInvitations();
  }

  /* ---- one room --------------------------------------------------------------------- */

  function closeRoom() {
    current = null;
    cancelEdit();
    show($("room-view"), false);
    document.body.classList.remove("room-open");
    renderRooms();
  }

  function senderName(userId) {
    if (userId === me().id) return _("You");
    return (current && current.names.get(userId)) || _("Someone");
  }

  async function openRoom(roomId) {
    const room = rooms.get(roomId);
    if (!room) return;
    cancelEdit();
    current = {
      id: roomId, room, names: new Map(), readSeqs: new Map(), groupReceipt: null,
      bySeq: new Map(), byMessage: new Map(), byClientId: new Map(), oldestSeq: null,
      hasMore: false, loading: false, typingTimer: null,
    };
    if (room.peer) current.names.set(room.peer.id, room.peer.name);
    messages.replaceChildren();
    show($("pii-warning"), false);
    show($("room-error"), false);
    show($("room-ok"), false);
    $("typing").textContent = "";
    $("room-name").textContent = roomTitle(room);
    $("room-sub").textContent = room.kind === "group"
      ? fmt(_("%(count)s members"), { count: room.member_count }) : (room.peer && room.peer.phone) || "";
    show($("room-members-toggle"), room.kind === "group");
    $("room-members-toggle").setAttribute("aria-expanded", "false");
    show($("room-members"), false);
    show($("room-block"), room.kind === "direct" && !!room.peer);
    show($("room-report-user"), room.kind === "direct" && !!room.peer);
    show($("room-view"), true);
    document.body.classList.add("room-open");
    renderRooms();
    const state = current;
    await loadMembers(state);
    await loadPage(state, null);
    if (current !== state) return;
    for (const item of client.pending()) if (item.room === roomId) renderOutboxItem(item);
    messages.scrollTop = messages.scrollHeight;
    markRead();
    $("composer-text").focus();
  }

  async function loadMembers(state) {
    const result = await api("GET", "rooms/" + state.id + "/members");
    if (!result.ok || current !== state) return;
    for (const member of result.data) {
      state.names.set(member.user_id, member.name);
      if (member.user_id !== me().id) state.readSeqs.set(member.user_id, member.last_read_seq);
    }
    state.members = result.data;
    renderMembers();
  }

  // A page of history: over the socket when it is up, else over REST (the same frames).
  async function fetchPage(roomId, beforeSeq) {
    if (client.online) {
      try {
        return await client.history(roomId, { beforeSeq });
      } catch (err) { /* fall back to REST */ }
    }
    const query = beforeSeq ? "?before_seq=" + beforeSeq : "";
    const result = await api("GET", "rooms/" + roomId + "/messages" + query);
    return result.ok ? result.data : null;
  }

  async function loadPage(state, beforeSeq) {
    if (state.loading) return;
    state.loading = true;
    const page = await fetchPage(state.id, beforeSeq);
    state.loading = false;
    if (!page || current !== state) return;
    const keepBottom = messages.scrollHeight - messages.scrollTop;
    const first = messages.firstChild;
    for (const event of page.messages) {
      if (event.type === "chat.updated") { applyUpdate(event); continue; }
      const li = renderEvent(event);
      if (li) placeEvent(li, event, beforeSeq ? first : null);
    }
    if (page.messages.length) {
      state.oldestSeq = Math.min(state.oldestSeq ?? Infinity, page.messages[0].seq);
      const newest = page.messages[page.messages.length - 1].seq;
      client.trackRoom(state.id, newest);
    }
    state.hasMore = page.has_more;
    show($("older"), state.hasMore);
    if (beforeSeq) messages.scrollTop = messages.scrollHeight - keepBottom;
    refreshTicks();
  }

  function loadOlder() {
    if (current && current.hasMore && current.oldestSeq) loadPage(current, current.oldestSeq);
  }

  /** Put an event's <li> in the list: in place of its pending copy if this device sent it. */
  function placeEvent(li, event, before) {
    const pending = event.client_msg_id && current.byClientId.get(event.client_msg_id);
    if (pending) current.byClientId.delete(event.client_msg_id);
    if (pending && pending.isConnected) pending.replaceWith(li);
    else messages.insertBefore(li, before);
  }

  /** A <li> for a room event (message, membership change, rename), or null if shown. */
  function renderEvent(event) {
    if (current.bySeq.has(event.seq)) return null;
    let li;
    if (event.type === "chat.message") {
      if (current.byMessage.has(event.id)) return null;
      li = messageItem(event);
      current.byMessage.set(event.id, li);
    } else if (event.type === "chat.member") {
      if (event.user !== null) current.names.set(event.user, event.name);
      const texts = {
        joined: _("%(name)s joined"), left: _("%(name)s left"),
        removed: _("%(name)s was removed"), role: _("%(name)s is now %(role)s"),
      };
      li = el("li", "system", fmt(texts[event.action], { name: event.name, role: event.role }));
    } else if (event.type === "chat.room") {
      li = el("li", "system", fmt(_("Group name: %(name)s"), { name: event.name }));
    } else {
      return null;
    }
    li.dataset.seq = String(event.seq);
    current.bySeq.set(event.seq, li);
    return li;
  }

  function messageItem(message) {
    const mine = message.sender === me().id;
    const li = el("li", "message " + (mine ? "mine" : "theirs"));
    li.dataset.id = String(message.id);
    if (message.client_msg_id) li.dataset.clientMsgId = message.client_msg_id;
    li.dataset.sender = String(message.sender);
    li.message = message;
    if (!mine && current.room.kind === "group") li.append(el("span", "sender", senderName(message.sender)));
    li.append(el("p", "text"));
    const meta = el("span", "meta");
    const time = el("time", "time", formatClock(message.sent_at));
    time.dateTime = message.sent_at;
    meta.append(time, el("span", "edited"), el("span", "status"));
    li.append(meta);
    li.append(el("span", "actions"));
    fillMessage(li, message);
    if (mine) setStatus(li, "sent");
    return li;
  }

  function fillMessage(li, message) {
    const mine = message.sender === me().id;
    li.message = message;
    li.classList.toggle("deleted", !!message.deleted);
    li.querySelector(".text").textContent = message.deleted ? _("Message deleted") : message.text;
    li.querySelector(".edited").textContent = message.edited_at && !message.deleted ? _("edited") : "";
    const actions = li.querySelector(".actions");
    actions.replaceChildren();
    if (message.deleted) return;
    if (mine) {
      actions.append(button(_("Edit"), "link-button edit", () => startEdit(li)));
      actions.append(button(_("Delete"), "link-button delete", () => deleteMessage(li)));
    } else {
      actions.append(button(_("Report"), "link-button report", () => reportMessage(li)));
    }
  }

  const STATUS_TEXT = {
    pending: () => _("Sending…"), failed: () => _("Not sent"), sent: () => _("Sent"),
    read: () => _("Seen"), held: () => _("Not delivered"),
  };

  function setStatus(li, status) {
    li.dataset.status = status;
    const node = li.querySelector(".status");
    node.textContent = STATUS_TEXT[status]();
    node.className = "status " + status;
  }

  function refreshTicks() {
    if (!current) return;
    let readUpTo = 0;
    if (current.groupReceipt) readUpTo = current.groupReceipt.read_by > 0 ? current.groupReceipt.seq : 0;
    for (const seq of current.readSeqs.values()) readUpTo = Math.max(readUpTo, seq);
    for (const li of current.byMessage.values()) {
      if (!li.classList.contains("mine") || li.dataset.status === "held") continue;
      setStatus(li, Number(li.dataset.seq) <= readUpTo ? "read" : "sent");
    }
  }

  function markRead() {
    if (!current || document.hidden) return;
    const seq = Math.max(current.room.last_seq, ...[...current.bySeq.keys()]);
    if (current.room.unread === 0 && current.room.last_read_seq >= seq) return;
    current.room.last_read_seq = seq;
    current.room.unread = 0;
    renderRooms();
    if (client.online) client.read(current.id, seq).catch(() => {});
    else api("POST", "rooms/" + current.id + "/read", { seq });
  }

  /* ---- sending, with pending and failed states -------------------------------------- */

  function pendingItem(item) {
    const li = el("li", "message mine");
    li.dataset.clientMsgId = item.clientMsgId;
    li.append(el("p", "text", item.text));
    const meta = el("span", "meta");
    meta.append(el("span", "status"));
    li.append(meta, el("span", "actions"));
    return li;
  }

  function renderOutboxItem(item) {
    if (!current || item.room !== current.id) return;
    let li = current.byClientId.get(item.clientMsgId);
    if (item.status === "sent") {
      // Acked: the stored message (live or resumed) takes the pending one's place.
      if (li && item.seq === null) {
        current.byClientId.delete(item.clientMsgId);
        setStatus(li, "held");
        li.querySelector(".actions").replaceChildren();
      } else if (li) {
        setStatus(li, "sent");
        li.querySelector(".actions").replaceChildren();
      }
      return;
    }
    if (item.status === "discarded") { if (li) li.remove(); return; }
    if (!li) {
      li = pendingItem(item);
      current.byClientId.set(item.clientMsgId, li);
      messages.append(li);
      messages.scrollTop = messages.scrollHeight;
    }
    const status = item.status === "failed" ? "failed" : "pending";
    setStatus(li, status);
    const actions = li.querySelector(".actions");
    actions.replaceChildren();
    if (status === "failed") {
      if (item.error && item.error.code === "pii_warning") {
        askPii({ kind: "send", item });
      } else {
        li.querySelector(".status").textContent = _("Not sent") + ": " + errorText(item.error || {});
        actions.append(button(_("Try again"), "link-button retry", () => client.retry(item.clientMsgId)));
      }
      actions.append(button(_("Discard"), "link-button discard", () => client.discard(item.clientMsgId)));
    }
  }

  function askPii(what) {
    piiPending = what;
    show($("pii-warning"), true);
    $("pii-send").focus();
  }

  function piiAnswer(send) {
    const what = piiPending;
    piiPending = null;
    show($("pii-warning"), false);
    $("composer-text").focus();
    if (!what) return;
    if (what.kind === "send") {
      if (send) client.retry(what.item.clientMsgId, { confirmPii: true });
      else client.discard(what.item.clientMsgId);
    } else if (send) {
      saveEdit(what.li, what.text, true);
    }
  }

  function submitComposer(event) {
    event.preventDefault();
    const box = $("composer-text");
    const text = box.value.trim();
    if (!current || !text) return;
    if (editing) { saveEdit(editing.li, text, false); return; }
    box.value = "";
    client.send(current.id, text);
  }

  function startEdit(li) {
    editing = { li };
    $("composer-text").value = li.message.text;
    $("composer-send").textContent = _("Save");
    show($("composer-cancel-edit"), true);
    $("composer-text").focus();
  }

  function cancelEdit() {
    editing = null;
    $("composer-text").value = "";
    $("composer-send").textContent = _("Send");
    show($("composer-cancel-edit"), false);
  }

  async function saveEdit(li, text, confirmPii) {
    try {
      await client.edit(current.id, li.message.id, text, { confirmPii });
      cancelEdit();
    } catch (err) {
      if (err.code === "pii_warning") askPii({ kind: "edit", li, text });
      else showError($("room-error"), err);
    }
  }

  async function deleteMessage(li) {
    if (!window.confirm(_("Delete this message for everyone?"))) return;
    try {
      await client.delete(current.id, li.message.id);
    } catch (err) {
      showError($("room-error"), err);
    }
  }

  async function reportMessage(li) {
    const reason = window.prompt(_("Why do you report this message?"), _("Spam or abuse"));
    if (!reason) return;
    const result = await api("POST", "reports", { message_id: li.message.id, reason });
    if (result.ok) flash($("room-ok"), _("Reported. Thank you."));
    else showError($("room-error"), result);
  }

  /* ---- live events ------------------------------------------------------------------ */

  async function ensureRoom(roomId) {
    if (!rooms.has(roomId)) await roomFetch(roomId);
    return rooms.get(roomId);
  }

  client.on("chat.message", async (message) => {
    const room = await ensureRoom(message.room);
    if (!room) return;
    const mine = message.sender === me().id;
    const open = current && current.id === message.room;
    if (message.seq > room.last_seq) { // not in the room's snapshot yet
      room.last_seq = message.seq;
      room.last_message = message;
      if (!mine && !(open && !document.hidden)) room.unread += 1;
    }
    if (open) {
      const li = renderEvent(message);
      if (li) {
        placeEvent(li, message, null);
        messages.scrollTop = messages.scrollHeight;
      }
      if (!mine) { showTyping(message.sender, false); markRead(); }
      refreshTicks();
    }
    renderRooms();
  });

  function applyUpdate(update) {
    if (!current || update.room !== current.id) return;
    const li = current.byMessage.get(update.message_id);
    if (!li) return;
    fillMessage(li, { ...li.message, text: update.text, edited_at: update.edited_at, deleted: update.deleted });
  }

  client.on("chat.updated", (update) => {
    const room = rooms.get(update.room);
    if (room) {
      room.last_seq = Math.max(room.last_seq, update.seq);
      if (room.last_message && room.last_message.id === update.message_id) {
        room.last_message = { ...room.last_message, text: update.text, deleted: update.deleted };
        renderRooms();
      }
    }
    if (current && current.id === update.room) current.bySeq.set(update.seq, null);
    applyUpdate(update);
  });

  client.on("chat.member", async (event) => {
    if (event.user === me().id && (event.action === "left" || event.action === "removed")) {
      roomDrop(event.room);
      return;
    }
    const room = await ensureRoom(event.room);
    if (!room) return;
    if (event.seq > room.last_seq) { // not in the room's snapshot yet
      room.last_seq = event.seq;
      if (event.action !== "role") room.member_count += event.action === "joined" ? 1 : -1;
    }
    if (current && current.id === event.room) {
      const li = renderEvent(event);
      if (li) messages.append(li);
      $("room-sub").textContent = fmt(_("%(count)s members"), { count: room.member_count });
      loadMembers(current);
    }
  });

  client.on("chat.room", async (event) => {
    const room = await ensureRoom(event.room);
    if (!room) return;
    room.name = event.name;
    room.last_seq = Math.max(room.last_seq, event.seq);
    renderRooms();
    if (current && current.id === event.room) {
      $("room-name").textContent = roomTitle(room);
      const li = renderEvent(event);
      if (li) messages.append(li);
    }
  });

  client.on("chat.receipt", (receipt) => {
    if (!current || receipt.room !== current.id || receipt.user === me().id) return;
    current.readSeqs.set(receipt.user, Math.max(current.readSeqs.get(receipt.user) || 0, receipt.seq));
    refreshTicks();
  });

  client.on("chat.receipts", (receipts) => {
    if (!current || receipts.room !== current.id) return;
    current.groupReceipt = receipts;
    refreshTicks();
  });

  client.on("chat.unread", (event) => {
    const room = rooms.get(event.room);
    if (!room) return;
    room.unread = event.count;
    room.last_read_seq = event.last_read_seq;
    renderRooms();
  });

  function showTyping(userId, on) {
    if (!current) return;
    clearTimeout(current.typingTimer);
    $("typing").textContent = on ? fmt(_("%(name)s is typing…"), { name: senderName(userId) }) : "";
    if (on) current.typingTimer = setTimeout(() => { $("typing").textContent = ""; }, TYPING_SHOWN_MS);
  }

  client.on("chat.typing", (event) => {
    if (current && event.room === current.id && event.user !== me().id) showTyping(event.user, true);
  });

  client.on("chat.invitation", (invitation) => {
    invitations.set(invitation.id, invitation);
    renderInvitations();
  });

  client.on("outbox", renderOutboxItem);

  client.on("resync", async ({ room }) => {
    if (room === null) return;
    // Too much was missed for a replay: take the room as it is now.
    const result = await roomFetch(room);
    if (result.status === 404) { roomDrop(room); return; }
    if (current && current.id === room) openRoom(room);
  });

  client.on("welcome", () => {
    if (current) markRead();
  });

  document.addEventListener("visibilitychange", () => { if (!document.hidden) markRead(); });

  /* ---- members ---------------------------------------------------------------------- */

  function renderMembers() {
    if (!current || current.room.kind !== "group") return;
    const list = $("member-list");
    list.replaceChildren();
    const admin = current.room.role === "owner" || current.room.role === "admin";
    const roleText = { owner: _("owner"), admin: _("admin"), member: _("member") };
    for (const member of current.members || []) {
      const li = el("li", "member");
      li.append(el("span", null, member.name + (member.user_id === me().id ? " (" + _("you") + ")" : "")),
                el("small", null, roleText[member.role] || member.role));
      if (admin && member.user_id !== me().id && member.role !== "owner") {
        li.append(button(_("Remove"), "link-button remove", async () => {
          const result = await api("DELETE", "rooms/" + current.id + "/members/" + member.user_id);
          if (!result.ok) showError($("room-error"), result);
        }));
      }
      list.append(li);
    }
    show($("member-add-form"), admin);
  }

  /* ---- forms ------------------------------------------------------------------------ */

  function hideNotes() {
    show($("chat-error"), false);
    show($("chat-ok"), false);
  }

  $("direct-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    hideNotes();
    const result = await api("POST", "rooms/direct", { phone: $("direct-phone").value.trim() });
    if (!result.ok) { showError($("chat-error"), result); return; }
    $("direct-phone").value = "";
    if (result.status === 202) {
      flash($("chat-ok"), fmt(_("Chat request sent to %(phone)s. The chat opens when they accept."), { phone: result.data.phone }));
      return;
    }
    roomPut(result.data);
    openRoom(result.data.id);
  });

  $("group-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    hideNotes();
    const phones = $("group-phones").value.split(",").map((p) => p.trim()).filter(Boolean);
    const result = await api("POST", "rooms/groups", { name: $("group-name").value.trim(), phones });
    if (!result.ok) { showError($("chat-error"), result); return; }
    $("group-name").value = "";
    $("group-phones").value = "";
    $("group-form").closest("details").open = false;
    if (result.data.pending.length) {
      flash($("chat-ok"), fmt(_("Invitations sent to %(phones)s."), { phones: result.data.pending.map((i) => i.phone).join(", ") }));
    }
    roomPut(result.data.room);
    openRoom(result.data.room.id);
  });

  $("member-add-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    show($("room-error"), false);
    show($("room-ok"), false);
    const result = await api("POST", "rooms/" + current.id + "/members", { phone: $("member-phone").value.trim() });
    if (!result.ok) { showError($("room-error"), result); return; }
    $("member-phone").value = "";
    if (result.status === 202) flash($("room-ok"), fmt(_("Invitation sent to %(phone)s."), { phone: result.data.phone }));
  });

  $("room-members-toggle").addEventListener("click", () => {
    const box = $("room-members");
    show(box, box.hidden);
    $("room-members-toggle").setAttribute("aria-expanded", String(!box.hidden));
  });

  $("room-leave").addEventListener("click", async () => {
    if (!window.confirm(_("Leave this group?"))) return;
    const roomId = current.id;
    const result = await api("POST", "rooms/" + roomId + "/leave");
    if (result.ok) roomDrop(roomId);
    else showError($("room-error"), result);
  });

  $("room-block").addEventListener("click", async () => {
    const peer = current.room.peer;
    if (!window.confirm(fmt(_("Block %(name)s? They will not be told."), { name: peer.name }))) return;
    const result = await api("POST", "blocks", { user_id: peer.id });
    if (result.ok) flash($("room-ok"), fmt(_("%(name)s is blocked."), { name: peer.name }));
    else showError($("room-error"), result);
  });

  $("room-report-user").addEventListener("click", async () => {
    const peer = current.room.peer;
    const reason = window.prompt(fmt(_("Why do you report %(name)s?"), { name: peer.name }), _("Spam or abuse"));
    if (!reason) return;
    const result = await api("POST", "reports", { user_id: peer.id, reason });
    if (result.ok) flash($("room-ok"), _("Reported. Thank you."));
    else showError($("room-error"), result);
  });

  $("composer").addEventListener("submit", submitComposer);
  $("composer-text").addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a new line.
    if (event.key === "Enter" && !event.shiftKey) submitComposer(event);
    if (event.key === "Escape" && editing) cancelEdit();
  });
  $("composer-text").addEventListener("input", () => {
    if (!current || !client.online || editing) return;
    const now = Date.now();
    if (now - typingSentAt < TYPING_SEND_EVERY_MS) return;
    typingSentAt = now;
    client.typing(current.id).catch(() => {});
  });
  $("composer-cancel-edit").addEventListener("click", cancelEdit);
  $("pii-send").addEventListener("click", () => piiAnswer(true));
  $("pii-cancel").addEventListener("click", () => piiAnswer(false));
  $("older").addEventListener("click", loadOlder);
  messages.addEventListener("scroll", () => { if (messages.scrollTop < 40) loadOlder(); });
  $("room-back").addEventListener("click", closeRoom);

  return { loadRooms, loadInvitations, openRoom };
}
