"""One fleet setting: N replicas of one profile behind one router, optionally with offload
tiers, over one model's block stream (docs/cluster.md#how-a-setting-runs).

A replica is the profile's own ``CacheEngine`` over the model's whole ``BlockStream`` (one
cache implementation, not a second one), fed only the requests routed to it, one at a time
and in arrival order; the engines' policy priorities use the request index as time, so an
ascending subset is served exactly as the engine would serve it alone. An offline router
(round-robin, random, session) assigns every request first and, without tiers, each replica
then serves its requests in one call. The time model runs afterwards over the replicas'
queues (``kvern.cluster.timing.fifo_ttft``); the online routers see the same model's loads
as they route.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kvern.cluster import tiers as tiermod
from kvern.cluster.routers import RouteContext, Router
from kvern.cluster.timing import TimeModel, fifo_ttft
from kvern.cluster.view import FleetView
from kvern.ingest.stream import BlockStream
from kvern.sim.engine import CacheEngine
from kvern.sim.policies import Policy
from kvern.sim.profiles import get_profile


@dataclass(frozen=True)
class Tiering:
    """Offload tiers of every replica: capacities in blocks (disk 0 = none) and the admission rule."""

    cpu_blocks: int
    disk_blocks: int
    mode: str


@dataclass
class SettingRun:
    """Per-request results of one setting (arrays over the stream's requests)."""

    replica: np.ndarray
    """int32[R]"""
    gpu_tokens: np.ndarray
    """int64[R]: served from the replica's GPU cache (the engine's own count)."""
    cpu_tokens: np.ndarray
    disk_tokens: np.ndarray
    unschedulable: np.ndarray
    """bool[R]"""
    transfer_s: np.ndarray
    recompute_s: np.ndarray
    """float64[R]: what prefilling the tier-served tokens instead would have cost."""
    prefill_s: np.ndarray
    """float64[R]: prefill of the uncached tokens."""
    wait_s: np.ndarray
    ttft_s: np.ndarray
    estimate_blocks: np.ndarray
    """int64[R]: the router's belief for the chosen replica (-1: not a cache-aware router)."""
    exact_blocks: np.ndarray
    """int64[R]: leading blocks the chosen replica held at arrival (-1: not measured)."""
    best_blocks: np.ndarray
    """int64[R]: the most any replica held (-1: not measured)."""
    regret_tokens: np.ndarray
    """int64[R]: tokens of the best replica's prefix minus the chosen one's (-1: not measured)."""
    split_tokens: np.ndarray
    """int64[R]: tokens of the prefix the fleet held only across replicas, beyond the chosen
    one's (-1: not measured)."""
    evicted_blocks: int
    replica_capacity: int
    engines: list[CacheEngine] = field(default_factory=list, repr=False)

    @property
    def cached_tokens(self) -> np.ndarray:
        return self.gpu_tokens + self.cpu_tokens + self.disk_tokens


def run_setting(stream: BlockStream, profile: str, policy: Policy, replicas: int, capacity_blocks: int,
                router_cls: type[Router], router_params: dict, sessions: list[str | None], seed: int,
                tm: TimeModel, output_tokens: np.ndarray, tiering: Tiering | None = None) -> SettingRun:
    prof = get_profile(profile)
    engines = [prof.engine(stream, policy, capacity_blocks) for _ in range(replicas)]
    router = router_cls(RouteContext(replicas, stream, sessions, capacity_blocks, seed), router_params)
    n_req = stream.num_requests
    out = _empty(n_req, capacity_blocks)
    decode_s = output_tokens.astype(np.float64) * tm.decode_s_per_token
    if not router.online and tiering is None:
        assign = router.assign()
        for i, eng in enumerate(engines):
            eng.serve(np.flatnonzero(assign == i).astype(np.int64))
        out.replica = assign
    else:
        _loop(stream, prof.last_token_rule, engines, router, tiering, tm, decode_s, output_tokens, out)
    for i, eng in enumerate(engines):
        mine = out.replica == i
        out.gpu_tokens[mine] = eng.cached_tokens[mine]
        out.unschedulable[mine] = eng.unschedulable[mine].astype(bool)
    out.evicted_blocks = sum(e.evicted_blocks for e in engines)
    out.transfer_s = tm.transfer_s(out.cpu_tokens, out.disk_tokens)
    served = out.cached_tokens
    prompt = stream.prompt_tokens.astype(np.int64)
    out.prefill_s = tm.prefill_s(prompt, served)
    out.recompute_s = tm.prefill_s(served, out.gpu_tokens)
    out.wait_s, out.ttft_s = fifo_ttft(out.replica.astype(np.int64), stream.arrival_s,
                                       out.prefill_s + out.transfer_s, replicas)
    out.engines = engines
    return out


def _empty(n: int, cap: int) -> SettingRun:
    z = np.zeros(n, np.int64)
    f = np.zeros(n, np.float64)
    m = np.full(n, -1, np.int64)
    return SettingRun(np.zeros(n, np.int32), z.copy(), z.copy(), z.copy(), np.zeros(n, bool),
                      *(f.copy() for _ in range(5)), *(m.copy() for _ in range(5)), 0, cap)


def _loop(stream: BlockStream, last_token_rule: bool, engines: list[CacheEngine], router: Router,
          tiering: Tiering | None, tm: TimeModel, decode_s: np.ndarray, output_tokens: np.ndarray,
          out: SettingRun) -> None:
    view = FleetView(stream, engines)
    ids, bs = view.ids, stream.block_size
    # Python lists: read once per request, they are faster than numpy's scalars
    offsets, prompt = view.offset_list, view.prompt
    arrival = stream.arrival_s.tolist()
    decode = decode_s.tolist()
    outputs = output_tokens.tolist()
    one = np.zeros(1, np.int64)
    stacks: list[tiermod.TierStack] = []
    if tiering is not None:
        for e in engines:
            e.enable_eviction_log()
        stacks = [tiermod.TierStack(stream.num_unique, tiering.cpu_blocks, tiering.disk_blocks, tiering.mode)
                  for _ in engines]
    online = router.online
    measure = router.cache_aware
    cap = engines[0].capacity_blocks
    for r in range(stream.num_requests):
        t = arrival[r]
        if online:
            view.advance(t)
        i = router.route(r, view)
        lo, hi = offsets[r], offsets[r + 1]
        n = hi - lo
        p = prompt[r]
        if measure:
            ex = view.exact_blocks(r)
            chosen, best = ex[i], max(ex)
            out.estimate_blocks[r] = router.estimate
            out.exact_blocks[r] = chosen
            out.best_blocks[r] = best
            got = _tokens(view, r, chosen, last_token_rule)
            out.regret_tokens[r] = _tokens(view, r, best, last_token_rule) - got
            out.split_tokens[r] = _tokens(view, r, view.union_blocks(r), last_token_rule) - got
        eng = engines[i]
        k = view.exact_blocks(r)[i] if stacks else 0
        one[0] = r
        eng.serve(one)
        gpu = int(eng.cached_tokens[r])
        lower = 0
        if stacks:
            st = stacks[i]
            evicted = eng.take_evicted()
            pres = view.presence[i]
            if len(evicted) and pres is not None:  # vllm may evict a key and cache it again at once
                evicted = evicted[pres[evicted] == 0]
            if not eng.unschedulable[r]:
                limit = (p - 1) // bs if last_token_rule else n
                start = min(k, limit)
                nc, nd = tiermod.lookup(ids, lo, start, limit, st)
                if nc + nd:
                    total = _tokens(view, r, start + nc + nd, last_token_rule)
                    lower = max(total - gpu, 0)
                    c = min(lower, nc * bs)
                    out.cpu_tokens[r] = c
                    out.disk_tokens[r] = lower - c
                admitted = min(n, cap) if not last_token_rule else n
                full = n if not last_token_rule else p // bs
                tiermod.admit(st, ids, lo, hi, admitted, full, evicted, t)
        out.replica[r] = i
        view.last = i
        if online:
            cached = gpu + lower
            work = tm.prefill_one(p, cached)
            if lower:
                work += float(tm.transfer_s(np.array([out.cpu_tokens[r]]), np.array([out.disk_tokens[r]]))[0])
            view.record(i, work, p - cached, decode[r], -(-(p + outputs[r]) // bs))
        router.routed(r, i, view)


def _tokens(view: FleetView, r: int, blocks: int, last_token_rule: bool) -> int:
    """``blocks`` leading blocks of ``r`` in tokens under the profile's hit rule."""
    if last_token_rule:
        p = view.prompt[r]
        return min(blocks, (p - 1) // view.block_size) * view.block_size
    return view.tokens(r, blocks)
