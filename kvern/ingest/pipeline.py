"""Log file -> canonical trace: read, tokenize + normalize, hash into block keys (docs/architecture.md §1-3).

``load_trace`` is what every command calls: it accepts a raw log, a folder of logs (read in
name order as one log, e.g. ``kvern proxy``'s) or an ingested Parquet, and reuses the ingest
cache, so tokenizing happens once per (input, settings). ``LineConverter`` is the same
conversion one line at a time, for the proxy's live analytics.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kvern.infra.config import Config
from kvern.infra.console import NULL_OUTPUT, Output
from kvern.infra.errors import InputError, KvernError, UsageError
from kvern.infra.executor import Executor, ExecutorSpec, open_executor
from kvern.infra.files import atomic_path, register_input, scratch_path
from kvern.ingest import cache
from kvern.ingest.blocks import hash_id_block_keys, token_block_keys
from kvern.ingest.encode import TemplateError
from kvern.ingest.readers import HASH_ID_FORMATS, Reader, ReadOptions, detect_format, open_reader
from kvern.ingest.readers.common import proxy_skip, proxy_without_prompts
from kvern.ingest.records import Fields, RawRequest
from kvern.ingest.source import Line, chunk_lines, iter_lines, line_id, log_files, read_chunks
from kvern.ingest.trace import (
    BLOCK_IDS,
    ROW_GROUP_VALUES,
    TRACE_SCHEMA,
    IdsDigest,
    Trace,
    TraceFile,
    TraceMeta,
    TraceWriter,
    group_sizes,
    is_parquet,
    read_trace,
)

HASH_IDS = "hash-ids"
"""The tokenizer name recorded for hash-id traces."""
_SHOWN_ERRORS = 5
SPILL_VALUES = ROW_GROUP_VALUES
"""One pass over a log spills its rows in runs of about this many list values."""


def load_trace(path: Path, cfg: Config, *, fmt: str | None = None, skip_invalid: bool = False,
               no_cache: bool = False, no_normalize: bool = False, model: str | None = None,
               out: Output = NULL_OUTPUT, executor: ExecutorSpec | None = None) -> Trace:
    """The canonical trace of ``path``: a Parquet trace as is, a log from the cache or ingested.

    ``no_cache`` re-ingests and refreshes the cache entry. ``executor``: where the shards of
    an ingest run (local processes or Ray); the trace and its cache key do not depend on it.
    The trace is read from its file a batch at a time (``read_trace``): an ingest writes the
    cache entry a row group at a time, and the trace never has to fit in memory.
    """
    path = Path(path)
    if path.is_file() and is_parquet(path):
        return read_trace(path)
    if not path.is_file() and not path.is_dir():
        raise InputError("no such file or folder" if not path.exists() else "not a file", path)
    options = {"format": fmt, "skip_invalid": skip_invalid, "no_normalize": no_normalize, "model": model}
    entry = cache.cache_dir(cfg) / f"{cache.cache_key(path, cfg, options)}.parquet"
    if not no_cache and entry.is_file():
        try:
            return read_trace(entry)
        except InputError:
            out.warn(f"ignoring an unreadable ingest cache entry: {entry.name}")
    runner = None if executor is None else open_executor(executor)
    with contextlib.ExitStack() as stack:
        try:
            target = stack.enter_context(atomic_path(entry))  # renamed to the entry when complete
            cached = True
        except OSError as e:
            out.warn(f"could not write the ingest cache ({e}); continuing without it")
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="kvern-ingest-"))
            target = Path(folder) / entry.name
            cached = False
        ingest_to(path, cfg, target, fmt=fmt, skip_invalid=skip_invalid, no_normalize=no_normalize,
                  model=model, out=out, executor=runner)
        if not cached:
            return read_trace(target)  # kept open: readable after its folder is gone
    return read_trace(entry)


def ingest(path: Path, cfg: Config, *, fmt: str | None = None, skip_invalid: bool = False,
           no_normalize: bool = False, model: str | None = None, out: Output = NULL_OUTPUT,
           executor: Executor | None = None) -> Trace:
    """Read and convert every line of ``path`` (no cache) into a trace in memory, without the
    stored ``block_ids`` (``ingest_to`` writes a file in bounded memory). Bad lines raise, or
    are skipped."""
    with tempfile.TemporaryDirectory(prefix="kvern-ingest-") as folder:
        target = Path(folder) / "trace.parquet"
        meta = ingest_to(path, cfg, target, fmt=fmt, skip_invalid=skip_invalid, no_normalize=no_normalize,
                         model=model, out=out, executor=executor, block_ids=False)
        table = TraceFile(target).read()
    return Trace(table, meta)


def ingest_to(path: Path, cfg: Config, target: Path, *, fmt: str | None = None, skip_invalid: bool = False,
              no_normalize: bool = False, model: str | None = None, out: Output = NULL_OUTPUT,
              executor: Executor | None = None, block_ids: bool = True) -> TraceMeta:
    """Ingest ``path`` into the Parquet trace ``target`` (written in place: the caller makes it
    atomic), in memory bounded by a row group, whatever the size of the log.

    Converted rows are spilled, in runs of the log's order, to a scratch file beside
    ``target`` as they come; only each row's logged time and list lengths stay in memory.
    Once every row is in, the arrival order is known, and the trace is written a row group at
    a time in that order (``_write_ordered``). With an ``executor`` of more than one local
    process, or Ray, a tokenized log is cut into shards converted in parallel
    (``convert_sharded``); the file is the same either way. ``block_ids``: intern each
    model's keys and store them (``TraceMeta.block_ids_digest``), as the ingest cache does.
    """
    if fmt is not None:
        open_reader(fmt, read_options(cfg, skip_invalid))  # an unknown --format fails before reading
    job = ConvertJob(cfg, path, tuple(log_files(path)), fmt=fmt, skip_invalid=skip_invalid,
                     no_normalize=no_normalize, model=model)
    with scratch_path(target, "rows") as spill_path:
        spill = _Spill(spill_path)
        try:
            parts = None
            if executor is not None and (executor.name != "local" or executor.workers > 1):
                parts = convert_sharded(job, executor, out, spill)
            replay = parts is not None
            if parts is None:
                lines = ((i, item) for i, f in enumerate(job.files) for item in iter_lines(f, out))
                parts = [convert_lines(job, lines, out, sink=spill)]
        finally:
            spill.close()
        meta, with_tokens = finish(job, parts, spill.rows, out, replay=replay)
        with scratch_path(target, "ids") as ids_path:
            return _write_ordered(spill, target, meta, with_tokens=with_tokens,
                                  ids_path=ids_path if block_ids else None, out=out)


def read_options(cfg: Config, skip_invalid: bool) -> ReadOptions:
    return ReadOptions(trace_block_size=cfg.ingest.trace_block_size,
                       bailian_block_size=cfg.ingest.bailian_block_size, skip_invalid=skip_invalid)


@dataclass(frozen=True, slots=True)
class ConvertJob:
    """Everything converting lines needs: sent as is to every shard's worker."""

    cfg: Config
    path: Path
    """The log, or the folder of logs."""
    files: tuple[Path, ...]
    """Its files, in the order they are read (``source.log_files``)."""
    fmt: str | None = None
    skip_invalid: bool = False
    no_normalize: bool = False
    model: str | None = None
    decided: tuple[str, int, int] | None = None
    """(format, file index, line): the log's format, detected on that line; lines from there on
    are read as that format even where the converter has not yet seen a line of it (shards
    after the first). None: detect as one sequential pass does."""


@dataclass
class Part:
    """What converting a run of lines gives: rows (unordered) and the facts to merge, in order."""

    table: pa.Table
    """``PART_SCHEMA``: the trace's columns, with the logged ``timestamp_s`` instead of arrival."""
    fmt: str | None
    readers: list[str]
    tokenizers: dict[str, str]
    normalized: bool
    block_size: int
    skipped: int = 0
    skipped_parts: int = 0
    lines: int = 0
    """Non-blank lines seen."""
    unserved: int = 0
    """Proxy records of requests the server did not serve, left out."""
    file: int = 0
    """Index of the part's file in ``ConvertJob.files`` (shards; one pass may span files)."""
    said: list[str] = field(default_factory=list)
    """Messages said once (which tokenizer serves which model), for the driver to repeat."""
    warned: list[str] = field(default_factory=list)
    """The first skipped lines' messages."""
    error: tuple[str, str | None, int | None] | None = None
    """The ``InputError`` (reason, path, line) that stopped this part; set only by shards."""


def convert_lines(job: ConvertJob, items: Iterable[tuple[int, Line | InputError]], out: Output, *,
                  stop_on_error: bool = True, sink: _Spill | None = None) -> Part:
    """Convert ``items`` ((file index, line) of the whole log, or of one shard) in order.

    ``stop_on_error=False`` (shards): the first error ends the part and is returned in it,
    not raised, so that the driver can raise the one that comes first in the log. ``sink``
    (one pass over a whole log): the rows go there in runs of about ``SPILL_VALUES`` list
    values as they are converted, and the part's table stays empty.
    """
    path, fmt, cfg, files = job.path, job.fmt, job.cfg, job.files
    opts = read_options(cfg, job.skip_invalid)
    readers: dict[str, Reader] = {}
    rows = _Rows()
    conv: _Converter | None = None
    skipped = lines = unserved = 0
    warned: list[str] = []
    error: tuple[str, str | None, int | None] | None = None
    for fi, item in items:
        file = files[fi]
        lines += 1
        try:
            if isinstance(item, InputError):
                raise item
            if proxy_skip(item.obj):
                unserved += 1
                continue
            if proxy_without_prompts(item.obj):
                raise InputError("a `kvern proxy --content none` record: it keeps no prompts to analyze "
                                 "(record with --content full or hashes)", file, item.number)
            if conv is None:
                if fmt is None and job.decided is not None and (fi, item.number) >= job.decided[1:]:
                    name = job.decided[0]
                else:
                    name = fmt or detect_format(item.obj, path, item.number)
                conv = _Converter(cfg, name, file, no_normalize=job.no_normalize, model=job.model, out=out)
            elif fmt or conv.hash_ids:
                name = conv.fmt
            else:  # a line of no known shape is parsed as the first format, which names what is missing
                name = detect_format(item.obj, path, item.number, default=conv.fmt)
                if name in HASH_ID_FORMATS:
                    raise InputError(f"a {name} line in a {conv.fmt} log; one file holds one kind of trace",
                                     file, item.number)
            reader = readers.get(name)
            if reader is None:
                reader = readers[name] = open_reader(name, opts)
            conv.path = file
            req = reader.parse(Fields(item.obj, file, item.number))
            if req.request_id is None:
                req.request_id = line_id(file, req.line, len(files) > 1)
            rows.add(conv.convert(req))
            if sink is not None and rows.values >= SPILL_VALUES:
                sink.add(sink.runs_count, rows.table(with_tokens=not conv.hash_ids))
                rows = _Rows()
        except InputError as e:
            if not job.skip_invalid:
                if stop_on_error:
                    raise
                error = (e.reason, e.path, e.line)
                break
            skipped += 1
            if skipped <= _SHOWN_ERRORS:
                out.warn(f"skipped {e.message}")
                warned.append(f"skipped {e.message}")
    table = rows.table(with_tokens=conv is not None and not conv.hash_ids)
    if sink is not None:
        sink.add(sink.runs_count, table)
        table = PART_SCHEMA.empty_table()
    return Part(table,
                None if conv is None else conv.fmt, list(readers),
                {} if conv is None else conv.tokenizer_names, conv is not None and conv.normalized,
                0 if conv is None else conv.block_size, skipped,
                0 if conv is None else conv.skipped_parts, lines, unserved=unserved, warned=warned,
                error=error)


def finish(job: ConvertJob, parts: Sequence[Part], rows: int, out: Output, *, replay: bool
           ) -> tuple[TraceMeta, bool]:
    """The trace's facts from the parts of a log, in file order (one part when read in one
    pass; their ``rows`` rows are in the spill), and whether it keeps token ids. The first
    error of the log raises here, as do a log without a valid line and an empty file.

    ``replay``: say the parts' messages here (shards ran where nobody could see them).
    """
    path = job.path
    seen = [0] * len(job.files)
    for k, part in enumerate(parts):
        if part.error is not None:
            reason, where, line = part.error
            raise InputError(reason, where, line)
        seen[part.file] += part.lines
        if replay and (k + 1 == len(parts) or parts[k + 1].file != part.file) and not seen[part.file]:
            raise InputError("empty log: no request lines", job.files[part.file])  # as one pass says
    if replay and 0 in seen:  # a file with no shard at all (0 bytes)
        raise InputError("empty log: no request lines", job.files[seen.index(0)])
    skipped = sum(p.skipped for p in parts)
    if replay:
        for part in parts:
            for message in part.said:
                out.once(message)
        for message in [m for p in parts for m in p.warned][:_SHOWN_ERRORS]:
            out.warn(message)
    fmts = [p.fmt for p in parts if p.fmt is not None]
    if not fmts or rows == 0:
        raise InputError(f"no valid request lines ({skipped} skipped)", path)
    if skipped:
        out.warn(f"skipped {skipped} invalid line(s) of {path.name} (--skip-invalid)")
    unserved = sum(p.unserved for p in parts)
    if unserved:
        out.info(f"left out {unserved} proxy record(s) of requests the server did not serve")
    skipped_parts = sum(p.skipped_parts for p in parts)
    if skipped_parts:
        out.warn(f"dropped {skipped_parts} non-text content part(s) (--skip-invalid)")
    # Request-body formats may mix in one log (a proxy logs chat and completions side by side).
    readers = list(dict.fromkeys(name for p in parts for name in p.readers))
    tokenizers = {k: v for p in parts for k, v in p.tokenizers.items()}
    meta = TraceMeta(block_size=next(p.block_size for p in reversed(parts) if p.fmt is not None),
                     source=path.name, format="+".join(readers),
                     tokenizers=dict(sorted(tokenizers.items())),
                     normalized=any(p.normalized for p in parts), skipped_lines=skipped)
    return meta, fmts[0] not in HASH_ID_FORMATS


def with_block_sizes(cfg: Config, *, block_size: int | None = None,
                     trace_block_size: int | None = None) -> Config:
    """``cfg`` with the block-size flags (``--block-size``, ``--trace-block-size``) applied."""
    update = {}
    for flag, key, value in (("--block-size", "block_size", block_size),
                             ("--trace-block-size", "trace_block_size", trace_block_size)):
        if value is not None:
            if value <= 0:
                raise UsageError(f"{flag} must be a positive number of tokens, got {value}")
            update[key] = value
    if not update:
        return cfg
    return cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update=update)})


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """The ingest flags of every command that loads a trace (``--format``, ``--model``, …)."""

    fmt: str | None = None
    skip_invalid: bool = False
    no_cache: bool = False
    no_normalize: bool = False
    model: str | None = None
    block_size: int | None = None
    """``--block-size``: tokens per block for tokenized logs (default ``ingest.block_size``)."""
    trace_block_size: int | None = None
    """``--trace-block-size``: tokens per hash id of a Mooncake trace."""
    executor: ExecutorSpec | None = None
    """``--executor``/``--ray-address``: where an ingest's shards run (None: one local pass)."""

    def config(self, cfg: Config) -> Config:
        """``cfg`` with this load's block sizes applied."""
        return with_block_sizes(cfg, block_size=self.block_size, trace_block_size=self.trace_block_size)

    def load(self, path: Path, cfg: Config, out: Output = NULL_OUTPUT, *,
             normalize: bool | None = None) -> Trace:
        """``load_trace`` with these flags; ``normalize`` overrides ``--no-normalize``."""
        register_input(path)
        return load_trace(path, self.config(cfg), fmt=self.fmt, skip_invalid=self.skip_invalid,
                          no_cache=self.no_cache,
                          no_normalize=self.no_normalize if normalize is None else not normalize,
                          model=self.model, out=out, executor=self.executor)


# -- shards: distributed ingest (docs/scale-out.md) ----------------------------------------
#
# A log cut into shards at line boundaries, converted in parallel. Why the trace is
# byte-identical to a one-pass ingest, whatever the number of workers:
#
# * The driver reads the log once, a folder's files in turn (decompressing ``.gz``/``.zst`` as
#   it goes: a compressed stream cannot be entered mid-way), and cuts each file into shards of
#   about ``executor.shard_mb`` at line boundaries, counting newlines, so each shard knows the
#   number of its first line in its file and errors still name ``file:line``.
# * The log's format is what a one-pass ingest would detect: the driver finds the first line
#   of a known shape before cutting, and every shard reads from that line on as that format.
# * Each worker runs the same conversion (``convert_lines``: readers, model mapping,
#   templates, normalization, the segment-cached encoder, block keys) and returns its rows in
#   log order with the logged timestamps. The driver joins the parts in shard order and only
#   then fills missing timestamps and sorts by arrival (a shard's first line may take its time
#   from the shard before).
# * Without ``--skip-invalid`` the first error in the file wins: a shard stops at its first bad
#   line, and the driver raises the error of the earliest failed shard once every shard before
#   it is in, cancelling the rest.
#
# Hash-id traces (Mooncake, Bailian, the proxy's hashes-only records) are not sharded: a
# reader may chain a request to the ones before it (Bailian), and there is nothing slow to
# spread, as they carry no text to tokenize.

_MB = 1 << 20


@dataclass(frozen=True, slots=True)
class Shard:
    file: int
    """Index in ``ConvertJob.files``."""
    first_line: int
    data: bytes
    error: tuple[str, str | None, int | None] | None = None
    """Where the log cannot be read on (a cut stream): the error, in its place in the log."""


class _Recorder(Output):
    """A worker's ``Output``: keeps the messages said once, for the driver to repeat."""

    def __init__(self) -> None:
        super().__init__(silent=True)
        self.said: list[str] = []

    def once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self.said.append(message)


def convert_shard(job: ConvertJob, shard: Shard) -> Part:
    """One shard's rows (the task a worker runs; pure: the same shard gives the same part)."""
    if shard.error is not None:
        return Part(PART_SCHEMA.empty_table(), None, [], {}, False, 0, file=shard.file, error=shard.error)
    rec = _Recorder()
    path = job.files[shard.file]
    lines = ((shard.file, item) for item in chunk_lines(shard.data, shard.first_line, path))
    part = convert_lines(job, lines, rec, stop_on_error=False)
    part.said, part.file = rec.said, shard.file
    return part


def decide_format(job: ConvertJob) -> tuple[str, int, int] | None:
    """(format, file index, line) a one-pass ingest would settle on: the first line of a known
    shape. None when there is none, or a file breaks first: one pass then meets every error in
    order."""
    try:
        for fi, file in enumerate(job.files):
            for item in iter_lines(file):
                if isinstance(item, Line) and not (proxy_skip(item.obj) or proxy_without_prompts(item.obj)):
                    try:
                        return detect_format(item.obj, job.path, item.number), fi, item.number
                    except InputError:
                        continue
    except InputError:
        return None
    return None


def _shards(job: ConvertJob, size: int) -> Iterator[Shard]:
    """Every file's shards in log order; a file that cannot be read on ends the log there."""
    for fi, file in enumerate(job.files):
        try:
            for first, data in read_chunks(file, size):
                yield Shard(fi, first, data)
        except InputError as e:
            yield Shard(fi, 0, b"", (e.reason, e.path, e.line))
            return


def convert_sharded(job: ConvertJob, executor: Executor, out: Output, spill: _Spill) -> list[Part] | None:
    """The parts of ``job``'s log in log order, converted on ``executor``, their rows in
    ``spill`` (each part's as it arrives, whatever the order: a part's rows are never held
    waiting for the shards before it); None where the log is not sharded (a hash-id trace,
    or no line of a known shape: one pass names the errors)."""
    decided = decide_format(job) if job.fmt is None else None
    fmt = job.fmt or (decided[0] if decided else None)
    if fmt is None or fmt in HASH_ID_FORMATS:
        return None
    if job.fmt is None:
        job = replace(job, decided=decided)
    parts: dict[int, Part] = {}
    results = executor.map(convert_shard, _shards(job, max(1, int(job.cfg.executor.shard_mb * _MB))),
                           shared=job)
    ready = 0
    with out.progress(f"ingesting {job.path.name} on {executor.name} ({executor.workers} workers)",
                      None) as advance:
        try:
            for i, part in results:
                spill.add(i, part.table)
                part.table = PART_SCHEMA.empty_table()
                parts[i] = part
                advance(1)
                while ready in parts and parts[ready].error is None:
                    ready += 1
                if ready in parts:  # an error with every shard before it in: it is the first
                    return [parts[j] for j in range(ready + 1)]
        finally:
            results.close()  # type: ignore[attr-defined]
    return [parts[j] for j in range(len(parts))]


# -- one request -> one row ----------------------------------------------------------------

@dataclass(slots=True)
class _Row:
    request_id: str
    timestamp_s: float | None
    model: str
    session_id: str | None
    prompt_tokens: int
    output_tokens: int | None
    block_keys: list[int]
    token_ids: np.ndarray | None


class _Converter:
    """Turns a ``RawRequest`` into a row: picks the model's tokenizer, normalizes, hashes."""

    def __init__(self, cfg: Config, fmt: str, path: Path, *, no_normalize: bool, model: str | None,
                 out: Output) -> None:
        self.cfg = cfg
        self.fmt = fmt
        self.path = path
        self.no_normalize = no_normalize
        self.default_model = model or cfg.ingest.hash_trace_model
        self.out = out
        self.hash_ids = fmt in HASH_ID_FORMATS
        self.block_size = 0 if self.hash_ids else cfg.ingest.block_size
        self.tokenizer_names: dict[str, str] = {}
        self.normalized = False
        self.skipped_parts = 0
        self._encoders: dict[str, Any] = {}

    def convert(self, req: RawRequest) -> _Row:
        model = req.model or self.default_model
        if self.hash_ids:
            assert req.hash_ids is not None and req.input_length is not None and req.block_size
            self.block_size = req.block_size  # one reader per file: the same on every line
            self.tokenizer_names.setdefault(model, HASH_IDS)
            keys = hash_id_block_keys(model, req.hash_ids)
            return self._row(req, model, req.input_length, keys, None)
        try:
            ids = self._encoder(model, req.line).encode(req)
        except TemplateError as e:
            raise InputError(str(e), self.path, req.line) from None
        self.skipped_parts += req.skipped_parts
        return self._row(req, model, len(ids), token_block_keys(model, ids, self.block_size), ids)

    def _row(self, req: RawRequest, model: str, prompt_tokens: int, keys: list[int],
             ids: np.ndarray | None) -> _Row:
        if prompt_tokens == 0:
            raise InputError("empty prompt (0 tokens)", self.path, req.line)
        return _Row(req.request_id if req.request_id is not None else str(req.line),
                    req.timestamp_s, model, req.session_id, prompt_tokens, req.output_tokens, keys, ids)

    def _encoder(self, model: str, line: int) -> Any:
        enc = self._encoders.get(model)
        if enc is None:
            from kvern.ingest.encode import RequestEncoder
            from kvern.ingest.normalize import Normalizer
            from kvern.ingest.tokenizer import tokenizer_for_model

            try:
                name, tok = tokenizer_for_model(self.cfg, model)
            except KvernError as e:
                raise InputError(e.message, self.path, line) from None
            rules = [] if self.no_normalize else self.cfg.rules_for(model)
            self.normalized = self.normalized or bool(rules)
            self.out.once(f"model {model}: tokenizer {name}"
                          + (f", {len(rules)} normalization rule(s)" if rules else ""))
            enc = RequestEncoder(tok, Normalizer(rules))
            self._encoders[model] = enc
            self.tokenizer_names[model] = name
        return enc


Row = _Row
"""One converted request: what a trace row is made of."""


class LineConverter:
    """Request-body lines one at a time through ingest's own readers and converter.

    For ``kvern proxy``'s live analytics: the same formats, chat template, normalization and
    block keys as ``ingest``, so its predictions and a later ``kvern ingest`` of its log agree.
    """

    def __init__(self, cfg: Config, source: Path, *, out: Output = NULL_OUTPUT) -> None:
        self._opts = ReadOptions(trace_block_size=cfg.ingest.trace_block_size,
                                 bailian_block_size=cfg.ingest.bailian_block_size)
        self._readers: dict[str, Reader] = {}
        self._conv = _Converter(cfg, "openai-chat", source, no_normalize=False, model=None, out=out)
        self.source = source

    @property
    def block_size(self) -> int:
        return self._conv.block_size

    def row(self, obj: dict[str, Any], line: int) -> Row:
        """The row of one line; ``InputError`` names what is wrong with it."""
        name = detect_format(obj, self.source, line)
        if name in HASH_ID_FORMATS:
            raise InputError("a hash-id line, not a request body", self.source, line)
        reader = self._readers.get(name)
        if reader is None:
            reader = self._readers[name] = open_reader(name, self._opts)
        return self._conv.convert(reader.parse(Fields(obj, self.source, line)))

    def tokenizer(self, model: str, line: int = 0) -> Any:
        """The tokenizer of ``model`` (to decode hot prefixes)."""
        return self._conv._encoder(model, line).tokenizer


# -- rows -> Arrow table ---------------------------------------------------------------------

@dataclass
class _Rows:
    rows: list[_Row] = field(default_factory=list)
    values: int = 0
    """Block keys and token ids held (what a run spilled at once is sized by)."""

    @property
    def n(self) -> int:
        return len(self.rows)

    def add(self, row: _Row) -> None:
        self.rows.append(row)
        self.values += len(row.block_keys) + (0 if row.token_ids is None else len(row.token_ids))

    def table(self, *, with_tokens: bool) -> pa.Table:
        """The rows in log order (``PART_SCHEMA``); ``_ordered`` puts them in arrival order."""
        rows = self.rows
        key_lens = np.fromiter((len(r.block_keys) for r in rows), dtype=np.int64, count=len(rows))
        key_off = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum(key_lens, out=key_off[1:])
        flat_keys = np.fromiter((k for r in rows for k in r.block_keys), dtype=np.uint64,
                                count=int(key_off[-1]))
        if with_tokens and rows:
            tok_off = np.zeros(len(rows) + 1, dtype=np.int32)
            np.cumsum([len(r.token_ids) for r in rows], out=tok_off[1:])  # type: ignore[arg-type]
            flat = np.concatenate([r.token_ids for r in rows]).astype(np.int32)  # type: ignore[misc]
            token_col = pa.ListArray.from_arrays(pa.array(tok_off), pa.array(flat))
        else:
            token_col = pa.nulls(len(rows), pa.list_(pa.int32()))
        return pa.table(
            {
                "request_id": pa.array([r.request_id for r in rows], pa.string()),
                "timestamp_s": pa.array([r.timestamp_s for r in rows], pa.float64()),
                "model": pa.array([r.model for r in rows], pa.string()),
                "session_id": pa.array([r.session_id for r in rows], pa.string()),
                "prompt_tokens": pa.array([r.prompt_tokens for r in rows], pa.int32()),
                "output_tokens": pa.array([r.output_tokens for r in rows], pa.int32()),
                "block_keys": pa.ListArray.from_arrays(pa.array(key_off), pa.array(flat_keys, pa.uint64())),
                "token_ids": token_col,
            },
            schema=PART_SCHEMA,
        )


PART_SCHEMA = pa.schema([pa.field("timestamp_s", pa.float64()) if f.name == "arrival_s" else f
                         for f in TRACE_SCHEMA])


# -- the spill, then the trace in arrival order ---------------------------------------------
#
# Rows come in log order (a shard's, or a run of one pass's), but the trace is in arrival
# order, and a row's arrival may depend on a row after it (the earliest logged time; a line
# without a time takes the one before it, which may sit in another shard). So every row goes
# first to a scratch Parquet file beside the output (the spill), a run per row group, in the
# order runs arrive; only per-row scalars stay in memory. Then the arrival order is computed,
# and the trace is written a row group at a time in that order, each group gathered from the
# spill's row groups that hold its rows. A log in time order (the usual case) reads each spill
# group about once; a log far out of order reads a spill group again for every output group
# that needs one of its rows (slower, never more memory).


class _Spill:
    """Converted rows (``PART_SCHEMA``) in a scratch Parquet file, one row group per run, in any
    order; per row, what ordering them needs: the logged time, and its lists' lengths."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self.runs: dict[int, tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        """key (log order) -> (first spill row, logged time (NaN: none), has a time, blocks, token ids)"""
        self._writer: Any = None

    @property
    def runs_count(self) -> int:
        return len(self.runs)

    def add(self, key: int, table: pa.Table) -> None:
        """The rows of run ``key`` (runs sort by key into log order)."""
        import pyarrow.parquet as pq

        n = table.num_rows
        col = table.column("timestamp_s")
        known = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        logged = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        blocks = pc.list_value_length(table.column("block_keys")).to_numpy(zero_copy_only=False)
        tokens = pc.list_value_length(table.column("token_ids")).to_numpy(zero_copy_only=False)
        tokens = np.nan_to_num(np.asarray(tokens, dtype=np.float64), nan=0.0).astype(np.int64)
        self.runs[key] = (self.rows, logged, known, np.asarray(blocks, dtype=np.int64), tokens)
        if n:
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.path, PART_SCHEMA, compression="zstd")
            self._writer.write_table(table.cast(PART_SCHEMA), row_group_size=n)
            self.rows += n

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def log_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per row in log order: (spill row, logged time, has one, blocks, token ids)."""
        runs = [self.runs[k] for k in sorted(self.runs)]
        where = np.concatenate([np.arange(r[0], r[0] + len(r[1]), dtype=np.int64) for r in runs])
        logged, known, blocks, tokens = (np.concatenate([r[j] for r in runs]) for j in range(1, 5))
        return where, logged, known, blocks, tokens


class _SpillReader:
    """Rows of the spill, any of them in any order, a row group at a time (the last one read
    is kept: consecutive output groups of a log in time order read the same spill group)."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self._pf = pq.ParquetFile(path)
        md = self._pf.metadata
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._kept: tuple[int, tuple[str, ...], pa.Table] | None = None

    def _group(self, g: int, columns: tuple[str, ...]) -> pa.Table:
        if self._kept is None or self._kept[:2] != (g, columns):
            self._kept = None  # the one held goes before the next is read
            self._kept = (g, columns, self._pf.read_row_group(g, columns=list(columns)))
        return self._kept[2]

    def take(self, rows: np.ndarray, columns: Sequence[str]) -> pa.Table:
        """The spill's ``rows``, in that order."""
        cols = tuple(columns)
        groups = np.searchsorted(self._starts, rows, side="right") - 1
        pieces, placed = [], []
        for g in np.unique(groups):
            sel = np.flatnonzero(groups == g)
            pieces.append(self._group(int(g), cols).take(pa.array(rows[sel] - self._starts[g])))
            placed.append(sel)
        table = pa.concat_tables(pieces) if len(pieces) != 1 else pieces[0]
        if len(pieces) > 1:
            back = np.empty(len(rows), dtype=np.int64)
            back[np.concatenate(placed)] = np.arange(len(rows))
            table = table.take(pa.array(back))
        return table


def _arrival(logged: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the arrival order of log-ordered rows; each one's arrival time, in that order).

    Arrival: the log's timestamps relative to the earliest; a line without one takes the time
    of the line before (0 gap; the first known time before any), so a log with no timestamps
    keeps its line order at t=0. The whole log's times are needed for this (a shard's first
    line may take its time from the shard before), so it runs once every row is in.
    """
    if known.any():
        first = int(np.argmax(known))
        last_known = np.maximum.accumulate(np.where(known, np.arange(len(known)), first))
        ts = logged[last_known]
    else:
        ts = np.zeros(len(known))
    order = np.argsort(ts, kind="stable")
    return order, ts[order] - ts[order[0]]


def _write_ordered(spill: _Spill, target: Path, meta: TraceMeta, *, with_tokens: bool,
                   ids_path: Path | None, out: Output) -> TraceMeta:
    """Write the spilled rows to ``target`` in arrival order, a row group at a time
    (``TraceWriter``); the same file whatever the runs were. ``ids_path``: a scratch file for
    the stored block ids, which are interned first, in one pass over the block keys in
    arrival order (each model's keys dense in first-seen order, as interning the whole column
    gives), because their digest is part of the file's metadata, which comes first."""
    where, logged, known, blocks, tokens = spill.log_order()
    order, arrival = _arrival(logged, known)
    rows = where[order]
    blocks = blocks[order]
    values = blocks * (2 if ids_path is not None else 1) + (tokens[order] if with_tokens else 0)
    sizes, (rest, _) = group_sizes(values)
    bounds = np.concatenate([[0], np.cumsum([*sizes, rest] if rest else sizes)]).astype(np.int64)
    groups = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    reader = _SpillReader(spill.path)
    with out.progress(f"writing the trace ({len(rows):,} requests in arrival order)",
                      len(groups) * (2 if ids_path is not None else 1)) as advance:
        if ids_path is not None:
            meta = replace(meta, block_ids_digest=_intern_to(reader, rows, blocks, groups, ids_path, advance))
        with TraceWriter(target, meta, block_ids=ids_path is not None) as writer, \
                contextlib.ExitStack() as stack:
            ids_file = None if ids_path is None else stack.enter_context(open(ids_path, "rb"))
            for a, b in groups:
                table = reader.take(rows[a:b], PART_SCHEMA.names)
                if not with_tokens:
                    table = table.set_column(7, "token_ids", pa.nulls(b - a, pa.list_(pa.int32())))
                table = table.set_column(1, "arrival_s", pa.array(arrival[a:b], pa.float64()))
                table = table.cast(TRACE_SCHEMA)
                if ids_file is not None:
                    offsets = np.zeros(b - a + 1, dtype=np.int32)
                    np.cumsum(blocks[a:b], out=offsets[1:])
                    flat = np.fromfile(ids_file, dtype=np.int32, count=int(offsets[-1]))
                    table = table.append_column(BLOCK_IDS, pa.ListArray.from_arrays(pa.array(offsets),
                                                                                    pa.array(flat)))
                writer.write(table)
                advance(1)
    return meta


def _intern_to(reader: _SpillReader, rows: np.ndarray, blocks: np.ndarray, groups: list[tuple[int, int]],
               ids_path: Path, advance: Any) -> str:
    """Intern the block keys of ``rows`` (arrival order) per model into ``ids_path`` (flat
    int32); return the ``IdsDigest`` of the trace with them, computed as they go."""
    from kvern.ingest.stream import Interner

    digest = IdsDigest()
    interners: dict[str, Interner] = {}
    with open(ids_path, "wb") as f:
        for a, b in groups:
            table = reader.take(rows[a:b], ["model", "block_keys"])
            keys = np.ascontiguousarray(pc.list_flatten(table.column(1)).to_numpy(zero_copy_only=False),
                                        dtype=np.uint64)
            encoded = pc.dictionary_encode(table.column(0)).combine_chunks()
            value_code = np.repeat(encoded.indices.to_numpy(zero_copy_only=False), blocks[a:b])
            ids = np.empty(len(keys), dtype=np.int32)
            for code, model in enumerate(encoded.dictionary.to_pylist()):
                sel = value_code == code
                ids[sel] = interners.setdefault(model, Interner()).intern(keys[sel])
            ids.tofile(f)
            digest.add_keys(blocks[a:b], keys)
            digest.add_ids(blocks[a:b], ids)
            advance(1)
    return digest.hexdigest()


__all__ = ["HASH_IDS", "PART_SCHEMA", "ConvertJob", "LineConverter", "LoadOptions", "Part", "Row", "Shard",
           "convert_lines",
           "convert_shard", "convert_sharded", "finish", "ingest", "ingest_to", "load_trace", "read_options",
           "with_block_sizes"]
