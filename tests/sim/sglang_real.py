"""Run SGLang's own ``RadixCache`` on request batches: ``python sglang_real.py < batches.json``.

Run as a separate process because, without an installed SGLang (it needs torch), the modules
are loaded from the folder named by ``KVERN_SGLANG_SRC`` (an unpacked SGLang wheel) next to a
small numpy stand-in for the few torch calls ``radix_cache.py`` makes, and inert stubs for the
modules it imports but these code paths never use; that stand-in must not leak into other
tests. The tree's mechanics (match, split, access times, locks, LRU eviction of whole leaves,
insert) are SGLang's code; this driver plays the scheduler with one request in flight: match
the first ``prompt − 1`` tokens (page-aligned), lock the matched node, evict the shortfall of
free pages, insert the page-aligned prompt when the request finishes, unlock.

Input: a JSON list of ``{"capacity": pages, "requests": [[pages (ints), pages needed, max hit]]}``.
Output: a JSON list of ``{"cached": [pages hit], "unschedulable": [bool], "evicted": pages}``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import types
from array import array
from typing import Any

import numpy as np

_STUBS = ["sglang.kernels", "sglang.srt.environ", "sglang.srt.mem_cache.cpp_utils",
          "sglang.srt.disaggregation", "sglang.srt.mem_cache.allocator", "sglang.srt.mem_cache.memory_pool",
          "sglang.srt.mem_cache.unified_cache", "sglang.srt.observability", "sglang.srt.runtime_context",
          "sglang.srt.utils", "sglang.srt.managers", "sglang.srt.mem_cache.events"]


class _Tensor(np.ndarray):
    def clone(self) -> _Tensor:
        return self.copy().view(_Tensor)

    def to(self, *args: Any, copy: bool = False, **kwargs: Any) -> _Tensor:
        return self.copy().view(_Tensor) if copy else self


def _torch_stand_in() -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.Tensor = _Tensor  # type: ignore[attr-defined]
    torch.tensor = lambda x, dtype=None, device=None: np.asarray(x, dtype=np.int64).view(_Tensor)  # type: ignore[attr-defined]
    torch.cat = lambda xs, *a, **k: (np.concatenate([np.asarray(x) for x in xs]) if len(xs)  # type: ignore[attr-defined]
                                     else np.zeros(0, np.int64)).view(_Tensor)
    torch.empty = lambda shape, dtype=None, device=None, **k: np.empty(shape, np.int64).view(_Tensor)  # type: ignore[attr-defined]
    torch.int64, torch.int32 = np.int64, np.int32  # type: ignore[attr-defined]
    torch.device = lambda d="cpu": str(d)  # type: ignore[attr-defined]
    torch.iinfo = np.iinfo  # type: ignore[attr-defined]
    torch.dtype = type  # type: ignore[attr-defined]
    return torch


class _Inert:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __class_getitem__(cls, item: Any) -> type:
        return cls

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *a, **k: None


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (_Inert,), {})
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if any(name == s or name.startswith(s + ".") for s in _STUBS):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def load() -> tuple[Any, Any]:
    try:
        return (importlib.import_module("sglang.srt.mem_cache.radix_cache"),
                importlib.import_module("sglang.srt.mem_cache.base_prefix_cache"))
    except ImportError:
        pass
    src = os.environ["KVERN_SGLANG_SRC"]
    sys.modules["torch"] = _torch_stand_in()
    sys.meta_path.insert(0, _StubFinder())
    for name, sub in [("sglang", "sglang"), ("sglang.srt", "sglang/srt"),
                      ("sglang.srt.mem_cache", "sglang/srt/mem_cache")]:
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(src, sub)]
        sys.modules[name] = module
    importlib.import_module("sglang.srt.utils.common").ceil_align = lambda x, a: -(x // -a) * a
    return (importlib.import_module("sglang.srt.mem_cache.radix_cache"),
            importlib.import_module("sglang.srt.mem_cache.base_prefix_cache"))


class _Allocator:
    device = "cpu"

    def __init__(self) -> None:
        self.page_size = 1

    def __getattr__(self, name: str) -> Any:  # free / free_segment: the driver counts pages itself
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *a, **k: None


def run(rc: Any, bpc: Any, capacity: int, requests: list[list[Any]]) -> dict[str, Any]:
    tree = rc.RadixCache.create_simulated(mock_allocator=_Allocator(), page_size=1)
    cached, unschedulable, evicted = [], [], 0
    for pages, need_pages, max_hit in requests:
        if need_pages > capacity:
            cached.append(0)
            unschedulable.append(True)
            continue
        match = tree.match_prefix(bpc.MatchPrefixParams(key=rc.RadixKey(array("q", pages[:max_hit]))))
        hit, last = match.device_prefix_len, match.last_device_node
        tree.inc_lock_ref(last)
        shortfall = (need_pages - hit) - (capacity - tree.total_size())
        if shortfall > 0:
            evicted += tree.evict(bpc.EvictParams(num_tokens=shortfall)).num_tokens_evicted
        tree.insert(bpc.InsertParams(key=rc.RadixKey(array("q", pages)),
                                     value=np.arange(len(pages), dtype=np.int64).view(_Tensor)))
        tree.dec_lock_ref(last)
        cached.append(hit)
        unschedulable.append(False)
    return {"cached": cached, "unschedulable": unschedulable, "evicted": evicted}


if __name__ == "__main__":
    rc, bpc = load()
    batches = json.load(sys.stdin)
    json.dump([run(rc, bpc, b["capacity"], b["requests"]) for b in batches], sys.stdout)
