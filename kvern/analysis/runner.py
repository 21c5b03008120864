"""What ``kvern gate`` and ``kvern analyze`` do between parsing flags and exiting.

Both load the trace once, simulate the gate's setting (one policy × one capacity × one
profile), and, where caching broke, find the breakers and measure their proposed rules by
re-ingesting the log with each rule added (the ingest cache keeps those traces too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvern.analysis.breakers import Breaker, Decoder, config_with_rule, find_breakers
from kvern.analysis.divergence import Scan, scan
from kvern.analysis.hot_prefixes import HotPrefix, hot_prefixes
from kvern.analysis.profile import TraceProfile, profile
from kvern.config import Config, NormalizeRule
from kvern.errors import UsageError
from kvern.gate import (
    Baseline,
    Thresholds,
    Verdict,
    baseline_from_row,
    evaluate,
    metric_value,
    read_baseline,
    write_baseline,
)
from kvern.ingest.trace import Trace, is_parquet
from kvern.report.atomic import write_json
from kvern.report.console import NULL_OUTPUT, Output


@dataclass(frozen=True)
class GateSettings:
    """The one simulation a gate judges: defaults from ``gate:`` in config.yaml."""

    policy: str
    capacity: str
    profile: str

    @classmethod
    def from_config(cls, cfg: Config, policy: str | None = None, capacity: str | None = None,
                    profile: str | None = None) -> GateSettings:
        settings = cls(policy or cfg.gate.policy, capacity or cfg.gate.capacity, profile or cfg.gate.profile)
        if "," in settings.capacity or ":" in settings.capacity or "," in settings.policy:
            raise UsageError("--policy/--capacity: the gate judges one policy at one capacity "
                             f"(got {settings.policy!r} at {settings.capacity!r})")
        return settings


@dataclass(frozen=True)
class RuleGain:
    """A proposed rule, measured: the trace re-ingested with it and simulated again."""

    rule: NormalizeRule
    metric: str
    before: float
    after: float
    bound_before: float
    """Infinite-cache token hit rate without the rule (the most any cache could reach)."""
    bound_after: float

    @property
    def gain(self) -> float:
        return self.after - self.before

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.model_dump(), "metric": self.metric, "before": self.before,
                "after": self.after, "gain": self.gain, "infinite_cache_before": self.bound_before,
                "infinite_cache_after": self.bound_after}


@dataclass(frozen=True)
class Load:
    """How to load the trace (the shared ingest flags)."""

    path: Path
    fmt: str | None = None
    skip_invalid: bool = False
    no_cache: bool = False
    no_normalize: bool = False
    model: str | None = None

    def trace(self, cfg: Config, out: Output, *, normalize: bool | None = None) -> Trace:
        from kvern.ingest.pipeline import load_trace

        return load_trace(self.path, cfg, fmt=self.fmt, skip_invalid=self.skip_invalid,
                          no_cache=self.no_cache,
                          no_normalize=self.no_normalize if normalize is None else not normalize,
                          model=self.model, out=out)


@dataclass(frozen=True)
class GateOutcome:
    trace_name: str
    settings: GateSettings
    row: dict[str, Any]
    verdict: Verdict | None
    """None when the run only recorded a baseline."""
    breakers: list[Breaker] = field(default_factory=list)
    gains: list[RuleGain] = field(default_factory=list)
    baseline_written: Path | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace": self.trace_name, "settings": vars(self.settings), "row": self.row,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "passed": True if self.verdict is None else self.verdict.passed,
            "breakers": [b.to_dict() for b in self.breakers],
            "rule_gains": [g.to_dict() for g in self.gains],
            "baseline_written": None if self.baseline_written is None else str(self.baseline_written),
            "notes": self.notes,
        }


def run_gate(load: Load, cfg: Config, *, baseline: Path | None, thresholds: Thresholds,
             settings: GateSettings, update_baseline: bool = False, top: int = 3,
             out: Output = NULL_OUTPUT) -> GateOutcome:
    """Simulate the gate's setting and judge it; on failure, name the breakers and measure fixes."""
    if update_baseline and baseline is None:
        raise UsageError("--update-baseline needs --baseline FILE to write")
    base: Baseline | None = None
    if baseline is not None and not update_baseline:
        base = read_baseline(baseline)  # fail on a bad baseline before the slow part
    trace = load.trace(cfg, out)
    row = gate_row(trace, cfg, settings, out)
    if update_baseline:
        assert baseline is not None
        metric_value(row, thresholds.metric)  # a baseline the gate could not use is an error now
        write_baseline(baseline_from_row(row, trace.meta.source), baseline)
        return GateOutcome(trace.meta.source, settings, row, None, baseline_written=baseline)
    verdict = evaluate(row, base, thresholds)
    if verdict.passed:
        return GateOutcome(trace.meta.source, settings, row, verdict)
    breakers, notes = _breakers(trace, cfg, top, out)
    gains, more = measure_rules(load, cfg, trace, [b.rule for b in breakers if b.rule], settings,
                                thresholds.metric, out=out, limit=1)
    return GateOutcome(trace.meta.source, settings, row, verdict, breakers, gains, notes=notes + more)


def write_gate_folder(g: GateOutcome, folder: Path | None) -> Path | None:
    """``gate -o DIR``: the outcome as ``gate.json`` and ``report.html``, the CI artifact a person
    opens; nothing without a folder."""
    from kvern.report.html import write_html

    if folder is None:
        return None
    write_json(g.to_dict(), folder / "gate.json")
    return write_html(folder)


def gate_row(trace: Trace, cfg: Config, settings: GateSettings, out: Output) -> dict[str, Any]:
    """The summary row of the gate's one simulation over the whole trace (JSON-clean; with
    several models the "*" row, not a model's own)."""
    from kvern.report.metrics import aggregate_rows
    from kvern.report.write import summary_document
    from kvern.sim.run import run_simulation

    result = run_simulation(trace, cfg, policies=[settings.policy], capacities=settings.capacity,
                            profile=settings.profile, out=out)
    [row] = aggregate_rows(summary_document(result)["summary"], result.settings["models"])
    return dict(row)


def measure_rules(load: Load, cfg: Config, trace: Trace, rules: list[NormalizeRule], settings: GateSettings,
                  metric: str, *, out: Output, limit: int | None = None) -> tuple[list[RuleGain], list[str]]:
    """Each distinct rule (up to ``limit``), measured on ``metric`` and on the infinite-cache bound."""
    from kvern.ingest.stats import summarize

    unique = list({(r.pattern, r.replace): r for r in rules}.values())[:limit]
    if not unique:
        return [], []
    if is_parquet(load.path):
        return [], ["the proposed rules were not measured: that needs the raw log, not an ingested trace"]
    # With --no-normalize the configured rules stay off: measure the proposed rule alone.
    base_cfg = cfg
    if load.no_normalize:
        models = {k: m.model_copy(update={"normalize": None}) for k, m in cfg.models.items()}
        base_cfg = cfg.model_copy(update={"normalize": [], "models": models})
    before = metric_value(gate_row(trace, cfg, settings, NULL_OUTPUT), metric)
    bound_before = summarize(trace).total.infinite_cache_hit_rate
    gains = []
    for rule in unique:
        out.info(f"measuring the rule {rule.name or rule.pattern!r}: re-ingesting with it")
        fixed = load.trace(config_with_rule(base_cfg, rule), out, normalize=True)
        after = metric_value(gate_row(fixed, cfg, settings, NULL_OUTPUT), metric)
        gains.append(RuleGain(rule, metric, before, after, bound_before,
                              summarize(fixed).total.infinite_cache_hit_rate))
    return gains, []


def trace_decoder(trace: Trace, cfg: Config) -> Decoder:
    """Decode with the tokenizer that produced each model's ids (as the trace records it)."""
    from kvern.ingest.tokenizer import get_tokenizer, tokenizer_for_model

    def decode(model: str, ids: Any) -> str:
        name = trace.meta.tokenizers.get(model)
        tok = get_tokenizer(name) if name else tokenizer_for_model(cfg, model)[1]
        return tok.decode([int(i) for i in ids])  # type: ignore[attr-defined]

    return decode


def _breakers(trace: Trace, cfg: Config, top: int | None, out: Output) -> tuple[list[Breaker], list[str]]:
    found = scan(trace, out=out)
    notes = []
    if found.skipped_models:
        notes.append("no token ids for " + ", ".join(found.skipped_models)
                     + " (a hash-id trace): cache breakers need a log with text or tokens")
    if not found.divergences:
        return [], notes
    return find_breakers(trace, found, trace_decoder(trace, cfg), top=top), notes


# -- analyze ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    trace_name: str
    settings: GateSettings
    profile: TraceProfile
    scan: Scan
    breakers: list[Breaker]
    gains: list[RuleGain]
    hot: list[HotPrefix]
    show_text: bool
    notes: list[str] = field(default_factory=list)

    def gain_for(self, rule: NormalizeRule | None) -> RuleGain | None:
        if rule is None:
            return None
        key = (rule.pattern, rule.replace)
        return next((g for g in self.gains if (g.rule.pattern, g.rule.replace) == key), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace": self.trace_name,
            "settings": vars(self.settings),
            "profile": self.profile.to_dict(),
            "cacheable_tokens": self.scan.cacheable_tokens,
            "lost_tokens": self.scan.lost_tokens,
            "breakers": [b.to_dict(show_text=self.show_text) for b in self.breakers],
            "rule_gains": [g.to_dict() for g in self.gains],
            "hot_prefixes": [h.to_dict() for h in self.hot],
            "notes": self.notes,
        }


def run_analyze(load: Load, cfg: Config, *, settings: GateSettings, top: int = 10, top_prefixes: int = 20,
                show_text: bool = False, measure: bool = True, output: Path | None = None,
                out: Output = NULL_OUTPUT) -> tuple[Analysis, list[Path]]:
    """Profile, breakers (with measured rules), hot prefixes; written to ``output`` when given."""
    trace = load.trace(cfg, out)
    found = scan(trace, out=out)
    notes = []
    if found.skipped_models:
        notes.append("no token ids for " + ", ".join(found.skipped_models)
                     + " (a hash-id trace): cache breakers need a log with text or tokens")
    decode = trace_decoder(trace, cfg) if len(found.skipped_models) < len(trace.models()) else None
    breakers = find_breakers(trace, found, decode, top=top) if decode and found.divergences else []
    gains: list[RuleGain] = []
    if measure:
        gains, more = measure_rules(load, cfg, trace, [b.rule for b in breakers if b.rule], settings,
                                    "token_hit_rate", out=out, limit=3)
        notes += more
    hot = hot_prefixes(trace, top_prefixes, decode if show_text else None)
    analysis = Analysis(trace.meta.source, settings, profile(trace), found, breakers, gains, hot, show_text,
                        notes)
    written: list[Path] = []
    if output is not None:
        from kvern.analysis.charts import write_charts
        from kvern.report.html import write_html

        write_json(analysis.to_dict(), output / "analysis.json")
        written = [output / "analysis.json", *write_charts(analysis, output)]
        written.append(write_html(output))
    return analysis, written
