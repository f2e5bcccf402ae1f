"""Chooses the sender for each kind from settings, like Channels' layer manager.

Unset outside-service settings select the development outbox, so the embedded default
runs with nothing configured.
"""

from functools import cache

from notify.senders.base import Sender
from notify.senders.memory import DevOutboxSender

KINDS = ("push", "sms", "email")


@cache
def sender_for(kind: str) -> Sender:
    if kind not in KINDS:
        raise ValueError(f"unknown sender kind {kind!r}")
    # Real adapters (FCM, SMPP/HTTP SMS, SMTP) are added by the delivery pipeline work.
    return DevOutboxSender(kind)
