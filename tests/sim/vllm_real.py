"""Load vLLM's own ``BlockPool`` and drive it the way ``KVCacheManager`` does, one request at a time.

Where vLLM is installed, its modules are imported as they are. Otherwise ``KVERN_VLLM_SRC`` may
name the folder of an unpacked vLLM wheel (``pip download vllm --no-deps``, then unzip): only
``vllm/v1/core/kv_cache_utils.py`` and ``block_pool.py`` are loaded from it, and the heavy
modules they import (torch-backed config, metrics, events) are replaced by inert stubs, which
none of the code paths used here touches. ``load()`` returns None when neither is available.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import types
from collections.abc import Sequence
from typing import Any

_STUBBED = ["vllm.envs", "vllm.config", "vllm.logger", "vllm.multimodal", "vllm.multimodal.utils",
            "vllm.utils", "vllm.utils.hashing", "vllm.utils.math_utils", "vllm.v1.kv_cache_interface",
            "vllm.v1.kv_cache_spec_registry", "vllm.v1.request", "vllm.v1.utils", "vllm.distributed",
            "vllm.distributed.kv_events", "vllm.v1.core.kv_cache_metrics"]


class _Inert:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __class_getitem__(cls, item: Any) -> type:
        return cls


class _StubModule(types.ModuleType):
    _SPECIAL: dict[str, Any] = {  # noqa: RUF012
        "MEDIUM_GPU": "GPU",
        "init_logger": logging.getLogger,
        "cdiv": lambda a, b: -(a // -b),
    }

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = self._SPECIAL.get(name) or type(name, (_Inert,), {})
        setattr(self, name, value)
        return value


def load() -> tuple[Any, Any] | None:
    """``(kv_cache_utils, block_pool)`` modules of vLLM, or None."""
    try:
        return (importlib.import_module("vllm.v1.core.kv_cache_utils"),
                importlib.import_module("vllm.v1.core.block_pool"))
    except ImportError:
        pass
    src = os.environ.get("KVERN_VLLM_SRC")
    if not src or not os.path.isfile(os.path.join(src, "vllm", "v1", "core", "block_pool.py")):
        return None
    for name, sub in [("vllm", "vllm"), ("vllm.v1", "vllm/v1"), ("vllm.v1.core", "vllm/v1/core")]:
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(src, sub)]
        sys.modules[name] = module
    for name in _STUBBED:
        sys.modules[name] = _StubModule(name)
    sys.modules["vllm"].envs = sys.modules["vllm.envs"]  # type: ignore[attr-defined]
    return (importlib.import_module("vllm.v1.core.kv_cache_utils"),
            importlib.import_module("vllm.v1.core.block_pool"))


class _Request:
    def __init__(self, block_hashes: list[Any]) -> None:
        self.block_hashes = block_hashes
        self.all_token_ids: list[int] = []
        self.request_id = "r"


def run(modules: tuple[Any, Any], requests: Sequence[tuple[Sequence[int], int]], block_size: int,
        capacity: int) -> tuple[list[int], list[bool], int]:
    """Cached tokens, unschedulable flags and evictions of vLLM with ``capacity`` usable blocks.

    Per request, as ``Scheduler`` + ``KVCacheManager`` with one request in flight:
    ``get_computed_blocks`` (``FullAttentionManager.find_longest_cache_hit`` with
    ``max_length = num_tokens − 1``), the ``allocate_slots`` free-block check, ``touch``,
    ``get_new_blocks``, ``cache_full_blocks``, then ``free_blocks(reversed(blocks))``.
    """
    kvu, bp = modules
    pool = bp.BlockPool(num_gpu_blocks=capacity + 1, enable_caching=True, hash_block_size=block_size)
    evictions = [0]
    evict = pool._maybe_evict_cached_block

    def counting(block: Any) -> bool:
        dropped = evict(block)
        evictions[0] += bool(dropped)
        return dropped

    pool._maybe_evict_cached_block = counting
    cached, unschedulable = [], []
    for keys, prompt in requests:
        hashes = [kvu.BlockHash(int(k).to_bytes(8, "little")) for k in keys[: prompt // block_size]]
        hits = []
        for h in hashes[: (prompt - 1) // block_size]:
            found = pool.get_cached_block(h, [0])
            if found is None:
                break
            hits.append(found[0])
        n = -(prompt // -block_size)
        if n - len(hits) + sum(1 for b in hits if b.ref_cnt == 0) > pool.get_num_free_blocks():
            cached.append(0)
            unschedulable.append(True)
            continue
        pool.touch(hits)
        blocks = hits + pool.get_new_blocks(n - len(hits))
        pool.cache_full_blocks(_Request(hashes), blocks, len(hits), prompt // block_size, block_size, 0)
        pool.free_blocks(reversed(blocks))
        cached.append(len(hits) * block_size)
        unschedulable.append(False)
    return cached, unschedulable, evictions[0]
