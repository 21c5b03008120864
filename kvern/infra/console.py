"""The one place kvern prints (docs/architecture.md §9): human, JSON or quiet.

Results go to stdout (a rich renderable, or JSON with ``--json``); messages and progress go
to stderr so that ``--json`` output stays parseable. Package code receives an ``Output`` and
never prints by itself. Every message and JSON result passes ``secrets.scrub`` on its way out,
since its text may have come from a server.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console, RenderableType
from rich.text import Text

from kvern.infra.secrets import scrub

Advance = Callable[[float], None]


class Output:
    def __init__(self, *, json_mode: bool = False, quiet: bool = False, silent: bool = False,
                 stdout: Console | None = None, stderr: Console | None = None) -> None:
        self.json_mode = json_mode
        self.quiet = quiet or silent
        self.silent = silent
        """Not even warnings (library use); errors still reach the caller as exceptions."""
        self.out = stdout or Console(soft_wrap=True)
        self.err = stderr or Console(stderr=True, soft_wrap=True)
        self._said: set[str] = set()

    # -- messages (stderr) -------------------------------------------------------------
    def info(self, message: str) -> None:
        if not self.quiet:
            self.err.print(Text(scrub(message)), highlight=False)

    def once(self, message: str) -> None:
        """Say ``message`` the first time only (e.g. which tokenizer serves which model)."""
        if message not in self._said:
            self._said.add(message)
            self.info(message)

    def warn(self, message: str) -> None:
        if not self.silent:
            self.err.print(Text.assemble(("warning:", "yellow"), " ", scrub(message)), highlight=False)

    def error(self, message: str) -> None:
        """On a terminal a red box; elsewhere (a CI log) one plain line that grep can find."""
        message = scrub(message)
        if not self.err.is_terminal:
            self.err.file.write(f"kvern: error: {message}\n")
            self.err.file.flush()
            return
        # soft_wrap=False: a soft-wrapping console crops panel content instead of wrapping it,
        # and a file:line message must never lose its end.
        # Text: a message is plain text, never markup ("kvern[dashboard]", a regex, a path with []).
        from rich.panel import Panel

        self.err.print(Panel(Text(message), title="kvern: error", title_align="left", border_style="red"),
                       highlight=False, soft_wrap=False)

    # -- results (stdout) --------------------------------------------------------------
    def result(self, renderable: RenderableType, data: Any = None) -> None:
        """Show a result: the renderable for humans, ``data`` as JSON with ``--json``."""
        if self.json_mode:
            if data is not None:
                sys.stdout.write(scrub(json.dumps(data, indent=2, sort_keys=True, default=str)) + "\n")
        elif not self.quiet:
            self.out.print(renderable)

    # -- progress (stderr) -------------------------------------------------------------
    @contextlib.contextmanager
    def progress(self, description: str, total: float | None) -> Iterator[Advance]:
        """A progress bar; yields ``advance(n)``. Silent in quiet or JSON mode."""
        if self.quiet or self.json_mode:
            yield lambda _n: None
            return
        from rich.progress import (  # here: a quiet run does without them
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [TextColumn("[progress.description]{task.description}"), BarColumn(),
                   MofNCompleteColumn() if total else TaskProgressColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.err, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)


NULL_OUTPUT = Output(silent=True)
"""For library use and tests: says nothing."""
