"""Atomic file writes: a temp file in the same folder, fsync, then rename.

An interrupted run therefore leaves either the complete earlier file or none, never a
truncated one (docs/architecture.md §7). A report folder is written the same way as a whole
(``replaced_folder``): into a fresh staging folder, then moved in with Ctrl-C held off, and the
files of an earlier run that this one did not write are removed, so a folder holds one run.

And no write destroys what it should not: every file a run reads is registered as an input
(``register_input``), and a write onto an input, or onto anything that is not a regular file
(``/dev/null``, a FIFO, a folder), is a ``UsageError`` before anything is written
(``check_target``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

_UMASK = os.umask(0)
os.umask(_UMASK)


_INPUTS: dict[tuple[int, int], str] = {}
"""(device, inode) of every file this process was asked to read -> the name it was given by."""


def register_input(path: str | Path) -> None:
    """``path`` is read by this run: no kvern write may replace it (whatever name it is given)."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        _INPUTS.setdefault((st.st_dev, st.st_ino), str(path))


def check_target(path: str | Path) -> None:
    """Fail unless ``path`` may be written: absent, or a regular file that is not an input."""
    from kvern.infra.errors import UsageError

    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise UsageError(f"{path}: cannot write there ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise UsageError(f"{path}: {what}; kvern writes its outputs as regular files only")
    source = _INPUTS.get((st.st_dev, st.st_ino))
    if source is not None and _same_file(source, st):  # an inode a deleted input left can be reused
        same = "" if os.path.abspath(source) == os.path.abspath(path) else f" (it is {source})"
        raise UsageError(f"{path}: that is an input of this run{same}; kvern never overwrites what it reads")


def is_input(path: str | Path) -> bool:
    """True when ``path`` is a file this run reads."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    source = _INPUTS.get((st.st_dev, st.st_ino))
    return source is not None and _same_file(source, st)


def forget_inputs() -> None:
    """A new run starts (the CLI calls this per command, so one process can run many)."""
    _INPUTS.clear()


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it over ``path``, else remove it."""
    path = Path(path)
    check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a report should be as readable as any file
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def scratch_path(beside: str | Path, tag: str) -> Iterator[Path]:
    """A temporary file beside ``beside`` (its folder, a hidden name), removed when the block
    ends, whatever happens: room for a run's intermediate data on the disk its output goes to."""
    beside = Path(beside)
    fd, tmp = tempfile.mkstemp(prefix=f".{beside.name}.", suffix=f".{tag}.tmp", dir=beside.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_parquet(table: pa.Table, path: str | Path) -> None:
    import pyarrow.parquet as pq  # here, not at the top: every command imports this module at start

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_tagged_parquet(path: str | Path, key: bytes, what: str) -> tuple[pa.Table, bytes]:
    """Read a Parquet file kvern wrote, with the schema-metadata value under ``key`` that marks it
    as ``what`` (e.g. "kvern trace"); an unreadable or foreign file is an ``InputError``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kvern.infra.errors import InputError

    try:
        table = pq.ParquetFile(path).read()  # one file: no dataset layer needed
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", path) from None
    raw = (table.schema.metadata or {}).get(key)
    if raw is None:
        raise InputError(f"a Parquet file, but not a {what} (no {key.decode()} metadata)", path)
    return table, raw


def write_json(obj: Any, path: str | Path) -> None:
    """Deterministic JSON: sorted keys, fixed indent, trailing newline (byte-identical reruns)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
        f.write("\n")


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C back for a few renames: a Ctrl-C during the block is raised when it ends, so
    a second Ctrl-C cannot cut a folder swap in half. (A handler swap, not a signal mask: the
    kernel may hand the signal to any thread.) A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, _frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if pending:
        raise KeyboardInterrupt


@contextlib.contextmanager
def replaced_folder(folder: str | Path, owned: Callable[[str], bool]) -> Iterator[Path]:
    """Yield an empty staging folder (with ``folder``'s name) to write a run's files into.

    On success the staged files replace ``folder``'s (the whole folder at once when it did not
    exist), and every file of ``folder`` that ``owned`` claims (an earlier kvern run's) but this
    run did not write is removed: the folder then holds exactly one run. On an error or Ctrl-C,
    ``folder`` is left as it was. Files ``owned`` does not claim (the user's) are never touched.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        from kvern.infra.errors import UsageError

        raise UsageError(f"{folder}: not a folder; a report is a folder of files")
    parent = Path(os.path.abspath(folder)).parent
    parent.mkdir(parents=True, exist_ok=True)
    name = Path(os.path.abspath(folder)).name or "report"
    try:
        outer = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".kvern-tmp", dir=parent))
    except PermissionError:  # `-o .` under a read-only parent: stage inside the folder itself
        folder.mkdir(parents=True, exist_ok=True)
        outer = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".kvern-tmp", dir=folder))
    try:
        stage = outer / name
        stage.mkdir()
        yield stage
        written = sorted(p.name for p in stage.iterdir())
        for n in written:
            check_target(folder / n)  # every target checked before the first one moves
        with signals_held():
            if not folder.exists():
                os.rename(stage, folder)
            else:
                for n in written:
                    os.replace(stage / n, folder / n)
                remove_stale(folder, set(written), owned)
    finally:
        with signals_held():
            shutil.rmtree(outer, ignore_errors=True)


def remove_stale(folder: str | Path, keep: set[str], owned: Callable[[str], bool]) -> list[str]:
    """Remove the files of ``folder`` that ``owned`` claims and ``keep`` does not name (never an
    input of this run); return their names."""
    removed = []
    for p in sorted(Path(folder).iterdir()):
        if p.name in keep or not owned(p.name) or not p.is_file() or p.is_symlink() or is_input(p):
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p.name)
    return removed
