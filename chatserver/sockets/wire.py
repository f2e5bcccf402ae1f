"""Frames to a socket, framed once for every socket that gets them.

A server's WebSocket frames are not masked, so a room's frame is the same bytes on every
member's socket. Under uvicorn (its sans-I/O websockets protocol; `serve` turns per-message
deflate off) an OutFrame is framed once and its bytes are written to each open socket's
transport. The ASGI send framed it again for every socket: in the profile of rooms of 10 on
PostgreSQL that cost about as much as the write itself. A socket whose handshake is not
done, that negotiated an extension, or that is served by daphne gets the text through the
ASGI send; a frame to a socket that is closing is dropped, as the ASGI send would refuse it.
"""

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode


class OutFrame:
    """A text frame for sockets: its text (for the ASGI send) and its wire bytes."""

    __slots__ = ("text", "wire")

    def __init__(self, text: str) -> None:
        self.text = text
        self.wire = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def websocket_protocol(send: Any) -> WebSocketsSansIOProtocol | None:
    """uvicorn's WebSocket protocol behind an ASGI send, else None (daphne)."""
    protocol = getattr(send, "__self__", None)
    return protocol if isinstance(protocol, WebSocketsSansIOProtocol) else None


async def frames_write(send: Any, protocol: WebSocketsSansIOProtocol | None,
                       frames: list[OutFrame]) -> None:
    """Write `frames` to the socket, in order, in one transport write (one system call for a
    reply and the room frames that waited behind it), waiting while the transport is paused
    (back-pressure as the ASGI send has it: a slow reader makes the writer wait)."""
    if (protocol is not None and protocol.handshake_complete
            and protocol.initial_response is None and not protocol.conn.extensions):
        if protocol.close_sent or protocol.disconnected:
            return  # closing or gone: the client resumes from its seqs when it is back
        protocol.transport.write(b"".join([frame.wire for frame in frames]))
        if not protocol.writable.is_set():  # paused above the high-water mark
            await protocol.writable.wait()
        return
    for frame in frames:
        await send({"type": "websocket.send", "text": frame.text})
