"""A per-process, per-loop writer that stores what many requests ask for in batches.

    request A --\\
    request B ----> BatchWriter queue --> store(batch) in a worker thread (one transaction)
    request C --/                          --> each caller's outcome, after commit

While one batch is in the database the next one gathers: under light load a batch is one
request and waits for nothing; under heavy load one commit and one thread hop serve hundreds.
`store` returns one outcome per request, in order: a result, or the exception to raise to
that caller alone. If `store` itself fails, none of the batch was stored and every caller
gets the error.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from channels.db import database_sync_to_async

from chatserver.core.loop_local import LoopLocal

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Result = TypeVar("Result")


class BatchWriter(Generic[Request, Result]):
    def __init__(self, loop: asyncio.AbstractEventLoop,
                 store: Callable[[list[Request]], Sequence[Result | Exception]],
                 *, what: str, max_batch: int = 500) -> None:
        self.loop = loop
        # Not the thread-sensitive executor: sync views and the batch would wait on each other.
        self.store = database_sync_to_async(store, thread_sensitive=False)
        self.what = what
        self.max_batch = max_batch
        self.waiting: list[tuple[Request, asyncio.Future[Result | Exception]]] = []
        self.task: asyncio.Task[None] | None = None

    async def send(self, request: Request) -> Result:
        """The stored result for this request (or its error raised), once committed."""
        future: asyncio.Future[Result | Exception] = self.loop.create_future()
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
                batch = self.waiting[:self.max_batch]
                del self.waiting[:self.max_batch]
                try:
                    outcomes = await self.store([request for request, _ in batch])
                except Exception as exc:  # the database failed the batch: none was stored
                    log.exception("storing a batch of %s %s failed", len(batch), self.what)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self.task = None


def batch_writer(store: Callable[[list[Request]], Sequence[Result | Exception]], *, what: str
                 ) -> Callable[[], BatchWriter[Request, Result]]:
    """The running loop's writer for `store` (one per loop: a server runs one, tests many)."""
    return LoopLocal(lambda loop: BatchWriter(loop, store, what=what)).get
