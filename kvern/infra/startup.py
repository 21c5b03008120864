"""Keep a command's start-up to what it uses: two imports that libraries make on kvern's behalf
and that no command needs are held back (about 0.7 s of a 1.3 s ``kvern replay``).

- **pandas** (0.5 s): pyarrow imports it the first time it asks whether a value is a pandas
  object (``pa.array``, ``pa.table``, ``to_numpy`` all ask). Asked once here with pandas held
  back, pyarrow records "no pandas" for those questions; a call that really needs pandas
  (``Table.to_pandas``) imports it then, as pyarrow retries the import there.
- **cffi** (0.2 s): numba's typing context imports it when the first compiled kernel loads, to
  support calls into cffi modules, which kvern's kernels never make. Held back only for
  numba's own import of it; anyone else still gets cffi.
"""

from __future__ import annotations

import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

_NUMBA_CFFI = "numba.core.typing.cffi_utils"


class _HoldBack:
    """A ``sys.meta_path`` finder that refuses ``name`` (when ``only_from`` is importing it)."""

    def __init__(self, name: str, only_from: str | None = None) -> None:
        self.name = name
        self.only_from = only_from

    def find_spec(self, fullname: str, path: Any = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname.partition(".")[0] != self.name:
            return None
        if self.only_from is not None and not _importing_from(self.only_from):
            return None
        raise ModuleNotFoundError(f"{fullname} is not needed by kvern here", name=fullname)


def _importing_from(module: str) -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == module:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def hold_back_unused_imports() -> None:
    """Apply both hold-backs once per process (a no-op when pandas is already imported)."""
    if not any(isinstance(f, _HoldBack) for f in sys.meta_path):
        sys.meta_path.insert(0, _HoldBack("cffi", only_from=_NUMBA_CFFI))
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    pandas = _HoldBack("pandas")
    sys.meta_path.insert(0, pandas)
    try:
        pa.array([0])  # pyarrow's first "is this pandas?" check: answered without pandas
    finally:
        sys.meta_path.remove(pandas)

