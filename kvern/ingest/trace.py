"""The canonical trace (docs/architecture.md §2): one row per request, in arrival order.

Every later stage reads this table and nothing else, so its schema is the contract between
ingest and the simulator, the live replayer and the analyses. Run-wide facts (block size,
tokenizer, source) travel as Parquet schema metadata under ``kvern.*`` keys.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

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
    return Trace(conform(table), TraceMeta.from_bytes(raw))


def is_parquet(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"
