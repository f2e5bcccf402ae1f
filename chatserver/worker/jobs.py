"""The background worker: a loop over jobs, each doing one short unit of work.

    run_worker --> loop: for job in jobs: did_work |= job()  --> sleep only if none did work
                   jobs: the delivery outbox, chat pushes, broadcast fan-out (one batch
                   per call), and the purge of ended logins, codes and sessions (at most
                   every PURGE_EVERY_SECONDS per worker; see identity.purge.identity_purge)

Several workers may run at once: each unit claims its rows with SKIP LOCKED on PostgreSQL
(SQLite runs one writer at a time). A stop request (SIGTERM, SIGINT) ends the loop between
units, never inside a transaction.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import close_old_connections, connection

from chatserver.chat.push import chat_pushes_plan
from identity.purge import identity_purge
from notify.broadcasts import broadcast_batch_process
from notify.delivery import deliveries_process

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[], bool]  # True when it did some work (the loop runs again at once)


PURGE_EVERY_SECONDS = 600


def every(seconds: float, run: Callable[[], bool]) -> Callable[[], bool]:
    """`run` at most once per `seconds` (the first call runs); False when it is not time."""
    last: list[float] = []

    def gated() -> bool:
        now = time.monotonic()
        if last and now - last[0] < seconds:
            return False
        last[:] = [now]
        return run()

    return gated


def default_jobs(*, batch_size: int | None = None) -> list[Job]:
    return [
        Job("deliveries", lambda: deliveries_process()),
        Job("chat pushes", lambda: chat_pushes_plan()),
        Job("broadcasts", lambda: broadcast_batch_process(batch_size=batch_size)),
        Job("purge", every(PURGE_EVERY_SECONDS, lambda: any(identity_purge().values()))),
    ]


def jobs_run_once(jobs: Sequence[Job]) -> bool:
    """One pass over every job; whether any did work. A failing job is logged and skipped,
    so that one bad row does not stop the others."""
    did_work = False
    for job in jobs:
        try:
            did_work = job.run() or did_work
        except Exception:
            log.exception("worker job %s failed", job.name)
    return did_work


def worker_loop(jobs: Sequence[Job], *, stop: threading.Event, sleep_seconds: float = 1.0,
                once: bool = False) -> None:
    """Run `jobs` until `stop` is set; with `once`, until a pass finds nothing to do."""
    log.info("worker started: %s", ", ".join(job.name for job in jobs))
    while not stop.is_set():
        if not connection.in_atomic_block:  # drop a connection the database closed
            close_old_connections()
        did_work = jobs_run_once(jobs)
        if once and not did_work:
            break
        if not did_work:
            stop.wait(sleep_seconds)
    log.info("worker stopped")


def worker_run_until_idle(*, batch_size: int | None = None, max_passes: int = 100_000) -> int:
    """Run the default jobs until none has work (tests and --once); the number of passes."""
    jobs = default_jobs(batch_size=batch_size)
    for passes in range(1, max_passes + 1):
        if not jobs_run_once(jobs):
            return passes
    return max_passes
