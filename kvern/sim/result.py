"""What one simulation (one model × policy × capacity × profile) returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SimResult:
    model: str
    policy: str
    """The policy's name (``lfu``)."""
    policy_label: str
    """Its display name, non-default parameters included (``lfu(half_life=100)``)."""
    profile: str
    capacity_blocks: int
    block_size: int
    prompt_tokens: np.ndarray
    """int64[R], as in the stream."""
    cached_tokens: np.ndarray
    """int64[R]: tokens served from cache at the request's arrival."""
    unschedulable: np.ndarray
    """bool[R]: the request needs more blocks than the pool has (a full miss)."""
    evicted_blocks: int
    """Cache entries dropped to make room (vllm: keyed blocks whose key was dropped)."""

    @property
    def num_requests(self) -> int:
        return len(self.cached_tokens)

    @property
    def hit(self) -> np.ndarray:
        return self.cached_tokens > 0

    @property
    def total_prompt_tokens(self) -> int:
        return int(self.prompt_tokens.sum())

    @property
    def total_cached_tokens(self) -> int:
        return int(self.cached_tokens.sum())

    @property
    def token_hit_rate(self) -> float:
        total = self.total_prompt_tokens
        return self.total_cached_tokens / total if total else 0.0
