"""What ``kvern gate`` and ``kvern analyze`` find, as plain records for the report writers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvern.analysis.breakers import Breaker
from kvern.analysis.divergence import Scan
from kvern.analysis.gate import Verdict
from kvern.analysis.hot_prefixes import HotPrefix
from kvern.analysis.measure import RuleGain, SimSetting
from kvern.analysis.trace_profile import TraceProfile
from kvern.infra.config import NormalizeRule


@dataclass(frozen=True)
class GateOutcome:
    trace_name: str
    settings: SimSetting
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


@dataclass(frozen=True)
class Analysis:
    trace_name: str
    settings: SimSetting
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
