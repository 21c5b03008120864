"""``session``: session affinity by consistent hashing of the session id.

A hash ring (Karger et al. 1997) with ``vnodes`` virtual nodes per replica, each at
``xxh3_64("replica-<i>-<v>")``; a request goes to the first virtual node at or after
``xxh3_64(session id)`` (wrapping around), as Envoy's ``ring_hash`` and the session-affinity
modes of serving gateways do. A request without a session id is keyed by its first block (its
leading ``block_size`` tokens: a system prompt or a conversation's opening), the usual
fallback of prefix-hash affinity.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import xxhash

from kvern.cluster.routers.base import Router


class Session(Router):
    name = "session"
    summary = "consistent hashing of the session id (first block without one)"
    defaults: ClassVar[dict[str, Any]] = {"vnodes": 100}
    online = False

    def assign(self) -> np.ndarray:
        n, vnodes = self.ctx.replicas, max(1, int(self.params["vnodes"]))
        points = np.array([xxhash.xxh3_64_intdigest(f"replica-{i}-{v}".encode())
                           for i in range(n) for v in range(vnodes)], dtype=np.uint64)
        owners = np.repeat(np.arange(n, dtype=np.int32), vnodes)
        order = np.argsort(points, kind="stable")
        points, owners = points[order], owners[order]
        s = self.ctx.stream
        first = s.block_ids[s.req_offsets[:-1].clip(max=max(len(s.block_ids) - 1, 0))]
        keys = np.array([xxhash.xxh3_64_intdigest(sid.encode()) if sid is not None
                         else xxhash.xxh3_64_intdigest(f"block-{int(b)}".encode())
                         for sid, b in zip(self.ctx.sessions, first, strict=True)], dtype=np.uint64)
        pos = np.searchsorted(points, keys, side="left") % len(points)
        return owners[pos]
