"""The embedded default runs the background worker inside the server process.

With the in-memory channel layer only this process can wake its sockets, so a separate
`run_worker` process could store a broadcast but not show it live. The jobs run in a worker
thread driven from the server's event loop, so that their publish_on_commit() reaches this
process's layer. Scaled out (Redis), run `manage.py run_worker` processes instead.
"""

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from chatserver.worker.jobs import default_jobs, jobs_run_once

log = logging.getLogger(__name__)


async def _worker_forever() -> None:
    jobs = default_jobs()
    log.info("embedded worker started: %s", ", ".join(job.name for job in jobs))
    run_once = sync_to_async(jobs_run_once, thread_sensitive=False)
    while True:
        try:
            did_work = await run_once(jobs)
        except Exception:  # jobs_run_once logs job failures; this is a last guard
            log.exception("embedded worker pass failed")
            did_work = False
        if not did_work:
            await asyncio.sleep(settings.SONOR_WORKER_SLEEP)


class EmbeddedWorker:
    """ASGI wrapper that starts the worker on the server's loop at the first connection
    (daphne has no lifespan events)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(_worker_forever())
        return await self.app(scope, receive, send)
