"""``random``: each request to a replica drawn uniformly, from a seeded generator (``seed``,
default the config's ``cluster.seed``), so a rerun routes identically.

As SGLang router's ``random`` policy and Dynamo's ``--router-mode random``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from kvern.cluster.routers.base import Router


class Random(Router):
    name = "random"
    summary = "uniform random replica (seeded)"
    defaults: ClassVar[dict[str, Any]] = {"seed": -1}
    online = False

    def assign(self) -> np.ndarray:
        seed = self.params["seed"] if self.params["seed"] >= 0 else self.ctx.seed
        rng = np.random.default_rng(seed)
        return rng.integers(0, self.ctx.replicas, self.ctx.stream.num_requests).astype(np.int32)
