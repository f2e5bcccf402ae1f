"""The one interface every delivery adapter (FCM push, SMS, email, demo outbox) implements.

    pipeline --OutboundMessage--> Sender.send() --SendResult--> pipeline records the attempt
                                                 (sent / retry later / failed / dead address)

Senders never touch our database: the pipeline owns delivery rows, retries and expiry.
Asynchronous delivery reports (SMS receipts) come back through a ReceiptSink.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Protocol

_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
# 8 to 15 digits, optionally after + and with single spaces or hyphens between (a phone
# number in any of its usual spellings); SMTP codes like 550 5.1.1 stay.
_PHONE = re.compile(r"(?<![\w.])\+?\d(?:[ -]?\d){7,14}(?![\w.])")


def redact(text: str) -> str:
    """A provider's error text without the email addresses or phone numbers in it: it is
    stored, logged and shown to the sending agency, which must not learn them."""
    return _PHONE.sub("<number>", _EMAIL.sub("<email>", text))


class SendStatus(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # try again later (quota, throttling, server error, network)
    FAILED = "failed"  # permanent failure for this message
    INVALID_ADDRESS = "invalid_address"  # the token, number or address is dead: forget it


@dataclass(frozen=True)
class OutboundMessage:
    kind: str  # "push", "sms" or "email"
    address: str  # FCM registration token, E.164 number or email address
    body: str
    title: str = ""
    category: str = ""  # notification category (service_request, chat, security, ...)
    link: str = ""  # https link the notification points to
    data: dict[str, str] = field(default_factory=dict)  # push data payload
    collapse_key: str | None = None  # a newer push with the same key replaces this one
    ttl_seconds: int | None = None  # remaining validity: the provider drops it after
    language: str = "mn"  # "mn" or "en" for templated text (email)
    unsubscribe_url: str = ""  # email: one-click List-Unsubscribe (RFC 8058)
    dedupe_key: str = ""  # the pipeline's delivery key, for logs and provider references


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    provider_id: str = ""  # the provider's message id (SMS receipts refer to it)
    detail: str = ""
    retry_after: float | None = None  # seconds, when the provider said
    parts: int = 1  # SMS parts billed

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", redact(self.detail))


# An asynchronous delivery report: (provider_id, final status, detail).
ReceiptSink = Callable[[str, SendStatus, str], None]


class Sender(Protocol):
    kind: str

    async def send(self, message: OutboundMessage) -> SendResult: ...


async def send_many(sender: Sender, messages: Sequence[OutboundMessage]) -> list[SendResult]:
    """Send a chunk; senders with a batch path (FCM) provide `send_many` themselves."""
    batch = getattr(sender, "send_many", None)
    if batch is not None:
        results: list[SendResult] = await batch(messages)
        return results
    return [await sender.send(message) for message in messages]


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as delay-seconds or an HTTP date (RFC 9110 10.2.3); None when unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
