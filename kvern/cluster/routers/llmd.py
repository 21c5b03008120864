"""``llm-d``: llm-d's inference scheduler (the Gateway API Inference Extension's endpoint
picker), weighted scorers and the max-score picker, as documented in llm-d's
``inference-scheduling`` guide and the GIE scorer docs (the Go source was not read).

score(server) = ``prefix_weight`` × prefix + ``queue_weight`` × queue + ``kv_weight`` × kv;
the highest wins (kvern breaks ties by rotating after the previous request's replica; the picker
draws among them at random).

* **prefix** (``prefix-cache-scorer``): the share of the request's blocks that lead the
  scorer's record of the server: an approximate per-server LRU of the block hashes of the
  requests it routed there, ``lru_capacity_per_server`` blocks each (not the server's cache).
  With ``estimate=exact`` it asks the replicas' exact caches instead.
* **queue** (``queue-scorer``): (max − q) / (max − min) over the servers' waiting requests q
  (all 1 when equal); kvern's q = requests whose prefill has not ended.
* **kv** (``kv-cache-utilization-scorer``): 1 − KV utilization, which vLLM reports as the share
  of blocks held by running requests (cached free blocks count as free): kvern's running
  requests' blocks / the replica's capacity.

Weights default to the guide's profile: prefix 3, queue 2, kv 2. Block size = the trace's.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kvern.cluster import blocklru
from kvern.cluster.routers.base import RouteContext, Router
from kvern.cluster.view import FleetView, least
from kvern.infra.errors import UsageError


class LlmD(Router):
    name = "llm-d"
    summary = "llm-d weighted scorers: approximate prefix LRU, queue, KV utilization"
    defaults: ClassVar[dict[str, Any]] = {"prefix_weight": 3.0, "queue_weight": 2.0, "kv_weight": 2.0,
                "lru_capacity_per_server": 31250, "estimate": "approx"}
    cache_aware = True

    def __init__(self, ctx: RouteContext, params: dict[str, Any]) -> None:
        super().__init__(ctx, params)
        if self.params["estimate"] not in ("approx", "exact"):
            raise UsageError("--param llm-d.estimate: approx or exact")
        self.lrus = [blocklru.new_lru(ctx.stream.num_unique) for _ in range(ctx.replicas)]
        self.present = blocklru.presence_list([t.present for t in self.lrus])

    def route(self, r: int, view: FleetView) -> int:
        lo, hi = view.span(r)
        if self.params["estimate"] == "exact":
            m = view.exact_blocks(r)
        else:
            m = blocklru.leading_each(view.ids, lo, hi, self.present)  # type: ignore[arg-type]
        n_blocks = max(hi - lo, 1)
        q = view.pending
        q_hi, q_lo = max(q), min(q)
        wp, wq, wk = self.params["prefix_weight"], self.params["queue_weight"], self.params["kv_weight"]
        neg = []
        for i in range(view.n):
            qs = (q_hi - q[i]) / (q_hi - q_lo) if q_hi > q_lo else 1.0
            util = min(view.active_blocks[i] / view.capacity_blocks[i], 1.0)
            neg.append(-(wp * m[i] / n_blocks + wq * qs + wk * (1.0 - util)))
        best_i = least(neg, after=view.last)
        self.estimate = m[best_i]
        return best_i

    def routed(self, r: int, replica: int, view: FleetView) -> None:
        lo, hi = view.span(r)
        t = self.lrus[replica]
        blocklru.touch_prompt(t, view.ids, lo, hi, view.now)
        blocklru.shrink(t, int(self.params["lru_capacity_per_server"]))
