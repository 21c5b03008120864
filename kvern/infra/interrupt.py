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


def interruptible(fn: Callable[[], T], poll_s: float = 0.05) -> T:
    """``fn()``, waited for in steps of ``poll_s`` so that a KeyboardInterrupt is not delayed."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=work, name="kvern-interruptible", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(poll_s)
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
