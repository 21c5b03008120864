"""The one place kvern prints (docs/architecture.md §9): human, JSON or quiet.

Results go to stdout (a rich renderable, or JSON with ``--json``); messages and progress go
to stderr so that ``--json`` output stays parseable. Package code receives an ``Output`` and
never prints by itself.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

Advance = Callable[[float], None]


class Output:
    def __init__(self, *, json_mode: bool = False, quiet: bool = False,
                 stdout: Console | None = None, stderr: Console | None = None) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.out = stdout or Console(soft_wrap=True)
        self.err = stderr or Console(stderr=True, soft_wrap=True)
        self._said: set[str] = set()

    # -- messages (stderr) -------------------------------------------------------------
    def info(self, message: str) -> None:
        if not self.quiet:
            self.err.print(message, highlight=False)

    def once(self, message: str) -> None:
        """Say ``message`` the first time only (e.g. which tokenizer serves which model)."""
        if message not in self._said:
            self._said.add(message)
            self.info(message)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {message}", highlight=False)

    def error(self, message: str) -> None:
        # soft_wrap=False: a soft-wrapping console crops panel content instead of wrapping it,
        # and a file:line message must never lose its end.
        # Text: a message is plain text, never markup ("kvern[dashboard]", a regex, a path with []).
        self.err.print(Panel(Text(message), title="kvern: error", title_align="left", border_style="red"),
                       highlight=False, soft_wrap=False)

    # -- results (stdout) --------------------------------------------------------------
    def result(self, renderable: RenderableType, data: Any = None) -> None:
        """Show a result: the renderable for humans, ``data`` as JSON with ``--json``."""
        if self.json_mode:
            if data is not None:
                sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        elif not self.quiet:
            self.out.print(renderable)

    # -- progress (stderr) -------------------------------------------------------------
    @contextlib.contextmanager
    def progress(self, description: str, total: float | None) -> Iterator[Advance]:
        """A progress bar; yields ``advance(n)``. Silent in quiet or JSON mode."""
        if self.quiet or self.json_mode:
            yield lambda _n: None
            return
        columns = [TextColumn("[progress.description]{task.description}"), BarColumn(),
                   MofNCompleteColumn() if total else TaskProgressColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.err, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)


NULL_OUTPUT = Output(quiet=True)
"""For library use and tests: says nothing."""
