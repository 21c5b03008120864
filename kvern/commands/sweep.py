"""``kvern sweep``: hit rate against capacity per policy, and the capacity answers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kvern.commands.common import parse_params, run_and_report, run_folder, supported_policies
from kvern.infra.config import Config
from kvern.infra.console import Output
from kvern.infra.errors import UsageError
from kvern.infra.executor import ExecutorSpec, open_executor
from kvern.ingest.pipeline import LoadOptions
from kvern.sim.sweep import SweepResult


def sweep(trace_path: Path, cfg: Config, load: LoadOptions, *, policies: str | None, capacity: str | None,
          points: int, profile: str | None, params: Sequence[str] | None, jobs: int | None,
          output: Path | None, out: Output, charts: bool = True,
          executor: ExecutorSpec | None = None) -> SweepResult:
    """``executor``: Ray, or local processes (``--jobs``, else ``executor.jobs``, else all cores)."""
    from kvern.report.sweep import sweep_json, sweep_renderable, write_sweep
    from kvern.sim.policies import parse_policy_list
    from kvern.sim.sweep import run_sweep

    if jobs is not None and executor is not None and executor.kind == "ray":
        raise UsageError("--jobs counts local processes; with --executor ray the cluster's CPUs set the pace")

    profile = profile or cfg.simulate.profile
    if policies is None:  # the config's list: keep what the profile can run, as `compare` does
        policies = ",".join(supported_policies(parse_policy_list(cfg.simulate.policies), profile, out))
    cfg = load.config(cfg)
    trace = load.load(trace_path, cfg, out)
    runner = None
    if executor is not None and executor.kind == "ray":
        runner = open_executor(executor)
    elif jobs is None and executor is not None:
        jobs = executor.jobs
    return run_and_report(
        lambda: run_sweep(trace, cfg, policies=policies, profile=profile, capacity=capacity, points=points,
                          params=parse_params(params), jobs=jobs, out=out, executor=runner),
        run_folder(cfg, "sweep", trace_path, profile, output),
        write=lambda r, f: write_sweep(r, f, charts=charts),
        show=lambda r: out.result(sweep_renderable(r), sweep_json(r)), out=out)
