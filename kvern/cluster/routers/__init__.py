"""Routers (docs/cluster.md#routers): ``ROUTERS`` maps a name to a ``Router`` subclass.

One file per router, each citing the source it follows. To add one: a ``Router`` subclass
(``kvern/cluster/routers/base.py``) in its own module, registered in ``ROUTERS`` below, with
hand-computed cases in ``tests/cluster/test_routers.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvern.cluster.routers.base import RouteContext, Router
from kvern.cluster.routers.dynamo import Dynamo
from kvern.cluster.routers.least_loaded import LeastLoaded
from kvern.cluster.routers.llmd import LlmD
from kvern.cluster.routers.prefix import Prefix
from kvern.cluster.routers.random import Random
from kvern.cluster.routers.round_robin import RoundRobin
from kvern.cluster.routers.session import Session
from kvern.cluster.routers.sglang import SGLangRouter
from kvern.infra.errors import UsageError

ROUTERS: dict[str, type[Router]] = {cls.name: cls for cls in (
    RoundRobin, Random, Session, LeastLoaded, Prefix, Dynamo, SGLangRouter, LlmD)}


def parse_router_list(text: str | list[str]) -> list[str]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise UsageError("--router: no router given")
    for n in names:
        if n not in ROUTERS:
            raise UsageError(f"--router: unknown router {n!r} (one of {', '.join(ROUTERS)})")
    return list(dict.fromkeys(names))


def make_router(name: str, ctx: RouteContext, params: Mapping[str, Any] | None = None) -> Router:
    return ROUTERS[name](ctx, dict(params or {}))


__all__ = ["ROUTERS", "RouteContext", "Router", "make_router", "parse_router_list"]
