"""``kvern cluster``: N replicas behind routers, with optional offload tiers; write, show.

On Ctrl-C the settings that finished are written and shown, marked partial, and the command
exits 130 (the shared skeleton).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kvern.commands.common import parse_params, run_and_report, run_folder
from kvern.infra.config import Config
from kvern.infra.console import Output
from kvern.infra.executor import ExecutorSpec, open_executor
from kvern.ingest.pipeline import LoadOptions


def parse_router_params(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["sglang.cache_threshold=0.3"]`` -> ``{"sglang": {"cache_threshold": "0.3"}}``."""
    return parse_params(items, "ROUTER", "sglang.cache_threshold=0.3")


def cluster(trace_path: Path, cfg: Config, load: LoadOptions, *, replicas: str | None, routers: str | None,
            capacity: str | None, offload: Sequence[str] | None, profile: str | None, policy: str,
            params: Sequence[str] | None, output: Path | None, out: Output,
            executor: ExecutorSpec | None = None) -> Any:
    """``executor``: where the settings run (None or local: one after another here, unless
    ``executor.jobs`` asks for more processes)."""
    from kvern.cluster.run import run_cluster
    from kvern.report.cluster import cluster_renderable, write_cluster

    profile = profile or cfg.simulate.profile
    cfg = load.config(cfg)
    parsed = parse_router_params(params)
    trace = load.load(trace_path, cfg, out)
    runner = None if executor is None else open_executor(executor)
    return run_and_report(
        lambda: run_cluster(trace, cfg, replicas=replicas or cfg.cluster.replicas,
                            routers=routers or cfg.cluster.routers,
                            capacities=capacity or cfg.cluster.capacity, profile=profile, policy=policy,
                            offloads=list(offload or []), params=parsed, out=out, executor=runner),
        run_folder(cfg, "cluster", trace_path, profile, output),
        write=write_cluster, show=lambda r: out.result(cluster_renderable(r), r.document()), out=out)
