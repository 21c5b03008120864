"""A command imports what it uses (issue 13): replaying an ingested trace loads neither pandas,
Matplotlib, cffi, transformers nor aiohttp; pandas still works where something needs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.trace_paths import MOONCAKE

NOT_NEEDED = ("pandas", "matplotlib", "cffi", "jinja2", "transformers", "aiohttp", "ray")


def _modules_after(args: list[str], cwd: Path) -> list[str]:
    code = ("import json, sys\nfrom kvern.cli import app\n"
            f"app({args!r}, standalone_mode=False)\n"
            f"print(json.dumps([m for m in {NOT_NEEDED!r} if m in sys.modules]))")
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_replay_of_an_ingested_trace_imports_only_what_it_uses(tmp_path: Path) -> None:
    trace = tmp_path / "t.parquet"
    assert _modules_after(["ingest", str(MOONCAKE), "-o", str(trace), "-q"], tmp_path) == []
    loaded = _modules_after(["replay", str(trace), "--policy", "lru", "--capacity", "1000",
                             "--profile", "ideal", "-q", "--no-charts", "-o", str(tmp_path / "r")], tmp_path)
    assert loaded == []
    assert (tmp_path / "r" / "summary.json").is_file()


def test_pandas_still_works_after_it_was_held_back() -> None:
    code = """
import sys
from kvern.infra.startup import hold_back_unused_imports
hold_back_unused_imports()
import pyarrow as pa
t = pa.table({"a": [1, 2]})
assert "pandas" not in sys.modules
df = t.to_pandas()
assert df["a"].tolist() == [1, 2]
assert pa.Table.from_pandas(df).column("a").to_pylist() == [1, 2]
assert pa.table(df).num_rows == 2
import cffi  # held back only from numba's own import of it
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
