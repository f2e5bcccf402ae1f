"""Chooses the sender for each kind from settings, like Channels' layer manager.

Unset outside-service settings select the development outbox, so the embedded default
runs with nothing configured. Each adapter builds itself from its setting.
"""

from functools import cache

from django.conf import settings

from notify.senders.base import Sender
from notify.senders.memory import DevOutboxSender

KINDS = ("push", "sms", "email")


@cache
def sender_for(kind: str) -> Sender:
    if kind not in KINDS:
        raise ValueError(f"unknown sender kind {kind!r}")
    if kind == "push" and settings.SONOR_FCM_CREDENTIALS:
        from notify.senders.fcm import FcmSender

        return FcmSender.from_settings()
    if kind == "sms" and settings.SONOR_SMPP_URL:
        from notify.receipts import sms_receipt_record
        from notify.senders.sms_smpp import SmppSender

        return SmppSender.from_url(settings.SONOR_SMPP_URL, receipts=sms_receipt_record)
    if kind == "sms" and settings.SONOR_SMS_HTTP_URL:
        from notify.senders.sms_http import HttpSmsSender

        return HttpSmsSender.from_url(settings.SONOR_SMS_HTTP_URL)
    if kind == "email" and settings.SONOR_SMTP_URL:
        from notify.senders.email import SmtpSender

        return SmtpSender.from_url(settings.SONOR_SMTP_URL)
    return DevOutboxSender(kind)
