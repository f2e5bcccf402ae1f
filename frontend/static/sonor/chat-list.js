/* Chat, the room list: the rooms with their last message and unread count, chat requests,
 * and the forms that start a direct chat or a group. */

import { $, _, api, button, el, flash, fmt, show, showError } from "./util.js";

export function chatList(chat) {
  const { client, me, rooms } = chat;
  const invitations = new Map();    // invitation id -> ChatInvitation
  const roomList = $("rooms");

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
      const li = el("li", "room" + (chat.current && chat.current.id === room.id ? " current" : ""));
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
      if (chat.current && chat.current.id === room.id) open.setAttribute("aria-current", "true");
      open.addEventListener("click", () => chat.openRoom(room.id));
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
    if (chat.current && chat.current.id === roomId) chat.closeRoom();
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
        chat.openRoom(result.data.id);
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


  /* ---- live events ------------------------------------------------------------------ */

  async function ensureRoom(roomId) {
    if (!rooms.has(roomId)) await roomFetch(roomId);
    return rooms.get(roomId);
  }

  client.on("chat.unread", (event) => {
    const room = rooms.get(event.room);
    if (!room) return;
    room.unread = event.count;
    room.last_read_seq = event.last_read_seq;
    renderRooms();
  });

  client.on("chat.invitation", (invitation) => {
    invitations.set(invitation.id, invitation);
    renderInvitations();
  });

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
    chat.openRoom(result.data.id);
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
    chat.openRoom(result.data.room.id);
  });

  Object.assign(chat, { roomTitle, renderRooms, roomPut, roomFetch, loadRooms, roomDrop, ensureRoom, loadInvitations });
}
