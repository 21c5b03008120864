"""Eviction policies, one file each behind ``Policy`` (see ``base.py`` for the contract).

``POLICIES`` maps a name to its class; ``make_policy("lfu", {"half_life": 100})`` builds one
with parameters (defaults, then overrides; unknown keys fail). To add a policy: a new module
with a compiled ``touch`` (and ``evicted`` if it needs it) and a ``Policy`` subclass whose
``state`` builds its arrays, a row in ``kernels.py`` under a new ``code``, and a line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvern.infra.errors import UsageError
from kvern.sim.policies.arc import ARC
from kvern.sim.policies.base import Policy, PolicyContext, PolicyState, Priority
from kvern.sim.policies.belady import Belady
from kvern.sim.policies.cost import Cost
from kvern.sim.policies.fifo import FIFO
from kvern.sim.policies.followup import Followup
from kvern.sim.policies.gdsf import GDSF
from kvern.sim.policies.lfu import LFU
from kvern.sim.policies.lru import LRU
from kvern.sim.policies.mru import MRU
from kvern.sim.policies.s3fifo import S3FIFO
from kvern.sim.policies.sieve import Sieve
from kvern.sim.policies.slru import SLRU

POLICIES: dict[str, type[Policy]] = {
    p.name: p for p in (LRU, FIFO, LFU, Cost, S3FIFO, ARC, Sieve, GDSF, MRU, SLRU, Followup, Belady)}


def make_policy(name: str, params: Mapping[str, Any] | None = None,
                run_defaults: Mapping[str, Any] | None = None) -> Policy:
    cls = POLICIES.get(name)
    if cls is None:
        raise UsageError(f"--policy: unknown policy {name!r} (one of {', '.join(POLICIES)})")
    return cls(params, run_defaults)


def parse_policy_list(text: str | list[str]) -> list[str]:
    """``"lru,lfu"`` or a list -> validated names, in order, without repeats."""
    names = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name not in POLICIES:
            raise UsageError(f"--policies: unknown policy {name!r} (one of {', '.join(POLICIES)})")
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError("--policies: no policy given")
    return out


__all__ = ["POLICIES", "Policy", "PolicyContext", "PolicyState", "Priority", "make_policy",
           "parse_policy_list"]
