"""The SMPP connection's settings, read from SONOR_SMPP_URL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

# Type of number and numbering plan of an address (SMPP 3.4, 5.2.5 and 5.2.6).
TON_UNKNOWN, TON_INTERNATIONAL, TON_ALPHANUMERIC = 0x00, 0x01, 0x05
NPI_UNKNOWN, NPI_ISDN = 0x00, 0x01


@dataclass(frozen=True)
class SmppConfig:
    host: str
    port: int
    system_id: str
    password: str
    source: str = ""  # sender id: short code, number or alphanumeric name
    source_ton: int = TON_UNKNOWN
    source_npi: int = NPI_ISDN
    system_type: str = ""
    bind: str = "transceiver"  # "transmitter" gets no receipts
    window: int = 10  # messages in flight at once
    enquire_link_seconds: float = 30.0  # idle time before we check the link
    response_timeout: float = 30.0  # for any answer from the SMSC
    connect_timeout: float = 10.0
    max_backoff: float = 60.0


_INT_OPTIONS = {"source_ton", "source_npi", "window"}
_FLOAT_OPTIONS = {"enquire_link": "enquire_link_seconds", "timeout": "response_timeout",
                  "connect_timeout": "connect_timeout", "max_backoff": "max_backoff"}


def smpp_config_from_url(url: str) -> SmppConfig:
    """smpp://system_id:password@host:port?source=136000[&option=value...]

    Options: source, source_ton, source_npi (default from source: alphanumeric 5/0, a
    +number 1/1, digits 0/1), system_type, bind (transceiver|transmitter), window,
    enquire_link, timeout, connect_timeout, max_backoff (seconds).
    """
    parts = urlsplit(url)
    if parts.scheme != "smpp":
        raise ValueError("SMPP URL must start with smpp://")
    if not parts.hostname or parts.username is None or parts.password is None:
        raise ValueError("SMPP URL needs system_id:password@host")
    system_id, password = unquote(parts.username), unquote(parts.password)
    # SMPP 3.4 fields are C strings of at most 16 and 9 octets; smpplib would cut them.
    if len(system_id) > 15 or len(password) > 8:
        raise ValueError("SMPP system_id is at most 15 characters and password at most 8")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("source", "system_type", "bind"):
            options[key] = value
        elif key in _INT_OPTIONS:
            options[key] = int(value)
        elif key in _FLOAT_OPTIONS:
            options[_FLOAT_OPTIONS[key]] = float(value)
        else:
            raise ValueError(f"unknown SMPP URL option {key!r}")
    if options.get("bind", "transceiver") not in ("transceiver", "transmitter"):
        raise ValueError("SMPP bind must be transceiver or transmitter")
    source = options.pop("source", "")
    if source.startswith("+") and source[1:].isdigit():
        ton, npi, source = TON_INTERNATIONAL, NPI_ISDN, source[1:]
    elif source.isdigit() or not source:
        ton, npi = TON_UNKNOWN, NPI_ISDN
    else:
        if len(source) > 11 or not source.isascii() or not source.isprintable():
            raise ValueError("an alphanumeric SMS sender id is at most 11 ASCII characters")
        ton, npi = TON_ALPHANUMERIC, NPI_UNKNOWN
    options.setdefault("source_ton", ton)
    options.setdefault("source_npi", npi)
    return SmppConfig(host=parts.hostname, port=parts.port or 2775, system_id=system_id,
                      password=password, source=source, **options)
