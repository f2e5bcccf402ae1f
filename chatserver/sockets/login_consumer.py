"""The QR login socket /ws/v1/login: unauthenticated, for our own web pages only.

On connect it shows a code (`qr.code`), replaces it every SONOR_QR_ROTATE_EVERY seconds, and
waits for a logged-in device to approve or deny it; the answer arrives from the service as a
layer message (`qr.event`, not a wire type) addressed to this socket's channel alone. The
socket closes after `login.approved` or `login.denied`, and after LIFETIME_SECONDS anyway.
"""

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chatserver.core import protocol
from chatserver.core.errors import RateLimited
from chatserver.core.throttle import throttle_check
from identity.login.qr import (
    qr_code_frame,
    qr_login_close,
    qr_login_create,
    qr_login_rotate,
)
from identity.ws_auth import origin_allowed, scope_client, scope_origin

log = logging.getLogger(__name__)

def _connect_allowed(ip: str | None) -> bool:
    """Loose, per client address, counted across every server (the shared cache): a page
    reconnects now and then, a script opening hundreds does not."""
    if ip is None:  # no peer address (e.g. a unix socket): nothing to key on
        return True
    try:
        throttle_check(key=f"qr-connect:{ip}", limit=settings.SONOR_QR_CONNECTS_PER_MINUTE,
                       window_seconds=60)
    except RateLimited:
        return False
    return True


def _code_create(*, channel_name: str, ip: str | None, device: str) -> protocol.QrCode:
    login, token = qr_login_create(channel_name=channel_name, ip=ip, device=device)
    return qr_code_frame(login=login, token=token)


def _code_rotate(*, channel_name: str, ip: str | None, device: str) -> protocol.QrCode | None:
    rotated = qr_login_rotate(channel_name=channel_name, ip=ip, device=device)
    return qr_code_frame(login=rotated[0], token=rotated[1]) if rotated else None


class LoginConsumer(AsyncWebsocketConsumer):
    LIFETIME_SECONDS: float = 600  # then the page reconnects for a fresh start

    rotation: asyncio.Task[None] | None = None
    ip: str | None
    device: str

    async def connect(self) -> None:
        # Accept first: a close code only reaches the client on an open socket.
        await self.accept()
        origin = scope_origin(self.scope)
        # Only web pages use this socket, and browsers always send Origin.
        if origin is None or not origin_allowed(origin):
            await self.close(code=protocol.CLOSE_ORIGIN_FORBIDDEN)
            return
        self.ip, self.device = scope_client(self.scope)
        if not await database_sync_to_async(_connect_allowed)(self.ip):
            log.info("login socket refused for %s: rate limited", self.ip)
            await self.close(code=protocol.CLOSE_RATE_LIMITED)
            return
        frame = await database_sync_to_async(_code_create)(
            channel_name=self.channel_name, ip=self.ip, device=self.device)
        await self.send(text_data=frame.model_dump_json())
        self.rotation = asyncio.create_task(self._rotate_until_closed())

    async def disconnect(self, code: int) -> None:
        if self.rotation is None:
            return  # refused before a code was made
        self.rotation.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.rotation
        await database_sync_to_async(qr_login_close)(channel_name=self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        pass  # the page has nothing to say on this socket

    async def _rotate_until_closed(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.LIFETIME_SECONDS
        try:
            while True:
                await asyncio.sleep(min(settings.SONOR_QR_ROTATE_EVERY,
                                        max(0.0, deadline - loop.time())))
                if loop.time() >= deadline:
                    await self.close()
                    return
                frame = await database_sync_to_async(_code_rotate)(
                    channel_name=self.channel_name, ip=self.ip, device=self.device)
                if frame is not None:
                    await self.send(text_data=frame.model_dump_json())
        except Exception:  # a failed rotation must not leave a page showing a dead code
            log.exception("login socket %s: rotation failed", self.channel_name)
            await self.close(code=1011)

    # ---- channel-layer messages (not wire types) ----

    async def qr_event(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])
        if event.get("close"):
            if self.rotation is not None:
                self.rotation.cancel()
            await self.close()
