"""``kvern analyze``: the trace's profile, its cache breakers with measured rules, hot prefixes."""

from __future__ import annotations

from pathlib import Path

from kvern.analysis.measure import RuleGain, SimSetting, measure_rules, no_token_note, trace_decoder
from kvern.analysis.results import Analysis
from kvern.commands.common import run_folder, write_folder
from kvern.infra.config import Config
from kvern.infra.console import NULL_OUTPUT, Output
from kvern.ingest.pipeline import LoadOptions


def analyze(trace_path: Path, cfg: Config, load: LoadOptions, *, setting: SimSetting, top: int,
            top_prefixes: int, show_text: bool, measure: bool, output: Path | None,
            out: Output) -> Analysis:
    from kvern.report.analysis_tables import analysis_renderable
    from kvern.report.write import write_analysis

    folder = run_folder(cfg, "analyze", trace_path, setting.profile, output)
    analysis = run_analyze(trace_path, cfg, load, setting=setting, top=top, top_prefixes=top_prefixes,
                           show_text=show_text, measure=measure, out=out)
    write_folder(folder, lambda staged: write_analysis(analysis, staged))
    out.info(f"analysis written to {folder}/")
    out.result(analysis_renderable(analysis), analysis.to_dict())
    return analysis


def run_analyze(trace_path: Path, cfg: Config, load: LoadOptions, *, setting: SimSetting, top: int = 10,
                top_prefixes: int = 20, show_text: bool = False, measure: bool = True,
                out: Output = NULL_OUTPUT) -> Analysis:
    """Profile, breakers (with measured rules), hot prefixes."""
    from kvern.analysis.breakers import find_breakers
    from kvern.analysis.divergence import scan
    from kvern.analysis.hot_prefixes import hot_prefixes
    from kvern.analysis.trace_profile import profile

    trace = load.load(trace_path, cfg, out)
    found = scan(trace, out=out)
    notes = [no_token_note(found.skipped_models)] if found.skipped_models else []
    decode = trace_decoder(trace, cfg) if len(found.skipped_models) < len(trace.models()) else None
    breakers = find_breakers(trace, found, decode, top=top) if decode and found.divergences else []
    gains: list[RuleGain] = []
    if measure:
        rules = [b.rule for b in breakers if b.rule]
        gains, more = measure_rules(trace_path, load, cfg, trace, rules, setting, "token_hit_rate", out=out,
                                    limit=3)
        notes += more
    hot = hot_prefixes(trace, top_prefixes, decode if show_text else None)
    return Analysis(trace.meta.source, setting, profile(trace), found, breakers, gains, hot, show_text, notes)
