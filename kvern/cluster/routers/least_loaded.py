"""``least-loaded``: the replica with the fewest outstanding prefill tokens (the uncached
prompt tokens of its requests whose prefill has not ended, by the time model); ties rotate (the first after
the previous request's replica).

The load-only baseline: what a least-outstanding-work balancer does (Envoy's
``LEAST_REQUEST`` weighs requests, this weighs their prefill work).
"""

from __future__ import annotations

from kvern.cluster.routers.base import Router
from kvern.cluster.view import FleetView, least


class LeastLoaded(Router):
    name = "least-loaded"
    summary = "fewest outstanding prefill tokens"

    def route(self, r: int, view: FleetView) -> int:
        return least(view.pending_tokens, after=view.last)
