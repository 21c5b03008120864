"""Offload tiers under a replica's GPU cache: CPU memory, then disk (docs/cluster.md#offload).

Each replica may have a CPU tier and, below it, a disk tier, each an LRU set of blocks of its
own capacity (``kvern.cluster.blocklru``). The GPU cache is the profile's engine, untouched:
what a tier holds never changes what the GPU caches (a block loaded from a tier is allocated
and cached on the GPU exactly as a recomputed one is), so a replica's GPU hits with offload
equal its hits without.

At a request's arrival, the blocks after its GPU hit are looked up in the tiers (a run of
leading blocks, each found in the CPU or the disk tier), within the profile's hit limit (vLLM
and SGLang recompute the last prompt token). Those tokens are loaded instead of recomputed.
Then the tiers admit blocks by one of two rules:

* ``store`` — **vLLM's native offloading** (``OffloadingConnector`` with the CPU
  ``LRUCachePolicy``, vllm/distributed/kv_transfer/kv_connector/v1/offloading/scheduler.py and
  vllm/v1/kv_offload/cpu/manager.py, vLLM 0.33): every full prompt block the request computed or
  loaded is offered to the CPU tier once it is computed (``prepare_store``: a key already held
  is an access, a new key is inserted, the least recent idle keys are evicted to make room,
  never the request's own). The tier is inclusive: a GPU eviction does nothing to it.
  Modelled: one offload chunk = one block (vLLM's default ``block_size`` for the connector
  equals the GPU block), stores complete before the next request (the model is sequential), the
  request's recency assigned tail → head. Not modelled: ARC, ``store_threshold`` and sliding
  windows. A request with more full blocks than the tier offers only its leading ones.
* ``evict`` — an **exclusive hierarchy** (demote on eviction, promote on hit; the write-back
  mode of SGLang's HiCache and LMCache's local-CPU backend, as documented, not code-exact):
  blocks the GPU evicts go to the front of the CPU tier (in eviction order), blocks the CPU tier
  evicts go to the disk tier, and a request's blocks leave the tiers when the GPU holds them.
  Under ``ideal`` with LRU in both tiers this hierarchy serves exactly what one LRU cache of the
  summed capacity serves (LRU's stack property; tested).

Below the CPU tier the disk tier works the same way in both modes: it takes what the CPU tier
evicts. A hit in the disk tier is loaded back like a CPU hit (at the disk's bandwidth).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numba
import numpy as np

from kvern.cluster import blocklru
from kvern.cluster.blocklru import BlockLRU
from kvern.infra.errors import UsageError
from kvern.sim.capacity import CapacitySpec, parse_capacity

TIERS = ("cpu", "disk")
MODES = ("store", "evict")
STORE, EVICT = 0, 1


@dataclass(frozen=True, slots=True)
class OffloadSpec:
    """What ``--offload`` asked for: a capacity per tier (``cpu`` first), and its label."""

    tiers: tuple[tuple[str, CapacitySpec], ...]
    label: str

    @property
    def none(self) -> bool:
        return not self.tiers


NO_OFFLOAD = OffloadSpec((), "none")


def parse_offload(text: str) -> OffloadSpec:
    """``"cpu=64GiB"`` or ``"cpu=64GiB,disk=1TiB"`` (``none`` for no tier)."""
    text = text.strip()
    if text in ("", "none"):
        return NO_OFFLOAD
    tiers: dict[str, CapacitySpec] = {}
    for item in text.split(","):
        m = re.match(r"^\s*(?P<tier>[a-z]+)\s*=\s*(?P<cap>.+?)\s*$", item)
        if not m or m["tier"] not in TIERS:
            raise UsageError(f"--offload {text!r}: expected cpu=SIZE[,disk=SIZE], e.g. cpu=64GiB,disk=1TiB")
        specs = parse_capacity(m["cap"])
        if len(specs) != 1:
            raise UsageError(f"--offload {text!r}: one capacity per tier")
        tiers[m["tier"]] = specs[0]
    if "cpu" not in tiers:
        raise UsageError(f"--offload {text!r}: a disk tier needs a CPU tier above it")
    return OffloadSpec(tuple((t, tiers[t]) for t in TIERS if t in tiers), text.replace(" ", ""))


class TierStack:
    """One replica's CPU tier and optional disk tier (capacity 0 = no disk)."""

    def __init__(self, num_unique: int, cpu_blocks: int, disk_blocks: int, mode: str) -> None:
        assert mode in MODES
        self.cpu = blocklru.new_lru(num_unique)
        self.disk = blocklru.new_lru(num_unique if disk_blocks > 0 else 0)
        self.cpu_blocks = cpu_blocks
        self.disk_blocks = disk_blocks
        self.mode = STORE if mode == "store" else EVICT
        self.found = np.zeros(2, np.int64)
        """Scratch: blocks found in the CPU and the disk tier by the last lookup."""


@numba.njit(cache=True)
def _lookup(ids, lo, start, limit, cpu, disk, has_disk, found):  # type: ignore[no-untyped-def]
    """Blocks ``ids[lo+start : lo+limit]`` found as a run in the tiers; counts per tier in ``found``."""
    found[0] = 0
    found[1] = 0
    j = start
    while j < limit:
        b = ids[lo + j]
        if cpu.present[b]:
            found[0] += 1
        elif has_disk and disk.present[b]:
            found[1] += 1
        else:
            break
        j += 1


@numba.njit(cache=True, inline="always")
def _demote(b, cpu, cpu_cap, disk, disk_cap, has_disk, t):  # type: ignore[no-untyped-def]
    """``b`` to the CPU tier's front; what the CPU tier overflows goes to the disk tier's front."""
    if has_disk:
        blocklru.unlink(disk, b)
    blocklru.push_front(cpu, b, t)
    while cpu.counters[0] > cpu_cap:
        v = blocklru.pop_tail(cpu)
        if has_disk:
            blocklru.push_front(disk, v, t)
            while disk.counters[0] > disk_cap:
                blocklru.pop_tail(disk)


@numba.njit(cache=True)
def _admit(mode, ids, lo, hi, gpu_admitted, full, evicted, cpu, cpu_cap, disk, disk_cap, has_disk,
          t):  # type: ignore[no-untyped-def]
    """After the GPU served the request ``ids[lo:hi]``: the tiers' admission (module docstring).

    ``gpu_admitted``: its leading blocks the GPU now holds; ``full``: its full blocks;
    ``evicted``: the ids the GPU dropped while serving it, in eviction order.
    """
    if mode == 0:  # store: offer the full blocks, the request's recency tail -> head
        m = full if full < cpu_cap else cpu_cap
        for j in range(m - 1, -1, -1):
            _demote(ids[lo + j], cpu, cpu_cap, disk, disk_cap, has_disk, t)
        return
    # evict (exclusive): promote what the GPU holds, demote what it dropped
    for j in range(gpu_admitted):
        b = ids[lo + j]
        blocklru.unlink(cpu, b)
        if has_disk:
            blocklru.unlink(disk, b)
    for i in range(len(evicted)):
        _demote(evicted[i], cpu, cpu_cap, disk, disk_cap, has_disk, t)
    # blocks of a request longer than the GPU (ideal admits its head only) are written down
    for j in range(hi - lo - 1, gpu_admitted - 1, -1):
        _demote(ids[lo + j], cpu, cpu_cap, disk, disk_cap, has_disk, t)


def lookup(ids: np.ndarray, lo: int, start: int, limit: int, st: TierStack) -> tuple[int, int]:
    """Blocks found as a run from ``start`` (< ``limit``) in the CPU and in the disk tier."""
    blocklru.call(_lookup, ids.dtype.char, ids, int(lo), int(start), int(limit), st.cpu, st.disk,
                  st.disk_blocks > 0, st.found)
    return int(st.found[0]), int(st.found[1])


def admit(st: TierStack, ids: np.ndarray, lo: int, hi: int, gpu_admitted: int, full: int, evicted: np.ndarray,
          t: float) -> None:
    """The tiers' admission after the GPU served ``ids[lo:hi]`` (module docstring)."""
    blocklru.call(_admit, ids.dtype.char, st.mode, ids, int(lo), int(hi), int(gpu_admitted), int(full),
                  np.ascontiguousarray(evicted, np.int64), st.cpu, st.cpu_blocks, st.disk, st.disk_blocks,
                  st.disk_blocks > 0, float(t))


def offload_blocks(spec: OffloadSpec, block_size: int, kv_bytes_per_token: int | None, model: str
                   ) -> tuple[int, int]:
    """(CPU blocks, disk blocks) of ``spec`` for one replica of ``model``."""
    caps = dict(spec.tiers)
    cpu = caps["cpu"].blocks(block_size, kv_bytes_per_token, model)
    disk = caps["disk"].blocks(block_size, kv_bytes_per_token, model) if "disk" in caps else 0
    return cpu, disk


__all__ = ["MODES", "NO_OFFLOAD", "BlockLRU", "OffloadSpec", "TierStack", "admit", "lookup",
           "offload_blocks", "parse_offload"]
