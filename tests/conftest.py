"""Shared fixtures: citizens with a verified phone, session tokens, a JSON API client, the SMS
the embedded sender "sent", and a fresh channel layer per test."""

import copy
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import date, timedelta
from typing import Annotated, Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import transaction
from django.test import Client
from django.utils import timezone
from pydantic import BaseModel, Field, TypeAdapter

from chatserver.core import protocol
from identity.models import User
from identity.services import _phone_bind, citizen_create, session_create
from notify.models import DevOutboxMessage

_serial = itertools.count(1)


def _next_register_number() -> str:
    """A valid citizen register number with a birth date unique in this run (1980 onwards)."""
    born = date(1980, 1, 1) + timedelta(days=next(_serial))
    return f"УБ{born:%y%m%d}12"


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> None:
    """No persistent connections in tests: asgiref's worker threads would keep theirs open
    and PostgreSQL could not drop the test database at the end."""
    django_settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture(autouse=True)
def _fresh_channel_layer(request: pytest.FixtureRequest) -> Iterator[None]:
    """A new channel layer for every test, so that no group or queue outlives its test.

    With Redis the group names get a prefix of their own: Redis pub/sub ignores the database
    number, and other test runs on the same Redis use the same user ids. End-to-end tests keep
    the settings, since their server process must share the layer with the test process.
    """
    if request.node.get_closest_marker("e2e") or "e2e" in request.node.path.parts:
        yield
        return
    settings = request.getfixturevalue("settings")
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if "RedisPubSub" in layers["default"]["BACKEND"]:
        layers["default"].setdefault("CONFIG", {})["prefix"] = f"t{uuid.uuid4().hex[:12]}"
    # Assigning the setting makes Channels drop its cached layers (setting_changed).
    settings.CHANNEL_LAYERS = layers
    yield


@pytest.fixture
def make_citizen(db: None) -> Callable[..., User]:
    """make_citizen(phone="+976...") -> an active citizen, with that phone verified if given."""

    def make(*, phone: str | None = None, name: str = "Test citizen") -> User:
        user = citizen_create(register_number=_next_register_number(), name=name)
        if phone:
            with transaction.atomic():
                _phone_bind(user=user, e164=phone, now=timezone.now())
        return user

    return make


@pytest.fixture
def citizen(make_citizen: Callable[..., User]) -> User:
    return make_citizen(phone=f"+97688{next(_serial) % 1_000_000:06d}")


@pytest.fixture
def make_token(db: None) -> Callable[..., str]:
    """make_token(user, device_name="...") -> the bearer token of a new device session."""

    def make(user: User, device_name: str = "test device") -> str:
        return session_create(user=user, login_method="test", device_name=device_name)[1]

    return make


@pytest.fixture
def session_token(citizen: User, make_token: Callable[..., str]) -> str:
    return make_token(citizen)


class JsonClient:
    """django.test.Client speaking JSON with `Authorization: Bearer <token>` (when given)."""

    def __init__(self, token: str | None = None) -> None:
        self.client = Client()
        self.token = token

    def request(self, method: str, path: str, data: Any = None,
                headers: dict[str, str] | None = None) -> Any:
        all_headers = dict(headers or {})
        if self.token:
            all_headers.setdefault("Authorization", f"Bearer {self.token}")
        kwargs: dict[str, Any] = {"headers": all_headers}
        if data is not None:
            kwargs.update(data=json.dumps(data), content_type="application/json")
        return getattr(self.client, method.lower())(path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, data if data is not None else {}, **kwargs)

    def put(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.request("PUT", path, data if data is not None else {}, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def make_api_client() -> Callable[[str | None], JsonClient]:
    return JsonClient


@pytest.fixture
def api_client(session_token: str) -> JsonClient:
    return JsonClient(session_token)


@pytest.fixture
def sent_sms(db: None) -> Callable[[str], list[str]]:
    """sent_sms("+976...") -> the texts the embedded SMS sender wrote for that number, oldest
    first."""

    def read(phone: str) -> list[str]:
        return list(DevOutboxMessage.objects.filter(sender_kind="sms", address=phone)
                    .order_by("created_at", "pk").values_list("body", flat=True))

    return read


@pytest.fixture
def sms_code(sent_sms: Callable[[str], list[str]]) -> Callable[[str], str]:
    """sms_code("+976...") -> the 6-digit code in the last SMS sent to that number."""

    def read(phone: str) -> str:
        texts = sent_sms(phone)
        assert texts, f"no SMS was sent to {phone}"
        match = re.search(r"\b(\d{6})\b", texts[-1])
        assert match, f"no code in {texts[-1]!r}"
        return match.group(1)

    return read


# ---- sockets -------------------------------------------------------------------------------

ServerFrameTagged = Annotated[protocol.ServerFrame, Field(discriminator="type")]
_server_frame: TypeAdapter[Any] = TypeAdapter(ServerFrameTagged)


def server_frame(data: Any) -> Any:
    """A server frame as its model in chatserver.core.protocol; nothing the server sent was
    dropped or added by the model."""
    frame = _server_frame.validate_python(data)
    assert frame.model_dump(mode="json") == data
    return frame


class DeviceSocket(WebsocketCommunicator):
    """A /ws/v1 test client whose every received frame is validated against its model in
    chatserver.core.protocol (like zulip's verify_action)."""

    async def receive_frame(self, timeout: float = 3) -> BaseModel:
        frame: BaseModel = server_frame(await self.receive_json_from(timeout=timeout))
        return frame

    async def receive_frames(self, count: int, timeout: float = 3) -> list[BaseModel]:
        return [await self.receive_frame(timeout) for _ in range(count)]

    async def request(self, frame: dict[str, Any], timeout: float = 3) -> BaseModel:
        await self.send_json_to(frame)
        return await self.receive_frame(timeout)

    async def expect_close(self, code: int, timeout: float = 3) -> None:
        message = await self.receive_output(timeout)
        assert message == {"type": "websocket.close", "code": code}, message


@pytest.fixture
async def ws_connect() -> AsyncIterator[Callable[..., Awaitable[DeviceSocket]]]:
    """await ws_connect(token, origin=None, cookie=None, ready=False) -> an accepted /ws/v1
    socket (closed at once when refused); every socket is disconnected after the test.

    The server accepts before it authenticates; `ready=True` waits for a pong, so that the
    socket has joined its groups before the test goes on."""
    from chatserver.asgi import application

    opened: list[DeviceSocket] = []

    async def connect(token: str | None = None, *, origin: str | None = None,
                      cookie: str | None = None, path: str = "/ws/v1",
                      ready: bool = False) -> DeviceSocket:
        headers: list[tuple[bytes, bytes]] = []
        if token:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        if origin:
            headers.append((b"origin", origin.encode()))
        if cookie:
            headers.append(
                (b"cookie", f"{django_settings.SONOR_SESSION_COOKIE}={cookie}".encode()))
        socket = DeviceSocket(application, path, headers=headers)
        connected, _ = await socket.connect(timeout=5)
        assert connected, "the socket was not accepted"
        opened.append(socket)
        if ready:
            pong = await socket.request({"type": "ping", "id": "ready"})
            assert pong == protocol.Pong(id="ready"), pong
        return socket

    yield connect
    for socket in opened:
        await socket.disconnect()
