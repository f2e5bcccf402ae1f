"""QR login end to end: the login socket /ws/v1/login through the real ASGI application, the
approving device through the citizen API, and the approved token on /ws/v1.

Every code's SVG is decoded and checked against the text the frame says it holds (a small
decoder for clean, machine-made codes is at the bottom of this file).
"""

import itertools
import json
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.utils import timezone
from pydantic import BaseModel

from chatserver.asgi import application
from chatserver.core import protocol
from chatserver.core.errors import AppError
from chatserver.sockets import login_consumer
from identity.login import base as login_base
from identity.login import dan
from identity.login.errors import LoginMethodUnavailable
from identity.login.qr import QR_PREFIX, qr_approve, qr_login_create, qr_lookup
from identity.models import DeviceSession, QrLogin, User
from identity.services import citizen_create, session_authenticate, session_create, token_hash
from notify.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://127.0.0.1:8000"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
TIMEOUT = 3  # seconds; generous for the Redis layer
_peer_ips = (f"203.0.113.{n}" for n in itertools.count(1))

LOGIN_FRAMES: dict[str, type[BaseModel]] = {
    "qr.code": protocol.QrCode,
    "qr.scanned": protocol.QrScanned,
    "login.approved": protocol.LoginApproved,
    "login.denied": protocol.LoginDenied,
}


# ---- fixtures and helpers ------------------------------------------------------------------

def _with_client(app: Any, client: tuple[str, int]) -> Any:
    """The ASGI app as a server would call it: with the peer's address in the scope."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await app({**scope, "client": client}, receive, send)

    return wrapped


class LoginSocket:
    """A web page's login socket; every frame it receives is validated against its model."""

    def __init__(self, comm: WebsocketCommunicator, ip: str) -> None:
        self.comm = comm
        self.ip = ip

    async def receive(self) -> BaseModel:
        data = json.loads(await self.comm.receive_from(timeout=TIMEOUT))
        return LOGIN_FRAMES[data["type"]].model_validate(data)

    async def receive_code(self) -> tuple[protocol.QrCode, str]:
        """The next frame, which must be a code; returns it with its token."""
        frame = await self.receive()
        assert isinstance(frame, protocol.QrCode)
        assert frame.code.startswith(QR_PREFIX)
        assert qr_decode_svg(frame.svg) == frame.code  # the QR holds the code, not a URL
        return frame, frame.code.removeprefix(QR_PREFIX)

    async def expect_close(self, code: int | None = None) -> None:
        output = await self.comm.receive_output(timeout=TIMEOUT)
        assert output["type"] == "websocket.close", output
        if code is not None:
            assert output.get("code") == code


OpenSocket = Callable[..., Awaitable[LoginSocket]]


@pytest.fixture
async def open_login_socket() -> AsyncIterator[OpenSocket]:
    """open_login_socket(origin=..., ip=...) -> an accepted login socket; all closed after."""
    opened: list[WebsocketCommunicator] = []

    async def open_socket(origin: bytes | None = ORIGIN, ip: str | None = None) -> LoginSocket:
        ip = ip or next(_peer_ips)
        headers = [(b"user-agent", BROWSER.encode())]
        if origin is not None:
            headers.append((b"origin", origin))
        comm = WebsocketCommunicator(_with_client(application, (ip, 50_000)), "/ws/v1/login",
                                     headers=headers)
        opened.append(comm)
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected
        return LoginSocket(comm, ip)

    yield open_socket
    for comm in opened:
        await comm.disconnect(timeout=TIMEOUT)


@pytest.fixture
def approver() -> tuple[User, str]:
    """The citizen on the phone, and the bearer token of the phone's session."""
    user = citizen_create(register_number="УБ99011512", name="Болд")
    return user, session_create(user=user, login_method="test", device_name="Болдын утас")[1]


@pytest.fixture
def approver_token(approver: tuple[User, str]) -> str:
    return approver[1]


@pytest.fixture
def other_token(make_citizen: Callable[..., User]) -> str:
    """The bearer token of a second citizen's phone."""
    return session_create(user=make_citizen(), login_method="test")[1]


async def api_post(path: str, data: dict[str, Any], token: str | None = None,
                   headers: dict[str, str] | None = None) -> Any:
    from django.test import Client

    extra: dict[str, Any] = {}
    if token:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return await sync_to_async(Client().post)(
        f"/api/v1/{path}", data=json.dumps(data), content_type="application/json",
        headers=headers or {}, **extra)


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "extra"}
    assert body["code"] == code
    assert body["message"]


@database_sync_to_async
def qr_login_of(token: str) -> QrLogin:
    return QrLogin.objects.get(token_hash=token_hash(token))


@database_sync_to_async
def qr_login_expire(token: str) -> None:
    QrLogin.objects.filter(token_hash=token_hash(token)).update(
        expires_at=timezone.now() - timedelta(seconds=1))


async def scanned(socket: LoginSocket, token: str, approver_token: str) -> None:
    """The phone looks the code up; the page is told."""
    response = await api_post("qr/lookup", {"token": token}, approver_token)
    assert response.status_code == 200, response.content
    assert isinstance(await socket.receive(), protocol.QrScanned)


# ---- the code ------------------------------------------------------------------------------

async def test_connect_sends_a_qr_code_svg_of_a_single_use_token(
        open_login_socket: OpenSocket) -> None:
    socket = await open_login_socket()
    frame, token = await socket.receive_code()
    assert frame.svg.startswith("<svg") and frame.svg.rstrip().endswith("</svg>")
    assert len(token) >= 43
    assert timezone.now() < frame.expires_at <= timezone.now() + timedelta(seconds=61)
    login = await qr_login_of(token)  # stored only as its hash
    assert login.status == QrLogin.Status.PENDING
    assert login.requester_ip == socket.ip
    assert login.requester_device == BROWSER
    assert token not in login.token_hash


async def test_two_pages_get_different_codes(open_login_socket: OpenSocket) -> None:
    _, first = await (await open_login_socket()).receive_code()
    _, second = await (await open_login_socket()).receive_code()
    assert first != second


@pytest.mark.parametrize("origin", [b"https://evil.example", None])
async def test_foreign_or_missing_origin_closes_4403(open_login_socket: OpenSocket,
                                                      origin: bytes | None) -> None:
    socket = await open_login_socket(origin=origin)
    await socket.expect_close(protocol.CLOSE_ORIGIN_FORBIDDEN)


async def test_too_many_connections_from_one_ip_close_4429(
        open_login_socket: OpenSocket, settings: Any) -> None:
    settings.SONOR_QR_CONNECTS_PER_MINUTE = 2
    ip = next(_peer_ips)
    for _ in range(2):
        await (await open_login_socket(ip=ip)).receive_code()
    socket = await open_login_socket(ip=ip)
    await socket.expect_close(protocol.CLOSE_RATE_LIMITED)
    other = await open_login_socket()  # other addresses are not affected
    await other.receive_code()


async def test_rotation_sends_a_new_code_and_retires_the_old_one(
        open_login_socket: OpenSocket, settings: Any, approver_token: str) -> None:
    settings.SONOR_QR_ROTATE_EVERY = 1
    socket = await open_login_socket()
    _, first = await socket.receive_code()
    _, second = await socket.receive_code()
    assert second != first
    assert (await qr_login_of(first)).status == QrLogin.Status.ROTATED
    assert_error(await api_post("qr/lookup", {"token": first}, approver_token), 410, "qr_expired")
    await scanned(socket, second, approver_token)


async def test_rotation_pauses_while_a_phone_is_asked_to_approve(
        open_login_socket: OpenSocket, settings: Any, approver_token: str) -> None:
    settings.SONOR_QR_ROTATE_EVERY = 1
    socket = await open_login_socket()
    _, token = await socket.receive_code()
    await scanned(socket, token, approver_token)
    # No new code while "confirm on your phone" shows, past a whole rotation period.
    assert await socket.comm.receive_nothing(timeout=1.5)
    response = await api_post("qr/approve", {"token": token}, approver_token)
    assert response.status_code == 200, response.content
    assert isinstance(await socket.receive(), protocol.LoginApproved)


async def test_the_socket_closes_itself_after_its_lifetime(
        open_login_socket: OpenSocket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_consumer.LoginConsumer, "LIFETIME_SECONDS", 0.5)
    socket = await open_login_socket()
    await socket.receive_code()
    await socket.expect_close()


async def test_closing_the_page_retires_its_code(open_login_socket: OpenSocket,
                                                 approver_token: str) -> None:
    socket = await open_login_socket()
    _, token = await socket.receive_code()
    await socket.comm.disconnect(timeout=TIMEOUT)
    assert_error(await api_post("qr/lookup", {"token": token}, approver_token), 410, "qr_expired")


# ---- lookup, approve, deny -----------------------------------------------------------------

async def test_lookup_shows_the_requester_and_tells_the_page(
        open_login_socket: OpenSocket, approver_token: str) -> None:
    socket = await open_login_socket()
    code, token = await socket.receive_code()
    response = await api_post("qr/lookup", {"token": token}, approver_token)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["requester_device"] == BROWSER
    assert body["requester_ip"] == socket.ip
    login = await qr_login_of(token)
    assert body["requested_at"].startswith(login.created_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert body["expires_at"].startswith(code.expires_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert isinstance(await socket.receive(), protocol.QrScanned)
    assert login.status == QrLogin.Status.SCANNED
    # The same phone may look it up again, also with the QR's whole text; the page hears once.
    again = await api_post("qr/lookup", {"token": QR_PREFIX + token}, approver_token)
    assert again.status_code == 200
    assert await socket.comm.receive_nothing(timeout=0.3)


async def test_approve_delivers_the_session_only_to_the_page_that_asked(
        open_login_socket: OpenSocket, approver: tuple[User, str]) -> None:
    user, approver_token = approver
    socket = await open_login_socket()
    bystander = await open_login_socket()
    _, token = await socket.receive_code()
    await bystander.receive_code()
    await scanned(socket, token, approver_token)

    response = await api_post("qr/approve", {"token": token}, approver_token)
    assert response.status_code == 200, response.content
    approved = await socket.receive()
    assert isinstance(approved, protocol.LoginApproved)
    assert approved.user_name == "Болд"
    await socket.expect_close()  # the login socket's work is done
    assert await bystander.comm.receive_nothing(timeout=0.5)

    session: DeviceSession = await database_sync_to_async(session_authenticate)(
        token=approved.token)
    assert session.user_id == user.pk
    assert session.pk == response.json()["session_id"]
    assert (session.login_method, session.device_name, session.ip) == ("qr", BROWSER, socket.ip)
    login = await qr_login_of(token)
    assert login.status == QrLogin.Status.APPROVED
    assert login.created_session_id == session.pk and login.decided_at is not None
    notice = await database_sync_to_async(
        lambda: Notification.objects.filter(user=user, category="security").get())()
    assert BROWSER[:40] in notice.body and socket.ip in notice.body

    # The code is single-use, for everyone.
    for path in ("qr/approve", "qr/lookup", "qr/deny"):
        assert_error(await api_post(path, {"token": token}, approver_token), 409,
                     "qr_already_used")


async def test_approved_token_opens_the_device_socket_and_buys_the_cookie(
        open_login_socket: OpenSocket, approver_token: str, settings: Any) -> None:
    socket = await open_login_socket()
    _, token = await socket.receive_code()
    await scanned(socket, token, approver_token)
    await api_post("qr/approve", {"token": token}, approver_token)
    approved = await socket.receive()
    assert isinstance(approved, protocol.LoginApproved)

    device = WebsocketCommunicator(application, "/ws/v1", headers=[
        (b"origin", ORIGIN), (b"authorization", f"Bearer {approved.token}".encode())])
    connected, _ = await device.connect(timeout=TIMEOUT)
    assert connected
    try:
        await device.send_json_to({"type": "hello", "id": "h1"})
        welcome = protocol.Welcome.model_validate(await device.receive_json_from(TIMEOUT))
        session = await database_sync_to_async(session_authenticate)(token=approved.token)
        assert welcome.session_id == session.pk
    finally:
        await device.disconnect()

    response = await api_post("auth/cookie", {"token": approved.token},
                              headers={"Origin": ORIGIN.decode()})
    assert response.status_code == 204, response.content
    cookie = response.cookies[settings.SONOR_SESSION_COOKIE]
    assert cookie.value == approved.token and cookie["httponly"]


def test_two_concurrent_approvals_cannot_both_succeed(approver: tuple[User, str]) -> None:
    user, _ = approver
    phone = session_create(user=user, login_method="test")[0]
    _, token = qr_login_create(channel_name="test.nobody-listens", ip="198.51.100.9",
                               device="Browser")
    qr_lookup(session=phone, token=token)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve() -> None:
        try:
            barrier.wait(timeout=5)
            qr_approve(session=phone, token=token)
            outcomes.append("approved")
        except AppError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=approve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(outcomes) == ["approved", "qr_already_used"]
    assert DeviceSession.objects.filter(user=user, login_method="qr").count() == 1


async def test_deny_tells_the_page_and_the_code_cannot_be_approved(
        open_login_socket: OpenSocket, approver_token: str) -> None:
    socket = await open_login_socket()
    _, token = await socket.receive_code()
    await scanned(socket, token, approver_token)
    response = await api_post("qr/deny", {"token": token}, approver_token)
    assert response.status_code == 204, response.content
    assert isinstance(await socket.receive(), protocol.LoginDenied)
    await socket.expect_close()
    assert_error(await api_post("qr/approve", {"token": token}, approver_token), 409,
                 "qr_denied")
    assert_error(await api_post("qr/lookup", {"token": token}, approver_token), 409, "qr_denied")
    assert (await qr_login_of(token)).created_session_id is None


async def test_expired_code_cannot_be_looked_up(open_login_socket: OpenSocket,
                                                approver_token: str) -> None:
    socket = await open_login_socket()
    _, token = await socket.receive_code()
    await qr_login_expire(token)
    assert_error(await api_post("qr/lookup", {"token": token}, approver_token), 410, "qr_expired")
    assert await socket.comm.receive_nothing(timeout=0.3)


async def test_code_expiring_after_lookup_cannot_be_approved(
        open_login_socket: OpenSocket, approver_token: str) -> None:
    socket = await open_login_socket()
    _, token = await socket.receive_code()
    await scanned(socket, token, approver_token)
    await qr_login_expire(token)
    assert_error(await api_post("qr/approve", {"token": token}, approver_token), 410,
                 "qr_expired")
    assert await socket.comm.receive_nothing(timeout=0.3)


async def test_approve_without_lookup_is_refused(open_login_socket: OpenSocket,
                                                 approver_token: str) -> None:
    socket = await open_login_socket()
    _, token = await socket.receive_code()
    assert_error(await api_post("qr/approve", {"token": token}, approver_token), 409,
                 "qr_not_scanned")
    assert_error(await api_post("qr/deny", {"token": token}, approver_token), 409,
                 "qr_not_scanned")
    assert (await qr_login_of(token)).status == QrLogin.Status.PENDING


async def test_only_the_device_that_scanned_may_decide(
        open_login_socket: OpenSocket, approver: tuple[User, str], other_token: str) -> None:
    user, approver_token = approver
    socket = await open_login_socket()
    _, token = await socket.receive_code()
    await scanned(socket, token, approver_token)
    assert_error(await api_post("qr/lookup", {"token": token}, other_token), 409,
                 "qr_already_used")
    assert_error(await api_post("qr/approve", {"token": token}, other_token), 409,
                 "qr_not_scanned")
    # Not even another device of the same citizen.
    same_user_other_device = await database_sync_to_async(
        lambda: session_create(user=user, login_method="test")[1])()
    assert_error(await api_post("qr/approve", {"token": token}, same_user_other_device), 409,
                 "qr_not_scanned")
    assert_error(await api_post("qr/deny", {"token": token}, other_token), 409,
                 "qr_not_scanned")
    assert await socket.comm.receive_nothing(timeout=0.3)
    assert (await qr_login_of(token)).status == QrLogin.Status.SCANNED


async def test_unknown_code_is_not_found(approver_token: str) -> None:
    for path in ("qr/lookup", "qr/approve", "qr/deny"):
        assert_error(await api_post(path, {"token": "no-such-token"}, approver_token), 404,
                     "qr_not_found")


async def test_the_api_needs_a_logged_in_device(open_login_socket: OpenSocket) -> None:
    socket = await open_login_socket()
    _, token = await socket.receive_code()
    assert_error(await api_post("qr/lookup", {"token": token}), 401, "unauthenticated")
    assert_error(await api_post("qr/lookup", {"token": ""}, "bad"), 401, "unauthenticated")


async def test_empty_token_is_invalid_input(approver_token: str) -> None:
    assert_error(await api_post("qr/lookup", {"token": ""}, approver_token), 422,
                 "invalid_input")


# ---- login methods -------------------------------------------------------------------------

def test_login_methods_follow_the_settings(settings: Any) -> None:
    settings.SONOR_DEMO = False
    assert [m.name for m in login_base.login_methods()] == ["qr"]
    settings.SONOR_DEMO = True
    assert [m.name for m in login_base.login_methods()] == ["qr", "demo"]
    for part in ("AUTHORIZE_URL", "TOKEN_URL", "SERVICE_URL", "CLIENT_ID", "CLIENT_SECRET"):
        setattr(settings, f"SONOR_DAN_{part}", f"https://sso.example/{part.lower()}")
    assert [m.name for m in login_base.login_methods()] == ["qr", "demo", "dan"]
    assert login_base.login_method_get(name="dan").name == "dan"
    start = dan.dan_login_begin(redirect_url="https://sonor.example/dan/callback")
    assert start.authorize_url.startswith("https://sso.example/authorize_url?")
    assert f"state={start.state}" in start.authorize_url


def test_unconfigured_dan_is_unavailable(settings: Any) -> None:
    settings.SONOR_DEMO = False
    assert not dan.dan_configured()
    with pytest.raises(LoginMethodUnavailable) as raised:
        dan.dan_login_begin(redirect_url="https://sonor.example/dan/callback")
    assert raised.value.code == "login_method_unavailable"
    with pytest.raises(LoginMethodUnavailable):
        dan.dan_citizen_fetch(code="c", code_verifier="v", redirect_url="https://x/cb")
    with pytest.raises(LoginMethodUnavailable):
        login_base.login_method_get(name="dan")
    with pytest.raises(LoginMethodUnavailable):
        login_base.login_method_get(name="demo")


# ---- a QR decoder for clean, machine-made codes (versions 1-6, level M) --------------------

_ALIGNMENT_CENTRES = {1: [], 2: [6, 18], 3: [6, 22], 4: [6, 26], 5: [6, 30], 6: [6, 34]}
# Error correction level M: (number of blocks, data codewords per block), total codewords.
_BLOCKS_M = {1: ((1, 16), 26), 2: ((1, 28), 44), 3: ((1, 44), 70), 4: ((2, 32), 100),
             5: ((2, 43), 134), 6: ((4, 27), 172)}
_MASKS: list[Callable[[int, int], bool]] = [
    lambda r, c: (r + c) % 2 == 0,
    lambda r, c: r % 2 == 0,
    lambda r, c: c % 3 == 0,
    lambda r, c: (r + c) % 3 == 0,
    lambda r, c: (r // 2 + c // 3) % 2 == 0,
    lambda r, c: (r * c) % 2 + (r * c) % 3 == 0,
    lambda r, c: ((r * c) % 2 + (r * c) % 3) % 2 == 0,
    lambda r, c: ((r + c) % 2 + (r * c) % 3) % 2 == 0,
]


def _svg_modules(svg: str) -> list[list[bool]]:
    """The dark modules of a segno SVG: one horizontal stroke per run of dark modules."""
    width = int(float(re.search(r'viewBox="0 0 ([\d.]+)', svg).group(1)))  # type: ignore[union-attr]
    path = re.search(r'<path[^>]*stroke="[^"]+"[^>]*d="([^"]+)"', svg).group(1)  # type: ignore[union-attr]
    tokens = re.findall(r"[A-Za-z]|-?\d+(?:\.\d+)?", path)
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    i = 0
    while i < len(tokens):
        command = tokens[i]
        if command in "Mm":
            dx, dy = float(tokens[i + 1]), float(tokens[i + 2])
            x, y = (dx, dy) if command == "M" else (x + dx, y + dy)
            i += 3
        elif command == "h":
            length = float(tokens[i + 1])
            dark.update((int(y), col) for col in range(round(x), round(x + length)))
            x += length
            i += 2
        else:
            raise AssertionError(f"unexpected path command {command!r}")
    border = min(col for _, col in dark)
    size = width - 2 * border
    return [[(row + border, col + border) in dark for col in range(size)] for row in range(size)]


def qr_decode_svg(svg: str) -> str:
    """The byte-mode text of an error-free QR code (no error correction is attempted)."""
    grid = _svg_modules(svg)
    size = len(grid)
    version = (size - 17) // 4
    assert version in _BLOCKS_M, f"version {version} is beyond this test decoder"
    function = [[False] * size for _ in range(size)]
    for r in range(size):
        for c in range(size):
            function[r][c] = (
                r == 6 or c == 6  # timing
                or (r <= 8 and c <= 8) or (r <= 8 and c >= size - 8)  # finders, format
                or (r >= size - 8 and c <= 8)
            )
    centres = _ALIGNMENT_CENTRES[version]
    for ar in centres:
        for ac in centres:
            if function[ar][ac]:
                continue  # overlaps a finder
            for r in range(ar - 2, ar + 3):
                for c in range(ac - 2, ac + 3):
                    function[r][c] = True
    # Format information, first copy: bit i at these (row, col) positions, bit 0 first.
    spots = [(i, 8) for i in range(6)] + [(7, 8), (8, 8), (8, 7)] + [
        (8, 14 - i) for i in range(9, 15)]
    format_bits = sum(grid[r][c] << i for i, (r, c) in enumerate(spots)) ^ 0x5412
    assert format_bits >> 13 == 0b00, "this test decoder reads level M only"
    mask = _MASKS[(format_bits >> 10) & 7]

    bits: list[int] = []
    right = size - 1
    while right >= 1:
        if right == 6:
            right = 5
        upward = ((right + 1) & 2) == 0
        for vert in range(size):
            r = size - 1 - vert if upward else vert
            for c in (right, right - 1):
                if not function[r][c]:
                    bits.append(int(grid[r][c] ^ mask(r, c)))
        right -= 2
    (blocks, per_block), total = _BLOCKS_M[version]
    codewords = [int("".join(map(str, bits[i * 8:i * 8 + 8])), 2) for i in range(total)]
    data = [codewords[i * blocks + b] for b in range(blocks) for i in range(per_block)]

    stream = "".join(f"{byte:08b}" for byte in data)
    assert stream[:4] == "0100", "this test decoder reads byte mode only"
    length = int(stream[4:12], 2)
    return bytes(int(stream[12 + 8 * i:20 + 8 * i], 2) for i in range(length)).decode()


def test_the_test_decoder_reads_segno_codes() -> None:
    from identity.login.qr import qr_svg

    for text in ("sonor-login:x", "sonor-login:" + "Ab9_-" * 9, "a" * 80):
        assert qr_decode_svg(qr_svg(content=text)) == text
