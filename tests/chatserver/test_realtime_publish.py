"""Publishing a batch's frames: many groups in one layer call, and from a batch thread
without waiting for the loop; on Redis runs through the real pub/sub layer. The HTTP handler
runs async views on the loop thread."""

import asyncio
import threading

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.signals import request_finished, request_started

from chatserver.core.http_handler import HttpHandler
from chatserver.core.realtime import layer_send_many


async def _subscribe(groups: list[str]) -> dict[str, str]:
    layer = get_channel_layer()
    channels = {}
    for group in groups:
        channels[group] = await layer.new_channel()
        await layer.group_add(group, channels[group])
    return channels


async def _receive(channel: str, count: int) -> list[int]:
    layer = get_channel_layer()
    return [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(count)]


async def test_group_send_many_delivers_every_group_in_order() -> None:
    channels = await _subscribe(["pub.a", "pub.b"])
    await get_channel_layer().group_send_many(
        [("pub.a", {"type": "t", "n": 1}), ("pub.b", {"type": "t", "n": 2}),
         ("pub.a", {"type": "t", "n": 3}), ("pub.a", {"type": "t", "n": 4})])
    assert await _receive(channels["pub.a"], 3) == [1, 3, 4]
    assert await _receive(channels["pub.b"], 1) == [2]


async def test_a_batch_thread_hands_frames_to_the_loop_in_order() -> None:
    channels = await _subscribe(["pub.c", "pub.d"])

    def batches() -> None:  # as a batch of the agency API does, many times over
        for n in range(30):
            layer_send_many([("pub.c", {"type": "t", "n": n}), ("pub.d", {"type": "t", "n": n})],
                            wait=False)

    await sync_to_async(batches, thread_sensitive=False)()
    assert await _receive(channels["pub.c"], 30) == list(range(30))
    assert await _receive(channels["pub.d"], 30) == list(range(30))


async def test_an_async_view_runs_on_the_event_loop_thread() -> None:
    """Django would run the request's signals in a thread of their own, started and joined
    per request on the loop; the agency API's async view needs none."""
    threads: list[int] = []

    def record(**kwargs: object) -> None:
        threads.append(threading.get_ident())

    request_started.connect(record)
    request_finished.connect(record)
    sent: list[dict] = []
    incoming = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    try:
        await HttpHandler()({
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "path": "/api/agency/v1/notifications", "raw_path": b"",
            "root_path": "", "scheme": "http", "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
        }, receive, send)
    finally:
        request_started.disconnect(record)
        request_finished.disconnect(record)
    assert sent[0]["status"] == 401  # no key: the view's authentication answers
    assert threads == [threading.get_ident()] * 2
