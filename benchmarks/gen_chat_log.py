"""A large OpenAI chat-completions log for the scale-out benchmark (at least 1 GB by default).

    .venv/bin/python -m benchmarks.gen_chat_log -o /tmp/big.jsonl [--size-gb 1.0] [--zst]

The log is the chat sample's generator (``traces/make_chat_sample.py``: multi-turn sessions,
shared system prompts, tools, RAG documents, two models) run block after block with a new seed
each, every block three days after the one before, so that the file is in time order and is
written in constant memory whatever its size. Same arguments, same bytes. Write it outside the
repository (/tmp): it is far too big to commit.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from datetime import timedelta
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SESSIONS_PER_BLOCK = 90


def _sample_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_chat_sample", ROOT / "traces" / "make_chat_sample.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_log(path: Path, size_bytes: int, seed: int = 7) -> tuple[int, int]:
    """Write blocks until the file holds at least ``size_bytes``; (requests, bytes)."""
    gen = _sample_generator()
    written = requests = block = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size_bytes:
            shift = timedelta(days=gen.DAYS * block)
            for row in gen.generate(seed + block, SESSIONS_PER_BLOCK):
                ts = gen.datetime.fromisoformat(str(row["timestamp"]).replace("Z", "+00:00")) + shift
                row["timestamp"] = ts.isoformat().replace("+00:00", "Z")
                row["request_id"] = f"b{block}-{row['request_id']}"
                row["session_id"] = f"b{block}-{row['session_id']}"
                line = json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
                f.write(line)
                written += len(line.encode())
                requests += 1
            block += 1
    return requests, written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--zst", action="store_true", help="also write OUTPUT.zst (zstd level 3)")
    args = ap.parse_args()
    n, size = write_log(args.output, int(args.size_gb * 1e9), args.seed)
    print(f"wrote {n:,} requests, {size / 1e9:.2f} GB to {args.output}")
    if args.zst:
        import zstandard

        target = args.output.with_name(args.output.name + ".zst")
        with open(args.output, "rb") as src, open(target, "wb") as dst:
            zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
        print(f"wrote {target} ({target.stat().st_size / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()
