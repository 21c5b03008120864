"""The engine-profile interface (DESIGN.md §6).

A profile fixes the rules that make a simulation predict one engine: block size and which
blocks are cacheable, the last-token rule, when and at what granularity it evicts, how a
running request holds memory. A profile is a ``Profile`` subclass registered in
``kvern.sim.profiles.PROFILES``; the policy (which entry goes next) stays separate.

To add one (e.g. ``llamacpp``), in its own module::

    from kvern.sim.profiles.base import Profile, register
    from kvern.sim.result import SimResult

    @register
    class LlamaCpp(Profile):
        name = "llamacpp"
        summary = "llama-server slot prompt cache"
        policies = frozenset({"lru"})          # the policies it can honour; None = all

        def simulate(self, stream, policy, capacity_blocks, advance=None) -> SimResult:
            ...                                # one SimResult per (stream, policy, capacity)

and import that module in ``kvern/sim/profiles/__init__.py``. ``simulate`` gets one model's
``BlockStream`` (requests in arrival order, blocks interned), a ``Policy``, the capacity in
blocks of ``stream.block_size`` tokens, and ``advance(n)`` to report progress in requests. A
compiled engine takes ``policy.state(PolicyContext(stream, n_entries))`` and calls
``kvern.sim.policies.kernels.policy_touch(policy.code, …)`` in its loop; a Python engine calls
``policy.bind(ctx)`` once, then ``policy.touch(…)`` / ``policy.on_evict(…)``. Either way the
engine owns the entries, the leaves and the capacity, and evicts the smallest
``(priority, -depth, id)``. It must be deterministic (same input, same output), never print,
and fill every per-request array of the ``SimResult``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from kvern.ingest.stream import BlockStream
from kvern.sim.policies import Policy
from kvern.sim.result import SimResult

Advance = Callable[[float], None]

PROFILES: dict[str, type[Profile]] = {}
"""Name -> profile class; filled by ``@register``."""


class Profile(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    policies: ClassVar[frozenset[str] | None] = None
    """Policy names this profile can run; None = every policy."""
    last_token_rule: ClassVar[bool] = True
    """The engine recomputes the last prompt token (cached ≤ prompt_tokens − 1)."""

    @abstractmethod
    def simulate(self, stream: BlockStream, policy: Policy, capacity_blocks: int,
                 advance: Advance | None = None) -> SimResult:
        """Run the requests of ``stream`` in order through a cache of ``capacity_blocks``."""


def register(cls: type[Profile]) -> type[Profile]:
    assert cls.name not in PROFILES, f"profile {cls.name!r} registered twice"
    PROFILES[cls.name] = cls
    return cls


PROGRESS_EVERY = 1024
"""Requests between two progress updates (keeps the callback off the hot loop)."""
CHUNK = 4096
"""Requests per call of a compiled engine loop (progress is reported between calls)."""
