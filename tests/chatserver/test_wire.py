"""A frame framed once for every socket is the WebSocket frame a client reads: the text, whole,
in one unmasked text frame, at every length encoding (7-bit, 16-bit, 64-bit)."""

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from chatserver.sockets.wire import OutFrame, websocket_protocol


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
