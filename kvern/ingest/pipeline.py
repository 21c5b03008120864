"""Log file -> canonical trace: read, tokenize + normalize, hash into block keys (docs/architecture.md §1-3).

``load_trace`` is what every command calls: it accepts a raw log, a folder of logs (read in
name order as one log, e.g. ``kvern proxy``'s) or an ingested Parquet, and reuses the ingest
cache, so tokenizing happens once per (input, settings). ``LineConverter`` is the same
conversion one line at a time, for the proxy's live analytics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from kvern.infra.config import Config
from kvern.infra.console import NULL_OUTPUT, Output
from kvern.infra.errors import InputError, KvernError, UsageError
from kvern.infra.files import register_input
from kvern.ingest import cache
from kvern.ingest.blocks import hash_id_block_keys, token_block_keys
from kvern.ingest.encode import TemplateError
from kvern.ingest.readers import HASH_ID_FORMATS, Reader, ReadOptions, detect_format, open_reader
from kvern.ingest.readers.common import proxy_skip, proxy_without_prompts
from kvern.ingest.records import Fields, RawRequest
from kvern.ingest.source import iter_lines, line_id, log_files
from kvern.ingest.stream import with_block_ids
from kvern.ingest.trace import TRACE_SCHEMA, Trace, TraceMeta, is_parquet, read_trace, write_trace

HASH_IDS = "hash-ids"
"""The tokenizer name recorded for hash-id traces."""
_SHOWN_ERRORS = 5


def load_trace(path: Path, cfg: Config, *, fmt: str | None = None, skip_invalid: bool = False,
               no_cache: bool = False, no_normalize: bool = False, model: str | None = None,
               out: Output = NULL_OUTPUT) -> Trace:
    """The canonical trace of ``path``: a Parquet trace as is, a log from the cache or ingested.

    ``no_cache`` re-ingests and refreshes the cache entry.
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
    trace = with_block_ids(ingest(path, cfg, fmt=fmt, skip_invalid=skip_invalid, no_normalize=no_normalize,
                                  model=model, out=out))
    try:
        write_trace(trace, entry)
    except OSError as e:
        out.warn(f"could not write the ingest cache ({e}); continuing without it")
    return trace


def ingest(path: Path, cfg: Config, *, fmt: str | None = None, skip_invalid: bool = False,
           no_normalize: bool = False, model: str | None = None, out: Output = NULL_OUTPUT) -> Trace:
    """Read and convert every line of ``path`` (no cache). Bad lines raise, or are skipped."""
    opts = ReadOptions(trace_block_size=cfg.ingest.trace_block_size,
                       bailian_block_size=cfg.ingest.bailian_block_size, skip_invalid=skip_invalid)
    if fmt is not None:
        open_reader(fmt, opts)  # an unknown --format fails before reading
    readers: dict[str, Reader] = {}
    rows = _Rows()
    conv: _Converter | None = None
    skipped = unserved = 0
    files = log_files(path)
    for file, item in ((f, i) for f in files for i in iter_lines(f, out)):
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
                name = fmt or detect_format(item.obj, path, item.number)
                conv = _Converter(cfg, name, file, no_normalize=no_normalize, model=model, out=out)
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
        except InputError as e:
            if not skip_invalid:
                raise
            skipped += 1
            if skipped <= _SHOWN_ERRORS:
                out.warn(f"skipped {e.message}")
    if conv is None or rows.n == 0:
        raise InputError(f"no valid request lines ({skipped} skipped)", path)
    if skipped:
        out.warn(f"skipped {skipped} invalid line(s) of {path.name} (--skip-invalid)")
    if unserved:
        out.info(f"left out {unserved} proxy record(s) of requests the server did not serve")
    if conv.skipped_parts:
        out.warn(f"dropped {conv.skipped_parts} non-text content part(s) (--skip-invalid)")
    # Request-body formats may mix in one log (a proxy logs chat and completions side by side).
    meta = TraceMeta(block_size=conv.block_size, source=path.name, format="+".join(readers),
                     tokenizers=dict(sorted(conv.tokenizer_names.items())), normalized=conv.normalized,
                     skipped_lines=skipped)
    return Trace(rows.table(with_tokens=conv.fmt not in HASH_ID_FORMATS), meta)


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
                          model=self.model, out=out)


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

    @property
    def n(self) -> int:
        return len(self.rows)

    def add(self, row: _Row) -> None:
        self.rows.append(row)

    def table(self, *, with_tokens: bool) -> pa.Table:
        rows = self.rows
        # Arrival: the log's timestamps relative to the earliest; a line without one takes the
        # time of the line before (0 gap; the first known time before any), so a log with no
        # timestamps keeps its line order at t=0.
        ts = np.zeros(len(rows))
        last = next((r.timestamp_s for r in rows if r.timestamp_s is not None), 0.0)
        for i, r in enumerate(rows):
            last = r.timestamp_s if r.timestamp_s is not None else last
            ts[i] = last
        order = np.argsort(ts, kind="stable")
        rows = [rows[i] for i in order]
        arrival = ts[order] - ts[order[0]]
        key_lens = np.fromiter((len(r.block_keys) for r in rows), dtype=np.int64, count=len(rows))
        key_off = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum(key_lens, out=key_off[1:])
        flat_keys = np.fromiter((k for r in rows for k in r.block_keys), dtype=np.uint64,
                                count=int(key_off[-1]))
        if with_tokens:
            tok_off = np.zeros(len(rows) + 1, dtype=np.int32)
            np.cumsum([len(r.token_ids) for r in rows], out=tok_off[1:])  # type: ignore[arg-type]
            flat = np.concatenate([r.token_ids for r in rows]).astype(np.int32)  # type: ignore[misc]
            token_col = pa.ListArray.from_arrays(pa.array(tok_off), pa.array(flat))
        else:
            token_col = pa.nulls(len(rows), pa.list_(pa.int32()))
        return pa.table(
            {
                "request_id": pa.array([r.request_id for r in rows], pa.string()),
                "arrival_s": pa.array(arrival, pa.float64()),
                "model": pa.array([r.model for r in rows], pa.string()),
                "session_id": pa.array([r.session_id for r in rows], pa.string()),
                "prompt_tokens": pa.array([r.prompt_tokens for r in rows], pa.int32()),
                "output_tokens": pa.array([r.output_tokens for r in rows], pa.int32()),
                "block_keys": pa.ListArray.from_arrays(pa.array(key_off), pa.array(flat_keys)),
                "token_ids": token_col,
            },
            schema=TRACE_SCHEMA,
        )


__all__ = ["HASH_IDS", "LineConverter", "LoadOptions", "Row", "ingest", "load_trace", "with_block_sizes"]
