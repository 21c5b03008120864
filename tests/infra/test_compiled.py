"""Cached kernels load without numba's compiler tables (``kvern.infra.compiled``): the result is
the same as compiled code's, nothing is compiled again, and the typing and lowering modules the
refresh would import stay unloaded. A cache miss still compiles (the compiler refreshes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# A kernel that allocates (NRT), hashes (numba's hash secret), uses a typed dict and math: the
# runtime pieces a loaded kernel needs without the refresh.
_CODE = textwrap.dedent("""
    import json, sys
    from kvern.infra.compiled import use_kvern_cache
    use_kvern_cache()
    import numba
    import numpy as np
    from numba.core import event

    compiled = []

    class Count(event.Listener):
        def on_start(self, ev):
            compiled.append(1)

        def on_end(self, ev):
            pass

    event.register("numba:compile", Count())

    @numba.njit(cache=True)
    def kernel(a):
        seen = {}
        for x in a:
            seen[x % 7] = hash((x, 2.5)) % 1000
        out = np.empty(len(seen), np.float64)
        for i, k in enumerate(sorted(seen)):
            out[i] = np.sqrt(seen[k]) + k
        return out

    result = kernel(np.arange(50, dtype=np.int64)).tolist()
    print(json.dumps({"result": result, "compiled": len(compiled),
                      "linalg_loaded": "numba.np.linalg" in sys.modules}))
""")


def _run(folder: Path) -> dict:  # type: ignore[type-arg]
    script = folder / "kernel_module.py"
    script.write_text(_CODE)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / "cache"), "PYTHONHASHSEED": "0"}
    res = subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_cached_kernel_loads_without_the_refresh_and_gives_the_same_result(tmp_path: Path) -> None:
    first = _run(tmp_path)  # a miss: compiled, the compiler's refresh loads its tables
    assert first["compiled"] > 0 and first["linalg_loaded"]
    second = _run(tmp_path)  # loaded from the cache
    assert second["compiled"] == 0
    assert not second["linalg_loaded"], "the refresh ran: numba imported its lowering modules"
    assert second["result"] == first["result"]
