"""The demo sender: writes to the development outbox that the demo page shows."""

from asgiref.sync import sync_to_async

from notify.models import DevOutboxMessage
from notify.senders.base import OutboundMessage, SendResult, SendStatus


class DevOutboxSender:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def send(self, message: OutboundMessage) -> SendResult:
        # thread_sensitive keeps the caller's connection and transaction (channels'
        # database_sync_to_async would close it under a sync caller).
        row = await sync_to_async(DevOutboxMessage.objects.create, thread_sensitive=True)(
            sender_kind=self.kind, address=message.address, title=message.title,
            body=message.body,
        )
        return SendResult(status=SendStatus.SENT, provider_id=f"dev-{row.pk}")
