"""Frames to a socket, framed once for every socket that gets them.

A server's WebSocket frames are not masked, so a room's frame is the same bytes on every
member's socket. Under uvicorn (the websockets library's protocol; `serve` turns per-message
deflate off) an OutFrame is framed once and its bytes are written to each open socket's
transport. The ASGI send framed it again for every socket, through a chain of coroutines in
uvicorn and websockets: in the profile of rooms of 10 on PostgreSQL that chain cost about as
much as the write itself. A socket that is not open (handshake not done, closing), that
negotiated an extension, or that is served by daphne gets the text through the ASGI send,
as before.
"""

import sys
from typing import Any

from websockets.frames import Frame, Opcode


class OutFrame:
    """A text frame for sockets: its text (for the ASGI send) and its wire bytes."""

    __slots__ = ("text", "wire")

    def __init__(self, text: str) -> None:
        self.text = text
        self.wire = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def websocket_protocol(send: Any) -> Any:
    """The websockets protocol behind an ASGI send (uvicorn's), else None (daphne)."""
    # Loaded by uvicorn's websockets server; importing it here would warn that it is
    # deprecated (uvicorn has not moved to its successor yet).
    legacy = sys.modules.get("websockets.legacy.protocol")
    protocol = getattr(send, "__self__", None)
    return protocol if legacy and isinstance(protocol, legacy.WebSocketCommonProtocol) else None


async def frame_write(send: Any, protocol: Any, frame: OutFrame) -> None:
    """Write `frame` to the socket, waiting while its transport is paused (back-pressure
    as the ASGI send has it: a slow reader makes the writer wait)."""
    if protocol is not None and protocol.open and not protocol.extensions:
        transport = protocol.transport
        transport.write(frame.wire)
        if transport.get_write_buffer_size():
            await protocol.drain()
        return
    await send({"type": "websocket.send", "text": frame.text})
