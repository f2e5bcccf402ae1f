/* Chat, the composer: send, edit a message of one's own, the personal-data confirmation and
 * the typing signal. */

import { $, _, show, showError } from "./util.js";

const TYPING_SEND_EVERY_MS = 3000;

export function chatComposer(chat) {
  const { client } = chat;
  let typingSentAt = 0;
  let editing = null;               // {li} while the composer edits a message
  let piiPending = null;            // what waits for the personal-data confirmation

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
    if (!chat.current || !text) return;
    if (editing) { saveEdit(editing.li, text, false); return; }
    box.value = "";
    client.send(chat.current.id, text);
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
      await client.edit(chat.current.id, li.message.id, text, { confirmPii });
      cancelEdit();
    } catch (err) {
      if (err.code === "pii_warning") askPii({ kind: "edit", li, text });
      else showError($("room-error"), err);
    }
  }


  $("composer").addEventListener("submit", submitComposer);
  $("composer-text").addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a new line.
    if (event.key === "Enter" && !event.shiftKey) submitComposer(event);
    if (event.key === "Escape" && editing) cancelEdit();
  });
  $("composer-text").addEventListener("input", () => {
    if (!chat.current || !client.online || editing) return;
    const now = Date.now();
    if (now - typingSentAt < TYPING_SEND_EVERY_MS) return;
    typingSentAt = now;
    client.typing(chat.current.id).catch(() => {});
  });
  $("composer-cancel-edit").addEventListener("click", cancelEdit);
  $("pii-send").addEventListener("click", () => piiAnswer(true));
  $("pii-cancel").addEventListener("click", () => piiAnswer(false));

  Object.assign(chat, { askPii, startEdit, cancelEdit });
}
