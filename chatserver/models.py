"""The app's models module, as Django looks for it: the chat models live in
chatserver/chat/models.py (app label and migrations stay "chatserver")."""

from chatserver.chat.models import (
    Block,
    Membership,
    PendingInvite,
    Report,
    Room,
    RoomEvent,
    SocketPresence,
)

__all__ = ["Block", "Membership", "PendingInvite", "Report", "Room", "RoomEvent",
           "SocketPresence"]
