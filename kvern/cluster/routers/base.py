"""The router interface and its parameters (docs/cluster.md#routers).

A router picks a replica for each request, in arrival order. ``route(r, view)`` sees the
fleet at the request's arrival (``kvern.cluster.view.FleetView``: loads from the time model,
exact cached prefixes) and returns a replica index; ``routed`` tells it where the request
went once served, for routers that keep their own estimate of the replicas' caches. A
router that needs neither loads nor caches (``online = False``) assigns every request at
once (``assign``), and the fleet then serves each replica's requests in one call.

Parameters are defaults first, then ``--param ROUTER.KEY=VALUE`` overrides; an unknown key
fails naming the valid ones; non-default values become part of the display name.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from kvern.cluster.view import FleetView
from kvern.infra.errors import UsageError
from kvern.ingest.stream import BlockStream


@dataclass(frozen=True)
class RouteContext:
    """What a router is built with: the fleet's size, the requests and the run's seed."""

    replicas: int
    stream: BlockStream
    sessions: list[str | None]
    """Session id of each request of the stream (None where the log has none)."""
    capacity_blocks: int
    seed: int


class Router(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = {}
    online: ClassVar[bool] = True
    """Routes on loads or caches, request by request (False: ``assign`` does all at once)."""
    cache_aware: ClassVar[bool] = False
    """Routes on (an estimate of) the replicas' caches: its errors and regret are reported."""

    def __init__(self, ctx: RouteContext, params: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.params = parse_router_params(self.name, self.defaults, params)
        self.estimate = -1
        """Blocks the router believed the chosen replica held for the last request (-1: none)."""

    @property
    def display_name(self) -> str:
        changed = {k: v for k, v in self.params.items() if v != self.defaults[k]}
        if not changed:
            return self.name
        return f"{self.name}({','.join(f'{k}={v}' for k, v in sorted(changed.items()))})"

    def assign(self) -> np.ndarray:
        """int32[R]: the replica of every request (offline routers only)."""
        raise NotImplementedError(f"router {self.name} routes request by request")

    def route(self, r: int, view: FleetView) -> int:
        return int(self._assigned[r])

    def routed(self, r: int, replica: int, view: FleetView) -> None:  # noqa: B027 - optional hook
        """Request ``r`` was served by ``replica`` (update the router's own estimate)."""

    @property
    def _assigned(self) -> np.ndarray:
        a = getattr(self, "_assignment", None)
        if a is None:
            a = self._assignment = self.assign()
        return a


def parse_router_params(router: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any]
                        ) -> dict[str, Any]:
    """Defaults, then overrides converted to the default's type; unknown keys fail."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        valid = ", ".join(sorted(defaults)) or "none"
        raise UsageError(f"--param {router}.{sorted(unknown)[0]}: unknown parameter (valid: {valid})")
    out = dict(defaults)
    for key, value in overrides.items():
        kind = type(defaults[key])
        try:
            if kind is bool:
                if isinstance(value, bool):
                    out[key] = value
                elif str(value).lower() in ("true", "1", "yes", "on"):
                    out[key] = True
                elif str(value).lower() in ("false", "0", "no", "off"):
                    out[key] = False
                else:
                    raise ValueError(value)
            elif kind is str:
                out[key] = str(value)
            else:
                out[key] = kind(float(value)) if kind is int else kind(value)
        except (TypeError, ValueError):
            raise UsageError(f"--param {router}.{key}={value}: expected a {kind.__name__}") from None
    return out
