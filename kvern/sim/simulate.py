"""One simulation: one model's block stream × one policy × one capacity × one profile."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kvern.infra.errors import UsageError
from kvern.ingest.stream import BlockStream
from kvern.sim.capacity import useful_capacity
from kvern.sim.policies import make_policy
from kvern.sim.profiles import Advance, get_profile
from kvern.sim.result import SimResult


def simulate(stream: BlockStream, policy: str, capacity_blocks: int, profile: str = "vllm",
             params: Mapping[str, Any] | None = None, *, advance: Advance | None = None,
             run_defaults: Mapping[str, Any] | None = None) -> SimResult:
    """Replay ``stream`` through ``profile``'s cache of ``capacity_blocks`` blocks under ``policy``.

    ``params`` are the policy's parameter overrides (unknown keys are a ``UsageError``);
    ``run_defaults`` replace its defaults without showing in its display name.
    """
    engine = get_profile(profile)
    check_supported(profile, policy)
    if capacity_blocks < 1:
        raise UsageError(f"--capacity: {capacity_blocks} blocks; the cache needs at least one block")
    # Memory follows the trace, not the capacity asked for: a cache that never evicts behaves
    # the same at any larger size (docs/architecture.md §5); the result keeps the asked size.
    bound = useful_capacity(stream, profile)
    run_at = int(capacity_blocks) if bound is None else min(int(capacity_blocks), bound)
    result = engine.simulate(stream, make_policy(policy, params, run_defaults), run_at, advance)
    if run_at != capacity_blocks:
        result = dataclasses.replace(result, capacity_blocks=int(capacity_blocks))
    return result


def check_supported(profile: str, policy: str) -> None:
    engine = get_profile(profile)
    if engine.policies is not None and policy not in engine.policies:
        allowed = ", ".join(sorted(engine.policies))
        raise UsageError(f"--profile {profile} supports only the policies {allowed}, not {policy!r}")
