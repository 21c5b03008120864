"""What ``kvern replay`` and ``kvern compare`` do between parsing flags and exiting.

Load the trace, simulate every policy × capacity, write ``reports/<run>/`` and show the
table (or the summary as JSON). Kept out of ``cli.py`` so the commands stay a few lines.
On Ctrl-C the simulations that finished are written and shown the same way, marked
partial, and the command exits 130.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kvern.config import Config
from kvern.errors import Interrupted, UsageError
from kvern.report.console import Output
from kvern.sim.run import RunInterrupted, RunResult, run_simulation

_PARAM = re.compile(r"^(?P<policy>[a-z_]+)\.(?P<key>[a-z_]+)=(?P<value>.+)$")


def parse_params(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["lfu.half_life=50"]`` -> ``{"lfu": {"half_life": "50"}}`` (the policy checks the keys)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or ():
        m = _PARAM.match(item.strip())
        if not m:
            raise UsageError(f"--param {item!r}: expected POLICY.KEY=VALUE, e.g. lfu.half_life=50")
        out.setdefault(m["policy"], {})[m["key"]] = m["value"]
    return out


def run_folder(cfg: Config, command: str, trace_path: Path, profile: str, output: Path | None) -> Path:
    """``--output``, else ``<output_dir>/<command>-<trace name>-<profile>`` (same run, same folder)."""
    if output is not None:
        return output
    stem = trace_path.name.split(".")[0] or "trace"
    return Path(cfg.output_dir) / f"{command}-{stem}-{profile}"


def simulate_and_report(trace_path: Path, cfg: Config, *, command: str, policies: str | Sequence[str],
                        capacity: str | None, profile: str | None, params: Sequence[str] | None,
                        output: Path | None, out: Output, load: dict[str, Any],
                        policies_from_config: bool = False) -> RunResult:
    """Load, simulate, write the report, show it. Policies taken from the config (not from a
    flag) are narrowed to what the profile supports, with a warning, instead of failing."""
    from kvern.ingest.pipeline import load_trace
    from kvern.report.html import write_html
    from kvern.report.tables import summary_renderable
    from kvern.report.write import summary_document, write_report
    from kvern.sim.policies import parse_policy_list
    from kvern.sim.profiles import get_profile

    profile = profile or cfg.simulate.profile
    if policies_from_config:
        supported = get_profile(profile).policies
        names = parse_policy_list(policies)
        kept = [p for p in names if supported is None or p in supported]
        if kept != names:
            out.warn(f"profile {profile} runs only {', '.join(kept) or 'none'} of the configured policies")
        policies = kept or names
    trace = load_trace(trace_path, cfg, out=out, **load)
    stopped: RunInterrupted | None = None
    try:
        result = run_simulation(trace, cfg, policies=policies, capacities=capacity or cfg.simulate.capacity,
                                profile=profile, params=parse_params(params), out=out)
    except RunInterrupted as e:
        stopped, result = e, e.result
    folder = run_folder(cfg, command, trace_path, profile, output)
    write_report(result, folder)
    write_html(folder)
    if stopped is not None:
        out.warn(f"{stopped.message}: the report holds the {len(result.results)} that finished, "
                 "marked partial")
    out.info(f"report written to {folder}/")
    out.result(summary_renderable(result), summary_document(result))
    if stopped is not None:
        raise Interrupted(f"{stopped.message}; partial report written to {folder}/")
    return result
