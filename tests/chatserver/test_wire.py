"""A frame framed once for every socket is the WebSocket frame a client reads: the text, whole,
in one unmasked text frame, at every length encoding (7-bit, 16-bit, 64-bit); frames written
together reach the client as separate messages, in order; and a frame to a socket that is
closing is dropped."""

import asyncio
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from chatserver.sockets.wire import OutFrame, frames_write, websocket_protocol
from tests.loopback import free_port


def read_frame(data: bytes) -> Frame:
    """The frame a client reads from these bytes (the websockets library's parser)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
    else:  # pragma: no cover - the parser wanted more bytes than the frame has
        raise AssertionError("incomplete frame")
    return frame


@pytest.mark.parametrize("text", [
    "",
    '{"type":"chat.message","text":"Сайн уу"}',
    "ө" * 62,  # 124 bytes: the 7-bit length
    "x" * 126,  # the 16-bit length from here
    "x" * 65_535,
    "🐎" * 20_000,  # 80,000 bytes: the 64-bit length
])
def test_a_frames_bytes_read_back_as_its_text(text: str) -> None:
    frame = read_frame(OutFrame(text).wire)
    assert frame.opcode is Opcode.TEXT and frame.fin
    assert bytes(frame.data).decode() == text


def test_the_bytes_hold_one_frame_and_nothing_more() -> None:
    wire = OutFrame("hello").wire
    assert read_frame(wire + OutFrame("again").wire).data == b"hello"
    assert len(wire) == 2 + len("hello")


def test_a_send_that_is_not_the_websockets_protocol_keeps_the_asgi_send() -> None:
    async def send(message: dict) -> None:  # an ASGI send of another server (daphne's)
        pass

    assert websocket_protocol(send) is None


async def test_frames_written_at_once_arrive_in_order_and_none_after_the_close() -> None:
    """Frames written together (an ack and the room frames behind it) are separate messages
    to the client, in order. Under uvicorn a frame can reach a socket after the server sent
    its close (a room's frame queued as the socket was closed for falling behind): it is
    dropped quietly, and the client reads the close, not the frame."""
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await frames_write(send, websocket_protocol(send), [OutFrame("before")])
        # An answer and the frames that waited behind it go out in one write.
        await frames_write(send, websocket_protocol(send),
                           [OutFrame("ack"), OutFrame("Сайн уу"), OutFrame("x" * 300)])
        await send({"type": "websocket.close", "code": 4408})
        try:
            await frames_write(send, websocket_protocol(send), [OutFrame("after")])
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            outcome.set_result(f"raised {exc!r}")
        else:
            outcome.set_result("dropped")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=port, ws="websockets-sansio", lifespan="off",
        log_level="warning", ws_per_message_deflate=False))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with connect(f"ws://127.0.0.1:{port}/") as client:
            assert [await client.recv() for _ in range(4)] == [
                "before", "ack", "Сайн уу", "x" * 300]
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
        assert await asyncio.wait_for(outcome, 5) == "dropped"
    finally:
        server.should_exit = True
        await serving
