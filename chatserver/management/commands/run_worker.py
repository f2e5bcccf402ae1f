"""manage.py run_worker [--once] [--batch N] [--sleep S]: the background worker.

Fans broadcasts out in batches (and, with the delivery pipeline, sends the outbox). Several
may run at once. SIGTERM or SIGINT stops it after the unit of work in progress.
"""

import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from chatserver.worker.jobs import default_jobs, worker_loop


class Command(BaseCommand):
    help = "Run the background worker (broadcast fan-out) until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true",
                            help="stop when there is nothing left to do")
        parser.add_argument("--batch", type=int, default=settings.SONOR_BROADCAST_BATCH,
                            help="users per broadcast batch (one short transaction each)")
        parser.add_argument("--sleep", type=float, default=settings.SONOR_WORKER_SLEEP,
                            help="seconds to wait when there is nothing to do")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self.stderr.write(f"run_worker: {signal.Signals(signum).name}, stopping")
            stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, request_stop)
            signal.signal(signal.SIGINT, request_stop)
        worker_loop(default_jobs(batch_size=max(1, options["batch"])), stop=stop,
                    sleep_seconds=options["sleep"], once=options["once"])
