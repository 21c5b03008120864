"""``dynamo``: NVIDIA Dynamo's KV router (ai-dynamo/dynamo ``docs/router/kv_cache_routing.md``
and the router design doc; the Rust scheduler was not read, the documented algorithm is
implemented).

For each worker, with ``overlap`` its cached leading blocks of the request:

* potential prefill blocks = (input tokens − overlap × block size) / block size;
* potential decode (active) blocks = the blocks of the worker's running requests plus the
  request's own;
* cost = ``overlap_score_weight`` × prefill blocks + decode blocks; the lowest cost wins (ties
  rotate: the first after the previous request's replica). With ``router_temperature`` > 0
  the worker is sampled instead, with probability ∝ exp(−c/T) over the costs normalized to [0, 1] (seeded).

The overlap comes from the KV indexer, a prefix tree built from the workers' KV events
(stored/removed): with ``kv_events=true`` (Dynamo's default) the router therefore sees each
replica's cache exactly (events are taken as instantaneous). With ``kv_events=false``
(``--no-kv-events``) it predicts instead: the blocks of each request it routed, per worker, each
forgotten ``router_ttl_s`` seconds after its last use. Block size = the trace's block.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from kvern.cluster import blocklru
from kvern.cluster.routers.base import RouteContext, Router
from kvern.cluster.view import FleetView, least


class Dynamo(Router):
    name = "dynamo"
    summary = "Dynamo KV router: min overlap_score_weight × prefill blocks + decode blocks"
    defaults: ClassVar[dict[str, Any]] = {"overlap_score_weight": 1.0, "router_temperature": 0.0,
                                          "kv_events": True, "router_ttl_s": 120.0}
    cache_aware = True

    def __init__(self, ctx: RouteContext, params: dict[str, Any]) -> None:
        super().__init__(ctx, params)
        self.rng = np.random.default_rng(ctx.seed)
        self.trees = None if self.params["kv_events"] else [
            blocklru.new_lru(ctx.stream.num_unique) for _ in range(ctx.replicas)]
        self.present = None if self.trees is None else blocklru.presence_list([t.present for t in self.trees])

    def overlaps(self, r: int, view: FleetView) -> list[int]:
        if self.trees is None:
            return view.exact_blocks(r)
        lo, hi = view.span(r)
        oldest = view.now - self.params["router_ttl_s"]
        for tree in self.trees:
            blocklru.expire(tree, oldest)
        return blocklru.leading_each(view.ids, lo, hi, self.present)  # type: ignore[arg-type]

    def route(self, r: int, view: FleetView) -> int:
        ov = self.overlaps(r, view)
        lo, hi = view.span(r)
        bs = view.block_size
        p = view.prompt[r]
        w = self.params["overlap_score_weight"]
        cost = [w * max(p - ov[i] * bs, 0) / bs + view.active_blocks[i] + (hi - lo) for i in range(view.n)]
        temp = self.params["router_temperature"]
        if temp > 0:
            lo_c, hi_c = min(cost), max(cost)
            norm = [(c - lo_c) / (hi_c - lo_c) if hi_c > lo_c else 0.0 for c in cost]
            weights = np.array([math.exp(-x / temp) for x in norm])
            i = int(self.rng.choice(view.n, p=weights / weights.sum()))
        else:
            i = least(cost, after=view.last)
        self.estimate = ov[i]
        return i

    def routed(self, r: int, replica: int, view: FleetView) -> None:
        if self.trees is not None:
            lo, hi = view.span(r)
            blocklru.touch_prompt(self.trees[replica], view.ids, lo, hi, view.now)
