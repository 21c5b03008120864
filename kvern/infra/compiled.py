"""Where numba keeps kvern's compiled functions.

Numba keys a cached function by its own source file only, so a cached engine would keep an
old copy of a policy or heap function it inlines after that file changed. Unless
``NUMBA_CACHE_DIR`` is set, the cache therefore lives in a folder named by a digest of every
source file of kvern: any edit starts from a fresh cache, and a stale compiled function can
never give wrong numbers. Call ``use_kvern_cache()`` before defining compiled functions.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_done = False


def use_kvern_cache() -> None:
    global _done
    if _done or os.environ.get("NUMBA_CACHE_DIR"):
        return
    import numba

    here = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(here.rglob("*.py")):
        digest.update(path.relative_to(here).as_posix().encode())
        digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kvern" / "numba"
    numba.config.CACHE_DIR = str(base / f"{numba.__version__}-{digest.hexdigest()[:16]}")
    _done = True
