"""Serve Sonor over HTTP and WebSocket.

    python manage.py serve [--host 127.0.0.1] [--port 8000] [--server uvicorn|daphne]

uvicorn (uvloop, httptools, the websockets library) is the default: in bench/README.md it
carries several times daphne's fan-out on the same machine. Frames are not compressed
(per-message deflate would compress every frame once per socket: a room's frame is written
as the same bytes to every member) and forwarded headers are not believed here: Sonor decides
the client address itself, from SONOR_TRUSTED_PROXIES. daphne stays supported for the same
application (`--server daphne`). Either way the application is loaded first and the garbage
collector tuned for serving (chatserver/core/collector.py).
"""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from chatserver.core.collector import collector_tune

APPLICATION = "chatserver.asgi:application"


class Command(BaseCommand):
    help = "Serve Sonor (uvicorn by default, or daphne)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")

    def handle(self, *args: Any, host: str, port: int, server: str, **options: Any) -> None:
        import uvicorn
        from uvicorn.importer import import_from_string

        # The application (loaded by its path, as the ASGI servers do) and the server's own
        # modules are imported before the collector freezes what startup made.
        application = import_from_string(APPLICATION)
        if server == "daphne":
            from daphne.cli import CommandLineInterface
        collector_tune(full_every_seconds=settings.SONOR_GC_FULL_SECONDS)
        if server == "daphne":
            CommandLineInterface().run(["-b", host, "-p", str(port), APPLICATION])
            return
        self.stdout.write(f"sonor: serving on http://{host}:{port} (uvicorn)")
        self.stdout.flush()
        uvicorn.run(
            application, host=host, port=port, loop="uvloop", http="httptools",
            ws="websockets-sansio", ws_per_message_deflate=False,
            # Frames over SONOR_WS_MAX_FRAME_BYTES get an error frame; far larger ones are
            # not even read into memory.
            ws_max_size=16 * settings.SONOR_WS_MAX_FRAME_BYTES,
            lifespan="off", proxy_headers=False, server_header=False, access_log=False,
            log_config=None, timeout_graceful_shutdown=5)
