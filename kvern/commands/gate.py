"""``kvern gate``: judge one simulation against thresholds and a baseline; on failure, name
the cache breakers and measure the rule that would fix the worst of them."""

from __future__ import annotations

from pathlib import Path

from kvern.analysis.gate import (
    Baseline,
    Thresholds,
    baseline_from_row,
    evaluate,
    metric_value,
    read_baseline,
    write_baseline,
)
from kvern.analysis.measure import SimSetting, measure_rules, setting_row, trace_breakers
from kvern.analysis.results import GateOutcome
from kvern.commands.common import write_folder
from kvern.infra.config import Config
from kvern.infra.console import NULL_OUTPUT, Output
from kvern.infra.errors import GateFailed, UsageError
from kvern.infra.files import check_target, register_input, write_json
from kvern.ingest.pipeline import LoadOptions


def gate(trace_path: Path, cfg: Config, load: LoadOptions, *, baseline: Path | None, thresholds: Thresholds,
         setting: SimSetting, update_baseline: bool, output: Path | None, out: Output) -> GateOutcome:
    """Run the gate and show its verdict; a failed gate raises ``GateFailed`` (exit 1).

    With ``output`` the outcome is also written as ``gate.json`` and ``report.html``, the CI
    artifact a person opens, before the verdict decides the exit code."""
    from kvern.report.analysis_tables import gate_renderable

    outcome = run_gate(trace_path, cfg, load, baseline=baseline, thresholds=thresholds, setting=setting,
                       update_baseline=update_baseline, out=out)
    if output is not None:
        write_folder(output, lambda staged: write_json(outcome.to_dict(), staged / "gate.json"))
        out.info(f"gate report written to {output}/")
    out.result(gate_renderable(outcome), outcome.to_dict())
    if outcome.verdict is not None and not outcome.verdict.passed:
        raise GateFailed(outcome.verdict.message())
    return outcome


def run_gate(trace_path: Path, cfg: Config, load: LoadOptions, *, baseline: Path | None,
             thresholds: Thresholds, setting: SimSetting, update_baseline: bool = False, top: int = 3,
             out: Output = NULL_OUTPUT) -> GateOutcome:
    """Simulate the gate's setting and judge it; on failure, name the breakers and measure fixes."""
    if update_baseline and baseline is None:
        raise UsageError("--update-baseline needs --baseline FILE to write")
    register_input(trace_path)
    if update_baseline and baseline is not None:  # fail before the slow part, not after it
        check_target(baseline)
    base: Baseline | None = None
    if baseline is not None and not update_baseline:
        register_input(baseline)
        base = read_baseline(baseline)  # fail on a bad baseline before the slow part
    trace = load.load(trace_path, cfg, out)
    row = setting_row(trace, cfg, setting, out)
    if update_baseline:
        assert baseline is not None
        metric_value(row, thresholds.metric)  # a baseline the gate could not use is an error now
        write_baseline(baseline_from_row(row, trace.meta.source), baseline)
        return GateOutcome(trace.meta.source, setting, row, None, baseline_written=baseline)
    verdict = evaluate(row, base, thresholds)
    if verdict.passed:
        return GateOutcome(trace.meta.source, setting, row, verdict)
    breakers, notes = trace_breakers(trace, cfg, top, out)
    gains, more = measure_rules(trace_path, load, cfg, trace, [b.rule for b in breakers if b.rule], setting,
                                thresholds.metric, out=out, limit=1)
    return GateOutcome(trace.meta.source, setting, row, verdict, breakers, gains, notes=notes + more)
