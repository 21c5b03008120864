"""Open a request log (or a folder of them) and yield its JSON lines, whatever the compression.

``.gz`` and ``.zst`` are recognized by their magic bytes, not the file name, so a renamed
file still reads. Lines stream in constant memory; progress advances by the compressed bytes
consumed, which is the only size known up front.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from kvern.infra.console import NULL_OUTPUT, Output
from kvern.infra.errors import InputError
from kvern.infra.jsondata import JsonProblem, parse_json

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BINARY_PROBE = 8192
_LOG_KINDS = (".jsonl", ".ndjson", ".json")
_COMPRESSED = (".gz", ".zst")


def log_files(path: Path) -> list[Path]:
    """A log as itself; a folder as its request logs, in name order (``kvern proxy``'s names
    start with their opening time, so that is time order).

    A folder's logs are its non-hidden ``*.jsonl``/``*.ndjson``/``*.json`` files, plain or
    ``.gz``/``.zst``; an empty one (a log just begun) is left out, and of ``X.jsonl`` and
    ``X.jsonl.zst`` side by side (a rotation in progress) only the compressed one is read.
    """
    if not path.is_dir():
        return [path]
    found = {}
    for p in path.iterdir():
        name = p.name
        base = next((name[: -len(c)] for c in _COMPRESSED if name.endswith(c)), name)
        if name.startswith(".") or not base.endswith(_LOG_KINDS) or not p.is_file():
            continue
        found[name] = p
    files = [p for name, p in sorted(found.items())
             if not any(name + c in found for c in _COMPRESSED) and _size(p) > 0]
    if not files:
        raise InputError("no request logs in this folder (*.jsonl, *.jsonl.zst, *.jsonl.gz)", path)
    return files


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:  # compressed and removed since the listing
        return 0


def line_id(path: Path, line: int, multi: bool) -> str:
    """The request id of a line that has none: its line number, and its file's name in a folder."""
    return f"{path.name}:{line}" if multi else str(line)


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line of a log: its 1-based number and its parsed JSON object."""

    number: int
    obj: dict[str, Any]


def _decompressed(raw: IO[bytes]) -> IO[bytes]:
    head = raw.read(4)
    raw.seek(0)
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if head.startswith(_ZSTD_MAGIC):
        return _ZstdReader(raw)  # type: ignore[return-value]
    return raw


class _ZstdReader(io.RawIOBase):
    """Zstandard frames, one after another, as a byte stream; a cut frame raises ``EOFError``.

    zstandard's own ``stream_reader`` ends quietly where a truncated file ends, which would
    turn a cut log into a shorter valid one; gzip raises there, and so does this.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._frame = self._dctx.decompressobj()
        self._in_frame = False
        self._buf = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while self._pos == len(self._buf):
            chunk = self._raw.read(1 << 16)
            if not chunk:
                if self._in_frame:
                    raise EOFError("the file ends inside a zstd frame")
                return 0
            self._buf, self._pos = self._decompress(chunk), 0
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n

    def _decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            self._in_frame = True
            out.append(self._frame.decompress(data))
            data = b""
            if self._frame.eof:
                data = self._frame.unused_data
                self._frame = self._dctx.decompressobj()
                self._in_frame = False
        return b"".join(out)


def _check_not_binary(first: bytes, path: Path) -> None:
    if b"\x00" in first:
        raise InputError("looks like a binary file, not a JSONL request log", path)
    try:
        first.decode("utf-8")
    except UnicodeDecodeError as e:
        # A multi-byte character cut at the probe's end is fine; anything earlier is not text.
        if e.start < len(first) - 4:
            raise InputError("not UTF-8 text; expected a JSONL request log", path) from None


def iter_lines(path: Path, out: Output = NULL_OUTPUT) -> Iterator[Line | InputError]:
    """Yield each non-blank line parsed as a JSON object, or the ``InputError`` that it is.

    Errors about single lines are yielded, not raised, so the caller decides whether to skip
    them (``--skip-invalid``). Errors about the whole file (missing, empty, binary) raise.
    """
    with _open_log(path) as (raw, stream):
        size = os.fstat(raw.fileno()).st_size
        seen_any = False
        with out.progress(f"reading {path.name}", total=size or None) as advance:
            pos = 0
            for number, line in enumerate(_safe_lines(stream, path), start=1):
                if number % 1024 == 0:
                    now = raw.tell()
                    advance(now - pos)
                    pos = now
                item = _item(line, number, path)
                if item is not None:
                    seen_any = True
                    yield item
        if not seen_any:
            raise InputError("empty log: no request lines", path)


@contextlib.contextmanager
def _open_log(path: Path) -> Iterator[tuple[IO[bytes], io.BufferedReader]]:
    """(the file, its decompressed stream) of a log that exists, decompresses and is text; the
    errors about the whole file are raised here, once for every reader."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except IsADirectoryError:
        raise InputError("is a folder, not a request log", path) from None
    with raw:
        try:
            stream = io.BufferedReader(_decompressed(raw))  # type: ignore[arg-type]
            first = stream.peek(_BINARY_PROBE)[:_BINARY_PROBE]
        except (OSError, EOFError, zstandard.ZstdError) as e:
            raise InputError(f"cannot decompress: {e}", path) from None
        _check_not_binary(first, path)
        yield raw, stream


def _item(line: bytes, number: int, path: Path) -> Line | InputError | None:
    """One raw line: None when blank, else its JSON object or the error it is."""
    if number == 1 and line.startswith(codecs.BOM_UTF8):
        line = line[len(codecs.BOM_UTF8):]
    if not line.strip():
        return None
    return _parse(line, number, path)


def read_chunks(path: Path, size: int) -> Iterator[tuple[int, bytes]]:
    """The (decompressed) log as ``(number of the first line, bytes)`` chunks of about ``size``
    bytes, each ending at a line boundary: the shards of a distributed ingest.

    A compressed stream cannot be entered mid-way, so the reader that cuts is this one, in one
    pass; whole-file errors are those of ``iter_lines``, raised when met.
    """
    with _open_log(path) as (_raw, stream):
        number, rest = 1, b""
        while True:
            try:
                block = stream.read(size)
            except (OSError, EOFError, zstandard.ZstdError) as e:
                raise InputError(f"cannot decompress (truncated or corrupt file?): {e}", path) from None
            data = rest + block
            if not block:  # the end: what is left is the last line
                if data:
                    yield number, data
                return
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:  # else one line longer than a chunk: read on
                yield number, data[:cut]
                number += data.count(b"\n", 0, cut)


def chunk_lines(data: bytes, first: int, path: Path) -> Iterator[Line | InputError]:
    """The non-blank lines of one chunk of ``read_chunks``, numbered as in the whole file."""
    for number, line in enumerate(io.BytesIO(data), start=first):
        item = _item(line, number, path)
        if item is not None:
            yield item


def _safe_lines(stream: IO[bytes], path: Path) -> Iterator[bytes]:
    try:
        yield from stream
    except (OSError, EOFError, zstandard.ZstdError) as e:
        what = "read error" if type(e) is OSError else "cannot decompress (truncated or corrupt file?)"
        raise InputError(f"{what}: {e}", path) from None


def _parse(line: bytes, number: int, path: Path) -> Line | InputError:
    try:
        obj = parse_json(line)
    except JsonProblem as e:
        return InputError(str(e), path, number)
    if not isinstance(obj, dict):
        return InputError(f"expected a JSON object, got {type(obj).__name__}", path, number)
    return Line(number, obj)
