"""Errors that the CLI turns into one message and an exit code (docs/architecture.md §11).

Every error the user can cause is a ``KvernError``; anything else escaping is a bug and
keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class KvernError(Exception):
    """Base class: a message for the user and the exit code to leave with."""

    exit_code: int = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(KvernError):
    """A flag or config value that cannot work (names the flag or key)."""


class InputError(KvernError):
    """Bad input data: names the file and, where known, the line."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message


class BackendError(KvernError):
    """A live backend that cannot be reached or keeps failing."""


class GateFailed(KvernError):
    """The CI gate found a regression (exit 1)."""

    exit_code = EXIT_GATE_FAILED


class Interrupted(KvernError):
    """Ctrl-C: partial results were kept and marked."""

    exit_code = EXIT_INTERRUPTED
