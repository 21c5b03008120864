"""Atomic file writes: a temp file in the same folder, fsync, then rename.

An interrupted run therefore leaves either the complete earlier file or none, never a
truncated one (docs/architecture.md §7).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it over ``path``, else remove it."""
    path = Path(path)
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
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_parquet(table: pa.Table, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_tagged_parquet(path: str | Path, key: bytes, what: str) -> tuple[pa.Table, bytes]:
    """Read a Parquet file kvern wrote, with the schema-metadata value under ``key`` that marks it
    as ``what`` (e.g. "kvern trace"); an unreadable or foreign file is an ``InputError``."""
    from kvern.infra.errors import InputError

    try:
        table = pq.read_table(path)
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
