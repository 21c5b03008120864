"""The ingest cache: one Parquet trace per (input content, ingest settings).

Tokenizing is the slow part of every run, so an ingested trace is kept under a key made of
the input file's digest and every setting that can change a row: tokenizers (with a digest of
local tokenizer files), normalization rules, block sizes, format and model options. Any change
gives a new key; a stale entry is never reused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import xxhash

from kvern.infra.config import Config

CACHE_ENV = "KVERN_INGEST_CACHE"
INGEST_VERSION = 2
"""Bump when ingest semantics change, so old cache entries stop matching."""

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json")


def cache_dir(cfg: Config) -> Path:
    """``$KVERN_INGEST_CACHE``, else ``ingest.cache_dir``, else ``~/.cache/kvern/ingest``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    if cfg.ingest.cache_dir:
        return Path(cfg.ingest.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kvern" / "ingest"


def file_digest(path: Path) -> str:
    """Digest of a log's bytes; of a folder, of its logs' names and bytes (``source.log_files``)."""
    from kvern.ingest.source import log_files

    h = xxhash.xxh3_128()
    folder = path.is_dir()
    for file in log_files(path):
        if folder:
            h.update(file.name.encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def tokenizer_identity(name: str | None) -> str | None:
    """What a tokenizer name stands for: a local folder's file digest, or the name itself."""
    if name is None:
        return None
    from kvern.ingest.tokenizer import BUILTIN, builtin_identity

    if name in BUILTIN:
        return builtin_identity(name)
    folder = Path(name).expanduser()
    if folder.is_dir():
        h = xxhash.xxh3_128()
        for fname in _TOKENIZER_FILES:
            p = folder / fname
            if p.is_file():
                h.update(fname.encode())
                h.update(p.read_bytes())
        return f"{name}@{h.hexdigest()}"
    return name


def cache_key(path: Path, cfg: Config, options: dict[str, Any]) -> str:
    settings = {
        "version": INGEST_VERSION,
        "file": path.name,
        "digest": file_digest(path),
        "options": options,
        "ingest": cfg.ingest.model_dump(exclude={"cache_dir"}),
        "default_tokenizer": tokenizer_identity(cfg.default_tokenizer),
        "models": {
            name: {"tokenizer": tokenizer_identity(m.tokenizer),
                   "normalize": None if m.normalize is None else [r.model_dump() for r in m.normalize]}
            for name, m in sorted(cfg.models.items())
        },
        "normalize": [r.model_dump() for r in cfg.normalize],
    }
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return xxhash.xxh3_128_hexdigest(blob)
