"""SMS delivery receipts: the operator's word on whether the phone got the message."""

import logging

from django.db import connection
from django.utils import timezone

from notify.models import Delivery
from notify.senders.base import SendStatus

log = logging.getLogger(__name__)


def sms_receipt_record(provider_id: str, status: SendStatus, detail: str) -> None:
    """A ReceiptSink: called on the SMPP sender's own thread, so it opens and closes its own
    database connection. A failure receipt wins over an earlier success (long messages
    report their first part, then any part that failed)."""
    try:
        outcome = Delivery.Status.DELIVERED if status == SendStatus.SENT \
            else Delivery.Status.UNDELIVERED
        updated = Delivery.objects.filter(
            channel="sms", provider_id=provider_id,
            status__in=[Delivery.Status.SENT, Delivery.Status.DELIVERED],
        ).update(status=outcome, receipt_at=timezone.now(), last_error=detail[:500])
        log.info("sms receipt %s: %s (%s), %s deliveries", provider_id, outcome, detail,
                 updated)
    finally:
        connection.close()
