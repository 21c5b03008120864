"""The canonical trace (docs/architecture.md §2): one row per request, in arrival order.

Every later stage reads this table and nothing else, so its schema is the contract between
ingest and the simulator, the live replayer and the analyses. Run-wide facts (block size,
tokenizer, source) travel as Parquet schema metadata under ``kvern.*`` keys.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kvern.infra.errors import InputError
from kvern.infra.files import read_tagged_parquet, write_parquet

TRACE_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("arrival_s", pa.float64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("session_id", pa.string()),
        pa.field("prompt_tokens", pa.int32(), nullable=False),
        pa.field("output_tokens", pa.int32()),
        pa.field("block_keys", pa.list_(pa.uint64()), nullable=False),
        pa.field("token_ids", pa.list_(pa.int32())),
    ]
)

BLOCK_IDS = pa.field("block_ids", pa.list_(pa.int32()))
"""An optional column beside the schema: each block key's dense id within its model, in order
of first appearance (``kvern.ingest.stream.with_block_ids``). Ingest interns once and stores
it; the simulator uses it when it is still a valid interning of the rows at hand."""

_META_KEY = b"kvern.trace"


@dataclass(frozen=True)
class TraceMeta:
    """Facts about the whole trace, stored in the Parquet schema metadata."""

    block_size: int
    """Tokens per block key; the last block of a prompt covers the remainder."""
    source: str = ""
    """File name of the log it came from (no folder: reports must not leak paths)."""
    format: str = ""
    tokenizers: dict[str, str] = field(default_factory=dict)
    """Model name -> tokenizer that produced its ids ("hash-ids" for hash-id traces)."""
    normalized: bool = False
    skipped_lines: int = 0
    block_ids_digest: str = ""
    """xxh3 of the whole table's block keys and stored block ids (``block_ids``): the ids are used
    only for the table they were made for, so a hand-edited file cannot pass off wrong ones."""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> TraceMeta:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Trace:
    table: pa.Table
    meta: TraceMeta

    @property
    def num_requests(self) -> int:
        return self.table.num_rows

    def models(self) -> list[str]:
        """Models in order of first appearance."""
        seen: dict[str, None] = {}
        for m in self.table.column("model").to_pylist():
            seen.setdefault(m, None)
        return list(seen)


def with_meta(table: pa.Table, meta: TraceMeta) -> pa.Table:
    return conform(table).replace_schema_metadata({_META_KEY: meta.to_bytes()})


def conform(table: pa.Table) -> pa.Table:
    """The schema's columns, in order and type, then ``block_ids`` if the table has it."""
    out = table.select(TRACE_SCHEMA.names).cast(TRACE_SCHEMA)
    if BLOCK_IDS.name in table.column_names:
        out = out.append_column(BLOCK_IDS, table.column(BLOCK_IDS.name).cast(BLOCK_IDS.type))
    return out


def write_trace(trace: Trace, path: str | Path) -> None:
    write_parquet(with_meta(trace.table, trace.meta), path)


def read_trace(path: str | Path) -> Trace:
    """Read a Parquet trace written by ``kvern ingest``."""
    table, raw = read_tagged_parquet(path, _META_KEY, "kvern trace")
    missing = [f.name for f in TRACE_SCHEMA if f.name not in table.column_names]
    if missing:
        raise InputError(f"kvern trace lacks columns: {', '.join(missing)}", path)
    try:
        meta = TraceMeta.from_bytes(raw)
        if isinstance(meta.block_size, bool) or not isinstance(meta.block_size, int) or meta.block_size < 0:
            raise ValueError(f"block_size {meta.block_size!r}")
    except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise InputError(f"kvern trace with unreadable kvern.trace metadata ({e})", path) from None
    try:
        table = conform(table)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise InputError(f"kvern trace with a column of the wrong type ({e})", path) from None
    check_rows(table, path)
    return Trace(table, meta)


def check_rows(table: pa.Table, path: str | Path) -> None:
    """Hold a Parquet trace to what ingest guarantees of a log (a hand-edited or foreign file
    is checked as strictly as a log line): no nulls where the schema has none, prompts of at
    least one token with at least one block key, token ids that match the prompt length and
    are ids, no negative output, arrival times finite, non-negative and in order."""
    def fail(mask: pa.Array | np.ndarray, what: str) -> None:
        bad = np.flatnonzero(np.asarray(mask, dtype=bool))
        if len(bad):
            i = int(bad[0])
            rid = table.column("request_id")[i].as_py()
            raise InputError(f"row {i + 1} (request_id {rid!r}): {what}"
                             + (f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""), path)

    for f in TRACE_SCHEMA:
        if not f.nullable and table.column(f.name).null_count:
            fail(pc.is_null(table.column(f.name)).to_numpy(zero_copy_only=False), f"{f.name} is null")
    prompt = table.column("prompt_tokens").to_numpy()
    fail(prompt < 1, "prompt_tokens must be at least 1")
    output = table.column("output_tokens").to_numpy(zero_copy_only=False)
    fail(np.nan_to_num(np.asarray(output, dtype=float), nan=0.0) < 0, "output_tokens is negative")
    arrival = table.column("arrival_s").to_numpy()
    fail(~np.isfinite(arrival) | (arrival < 0), "arrival_s is not a finite, non-negative time")
    if len(arrival) > 1:
        fail(np.concatenate([[False], np.diff(arrival) < 0]),
             "arrival_s goes back in time (rows are in arrival order)")
    fail(pc.list_value_length(table.column("block_keys")).to_numpy(zero_copy_only=False) < 1,
         "no block keys")
    tokens = table.column("token_ids")
    if tokens.null_count < len(tokens):
        lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
        has = ~np.isnan(np.asarray(lengths, dtype=float))
        fail(has & (np.nan_to_num(np.asarray(lengths, dtype=float)) != prompt),
             "token_ids do not match prompt_tokens")
        flat = pc.list_flatten(tokens)
        if len(flat) and pc.min(flat).as_py() < 0:
            per_row = pc.list_parent_indices(tokens).to_numpy()[np.asarray(pc.less(flat, 0), dtype=bool)]
            mask = np.zeros(len(prompt), dtype=bool)
            mask[per_row] = True
            fail(mask, "token_ids holds a negative id")


def is_parquet(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"
