"""Who the client is: forwarded headers are believed only from SONOR_TRUSTED_PROXIES.

Attacks: a client sends its own X-Forwarded-For (or X-Forwarded-Proto) to choose the address
shown on a QR approval screen, to escape a per-address limit, or to reach /metrics."""

import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from chatserver.asgi import application
from chatserver.core import protocol
from identity.models import User
from identity.services import citizen_create, session_create
from tests.identity.test_qr_login import ORIGIN, TIMEOUT, _with_client, api_post

pytestmark = pytest.mark.django_db(transaction=True)

PROXY = "10.0.0.2"


@pytest.fixture
def behind_proxy(settings: Any) -> None:
    settings.SONOR_TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


async def _login_socket(peer: str, forwarded_for: str | None) -> WebsocketCommunicator:
    headers = [(b"origin", ORIGIN)]
    if forwarded_for is not None:
        headers.append((b"x-forwarded-for", forwarded_for.encode()))
    comm = WebsocketCommunicator(_with_client(application, (peer, 50_000)), "/ws/v1/login",
                                 headers=headers)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    return comm


async def _shown_requester_ip(peer: str, forwarded_for: str | None) -> str | None:
    """The address the approving phone is shown for a page connecting like this."""
    from asgiref.sync import sync_to_async

    def approver_token() -> str:
        user = User.objects.filter(register_number="УБ99011512").first() or citizen_create(
            register_number="УБ99011512", name="Болд")
        return session_create(user=user, login_method="test")[1]

    token = await sync_to_async(approver_token)()
    comm = await _login_socket(peer, forwarded_for)
    try:
        frame = json.loads(await comm.receive_from(timeout=TIMEOUT))
        response = await api_post("qr/lookup", {"token": frame["code"]}, token)
        assert response.status_code == 200, response.content
        return response.json()["requester_ip"]  # type: ignore[no-any-return]
    finally:
        await comm.disconnect(timeout=TIMEOUT)


async def test_behind_our_proxy_the_client_is_the_address_the_proxy_saw(
        behind_proxy: None) -> None:
    # The client prepended 127.0.0.1 itself; our proxy appended the address it really saw.
    assert await _shown_requester_ip(PROXY, "127.0.0.1, 198.51.100.7") == "198.51.100.7"
    # Two proxies of ours in a row: still the first address that is not ours.
    assert await _shown_requester_ip(PROXY, "198.51.100.8, 10.0.0.9") == "198.51.100.8"


@pytest.mark.parametrize("proxies", [[], ["10.0.0.0/8"]])
async def test_a_client_that_is_not_our_proxy_cannot_name_an_address(
        settings: Any, proxies: list[str]) -> None:
    settings.SONOR_TRUSTED_PROXIES = proxies
    assert await _shown_requester_ip("198.51.100.9", "10.0.0.1, 127.0.0.1") == "198.51.100.9"


async def test_a_forwarded_for_header_does_not_escape_the_per_address_limit(
        settings: Any, behind_proxy: None) -> None:
    settings.SONOR_QR_CONNECTS_PER_MINUTE = 2
    # Every connection claims a fresh address, but comes straight from one peer.
    outcomes = []
    for n in range(3):
        comm = await _login_socket("198.51.100.31", f"192.0.2.{n}")
        output = await comm.receive_output(timeout=TIMEOUT)
        outcomes.append(output.get("code") if output["type"] == "websocket.close" else "qr")
        await comm.disconnect(timeout=TIMEOUT)
    assert outcomes == ["qr", "qr", protocol.CLOSE_RATE_LIMITED]


def test_metrics_refuse_a_client_claiming_loopback(behind_proxy: None) -> None:
    client = Client()
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    # Straight from the internet, claiming loopback.
    assert client.get("/metrics", REMOTE_ADDR="198.51.100.5",
                      HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 404
    # Through our proxy, claiming loopback in front of its real address.
    assert client.get("/metrics", REMOTE_ADDR=PROXY,
                      HTTP_X_FORWARDED_FOR="127.0.0.1, 203.0.113.5").status_code == 404


def test_https_is_believed_only_from_our_proxy(settings: Any, behind_proxy: None) -> None:
    settings.SECURE_HSTS_SECONDS = 3600
    client = Client()
    spoofed = client.get("/healthz", REMOTE_ADDR="198.51.100.5", HTTP_X_FORWARDED_PROTO="https")
    assert "Strict-Transport-Security" not in spoofed
    ours = client.get("/healthz", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https")
    assert ours["Strict-Transport-Security"] == "max-age=3600"
