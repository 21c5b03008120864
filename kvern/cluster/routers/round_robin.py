"""``round-robin``: request k (in arrival order) goes to replica k mod N.

The default of most serving routers (Dynamo's ``--router-mode round_robin``, SGLang router's
``round_robin`` policy, a Kubernetes Service's iptables/IPVS rr): no state but a counter.
"""

from __future__ import annotations

import numpy as np

from kvern.cluster.routers.base import Router


class RoundRobin(Router):
    name = "round-robin"
    summary = "request k to replica k mod N"
    online = False

    def assign(self) -> np.ndarray:
        return (np.arange(self.ctx.stream.num_requests) % self.ctx.replicas).astype(np.int32)
