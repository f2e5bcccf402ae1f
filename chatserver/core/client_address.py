"""The one place that decides a client's address, for HTTP requests and sockets alike.

The peer of the TCP connection is the client, unless it is one of SONOR_TRUSTED_PROXIES
(IPs or CIDRs; default none): then X-Forwarded-For is read from the right, skipping our own
proxies, and the first address not ours is the client. Entries to its left were written by
the client itself and are never believed. The ASGI server must not rewrite the peer from
these headers itself (daphne without --proxy-headers, uvicorn with --no-proxy-headers), or
a client could choose the address shown on a QR approval screen, escape per-address limits
and reach /metrics.
"""

import functools
import ipaddress
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.deprecation import MiddlewareMixin

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks() -> tuple[_Network, ...]:
    return _networks_of(tuple(settings.SONOR_TRUSTED_PROXIES))


@functools.lru_cache(maxsize=8)  # parsed once per setting, not on every connect
def _networks_of(items: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address((value or "").strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def is_trusted_proxy(peer: str | None) -> bool:
    networks = _networks()
    if not networks:
        return False
    address = _ip(peer)
    return address is not None and any(address in net for net in networks)


def client_address_from(*, peer: str | None, forwarded_for: str) -> str | None:
    """The client's IP, given the TCP peer and the X-Forwarded-For header (possibly "")."""
    if not is_trusted_proxy(peer):
        address = _ip(peer)
        return str(address) if address is not None else peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    client = str(_ip(peer))
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:  # garbage from beyond our proxies: stop at the last good hop
            break
        client = str(address)
        if not is_trusted_proxy(client):
            break
    return client


def _scope_header(scope: dict[str, Any], name: bytes) -> str:
    # Several X-Forwarded-For lines count as one comma-separated list, in order.
    return ",".join(value.decode("latin-1") for key, value in scope.get("headers", [])
                    if key.lower() == name)


def client_address(source: HttpRequest | dict[str, Any]) -> str | None:
    """The client's IP of a Django request or an ASGI scope (None when unknown)."""
    if isinstance(source, dict):
        client = source.get("client") or (None, None)
        return client_address_from(peer=client[0],
                                   forwarded_for=_scope_header(source, b"x-forwarded-for"))
    return client_address_from(peer=source.META.get("REMOTE_ADDR") or None,
                               forwarded_for=source.META.get("HTTP_X_FORWARDED_FOR", ""))


class UntrustedProxyHeadersMiddleware(MiddlewareMixin):
    """Drop X-Forwarded-Proto from any peer that is not our proxy, so that Django's
    SECURE_PROXY_SSL_HEADER (set only with trusted proxies) believes ours alone."""

    def process_request(self, request: HttpRequest) -> None:
        if not is_trusted_proxy(request.META.get("REMOTE_ADDR")):
            request.META.pop("HTTP_X_FORWARDED_PROTO", None)
