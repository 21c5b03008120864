"""Keep Ctrl-C prompt while native code runs.

Python handles a signal only between bytecodes of the main thread, so one long call into a
tokenizer (a 50 MB prompt takes a minute) would hold Ctrl-C until it returns. ``interruptible``
runs such a call in a daemon thread and waits in short steps: Ctrl-C is raised in the main
thread at once, and the abandoned call ends with the process. Only worth it for long inputs:
a thread costs tens of microseconds, a short text is tokenized faster than that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

LONG_TEXT = 1 << 20
"""Characters from which a tokenizer call is run through ``interruptible``."""

_running: set[threading.Event] = set()
"""One ``done`` event per call in flight; an event, not ``Thread.is_alive``: a Ctrl-C that lands
inside ``Thread.join`` makes Python 3.11 mark the still-running thread as stopped."""


def abandoned_calls() -> bool:
    """Whether a call ``interruptible`` stopped waiting for is still running (in native code)."""
    return any(not done.is_set() for done in list(_running))


def interruptible(fn: Callable[[], T], poll_s: float = 0.05) -> T:
    """``fn()``, waited for in steps of ``poll_s`` so that a KeyboardInterrupt is not delayed."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e
        finally:
            done.set()
            _running.discard(done)

    _running.add(done)
    threading.Thread(target=work, name="kvern-interruptible", daemon=True).start()
    while not done.wait(poll_s):
        pass
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
