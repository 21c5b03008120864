"""Bounded memory: ingest writes the trace a row group at a time, the simulator reads it back a
batch at a time, and neither changes a byte or a number (docs/architecture.md §2).

The row groups are made small here (``small_groups``) so that a log of a few hundred lines
spans many groups, spill runs and read batches.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import write_jsonl
from trace_paths import CHAT_SAMPLE

import kvern.ingest.pipeline as pipeline
import kvern.ingest.trace as trace_mod
from kvern.infra.config import Config
from kvern.infra.errors import InputError
from kvern.ingest.pipeline import ingest, load_trace
from kvern.ingest.stream import block_streams, with_block_ids
from kvern.ingest.trace import Trace, TraceWriter, read_trace, with_meta, write_trace


@pytest.fixture
def small_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_mod, "ROW_GROUP_VALUES", 3000)
    monkeypatch.setattr(trace_mod, "READ_VALUES", 700)
    monkeypatch.setattr(pipeline, "SPILL_VALUES", 2000)


def _cfg(shard_kb: float = 20) -> Config:
    cfg = Config()
    return cfg.model_copy(update={"executor": cfg.executor.model_copy(update={"shard_mb": shard_kb / 1024})})


class Reversed:
    """An executor that finishes its tasks last to first, in this process."""

    name = "reversed"
    workers = 4

    def map(self, fn: Any, items: Any, shared: Any = None, *, window: int | None = None) -> Any:
        done = [(i, fn(shared, item)) for i, item in enumerate(items)]
        return (d for d in done[::-1])


def _shuffled_log(tmp_path: Path) -> Path:
    """The chat sample (two models) out of time order, some lines without a time."""
    lines = CHAT_SAMPLE.read_text(encoding="utf-8").splitlines()[:300]
    rng = random.Random(5)
    blocks = [lines[i : i + 25] for i in range(0, len(lines), 25)]
    rng.shuffle(blocks)
    out = [line for b in blocks for line in b]
    for i in range(0, len(out), 7):
        obj = json.loads(out[i])
        obj.pop("timestamp", None)
        out[i] = json.dumps(obj)
    return write_jsonl(tmp_path / "shuffled.jsonl", out)


def test_row_groups_do_not_depend_on_how_rows_come(tmp_path: Path, small_groups: None) -> None:
    trace = ingest(CHAT_SAMPLE, Config())
    table = with_meta(trace.table, trace.meta)
    whole = tmp_path / "whole.parquet"
    with TraceWriter(whole, trace.meta, block_ids=False) as w:
        w.write(table)
    pieces = tmp_path / "pieces.parquet"
    rng = random.Random(1)
    with TraceWriter(pieces, trace.meta, block_ids=False) as w:
        start = 0
        while start < table.num_rows:
            n = rng.randint(0, 40)
            w.write(table.slice(start, n))
            start += n
    assert whole.read_bytes() == pieces.read_bytes()
    assert pq.ParquetFile(whole).metadata.num_row_groups > 10
    assert pq.read_table(whole).equals(table)


def test_a_trace_within_one_group_is_the_file_one_write_gives(tmp_path: Path) -> None:
    trace = ingest(CHAT_SAMPLE, Config())
    write_trace(trace, tmp_path / "new.parquet")
    pq.write_table(with_meta(trace.table, trace.meta), tmp_path / "old.parquet", compression="zstd")
    assert (tmp_path / "new.parquet").read_bytes() == (tmp_path / "old.parquet").read_bytes()


def test_ingest_in_row_groups_equals_the_whole_table_computation(tmp_path: Path, small_groups: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Spilled runs gathered in arrival order, ids interned group by group and their digest
    computed as they go: the file with_block_ids and write_trace make from the table in memory,
    byte for byte, whatever the executor."""
    log = _shuffled_log(tmp_path)
    monkeypatch.setenv("KVERN_INGEST_CACHE", str(tmp_path / "cache"))
    expected = tmp_path / "expected.parquet"
    write_trace(with_block_ids(ingest(log, _cfg())), expected)
    assert pq.ParquetFile(expected).metadata.num_row_groups > 5
    one_pass = load_trace(log, _cfg())
    assert one_pass.file is not None
    assert one_pass.file.path.read_bytes() == expected.read_bytes()
    sharded = tmp_path / "sharded.parquet"
    pipeline.ingest_to(log, _cfg(), sharded, executor=Reversed())
    assert sharded.read_bytes() == expected.read_bytes()
    # The same rows as one run, one group (the order was not made by the gathering).
    monkeypatch.setattr(trace_mod, "ROW_GROUP_VALUES", 1 << 22)
    monkeypatch.setattr(pipeline, "SPILL_VALUES", 1 << 22)
    assert ingest(log, _cfg()).table.equals(read_trace(expected).table.drop_columns(["block_ids"]))


def _streams_equal(a: dict[str, Any], b: dict[str, Any], tokens: bool = True) -> None:
    """Equal streams (``tokens=False``: the token ids aside, which a trace's streams built with
    them still carry)."""
    assert list(a) == list(b)
    for m in a:
        for f in ("req_offsets", "block_ids", "prompt_tokens", "rows", "arrival_s", "parent", "depth",
                  "block_tokens", *(("token_offsets", "token_ids") if tokens else ())):
            x, y = getattr(a[m], f), getattr(b[m], f)
            assert (x is None and y is None) or np.array_equal(x, y), (m, f)


def test_streams_read_in_batches_equal_streams_of_the_table(tmp_path: Path, small_groups: None) -> None:
    path = tmp_path / "t.parquet"
    write_trace(with_block_ids(ingest(_shuffled_log(tmp_path), Config())), path)
    memory = Trace(read_trace(path).table, read_trace(path).meta)
    plain = Trace(memory.table.drop_columns(["block_ids"]), memory.meta)
    for tokens in (True, False):
        reference = block_streams(Trace(plain.table, plain.meta), tokens=tokens)  # interned whole
        _streams_equal(block_streams(read_trace(path), tokens=tokens), reference)
        _streams_equal(block_streams(memory, tokens=tokens), reference, tokens)
    later = read_trace(path)  # token ids added to streams built without them
    block_streams(later, tokens=False)
    _streams_equal(block_streams(later, tokens=True), block_streams(plain, tokens=True))
    # Stored ids that are not this table's are not used: the keys are interned again.
    forged = memory.table.set_column(8, "block_ids", pa.array(
        [[0] * len(k) for k in memory.table.column("block_keys").to_pylist()], pa.list_(pa.int32())))
    write_trace(Trace(forged, memory.meta), tmp_path / "forged.parquet")
    _streams_equal(block_streams(read_trace(tmp_path / "forged.parquet")), block_streams(plain))


def test_ids_digest_is_one_pass_in_any_batches(tmp_path: Path, small_groups: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The digest that ties stored ids to their keys is the same whether computed over the whole
    table, over batches of any size, by ingest as it interns, or by ``read_trace`` on its pass;
    and a file ingest wrote is simulated from its stored ids, its keys never interned again."""
    import kvern.ingest.stream as stream_mod
    from kvern.ingest.trace import ids_digest

    monkeypatch.setenv("KVERN_INGEST_CACHE", str(tmp_path / "cache"))
    written = load_trace(_shuffled_log(tmp_path), _cfg())
    assert written.file is not None and pq.ParquetFile(written.file.path).metadata.num_row_groups > 5
    table = read_trace(written.file.path).table
    stored = written.meta.block_ids_digest
    assert stored and ids_digest([table]) == stored
    rng = random.Random(7)
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, table.num_rows), rng.randint(1, 20)))
        pieces = [table.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, table.num_rows], strict=True)]
        assert ids_digest(pieces) == stored
    read = read_trace(written.file.path)
    assert read.ids_digest() == stored
    # Another table's ids, or the same ids one block further along, are not these keys' ids.
    ids = table.column("block_ids").combine_chunks()
    shifted = pa.ListArray.from_arrays(ids.offsets, pa.compute.add(ids.values, 1))
    assert ids_digest([table.set_column(8, "block_ids", shifted)]) != stored
    monkeypatch.setattr(stream_mod, "_interned", lambda *a: pytest.fail("stored ids were not used"))
    streams = block_streams(read)
    assert sum(s.num_unique for s in streams.values()) > 0


def test_rows_are_checked_across_batches(tmp_path: Path, small_groups: None) -> None:
    trace = ingest(CHAT_SAMPLE, Config())
    arrival = trace.table.column("arrival_s").to_numpy().copy()
    arrival[[150, 390]] = -1.0
    table = trace.table.set_column(1, "arrival_s", pa.array(arrival))
    write_trace(Trace(table, trace.meta), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"row 151 \(request_id .*\): arrival_s is not a finite, "
                                         r"non-negative time \(and 1 more rows\)"):
        read_trace(tmp_path / "bad.parquet")
    late = trace.table.column("arrival_s").to_numpy().copy()
    late[300] = late[299] - 1.0  # back in time, in a later batch than the row before
    write_trace(Trace(trace.table.set_column(1, "arrival_s", pa.array(late)), trace.meta),
                tmp_path / "late.parquet")
    with pytest.raises(InputError, match=r"row 301 .*: arrival_s goes back in time"):
        read_trace(tmp_path / "late.parquet")


_PEAK = textwrap.dedent("""
    import sys
    import kvern.ingest.pipeline as pipeline
    import kvern.ingest.trace as trace
    trace.ROW_GROUP_VALUES = pipeline.SPILL_VALUES = 1 << 16
    trace.READ_VALUES = 1 << 14
    from kvern.cli import app

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key))

    def replay(log, out):
        app(["replay", log, "--profile", "vllm", "--capacity", "1000", "--no-charts", "-o", out],
            standalone_mode=False)

    replay(sys.argv[1], sys.argv[3])  # the tokenizer, the compiled kernels and every import warm
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak RSS starts again from the RSS now
    before = status("VmRSS:")
    replay(sys.argv[2], sys.argv[4])
    print(status("VmHWM:") - before)
""")


def _log(path: Path, requests: int, words: int) -> Path:
    """Chat requests with long system prompts (four of them: the segment cache tokenizes each
    once), about ``2 * words`` tokens each: many token ids, fast to ingest."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(requests):
            row = {"timestamp": f"2025-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z", "model": "m",
                   "messages": [{"role": "system", "content": f"policy {i % 4}:" + " a" * words},
                                {"role": "user", "content": f"question {i}"}]}
            f.write(json.dumps(row) + "\n")
    return path


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc peak-RSS reset")
def test_ingest_and_replay_memory_does_not_grow_with_the_token_ids(tmp_path: Path) -> None:
    """``kvern replay LOG`` (ingest, then simulate) in a fresh process: the peak memory of a log
    with 64 MB of token ids, over that of a small one, stays far below the token ids' size. The
    whole-table path held them several times over (parts, their join, the sort, the trace
    read back, the streams' copy: +249 MB on this log when this test was written, against +2 MB)."""
    small, big = _log(tmp_path / "small.jsonl", 20, 8000), _log(tmp_path / "big.jsonl", 2000, 8000)
    env = {**os.environ, "KVERN_INGEST_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", _PEAK, str(small), str(big), str(tmp_path / "o1"),
                           str(tmp_path / "o2")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    grown_mb = int(done.stdout.strip().splitlines()[-1]) / 1024
    entry = _entry_of(tmp_path / "cache", "big.jsonl")
    tokens = int(pq.read_table(entry, columns=["prompt_tokens"]).column(0).to_numpy().sum())
    token_mb = 4 * tokens / 2**20
    assert token_mb > 60, token_mb
    assert grown_mb < token_mb / 2, (grown_mb, token_mb)


def _entry_of(cache: Path, source: str) -> Path:
    for p in cache.glob("*.parquet"):
        if read_trace(p).meta.source == source:
            return p
    raise AssertionError(f"no cache entry of {source}")
