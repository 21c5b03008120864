"""Benchmark inputs as kvern ``BlockStream``s, built through kvern's own interning.

Streams are cached as ``.npz`` in a scratch folder so that every engine, run in its own
process for a clean peak-RSS reading, loads the same arrays in a second.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.gen_trace import GenParams, HashTrace, expand_blocks, generate, read_mooncake
from kvern.ingest.stream import BlockStream, block_streams
from kvern.ingest.trace import Trace, TraceMeta, with_meta

ROOT = Path(__file__).resolve().parent.parent
MOONCAKE = ROOT / "traces" / "mooncake_conversation.jsonl"
SCRATCH = Path(os.environ.get("KVERN_BENCH_DIR", Path(tempfile.gettempdir()) / "kvern-bench"))

TRACES = {
    "synthetic": "generated chat trace (gen_trace.py defaults, 16-token blocks)",
    "mooncake16": "Mooncake conversation trace, 512-token ids cut into 16-token blocks",
    "mooncake512": "Mooncake conversation trace as published (512-token ids)",
}


def hash_trace(name: str) -> HashTrace:
    if name == "synthetic":
        return generate(GenParams())
    if name == "mooncake16":
        return expand_blocks(read_mooncake(MOONCAKE), 16)
    if name == "mooncake512":
        return read_mooncake(MOONCAKE)
    raise SystemExit(f"unknown trace {name!r}; known: {', '.join(TRACES)}")


def to_trace(trace: HashTrace, model: str = "bench", token_ids: pa.Array | None = None) -> Trace:
    """The hash trace as kvern's canonical trace (what ``kvern ingest`` would produce);
    ``token_ids`` (one list per request) makes it a tokenized trace."""
    n = trace.num_requests
    keys = pa.ListArray.from_arrays(pa.array(trace.offsets), pa.array(trace.hash_ids.view(np.uint64)))
    table = pa.table({
        "request_id": pa.array(np.arange(n).astype(str)),
        "arrival_s": pa.array(trace.timestamp_ms / 1000.0),
        "model": pa.array([model] * n),
        "session_id": pa.nulls(n, pa.string()),
        "prompt_tokens": pa.array(trace.input_length.astype(np.int32)),
        "output_tokens": pa.array(trace.output_length.astype(np.int32)),
        "block_keys": keys,
        "token_ids": pa.nulls(n, pa.list_(pa.int32())) if token_ids is None else token_ids,
    })
    meta = TraceMeta(block_size=trace.block_size, source="benchmark",
                     format="hash-ids" if token_ids is None else "tokens")
    return Trace(with_meta(table, meta), meta)


def to_stream(trace: HashTrace, model: str = "bench") -> BlockStream:
    return block_streams(to_trace(trace, model))[model]


def cached_trace_file(name: str) -> Path:
    """The named trace as an ingested Parquet file (block ids interned and stored, as ingest does)."""
    from kvern.ingest.stream import with_block_ids
    from kvern.ingest.trace import write_trace

    path = SCRATCH / f"{name}.parquet"
    if not path.exists():
        SCRATCH.mkdir(parents=True, exist_ok=True)
        write_trace(with_block_ids(to_trace(hash_trace(name))), path)
    return path


_FIELDS = ("req_offsets", "block_ids", "prompt_tokens", "rows", "arrival_s", "parent", "depth",
           "block_tokens")


def cached_stream(name: str) -> tuple[BlockStream, Path]:
    """The named stream, from the scratch cache when there (keyed by name only: delete to redo)."""
    path = SCRATCH / f"{name}.npz"
    if not path.exists():
        stream = to_stream(hash_trace(name))
        SCRATCH.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, block_size=stream.block_size, **{f: getattr(stream, f) for f in _FIELDS})
        tmp.replace(path)
    return load_stream(path), path


def load_stream(path: Path) -> BlockStream:
    with np.load(path) as z:
        return BlockStream(model="bench", block_size=int(z["block_size"]),
                           **{f: z[f] for f in _FIELDS})


def flattened(stream: BlockStream) -> np.ndarray:
    """The block accesses in LRU touch order (each request tail → head), as one id array."""
    off = stream.req_offsets
    req = np.repeat(np.arange(stream.num_requests), np.diff(off))
    rev = off[req] + off[req + 1] - 1 - np.arange(len(stream.block_ids))
    return stream.block_ids[rev]
