"""The request log on disk: append lines, fsync every second, rotate and compress (zstd).

``write`` is called on the proxy's event loop and costs one ``os.write`` of a whole line (the
page cache has it at once, so a crash of the process loses nothing); a background thread
fsyncs the current file every ``fsync_s``, so a crash of the machine loses at most that
much. A file past ``rotate_bytes`` or older than ``rotate_s`` is closed and a new one begun;
the background thread then compresses the old one to ``NAME.jsonl.zst`` (written under a
hidden temporary name, fsync'd, renamed; the ``.jsonl`` is removed last, and a reader that
finds both takes the ``.zst``). Names start with their opening time in UTC, so sorting them by
name is sorting them by time. At start, a ``.jsonl`` left by a crash has a cut last line
trimmed and is compressed like any rotated file.
"""

from __future__ import annotations

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


class LogWriter:
    def __init__(self, folder: Path, *, rotate_bytes: int, rotate_s: float, fsync_s: float = 1.0) -> None:
        self.folder = folder
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.fsync_s = fsync_s
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._retired: list[tuple[int, Path]] = []
        self._compress: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._counter = 0
        self.lines = 0
        self.errors = 0
        leftovers = sorted(p for p in folder.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())
        self._open()
        for p in leftovers:
            self._compress.put(p)
        self._stop = threading.Event()
        self._sync_thread = threading.Thread(target=self._sync_loop, name="kvern-log-fsync", daemon=True)
        self._zstd_thread = threading.Thread(target=self._compress_loop, name="kvern-log-zstd", daemon=True)
        self._sync_thread.start()
        self._zstd_thread.start()

    @property
    def current(self) -> Path:
        return self._path

    def _open(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self._counter += 1
        self._path = self.folder / f"{PREFIX}{stamp}Z-{os.getpid()}-{self._counter:04d}{SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._opened = time.monotonic()
        self._size = 0
        self._dirty = False

    def write(self, line: bytes) -> str:
        """Append one whole line (ending in ``\\n``); returns the file's name."""
        with self._lock:
            if self._size >= self.rotate_bytes:
                self._rotate()
            view = memoryview(line)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self._size += len(line)
            self._dirty = True
            self.lines += 1
            return self._path.name

    def _rotate(self) -> None:
        """Under the lock: retire the current file (the sync thread closes it), open the next."""
        self._retired.append((self._fd, self._path))
        self._open()

    def close(self) -> None:
        """Fsync and close the current file, compress every finished one, stop the threads."""
        self._stop.set()
        self._sync_thread.join()
        with self._lock:
            self._retired.append((self._fd, self._path))
            self._fd = -1
        self._retire()
        self._compress.put(None)
        self._zstd_thread.join()

    # -- background: fsync, time-based rotation, closing -------------------------------------
    def _sync_loop(self) -> None:
        while not self._stop.wait(min(self.fsync_s, 0.25)):
            try:
                self._tick()
            except OSError:
                self.errors += 1

    _last_sync = 0.0

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            fd, dirty = self._fd, self._dirty
            if self._size and now - self._opened >= self.rotate_s:
                self._rotate()
        if dirty and now - self._last_sync >= self.fsync_s * 0.9:
            self._dirty = False
            os.fsync(fd)  # only this thread closes files, so fd is still open
            self._last_sync = now
        self._retire()

    def _retire(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for fd, path in retired:
            os.fsync(fd)
            os.close(fd)
            self._compress.put(path)

    # -- background: compression -----------------------------------------------------------------
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
