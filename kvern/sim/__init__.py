"""The simulator: block streams, policies, engine profiles, capacities, runs (docs/architecture.md §3–7).

The engines' loops are compiled by numba and cached on disk. Numba keys a cached function by
its own source file only, so a cached engine would keep an old copy of a policy or heap
function it inlines after that file changed. Unless ``NUMBA_CACHE_DIR`` is set, the cache
therefore lives in a folder named by a digest of every source file of this package: any edit
here starts from a fresh cache, and a stale compiled engine can never give wrong numbers.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def _numba_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    import numba

    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(here.rglob("*.py")):
        digest.update(path.relative_to(here).as_posix().encode())
        digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kvern" / "numba"
    numba.config.CACHE_DIR = str(base / f"{numba.__version__}-{digest.hexdigest()[:16]}")


_numba_cache_dir()
