"""Per-process, per-loop batches of database work that many requests ask for at once.

    request A --\\
    request B ----> Batcher queue --> run(batch) in a worker thread (one transaction, or one
    request C --/                     query for all) --> each caller's outcome

While one batch is in the database the next one gathers: under light load a batch is one
request and waits for nothing; under heavy load one commit and one thread hop serve hundreds.
`run` returns one outcome per request, in order: a result, or the exception to raise to
that caller alone. If `run` itself fails, nothing of the batch was stored: when the database
refused the data (DataError: one request's value the edge let through), each request is run
again alone, so that only its sender gets the error; otherwise every caller gets it. Used for
chat sends, agency notifications and socket authentication.

`min_interval` spaces the batches' starts: a batch does not start sooner than that after the
last one began. When requests come far apart nothing waits; under load each batch gathers
what arrived meanwhile, so one transaction serves several requests instead of each paying
for its own (the chat writer: see chatserver/sockets/message_writer.py).
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from channels.db import database_sync_to_async
from django.db import DataError

from chatserver.core.errors import InvalidInput
from chatserver.core.loop_local import LoopLocal

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Result = TypeVar("Result")


class Batcher(Generic[Request, Result]):
    def __init__(self, loop: asyncio.AbstractEventLoop,
                 run: Callable[[list[Request]], Sequence[Result | Exception]],
                 *, what: str, max_batch: int = 500, min_interval: float = 0.0) -> None:
        self.loop = loop
        # Not the thread-sensitive executor: sync views and the batch would wait on each other.
        self.run = database_sync_to_async(run, thread_sensitive=False)
        self.what = what
        self.max_batch = max_batch
        self.min_interval = min_interval
        self.last_start = -min_interval
        self.waiting: list[tuple[Request, asyncio.Future[Result | Exception]]] = []
        self.task: asyncio.Task[None] | None = None

    async def send(self, request: Request) -> Result:
        """This request's result (or its error, raised), once its batch is done."""
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
                wait = self.last_start + self.min_interval - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.last_start = self.loop.time()
                batch = self.waiting[:self.max_batch]
                del self.waiting[:self.max_batch]
                await self._run(batch)
        finally:
            self.task = None

    async def _run(self, batch: list[tuple[Request, asyncio.Future[Result | Exception]]]
                   ) -> None:
        try:
            outcomes = await self.run([request for request, _ in batch])
        except DataError:
            if len(batch) == 1:
                log.exception("a request of %s was refused by the database", self.what)
                return self._fail(batch, InvalidInput("The database refused a value."))
            log.warning("a batch of %s %s was refused by the database: each runs alone",
                        len(batch), self.what)
            for one in batch:
                await self._run([one])
            return None
        except Exception as exc:  # the database failed the batch: nothing was stored
            log.exception("a batch of %s %s failed", len(batch), self.what)
            return self._fail(batch, exc)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
        return None

    @staticmethod
    def _fail(batch: list[tuple[Request, asyncio.Future[Result | Exception]]],
              exc: Exception) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)


def batcher(run: Callable[[list[Request]], Sequence[Result | Exception]], *, what: str,
            min_interval: float = 0.0) -> Callable[[], Batcher[Request, Result]]:
    """The running loop's Batcher for `run` (one per loop: a server runs one, tests many)."""
    return LoopLocal(lambda loop: Batcher(loop, run, what=what,
                                          min_interval=min_interval)).get
