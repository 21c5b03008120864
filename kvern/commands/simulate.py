"""``kvern replay`` and ``kvern compare``: simulate every policy × capacity, write, show.

On Ctrl-C the simulations that finished are written and shown the same way, marked partial,
and the command exits 130.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kvern.commands.common import (
    check_policy_names,
    parse_params,
    run_and_report,
    run_folder,
    supported_policies,
)
from kvern.infra.config import Config
from kvern.infra.console import Output
from kvern.infra.executor import ExecutorSpec, open_executor
from kvern.ingest.pipeline import LoadOptions
from kvern.sim.run import RunResult


def simulate(trace_path: Path, cfg: Config, load: LoadOptions, *, command: str,
             policies: str | Sequence[str], capacity: str | None, profile: str | None,
             params: Sequence[str] | None, output: Path | None, out: Output,
             policies_from_config: bool = False, charts: bool = True,
             executor: ExecutorSpec | None = None) -> RunResult:
    """Policies taken from the config (not from a flag) are narrowed to what the profile
    supports, with a warning, instead of failing. ``executor``: where the simulations run
    (None or local: one after another here, unless ``executor.jobs`` asks for more)."""
    from kvern.report.tables import summary_renderable
    from kvern.report.write import write_report
    from kvern.sim.policies import parse_policy_list
    from kvern.sim.run import run_simulation

    profile = profile or cfg.simulate.profile
    if command == "replay":  # one policy, named by --policy: the message says that flag
        check_policy_names(policies, "--policy")
    if policies_from_config:
        policies = supported_policies(parse_policy_list(policies), profile, out)
    cfg = load.config(cfg)
    trace = load.load(trace_path, cfg, out)
    runner = None if executor is None else open_executor(executor)
    return run_and_report(
        lambda: run_simulation(trace, cfg, policies=policies, capacities=capacity or cfg.simulate.capacity,
                               profile=profile, params=parse_params(params), out=out, executor=runner),
        run_folder(cfg, command, trace_path, profile, output),
        write=lambda r, f: write_report(r, f, charts=charts),
        show=lambda r: out.result(summary_renderable(r), r.document()), out=out)
