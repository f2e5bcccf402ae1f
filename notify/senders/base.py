"""The one interface every delivery adapter (FCM push, SMS, email, demo outbox) implements.

    service --OutboundMessage--> Sender.send() --SendResult--> pipeline records the attempt
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class SendStatus(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # try again later (quota, throttling, server error)
    FAILED = "failed"  # permanent failure for this message
    INVALID_ADDRESS = "invalid_address"  # the token, number or address is dead: forget it


@dataclass(frozen=True)
class OutboundMessage:
    kind: str  # "push", "sms" or "email"
    address: str  # FCM token, E.164 number or email address
    body: str
    title: str = ""
    data: dict[str, str] = field(default_factory=dict)
    collapse_key: str | None = None
    ttl_seconds: int | None = None


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    provider_id: str = ""
    detail: str = ""
    retry_after: float | None = None
    parts: int = 1  # SMS parts billed


class Sender(Protocol):
    kind: str

    async def send(self, message: OutboundMessage) -> SendResult: ...
