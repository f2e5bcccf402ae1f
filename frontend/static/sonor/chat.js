/* The chat screen: room list (chat-list.js), the open room (chat-room.js) and the composer
 * (chat-composer.js) over one shared state. Everything live comes from the protocol client
 * (client.js); REST for lists and management. */

import { chatComposer } from "./chat-composer.js";
import { chatList } from "./chat-list.js";
import { chatRoom } from "./chat-room.js";

export function chatScreen({ client, me }) {
  // Each part adds its functions here; the others call them through it.
  const chat = {
    client, me,
    rooms: new Map(),   // room id -> RoomOut (kept current by events)
    current: null,      // the open room's state
  };
  chatList(chat);
  chatRoom(chat);
  chatComposer(chat);
  return { loadRooms: chat.loadRooms, loadInvitations: chat.loadInvitations, openRoom: chat.openRoom };
}
