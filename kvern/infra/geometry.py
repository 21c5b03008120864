"""KV geometry without hand-typing: from a model's Hugging Face ``config.json``, or a small table.

Bytes capacities and savings need ``layers × kv_heads × head_dim × dtype`` (docs/architecture.md
§5). Users rarely know them by heart, so a model without ``models.<name>.geometry`` gets one from,
in order: ``models.<name>.config_json`` (a ``config.json`` or the folder holding it); the
``config.json`` beside a local tokenizer folder or in the local Hugging Face cache for the
tokenizer's (or the model's) hub name; then ``BUILTIN`` by the served name. Nothing is
downloaded, and a model found nowhere stays "n/a", never a guess.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

BUILTIN: dict[str, dict[str, Any]] = {
    # name key (lowercase, letters and digits only): layers, kv_heads, head_dim, hidden, params
    "llama318b": {"layers": 32, "kv_heads": 8, "head_dim": 128, "hidden": 4096, "params": 8.03e9},
    "llama38b": {"layers": 32, "kv_heads": 8, "head_dim": 128, "hidden": 4096, "params": 8.03e9},
    "llama3170b": {"layers": 80, "kv_heads": 8, "head_dim": 128, "hidden": 8192, "params": 70.6e9},
    "llama3370b": {"layers": 80, "kv_heads": 8, "head_dim": 128, "hidden": 8192, "params": 70.6e9},
    "llama321b": {"layers": 16, "kv_heads": 8, "head_dim": 64, "hidden": 2048, "params": 1.24e9},
    "llama323b": {"layers": 28, "kv_heads": 8, "head_dim": 128, "hidden": 3072, "params": 3.21e9},
    "qwen2505b": {"layers": 24, "kv_heads": 2, "head_dim": 64, "hidden": 896, "params": 0.49e9},
    "qwen2515b": {"layers": 28, "kv_heads": 2, "head_dim": 128, "hidden": 1536, "params": 1.54e9},
    "qwen253b": {"layers": 36, "kv_heads": 2, "head_dim": 128, "hidden": 2048, "params": 3.09e9},
    "qwen257b": {"layers": 28, "kv_heads": 4, "head_dim": 128, "hidden": 3584, "params": 7.62e9},
    "qwen2514b": {"layers": 48, "kv_heads": 8, "head_dim": 128, "hidden": 5120, "params": 14.7e9},
    "qwen2532b": {"layers": 64, "kv_heads": 8, "head_dim": 128, "hidden": 5120, "params": 32.8e9},
    "qwen2572b": {"layers": 80, "kv_heads": 8, "head_dim": 128, "hidden": 8192, "params": 72.7e9},
    "qwen38b": {"layers": 36, "kv_heads": 8, "head_dim": 128, "hidden": 4096, "params": 8.19e9},
    "mistral7b": {"layers": 32, "kv_heads": 8, "head_dim": 128, "hidden": 4096, "params": 7.25e9},
    "gemma29b": {"layers": 42, "kv_heads": 8, "head_dim": 256, "hidden": 3584, "params": 9.24e9},
}
"""Common open models in bf16 (``dtype_bytes`` 2), from their published ``config.json``."""

_DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "fp16": 2, "bf16": 2,
                "float8_e4m3fn": 1, "float8_e5m2": 1, "fp8": 1}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def builtin_geometry(name: str) -> dict[str, Any] | None:
    """The table's entry whose key is in ``name`` (longest key first), as geometry fields."""
    key = _key(name)
    for k in sorted(BUILTIN, key=len, reverse=True):
        if k in key:
            return {**BUILTIN[k], "dtype_bytes": 2}
    return None


def from_config_json(path: str | Path) -> dict[str, Any] | None:
    """Geometry fields from a Hugging Face ``config.json`` (or its folder); None when it lacks
    the sizes. A multimodal config's ``text_config`` is read where the top level has none."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    return _read(str(path), _mtime(path))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


@functools.lru_cache(maxsize=64)
def _read(path: str, _mtime: float) -> dict[str, Any] | None:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    if "num_hidden_layers" not in raw and isinstance(raw.get("text_config"), dict):
        raw = {**raw, **raw["text_config"]}
    layers, heads = raw.get("num_hidden_layers"), raw.get("num_attention_heads")
    hidden = raw.get("hidden_size")
    kv_heads = raw.get("num_key_value_heads", heads)
    head_dim = raw.get("head_dim") or (hidden // heads if _pos(hidden) and _pos(heads) else None)
    if not all(_pos(v) for v in (layers, kv_heads, head_dim)):
        return None
    dtype = str(raw.get("torch_dtype") or raw.get("dtype") or "bfloat16").removeprefix("torch.")
    out: dict[str, Any] = {"layers": layers, "kv_heads": kv_heads, "head_dim": head_dim,
                           "dtype_bytes": _DTYPE_BYTES.get(dtype, 2)}
    if _pos(hidden):
        out["hidden"] = hidden
    return out


def _pos(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def hub_config_json(name: str) -> Path | None:
    """``config.json`` of hub model ``org/name`` in the local Hugging Face cache, if there."""
    if "/" not in name or name.count("/") != 1 or Path(name).exists():
        return Path(name) / "config.json" if (Path(name) / "config.json").is_file() else None
    home = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache"
                                                                       / "huggingface")) / "hub")
    snapshots = home / ("models--" + name.replace("/", "--")) / "snapshots"
    found = sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []
    return found[-1] if found else None
