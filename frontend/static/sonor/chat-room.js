/* Chat, one room: its messages (history, live events, pending and failed sends, receipts,
 * typing), its members and what can be done to them. */

import { $, _, api, button, el, errorText, flash, fmt, formatClock, show, showError } from "./util.js";

const TYPING_SHOWN_MS = 5000;

export function chatRoom(chat) {
  const { client, me, rooms } = chat;
  const messages = $("messages");

  /* ---- one room --------------------------------------------------------------------- */

  function closeRoom() {
    chat.current = null;
    chat.cancelEdit();
    show($("room-view"), false);
    document.body.classList.remove("room-open");
    chat.renderRooms();
  }

  function senderName(userId) {
    if (userId === me().id) return _("You");
    return (chat.current && chat.current.names.get(userId)) || _("Someone");
  }

  async function openRoom(roomId) {
    const room = rooms.get(roomId);
    if (!room) return;
    chat.cancelEdit();
    chat.current = {
      id: roomId, room, names: new Map(), readSeqs: new Map(), groupReceipt: null,
      bySeq: new Map(), byMessage: new Map(), byClientId: new Map(), oldestSeq: null,
      hasMore: false, loading: false, typingTimer: null,
    };
    if (room.peer) chat.current.names.set(room.peer.id, room.peer.name);
    messages.replaceChildren();
    show($("pii-warning"), false);
    show($("room-error"), false);
    show($("room-ok"), false);
    $("typing").textContent = "";
    $("room-name").textContent = chat.roomTitle(room);
    $("room-sub").textContent = room.kind === "group"
      ? fmt(_("%(count)s members"), { count: room.member_count }) : (room.peer && room.peer.phone) || "";
    show($("room-members-toggle"), room.kind === "group");
    $("room-members-toggle").setAttribute("aria-expanded", "false");
    show($("room-members"), false);
    show($("room-block"), room.kind === "direct" && !!room.peer);
    show($("room-report-user"), room.kind === "direct" && !!room.peer);
    show($("room-view"), true);
    document.body.classList.add("room-open");
    chat.renderRooms();
    const state = chat.current;
    await loadMembers(state);
    await loadPage(state, null);
    if (chat.current !== state) return;
    for (const item of client.pending()) if (item.room === roomId) renderOutboxItem(item);
    messages.scrollTop = messages.scrollHeight;
    markRead();
    $("composer-text").focus();
  }

  async function loadMembers(state) {
    const result = await api("GET", "rooms/" + state.id + "/members");
    if (!result.ok || chat.current !== state) return;
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
    if (!page || chat.current !== state) return;
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
    if (chat.current && chat.current.hasMore && chat.current.oldestSeq) loadPage(chat.current, chat.current.oldestSeq);
  }

  /** Put an event's <li> in the list: in place of its pending copy if this device sent it. */
  function placeEvent(li, event, before) {
    const pending = event.client_msg_id && chat.current.byClientId.get(event.client_msg_id);
    if (pending) chat.current.byClientId.delete(event.client_msg_id);
    if (pending && pending.isConnected) pending.replaceWith(li);
    else messages.insertBefore(li, before);
  }

  /** A <li> for a room event (message, membership change, rename), or null if shown. */
  function renderEvent(event) {
    if (chat.current.bySeq.has(event.seq)) return null;
    let li;
    if (event.type === "chat.message") {
      if (chat.current.byMessage.has(event.id)) return null;
      li = messageItem(event);
      chat.current.byMessage.set(event.id, li);
    } else if (event.type === "chat.member") {
      if (event.user !== null) chat.current.names.set(event.user, event.name);
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
    chat.current.bySeq.set(event.seq, li);
    return li;
  }

  function messageItem(message) {
    const mine = message.sender === me().id;
    const li = el("li", "message " + (mine ? "mine" : "theirs"));
    li.dataset.id = String(message.id);
    if (message.client_msg_id) li.dataset.clientMsgId = message.client_msg_id;
    li.dataset.sender = String(message.sender);
    li.message = message;
    if (!mine && chat.current.room.kind === "group") li.append(el("span", "sender", senderName(message.sender)));
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
      actions.append(button(_("Edit"), "link-button edit", () => chat.startEdit(li)));
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
    if (!chat.current) return;
    let readUpTo = 0;
    if (chat.current.groupReceipt) readUpTo = chat.current.groupReceipt.read_by > 0 ? chat.current.groupReceipt.seq : 0;
    for (const seq of chat.current.readSeqs.values()) readUpTo = Math.max(readUpTo, seq);
    for (const li of chat.current.byMessage.values()) {
      if (!li.classList.contains("mine") || li.dataset.status === "held") continue;
      setStatus(li, Number(li.dataset.seq) <= readUpTo ? "read" : "sent");
    }
  }

  function markRead() {
    if (!chat.current || document.hidden) return;
    const seq = Math.max(chat.current.room.last_seq, ...[...chat.current.bySeq.keys()]);
    if (chat.current.room.unread === 0 && chat.current.room.last_read_seq >= seq) return;
    chat.current.room.last_read_seq = seq;
    chat.current.room.unread = 0;
    chat.renderRooms();
    readSend(chat.current.id, seq);
  }

  // One read receipt on its way at a time, then the newest seq of each room: a burst of
  // messages (a busy room, a resume) would otherwise send a frame per message and run into
  // the socket's rate limit (4429).
  const readsWanted = new Map(); // room id -> the highest seq read, not yet sent
  let readSending = false;
  async function readSend(roomId, seq) {
    readsWanted.set(roomId, Math.max(seq, readsWanted.get(roomId) || 0));
    if (readSending) return;
    readSending = true;
    try {
      while (readsWanted.size) {
        const [room, upTo] = readsWanted.entries().next().value;
        readsWanted.delete(room);
        if (client.online) await client.read(room, upTo).catch(() => {});
        else await api("POST", "rooms/" + room + "/read", { seq: upTo });
      }
    } finally {
      readSending = false;
    }
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
    if (!chat.current || item.room !== chat.current.id) return;
    let li = chat.current.byClientId.get(item.clientMsgId);
    if (item.status === "sent") {
      // Acked: the stored message (live or resumed) takes the pending one's place.
      if (li && item.seq === null) {
        chat.current.byClientId.delete(item.clientMsgId);
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
      chat.current.byClientId.set(item.clientMsgId, li);
      messages.append(li);
      messages.scrollTop = messages.scrollHeight;
    }
    const status = item.status === "failed" ? "failed" : "pending";
    setStatus(li, status);
    const actions = li.querySelector(".actions");
    actions.replaceChildren();
    if (status === "failed") {
      if (item.error && item.error.code === "pii_warning") {
        chat.askPii({ kind: "send", item });
      } else {
        li.querySelector(".status").textContent = _("Not sent") + ": " + errorText(item.error || {});
        actions.append(button(_("Try again"), "link-button retry", () => client.retry(item.clientMsgId)));
      }
      actions.append(button(_("Discard"), "link-button discard", () => client.discard(item.clientMsgId)));
    }
  }


  async function deleteMessage(li) {
    if (!window.confirm(_("Delete this message for everyone?"))) return;
    try {
      await client.delete(chat.current.id, li.message.id);
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

  client.on("chat.message", async (message) => {
    const room = await chat.ensureRoom(message.room);
    if (!room) return;
    const mine = message.sender === me().id;
    const open = chat.current && chat.current.id === message.room;
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
    chat.renderRooms();
  });

  function applyUpdate(update) {
    if (!chat.current || update.room !== chat.current.id) return;
    const li = chat.current.byMessage.get(update.message_id);
    if (!li) return;
    fillMessage(li, { ...li.message, text: update.text, edited_at: update.edited_at, deleted: update.deleted });
  }

  client.on("chat.updated", (update) => {
    const room = rooms.get(update.room);
    if (room) {
      room.last_seq = Math.max(room.last_seq, update.seq);
      if (room.last_message && room.last_message.id === update.message_id) {
        room.last_message = { ...room.last_message, text: update.text, deleted: update.deleted };
        chat.renderRooms();
      }
    }
    if (chat.current && chat.current.id === update.room) chat.current.bySeq.set(update.seq, null);
    applyUpdate(update);
  });

  client.on("chat.member", async (event) => {
    if (event.user === me().id && (event.action === "left" || event.action === "removed")) {
      chat.roomDrop(event.room);
      return;
    }
    const room = await chat.ensureRoom(event.room);
    if (!room) return;
    if (event.seq > room.last_seq) { // not in the room's snapshot yet
      room.last_seq = event.seq;
      if (event.action !== "role") room.member_count += event.action === "joined" ? 1 : -1;
    }
    if (chat.current && chat.current.id === event.room) {
      const li = renderEvent(event);
      if (li) messages.append(li);
      $("room-sub").textContent = fmt(_("%(count)s members"), { count: room.member_count });
      loadMembers(chat.current);
    }
  });

  client.on("chat.room", async (event) => {
    const room = await chat.ensureRoom(event.room);
    if (!room) return;
    room.name = event.name;
    room.last_seq = Math.max(room.last_seq, event.seq);
    chat.renderRooms();
    if (chat.current && chat.current.id === event.room) {
      $("room-name").textContent = chat.roomTitle(room);
      const li = renderEvent(event);
      if (li) messages.append(li);
    }
  });

  client.on("chat.receipt", (receipt) => {
    if (!chat.current || receipt.room !== chat.current.id || receipt.user === me().id) return;
    chat.current.readSeqs.set(receipt.user, Math.max(chat.current.readSeqs.get(receipt.user) || 0, receipt.seq));
    refreshTicks();
  });

  client.on("chat.receipts", (receipts) => {
    if (!chat.current || receipts.room !== chat.current.id) return;
    chat.current.groupReceipt = receipts;
    refreshTicks();
  });


  function showTyping(userId, on) {
    if (!chat.current) return;
    clearTimeout(chat.current.typingTimer);
    $("typing").textContent = on ? fmt(_("%(name)s is typing…"), { name: senderName(userId) }) : "";
    if (on) chat.current.typingTimer = setTimeout(() => { $("typing").textContent = ""; }, TYPING_SHOWN_MS);
  }

  client.on("chat.typing", (event) => {
    if (chat.current && event.room === chat.current.id && event.user !== me().id) showTyping(event.user, true);
  });


  client.on("outbox", renderOutboxItem);

  client.on("resync", async ({ room }) => {
    if (room === null) return;
    // Too much was missed for a replay: take the room as it is now.
    const result = await chat.roomFetch(room);
    if (result.status === 404) { chat.roomDrop(room); return; }
    if (chat.current && chat.current.id === room) openRoom(room);
  });

  client.on("welcome", () => {
    if (chat.current) markRead();
  });

  document.addEventListener("visibilitychange", () => { if (!document.hidden) markRead(); });

  /* ---- members ---------------------------------------------------------------------- */

  function renderMembers() {
    if (!chat.current || chat.current.room.kind !== "group") return;
    const list = $("member-list");
    list.replaceChildren();
    const admin = chat.current.room.role === "owner" || chat.current.room.role === "admin";
    const roleText = { owner: _("owner"), admin: _("admin"), member: _("member") };
    for (const member of chat.current.members || []) {
      const li = el("li", "member");
      li.append(el("span", null, member.name + (member.user_id === me().id ? " (" + _("you") + ")" : "")),
                el("small", null, roleText[member.role] || member.role));
      if (admin && member.user_id !== me().id && member.role !== "owner") {
        li.append(button(_("Remove"), "link-button remove", async () => {
          const result = await api("DELETE", "rooms/" + chat.current.id + "/members/" + member.user_id);
          if (!result.ok) showError($("room-error"), result);
        }));
      }
      list.append(li);
    }
    show($("member-add-form"), admin);
  }


  $("member-add-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    show($("room-error"), false);
    show($("room-ok"), false);
    const result = await api("POST", "rooms/" + chat.current.id + "/members", { phone: $("member-phone").value.trim() });
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
    const roomId = chat.current.id;
    const result = await api("POST", "rooms/" + roomId + "/leave");
    if (result.ok) chat.roomDrop(roomId);
    else showError($("room-error"), result);
  });

  $("room-block").addEventListener("click", async () => {
    const peer = chat.current.room.peer;
    if (!window.confirm(fmt(_("Block %(name)s? They will not be told."), { name: peer.name }))) return;
    const result = await api("POST", "blocks", { user_id: peer.id });
    if (result.ok) flash($("room-ok"), fmt(_("%(name)s is blocked."), { name: peer.name }));
    else showError($("room-error"), result);
  });

  $("room-report-user").addEventListener("click", async () => {
    const peer = chat.current.room.peer;
    const reason = window.prompt(fmt(_("Why do you report %(name)s?"), { name: peer.name }), _("Spam or abuse"));
    if (!reason) return;
    const result = await api("POST", "reports", { user_id: peer.id, reason });
    if (result.ok) flash($("room-ok"), _("Reported. Thank you."));
    else showError($("room-error"), result);
  });
  $("older").addEventListener("click", loadOlder);
  messages.addEventListener("scroll", () => { if (messages.scrollTop < 40) loadOlder(); });
  $("room-back").addEventListener("click", closeRoom);

  Object.assign(chat, { openRoom, closeRoom });
}
