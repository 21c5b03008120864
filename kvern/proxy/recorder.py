"""The request log on disk: append lines, fsync every second, rotate and compress (zstd).

``write`` is called on the proxy's event loop and only queues the line: a writer thread
writes what is queued every 10 ms and fsyncs the file every ``fsync_s``, so a crash loses at
most that much. The event loop never touches the file, because a ``write`` to a file that is
being fsync'd waits for the fsync (for tens of milliseconds on a busy disk), and every request
in flight would wait with it. A file past ``rotate_bytes`` or older than ``rotate_s`` is closed
and a new one begun; a second thread then compresses the old one to ``NAME.jsonl.zst`` (written
under a hidden temporary name, fsync'd, renamed; the ``.jsonl`` is removed last, and a reader
that finds both takes the ``.zst``). Names start with their opening time in UTC, so sorting them
by name is sorting them by time. At start, a ``.jsonl`` left by a crash has a cut last line
trimmed and is compressed like any rotated file.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import zstandard

PREFIX = "kvern-proxy-"
SUFFIX = ".jsonl"
ZST = ".zst"
WRITE_EVERY_S = 0.01
"""The writer thread's beat: a line reaches the page cache within this long of the answer."""


class LogWriter:
    def __init__(self, folder: Path, *, rotate_bytes: int, rotate_s: float, fsync_s: float = 1.0) -> None:
        self.folder = folder
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.fsync_s = fsync_s
        folder.mkdir(parents=True, exist_ok=True)
        self._pending: collections.deque[bytes] = collections.deque()
        self._compress: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._counter = 0
        self.lines = 0
        self.errors = 0
        leftovers = sorted(p for p in folder.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())
        self._open()
        for p in leftovers:
            self._compress.put(p)
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="kvern-log-writer", daemon=True)
        self._zstd = threading.Thread(target=self._compress_loop, name="kvern-log-zstd", daemon=True)
        self._writer.start()
        self._zstd.start()

    @property
    def current(self) -> Path:
        return self._path

    def write(self, line: bytes) -> str:
        """Queue one whole line (ending in a newline) for the writer thread; returns the current file's
        name (the line lands in it or, after a rotation, in a later one)."""
        self._pending.append(line)
        return self._path.name

    def close(self) -> None:
        """Write what is queued, fsync and close the file, compress every finished one."""
        self._stop.set()
        self._writer.join()
        self._compress.put(None)
        self._zstd.join()

    # -- the writer thread: writes, fsyncs, rotates -------------------------------------------
    def _open(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self._counter += 1
        self._path = self.folder / f"{PREFIX}{stamp}Z-{os.getpid()}-{self._counter:04d}{SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._opened = time.monotonic()
        self._size = 0

    def _write_loop(self) -> None:
        last_sync = time.monotonic()
        dirty = False
        while True:
            stopping = self._stop.wait(WRITE_EVERY_S)
            try:
                dirty = self._drain() or dirty
                now = time.monotonic()
                if dirty and (stopping or now - last_sync >= self.fsync_s):
                    os.fsync(self._fd)
                    last_sync, dirty = now, False
                if self._size and now - self._opened >= self.rotate_s:
                    self._rotate()
            except OSError:
                self.errors += 1
            if stopping:
                self._retire()
                return

    def _drain(self) -> bool:
        batch = []
        pending = self._pending
        while pending:
            batch.append(pending.popleft())
        if not batch:
            return False
        for line in batch:
            if self._size >= self.rotate_bytes:
                self._rotate()
            view = memoryview(line)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self._size += len(line)
            self.lines += 1
        return True

    def _rotate(self) -> None:
        self._retire()
        self._open()

    def _retire(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._compress.put(self._path)

    # -- the compression thread ----------------------------------------------------------------
    def _compress_loop(self) -> None:
        while (path := self._compress.get()) is not None:
            try:
                compress(path)
            except OSError:
                self.errors += 1


def compress(path: Path) -> Path | None:
    """``NAME.jsonl`` -> ``NAME.jsonl.zst`` (atomic); an empty file is just removed."""
    _trim_cut_line(path)
    if path.stat().st_size == 0:
        path.unlink()
        return None
    dest = path.with_name(path.name + ZST)
    tmp = path.with_name(f".{path.name}{ZST}.tmp")
    cctx = zstandard.ZstdCompressor(level=3)
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        cctx.copy_stream(src, dst)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, dest)
    _fsync_dir(path.parent)
    path.unlink()
    return dest


def _trim_cut_line(path: Path) -> None:
    """Drop a last line without its newline (a crash mid-write): every kept line is whole."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        pos = size
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            block = f.read(step)
            nl = block.rfind(b"\n")
            if nl >= 0:
                f.truncate(pos - step + nl + 1)
                return
            pos -= step
        f.truncate(0)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
