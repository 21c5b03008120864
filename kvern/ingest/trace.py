"""The canonical trace (docs/architecture.md §2): one row per request, in arrival order.

Every later stage reads this table and nothing else, so its schema is the contract between
ingest and the simulator, the live replayer and the analyses. Run-wide facts (block size,
tokenizer, source) travel as Parquet schema metadata under ``kvern.*`` keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from kvern.infra.errors import InputError
from kvern.infra.files import atomic_path

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
    """``IdsDigest`` of the whole table's block keys and stored block ids (``block_ids``): the ids
    are used only for the table they were made for, so a hand-edited file cannot pass off wrong
    ones."""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> TraceMeta:
        return cls(**json.loads(raw))


ROW_COLUMNS = ("request_id", "arrival_s", "model", "session_id", "prompt_tokens", "output_tokens")
"""The columns of one value per request: what a trace read from a file keeps in memory."""
LIST_COLUMNS = ("block_keys", "token_ids", BLOCK_IDS.name)
"""The columns of a list per request (token ids, block keys and ids): read in batches."""

ROW_GROUP_ROWS = 1 << 20
"""A row group holds at most this many rows: pyarrow's default, so a trace smaller than one
group is the very file a single ``pyarrow.parquet.write_table`` gives."""
ROW_GROUP_VALUES = 1 << 22
"""... and closes once its rows hold this many list values (token ids, block keys and block
ids together; 4 Mi values is about 16 MB of token ids): what bounds the memory of writing a
trace, and of reading it back a group at a time. Both limits count rows in trace order, so the
file is the same whoever wrote it (one pass, shards, any number of workers)."""
READ_VALUES = 1 << 20
"""A trace file is read back in batches of about this many list values (4 MB of token ids):
reading a batch holds a few times its size for a moment."""


class Trace:
    """The canonical trace: a table in memory, or a Parquet file read in batches.

    ``read_trace`` gives the second kind: the columns of one value per request
    (``ROW_COLUMNS``) are read once, the list columns (token ids, block keys, block ids) stay
    in the file and ``batches`` reads them a batch at a time, so a trace larger than memory
    can be simulated (``kvern.ingest.stream.block_streams``). ``column`` reads one whole
    column (the analyses that need every token id at once), ``table`` all of them.
    """

    def __init__(self, table: pa.Table | None, meta: TraceMeta, *, file: TraceFile | None = None) -> None:
        if (table is None) == (file is None):
            raise ValueError("a trace is a table in memory or a file, exactly one of them")
        self._table = table
        self.meta = meta
        self.file = file
        self._columns: dict[str, pa.ChunkedArray] = {}
        self.streams: dict[bool, Any] = {}
        """``block_streams``' result, kept per ``tokens`` flag (built once per trace)."""
        self._lengths: dict[str, np.ndarray] = {}
        self._ids_digest: str | None = None

    @property
    def table(self) -> pa.Table:
        """The whole table (of a file: every column read, token ids included, on first use)."""
        if self._table is None:
            assert self.file is not None
            self._table = self.file.read()
        return self._table

    @property
    def column_names(self) -> list[str]:
        return list(self._table.column_names if self._table is not None else self.file.names)  # type: ignore[union-attr]

    @property
    def has_block_ids(self) -> bool:
        return BLOCK_IDS.name in self.column_names

    @property
    def num_requests(self) -> int:
        return self._table.num_rows if self._table is not None else self.file.num_rows  # type: ignore[union-attr]

    def column(self, name: str) -> pa.ChunkedArray:
        """One column; of a file, read whole (kept: the row columns were read when it was opened)."""
        if self._table is not None:
            return self._table.column(name)
        if name not in self._columns:
            assert self.file is not None
            self._columns[name] = self.file.read([name]).column(name)
        return self._columns[name]

    def batches(self, columns: Sequence[str]) -> Iterator[pa.Table]:
        """``columns`` (with the schema's types) of consecutive runs of rows, first to last:
        slices of the table in memory (a row group's worth each), else the file read a batch
        at a time (``READ_VALUES``)."""
        if self._table is None:
            assert self.file is not None
            yield from self.file.batches(columns)
            return
        ends = group_ends(self._table) if any(c in LIST_COLUMNS for c in columns) else [self._table.num_rows]
        start = 0
        for end in ends:
            yield cast_columns(self._table.slice(start, end - start).select(list(columns)))
            start = end

    def list_lengths(self, name: str) -> np.ndarray:
        """int64 per row: the length of its list in column ``name``, -1 where null (a file's block
        keys and ids were measured by ``read_trace`` on its pass; else a pass over the column)."""
        if name not in self._lengths:
            parts = [list_lengths(batch.column(0)) for batch in self.batches([name])]
            self._lengths[name] = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return self._lengths[name]

    def ids_digest(self) -> str:
        """``IdsDigest`` of the block keys and block ids as they are now, to hold against
        ``meta.block_ids_digest`` (a file's: computed by ``read_trace`` on its pass)."""
        if self._ids_digest is None:
            self._ids_digest = ids_digest(self.batches(["block_keys", BLOCK_IDS.name]))
        return self._ids_digest

    def models(self) -> list[str]:
        """Models in order of first appearance."""
        seen: dict[str, None] = {}
        for m in self.column("model").to_pylist():
            seen.setdefault(m, None)
        return list(seen)


_TYPES = {f.name: f for f in [*TRACE_SCHEMA, BLOCK_IDS]}


def list_lengths(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """int64 per row: the length of its list, -1 where the list is null."""
    lengths = pc.fill_null(pc.list_value_length(column), -1)
    return np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)


class IdsDigest:
    """What ties stored block ids to their block keys (``TraceMeta.block_ids_digest``): xxh3 of
    four streams, each hashed on its own so that one pass over the rows, in order and a batch at
    a time, computes it: the key lists' lengths (int64, -1 where null), the keys (uint64), the id
    lists' lengths and the ids (int32)."""

    def __init__(self) -> None:
        self._parts = [xxhash.xxh3_64() for _ in range(4)]

    def add_keys(self, lengths: np.ndarray, keys: np.ndarray) -> None:
        self._parts[0].update(np.ascontiguousarray(lengths, dtype=np.int64))
        self._parts[1].update(np.ascontiguousarray(keys, dtype=np.uint64))

    def add_ids(self, lengths: np.ndarray, ids: np.ndarray) -> None:
        self._parts[2].update(np.ascontiguousarray(lengths, dtype=np.int64))
        self._parts[3].update(np.ascontiguousarray(ids, dtype=np.int32))

    def add_batch(self, batch: pa.Table, key_lens: np.ndarray | None = None,
                  id_lens: np.ndarray | None = None) -> None:
        """The rows of ``batch`` (its ``block_keys`` and ``block_ids`` columns; their
        ``list_lengths`` when the caller has them already)."""
        keys, ids = batch.column("block_keys"), batch.column(BLOCK_IDS.name)
        self.add_keys(list_lengths(keys) if key_lens is None else key_lens,
                      pc.list_flatten(keys).to_numpy(zero_copy_only=False))
        self.add_ids(list_lengths(ids) if id_lens is None else id_lens,
                     pc.list_flatten(ids).to_numpy(zero_copy_only=False))

    def hexdigest(self) -> str:
        h = xxhash.xxh3_64()
        for part in self._parts:
            h.update(part.digest())
        return h.hexdigest()


def ids_digest(batches: Iterable[pa.Table]) -> str:
    """``IdsDigest`` of consecutive batches of rows (``block_keys`` and ``block_ids``)."""
    digest = IdsDigest()
    for batch in batches:
        digest.add_batch(batch)
    return digest.hexdigest()


def cast_columns(table: pa.Table) -> pa.Table:
    """``table``'s columns with the trace schema's types (what ``conform`` does to a whole trace)."""
    return table.cast(pa.schema([_TYPES[name] for name in table.column_names]))


def list_values(table: pa.Table) -> np.ndarray:
    """int64 per row: the list values it holds (token ids, block keys, block ids), which is
    what sizes a row group."""
    total = np.zeros(table.num_rows, dtype=np.int64)
    for name in LIST_COLUMNS:
        if name in table.column_names:
            lengths = pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False)
            total += np.nan_to_num(np.asarray(lengths, dtype=np.float64), nan=0.0).astype(np.int64)
    return total


def group_sizes(values: np.ndarray, carried: tuple[int, int] = (0, 0)) -> tuple[list[int], tuple[int, int]]:
    """Where row groups end within rows whose list values are ``values``: the sizes of the
    groups that close here, and the (rows, values) of the group still open after them.
    ``carried``: the open group's (rows, values) before these rows. A group closes at
    ``ROW_GROUP_ROWS`` rows, or at the row that takes it to ``ROW_GROUP_VALUES`` values."""
    sizes: list[int] = []
    rows, held = carried
    cum = np.cumsum(values)
    start, base = 0, 0
    n = len(values)
    while start < n:
        room_rows = ROW_GROUP_ROWS - rows
        # the first row (from start) at which the group's values reach the budget
        reach = int(np.searchsorted(cum, base + ROW_GROUP_VALUES - held, side="left"))
        end = min(start + room_rows, reach + 1, n)
        closed = end - start == room_rows or end == reach + 1
        if not closed:
            rows += end - start
            held += int(cum[end - 1] - base)
            break
        sizes.append(rows + end - start)
        rows, held = 0, 0
        base = int(cum[end - 1])
        start = end
    return sizes, (rows, held)


def group_ends(table: pa.Table) -> list[int]:
    """Row index after each row group of ``table`` written as a trace (the last one included)."""
    sizes, (rest, _) = group_sizes(list_values(table))
    ends = np.cumsum([*sizes, rest] if rest else sizes).tolist()
    return [int(e) for e in ends] or [0]


def with_meta(table: pa.Table, meta: TraceMeta) -> pa.Table:
    return conform(table).replace_schema_metadata({_META_KEY: meta.to_bytes()})


def conform(table: pa.Table) -> pa.Table:
    """The schema's columns, in order and type, then ``block_ids`` if the table has it."""
    out = table.select(TRACE_SCHEMA.names).cast(TRACE_SCHEMA)
    if BLOCK_IDS.name in table.column_names:
        out = out.append_column(BLOCK_IDS, table.column(BLOCK_IDS.name).cast(BLOCK_IDS.type))
    return out


class TraceWriter:
    """Rows of a trace, given in order in any runs, written a row group at a time
    (``group_sizes``): memory holds one group, whatever the size of the trace."""

    def __init__(self, path: str | Path, meta: TraceMeta, *, block_ids: bool) -> None:
        import pyarrow.parquet as pq

        fields = [*TRACE_SCHEMA, *([BLOCK_IDS] if block_ids else [])]
        self.schema = pa.schema(fields, metadata={_META_KEY: meta.to_bytes()})
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self._held: list[pa.Table] = []
        self._open = (0, 0)
        self._groups = 0

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._writer.close()  # the file is abandoned (``atomic_path`` removes it)

    def write(self, table: pa.Table) -> None:
        """The next rows: the schema's columns (``cast_columns``), in order."""
        table = table.select(self.schema.names)
        sizes, self._open = group_sizes(list_values(table), self._open)
        start = 0
        for size in sizes:
            take = size - sum(t.num_rows for t in self._held)
            self._held.append(table.slice(start, take))
            start += take
            self._flush()
        if start < table.num_rows:
            self._held.append(table.slice(start))

    def _flush(self) -> None:
        # One contiguous table per group: a group's bytes do not depend on how its rows came.
        group = pa.concat_tables(self._held).combine_chunks() if self._held else self.schema.empty_table()
        self._writer.write_table(group.replace_schema_metadata(self.schema.metadata))
        self._held = []
        self._groups += 1

    def close(self) -> None:
        if self._held or not self._groups:  # an empty trace is one empty group, as write_table does
            self._flush()
        self._writer.close()


def trace_columns(trace: Trace) -> list[str]:
    """The columns a trace file holds: the schema's, then ``block_ids`` if the trace has them."""
    return [*TRACE_SCHEMA.names, *([BLOCK_IDS.name] if trace.has_block_ids else [])]


def write_trace(trace: Trace, path: str | Path) -> None:
    """Write ``trace`` as a Parquet file, atomically, a row group at a time (a trace read from
    a file is copied batch by batch, never whole)."""
    with atomic_path(path) as tmp, TraceWriter(tmp, trace.meta, block_ids=trace.has_block_ids) as writer:
        for batch in trace.batches(trace_columns(trace)):
            writer.write(batch)


class TraceFile:
    """A Parquet trace opened for reading a batch at a time. The file stays open, so a later
    rename over its name (the ingest cache refreshed) does not change what this one reads."""

    def __init__(self, path: str | Path) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        try:
            # Not memory-mapped (pages read stay ours to drop); column chunks read through a
            # buffer, not whole (a file written before row groups were bounded has huge ones).
            self._pf = pq.ParquetFile(pa.OSFile(str(path), "rb"), buffer_size=1 << 20)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"not a readable Parquet file ({e})", path) from None
        self.names: list[str] = self._pf.schema_arrow.names
        self.num_rows: int = self._pf.metadata.num_rows
        self.metadata = self._pf.schema_arrow.metadata or {}

    def _batch_rows(self, columns: Sequence[str]) -> int:
        """Rows per batch so that a batch of ``columns`` holds about ``READ_VALUES`` list values
        on average: a file written before row groups were bounded (one group of up to a million
        rows) is read in bounded pieces too."""
        md = self._pf.metadata
        wanted = set(columns) & set(LIST_COLUMNS)
        values = sum(md.row_group(i).column(j).num_values
                     for i in range(md.num_row_groups) for j in range(md.num_columns)
                     if md.row_group(i).column(j).path_in_schema.split(".")[0] in wanted)
        rows = self.num_rows * READ_VALUES // max(1, values)
        return int(max(1, min(ROW_GROUP_ROWS, rows)))

    def batches(self, columns: Sequence[str]) -> Iterator[pa.Table]:
        """``columns`` (trace types) of consecutive rows, first to last, a batch at a time."""
        reader = self._pf.iter_batches(batch_size=self._batch_rows(columns), columns=list(columns))
        while True:
            try:
                batch = next(reader, None)
            except (pa.ArrowInvalid, OSError) as e:
                raise InputError(f"not a readable Parquet file ({e})", self.path) from None
            if batch is None:
                return
            yield _cast_or_fail(pa.Table.from_batches([batch]), self.path)

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Whole columns (every one by default: the table ``read_trace`` used to return)."""
        try:
            table = self._pf.read(columns=None if columns is None else list(columns))
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"not a readable Parquet file ({e})", self.path) from None
        if columns is None:
            try:
                return conform(table)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise InputError(f"kvern trace with a column of the wrong type ({e})", self.path) from None
        return _cast_or_fail(table, self.path)


def _cast_or_fail(table: pa.Table, path: str | Path) -> pa.Table:
    try:
        return cast_columns(table)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise InputError(f"kvern trace with a column of the wrong type ({e})", path) from None


def read_trace(path: str | Path) -> Trace:
    """Open a Parquet trace written by ``kvern ingest``: its rows are checked (``check_rows``)
    and its per-request columns read, a batch at a time; the list columns stay in the file
    (``Trace.batches``)."""
    file = TraceFile(path)
    raw = file.metadata.get(_META_KEY)
    if raw is None:
        raise InputError(f"a Parquet file, but not a kvern trace (no {_META_KEY.decode()} metadata)", path)
    missing = [f.name for f in TRACE_SCHEMA if f.name not in file.names]
    if missing:
        raise InputError(f"kvern trace lacks columns: {', '.join(missing)}", path)
    try:
        meta = TraceMeta.from_bytes(raw)
        if isinstance(meta.block_size, bool) or not isinstance(meta.block_size, int) or meta.block_size < 0:
            raise ValueError(f"block_size {meta.block_size!r}")
    except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise InputError(f"kvern trace with unreadable kvern.trace metadata ({e})", path) from None
    checks = RowChecks(path)
    chunks: dict[str, list[pa.Array]] = {name: [] for name in ROW_COLUMNS}
    ids = [BLOCK_IDS.name] if BLOCK_IDS.name in file.names else []  # its type is checked too
    # On the way, what the simulator asks of the list columns, so it need not decode the block
    # keys again: their lengths, the ids' lengths and the digest that says whether they match.
    lengths: dict[str, list[np.ndarray]] = {name: [] for name in ("block_keys", *ids)}
    digest = IdsDigest() if ids else None
    for batch in file.batches([*TRACE_SCHEMA.names, *ids]):
        checks.add(batch)
        for name in ROW_COLUMNS:
            chunks[name].extend(batch.column(name).chunks)
        for name, parts in lengths.items():
            parts.append(list_lengths(batch.column(name)))
        if digest is not None:
            digest.add_batch(batch, lengths["block_keys"][-1], lengths[BLOCK_IDS.name][-1])
    checks.done()
    trace = Trace(None, meta, file=file)
    for name in ROW_COLUMNS:
        arrays = chunks[name] or [pa.array([], _TYPES[name].type)]
        trace._columns[name] = pa.chunked_array([pa.concat_arrays(arrays)], _TYPES[name].type)
    trace._lengths = {name: np.concatenate(parts) if parts else np.zeros(0, np.int64)
                      for name, parts in lengths.items()}
    trace._ids_digest = digest.hexdigest() if digest is not None else None
    return trace


def check_rows(table: pa.Table, path: str | Path) -> None:
    """Hold a Parquet trace to what ingest guarantees of a log (``RowChecks`` over one table)."""
    checks = RowChecks(path)
    checks.add(table)
    checks.done()


class RowChecks:
    """Hold a Parquet trace to what ingest guarantees of a log (a hand-edited or foreign file
    is checked as strictly as a log line): no nulls where the schema has none, prompts of at
    least one token with at least one block key, token ids that match the prompt length and
    are ids, no negative output, arrival times finite, non-negative and in order.

    Fed the rows a batch at a time; ``done`` raises the first failed check in that order, at
    its first row, with the count of the rows that fail it: the message one look at the whole
    table gives."""

    _NULLS: ClassVar[tuple[str, ...]] = tuple(f.name for f in TRACE_SCHEMA if not f.nullable)

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.row = 0
        self.found: dict[str, list[Any]] = {}
        """check -> [first row, its request_id, rows failing]"""
        self._last_arrival: float | None = None

    def _fail(self, table: pa.Table, mask: pa.Array | np.ndarray, what: str) -> None:
        bad = np.flatnonzero(np.asarray(mask, dtype=bool))
        if not len(bad):
            return
        seen = self.found.get(what)
        if seen is None:
            i = int(bad[0])
            self.found[what] = [self.row + i, table.column("request_id")[i].as_py(), len(bad)]
        else:
            seen[2] += len(bad)

    def add(self, table: pa.Table) -> None:
        try:
            self._check(table)
        finally:
            self.row += table.num_rows

    def _check(self, table: pa.Table) -> None:
        fail = self._fail
        for name in self._NULLS:
            if table.column(name).null_count:
                fail(table, pc.is_null(table.column(name)).to_numpy(zero_copy_only=False), f"{name} is null")
        if any(f"{name} is null" in self.found for name in self._NULLS):
            return  # a null comes first in the checks' order: the rest cannot change the message
        prompt = table.column("prompt_tokens").to_numpy()
        fail(table, prompt < 1, "prompt_tokens must be at least 1")
        output = table.column("output_tokens").to_numpy(zero_copy_only=False)
        fail(table, np.nan_to_num(np.asarray(output, dtype=float), nan=0.0) < 0, "output_tokens is negative")
        arrival = table.column("arrival_s").to_numpy()
        fail(table, ~np.isfinite(arrival) | (arrival < 0), "arrival_s is not a finite, non-negative time")
        if len(arrival):
            before = arrival[0] if self._last_arrival is None else self._last_arrival
            fail(table, np.diff(arrival, prepend=before) < 0,
                 "arrival_s goes back in time (rows are in arrival order)")
            self._last_arrival = float(arrival[-1])
        fail(table, pc.list_value_length(table.column("block_keys")).to_numpy(zero_copy_only=False) < 1,
             "no block keys")
        tokens = table.column("token_ids")
        if tokens.null_count < len(tokens):
            lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
            has = ~np.isnan(np.asarray(lengths, dtype=float))
            fail(table, has & (np.nan_to_num(np.asarray(lengths, dtype=float)) != prompt),
                 "token_ids do not match prompt_tokens")
            flat = pc.list_flatten(tokens)
            if len(flat) and pc.min(flat).as_py() < 0:
                per_row = pc.list_parent_indices(tokens).to_numpy()[np.asarray(pc.less(flat, 0), dtype=bool)]
                mask = np.zeros(len(prompt), dtype=bool)
                mask[per_row] = True
                fail(table, mask, "token_ids holds a negative id")

    _ORDER: ClassVar[tuple[str, ...]] = (
        *(f"{name} is null" for name in _NULLS), "prompt_tokens must be at least 1",
        "output_tokens is negative", "arrival_s is not a finite, non-negative time",
        "arrival_s goes back in time (rows are in arrival order)", "no block keys",
        "token_ids do not match prompt_tokens", "token_ids holds a negative id")

    def done(self) -> None:
        for what in self._ORDER:
            if what in self.found:
                i, rid, count = self.found[what]
                raise InputError(f"row {i + 1} (request_id {rid!r}): {what}"
                                 + (f" (and {count - 1} more rows)" if count > 1 else ""), self.path)


def is_parquet(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"
