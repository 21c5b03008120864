"""Where numba keeps kvern's compiled functions, and how they load.

Numba keys a cached function by its own source file only, so a cached engine would keep an
old copy of a policy or heap function it inlines after that file changed. Unless
``NUMBA_CACHE_DIR`` is set, the cache therefore lives in a folder named by a digest of every
source file of kvern: any edit starts from a fresh cache, and a stale compiled function can
never give wrong numbers. Call ``use_kvern_cache()`` before defining compiled functions.

Loading a cached function is also made cheaper. Before it loads one, numba "refreshes" its
typing and target contexts: it imports and registers every typing and lowering module it has
(about 60 modules, 0.2 s of CPU, a third of a small ``kvern replay``). Those tables serve the
compiler only; machine code loaded from the cache needs numba's runtime (NRT, for the arrays
it allocates), which is initialised here instead. A cache miss compiles as before, and the
compiler refreshes the contexts itself.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

_done = False


def use_kvern_cache() -> None:
    global _done
    if _done:
        return
    _done = True
    _load_without_refresh()
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    import numba

    here = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(here.rglob("*.py")):
        digest.update(path.relative_to(here).as_posix().encode())
        digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kvern" / "numba"
    numba.config.CACHE_DIR = str(base / f"{numba.__version__}-{digest.hexdigest()[:16]}")


def _load_without_refresh() -> None:
    """Replace ``Cache.load_overload`` by the same steps minus the contexts' refresh.

    Left as it is if this numba's cache lacks the pieces (its internals are not an API).
    """
    from numba.core import caching
    from numba.core.runtime import rtsys

    cache = caching.Cache
    if not (hasattr(cache, "_load_overload") and hasattr(cache, "_guard_against_spurious_io_errors")
            and hasattr(rtsys, "initialize")):
        return

    def load_overload(self: Any, sig: Any, target_context: Any) -> Any:
        rtsys.initialize(target_context)  # what the refresh did that loaded code needs
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        return None  # the guard swallowed a spurious I/O error: compile instead

    cache.load_overload = load_overload
