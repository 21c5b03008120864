"""``sglang``: SGLang router's ``cache_aware`` policy (sgl-project/sglang, the Rust router
``sgl-router/src/router.rs``, ``select_worker_cache_aware``; read from its source; defaults as
in ``launch_router.py`` of the same era — check yours, later releases changed them).

Per request:

1. The load of a worker is its running requests (the router counts a request from routing
   until its response ends). The system is **imbalanced** when
   ``max − min > balance_abs_threshold`` **and** ``max > min × balance_rel_threshold``; then
   the request goes to the least loaded worker.
2. Otherwise the router matches the request against its **approximate tree**: a radix tree of
   the texts it routed, each node tagged with the workers it sent them to (not the workers'
   real caches). ``match rate`` = matched length / request length. If it exceeds
   ``cache_threshold`` the request goes to the worker of the deepest match (kvern: among the
   workers tied there, the least loaded, then the lower index); else to the worker whose tree
   is smallest (the one presumed to have the most free cache).
3. The request's text is inserted into the tree for the chosen worker.
4. Every ``eviction_interval_s`` seconds (of trace time), each worker's part of the tree is
   cut to ``max_tree_size`` by dropping its least recently used leaves.

kvern's tree is per worker, over the trace's blocks (tokens of whole blocks, not characters);
since block keys are prefix-chained, a set of blocks per worker is that worker's part of the
radix tree and the deepest match over the shared tree is the best match over the workers.
With ``estimate=exact`` the tree is replaced by the replicas' exact caches (the perfect
estimate the tests compare with ``prefix``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from kvern.cluster import blocklru
from kvern.cluster.routers.base import RouteContext, Router
from kvern.cluster.view import FleetView, least
from kvern.infra.errors import UsageError


class SGLangRouter(Router):
    name = "sglang"
    summary = "SGLang router cache_aware: approximate tree, cache_threshold, balance thresholds"
    defaults: ClassVar[dict[str, Any]] = {
        "cache_threshold": 0.5, "balance_abs_threshold": 32, "balance_rel_threshold": 1.0001,
        "eviction_interval_s": 60.0, "max_tree_size": 2**24, "estimate": "approx"}
    cache_aware = True

    def __init__(self, ctx: RouteContext, params: dict[str, Any]) -> None:
        super().__init__(ctx, params)
        if self.params["estimate"] not in ("approx", "exact"):
            raise UsageError("--param sglang.estimate: approx or exact")
        self.trees = [blocklru.new_lru(ctx.stream.num_unique) for _ in range(ctx.replicas)]
        self.present = blocklru.presence_list([t.present for t in self.trees])
        self.max_blocks = max(1, int(self.params["max_tree_size"]) // ctx.stream.block_size)
        self.next_eviction = float(self.params["eviction_interval_s"])

    def matches(self, r: int, view: FleetView) -> list[int]:
        if self.params["estimate"] == "exact":
            return view.exact_blocks(r)
        lo, hi = view.span(r)
        return blocklru.leading_each(view.ids, lo, hi, self.present)  # type: ignore[arg-type]

    def route(self, r: int, view: FleetView) -> int:
        self._evict(view.now)
        load = view.running
        hi_l, lo_l = max(load), min(load)
        m = self.matches(r, view)
        p_abs, p_rel = self.params["balance_abs_threshold"], self.params["balance_rel_threshold"]
        if hi_l - lo_l > p_abs and hi_l > lo_l * p_rel:
            i = least(load, after=view.last)
        else:
            best = max(m)
            p = view.prompt[r]
            rate = view.tokens(r, best) / p if p else 0.0
            if rate > self.params["cache_threshold"]:
                i = least(load, [j for j in range(view.n) if m[j] == best], view.last)
            else:
                i = least([blocklru.size(t) for t in self.trees], after=view.last)
        self.estimate = m[i]
        return i

    def routed(self, r: int, replica: int, view: FleetView) -> None:
        lo, hi = view.span(r)
        blocklru.touch_prompt(self.trees[replica], view.ids, lo, hi, view.now)

    def _evict(self, now: float) -> None:
        interval = self.params["eviction_interval_s"]
        if interval <= 0 or now < self.next_eviction:
            return
        for t in self.trees:
            blocklru.shrink(t, self.max_blocks)
        while self.next_eviction <= now:
            self.next_eviction += interval
