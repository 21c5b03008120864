"""One simulation setting, judged and re-measured: what the gate and ``analyze`` share.

Both simulate one policy × one capacity × one profile over the whole trace (the ``*`` row of
the summary), and both measure a proposed normalization rule by re-ingesting the log with
the rule added and simulating again (the ingest cache keeps those traces too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvern.analysis.breakers import Breaker, Decoder, config_with_rule, find_breakers
from kvern.analysis.divergence import scan
from kvern.analysis.gate import metric_value
from kvern.infra.config import Config, NormalizeRule
from kvern.infra.console import NULL_OUTPUT, Output
from kvern.infra.errors import UsageError
from kvern.ingest.pipeline import LoadOptions
from kvern.ingest.trace import Trace, is_parquet


@dataclass(frozen=True)
class SimSetting:
    """The one simulation a gate judges and ``analyze`` measures rules with (``gate:`` in config)."""

    policy: str
    capacity: str
    profile: str

    @classmethod
    def from_config(cls, cfg: Config, policy: str | None = None, capacity: str | None = None,
                    profile: str | None = None) -> SimSetting:
        setting = cls(policy or cfg.gate.policy, capacity or cfg.gate.capacity, profile or cfg.gate.profile)
        if "," in setting.capacity or ":" in setting.capacity or "," in setting.policy:
            raise UsageError("--policy/--capacity: the gate judges one policy at one capacity "
                             f"(got {setting.policy!r} at {setting.capacity!r})")
        setting.check()
        return setting

    def check(self) -> None:
        """Fail on a profile, policy or capacity that cannot run, before the slow part, even when
        the run would never reach the simulation (``analyze`` on a trace without breakers)."""
        from kvern.sim.capacity import parse_capacity
        from kvern.sim.policies import POLICIES
        from kvern.sim.profiles import get_profile
        from kvern.sim.simulate import check_supported

        get_profile(self.profile)
        if self.policy not in POLICIES:
            raise UsageError(f"--policy: unknown policy {self.policy!r} (one of {', '.join(POLICIES)})")
        check_supported(self.profile, self.policy)
        parse_capacity(self.capacity)


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


def setting_row(trace: Trace, cfg: Config, setting: SimSetting, out: Output) -> dict[str, Any]:
    """The summary row of ``setting``'s simulation over the whole trace (JSON-clean; with
    several models the "*" row, not a model's own)."""
    from kvern.sim.metrics import aggregate_rows
    from kvern.sim.run import run_simulation

    result = run_simulation(trace, cfg, policies=[setting.policy], capacities=setting.capacity,
                            profile=setting.profile, out=out)
    [row] = aggregate_rows(result.document()["summary"], result.settings["models"])
    return dict(row)


def measure_rules(path: Path, load: LoadOptions, cfg: Config, trace: Trace, rules: list[NormalizeRule],
                  setting: SimSetting, metric: str, *, out: Output,
                  limit: int | None = None) -> tuple[list[RuleGain], list[str]]:
    """Each distinct rule (up to ``limit``), measured on ``metric`` and on the infinite-cache bound."""
    from kvern.sim.bounds import summarize

    unique = list({(r.pattern, r.replace): r for r in rules}.values())[:limit]
    if not unique:
        return [], []
    if is_parquet(path):
        return [], ["the proposed rules were not measured: that needs the raw log, not an ingested trace"]
    # With --no-normalize the configured rules stay off: measure the proposed rule alone.
    base_cfg = cfg
    if load.no_normalize:
        models = {k: m.model_copy(update={"normalize": None}) for k, m in cfg.models.items()}
        base_cfg = cfg.model_copy(update={"normalize": [], "models": models})
    before = metric_value(setting_row(trace, cfg, setting, NULL_OUTPUT), metric)
    bound_before = summarize(trace).total.infinite_cache_hit_rate
    gains = []
    for rule in unique:
        out.info(f"measuring the rule {rule.name or rule.pattern!r}: re-ingesting with it")
        fixed = load.load(path, config_with_rule(base_cfg, rule), out, normalize=True)
        after = metric_value(setting_row(fixed, cfg, setting, NULL_OUTPUT), metric)
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


def no_token_note(models: list[str]) -> str:
    return ("no token ids for " + ", ".join(models)
            + " (a hash-id trace): cache breakers need a log with text or tokens")


def trace_breakers(trace: Trace, cfg: Config, top: int | None,
                   out: Output) -> tuple[list[Breaker], list[str]]:
    """The cache breakers of ``trace`` (most tokens lost first), and notes on what was skipped."""
    found = scan(trace, out=out)
    notes = [no_token_note(found.skipped_models)] if found.skipped_models else []
    if not found.divergences:
        return [], notes
    return find_breakers(trace, found, trace_decoder(trace, cfg), top=top), notes
