"""The socket hot path's one exception to "one service call per frame": a per-process writer
that stores the chat.send frames of all local sockets in batches.

    socket A chat.send --\\
    socket B chat.send ----> MessageWriter queue --> messages_send_batch (one transaction,
    socket C chat.send --/                            one INSERT, one room.push per room)
                                                       --> each sender's ack, after commit

While one batch is in the database, the next one gathers: under light load a batch is one
message and waits for nothing; under heavy load one commit (a disk flush on PostgreSQL) and
one thread hop serve hundreds of messages. Every promise of message_send holds: the ack comes
after the commit, seqs are gap-free and in order per room, a resend with the same
client_msg_id gets the stored event. Measured in bench/README.md: one transaction and one
thread hop per message capped a process at a few hundred messages a second.
"""

import asyncio
import logging

from channels.db import database_sync_to_async

from chatserver.chat.messages import SendOutcome, SendRequest, messages_send_batch
from chatserver.chat.models import RoomEvent
from chatserver.core.loop_local import LoopLocal

log = logging.getLogger(__name__)

_store_batch = database_sync_to_async(messages_send_batch, thread_sensitive=False)


class MessageWriter:
    MAX_BATCH = 500

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: list[tuple[SendRequest, asyncio.Future[SendOutcome]]] = []
        self.task: asyncio.Task[None] | None = None

    async def send(self, request: SendRequest) -> RoomEvent | None:
        """What message_send returns (or raises) for this request, once it is committed."""
        future: asyncio.Future[SendOutcome] = self.loop.create_future()
        self.waiting.append((request, future))
        if self.task is None:
            self.task = self.loop.create_task(self._drain())
        outcome = await future
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _drain(self) -> None:
        try:
            while self.waiting:
                batch = self.waiting[:self.MAX_BATCH]
                del self.waiting[:self.MAX_BATCH]
                try:
                    outcomes = await _store_batch([request for request, _ in batch])
                except Exception as exc:  # the database failed the batch: none was stored
                    log.exception("storing a batch of %s messages failed", len(batch))
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self.task = None


message_writer = LoopLocal(MessageWriter).get
