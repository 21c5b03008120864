"""Small fleets for the cluster tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from kvern.cluster.fleet import SettingRun, Tiering, run_setting
from kvern.cluster.routers import ROUTERS
from kvern.cluster.timing import TimeModel
from kvern.ingest.stream import BlockStream
from kvern.sim.policies import make_policy

INSTANT = TimeModel(params=None, attn=0.0, flops_per_s=1.0, tokens_per_s=1e18, decode_s_per_token=0.0,
                    kv_bytes_per_token=None, cpu_bytes_per_s=1.0, disk_bytes_per_s=1.0)
"""Prefill and decode take no time: every replica is idle at every arrival (no load)."""


def slow(tokens_per_s: float = 1.0, decode_s_per_token: float = 0.0) -> TimeModel:
    return TimeModel(params=None, attn=0.0, flops_per_s=1.0, tokens_per_s=tokens_per_s,
                     decode_s_per_token=decode_s_per_token, kv_bytes_per_token=None, cpu_bytes_per_s=1.0,
                     disk_bytes_per_s=1.0)


def fleet(stream: BlockStream, profile: str, replicas: int, capacity: int, router: str,
          params: dict[str, Any] | None = None, tiering: Tiering | None = None, tm: TimeModel = INSTANT,
          sessions: list[str | None] | None = None, output_tokens: np.ndarray | None = None) -> SettingRun:
    n = stream.num_requests
    return run_setting(stream, profile, make_policy("lru"), replicas, capacity, ROUTERS[router], params or {},
                       sessions if sessions is not None else [None] * n, 0, tm,
                       output_tokens if output_tokens is not None else np.zeros(n, np.int64), tiering)
