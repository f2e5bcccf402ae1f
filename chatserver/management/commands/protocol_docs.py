"""manage.py protocol_docs [--check] [--output PATH]: write docs/protocol.md from the models.

With --check nothing is written: the command fails when the file differs from the models.
"""

import difflib
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatserver.core.protocol_doc import DOC_PATH, render_protocol_doc


class Command(BaseCommand):
    help = "Render docs/protocol.md from chatserver/core/protocol.py (--check: compare only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--check", action="store_true",
                            help="Exit non-zero if the file differs from the rendered text.")
        parser.add_argument("--output", type=Path, default=settings.BASE_DIR / DOC_PATH,
                            help=f"Where the document is (default: {DOC_PATH}).")

    def handle(self, *args: Any, check: bool, output: Path, **options: Any) -> None:
        rendered = render_protocol_doc()
        if check:
            current = output.read_text("utf-8") if output.exists() else ""
            if current != rendered:
                diff = difflib.unified_diff(
                    current.splitlines(keepends=True), rendered.splitlines(keepends=True),
                    fromfile=str(output), tofile="rendered from chatserver/core/protocol.py", n=1)
                self.stderr.write("".join(list(diff)[:80]))
                raise CommandError(
                    f"{output} is out of date: run `python manage.py protocol_docs`.")
            self.stdout.write(f"{output} is up to date.")
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(rendered, "utf-8")
        self.stdout.write(f"Wrote {output}.")
