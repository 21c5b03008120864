"""``prefix``: the ideal cache-aware router: the replica whose cache holds the longest prefix
of the request *now* (asked of the exact replica caches, without touching them), ties to the
one with fewer outstanding prefill tokens, then rotating (the first after the previous request's replica).

No real router sees the caches this exactly; it is the reference the approximate ones
(``dynamo``, ``sglang``, ``llm-d``) are measured against. It has no load term (load only
breaks ties), so traffic that shares a prefix piles onto one replica: ideal per request, not
over a run (docs/cluster.md#routers); the balanced cache-aware routers are those three.
"""

from __future__ import annotations

from kvern.cluster.routers.base import Router
from kvern.cluster.view import FleetView, least


class Prefix(Router):
    name = "prefix"
    summary = "longest exact cached prefix, ties to the less loaded"
    cache_aware = True

    def route(self, r: int, view: FleetView) -> int:
        ex = view.exact_blocks(r)
        best = max(ex)
        i = least(view.pending_tokens, [j for j in range(view.n) if ex[j] == best], view.last)
        self.estimate = best
        return i
