"""Rich renderables for ``kvern gate`` and ``kvern analyze`` (printed by the caller's Output)."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from kvern.analysis.breakers import Breaker
from kvern.analysis.gate import METRICS, Check, Verdict
from kvern.analysis.hot_prefixes import HotPrefix
from kvern.analysis.measure import RuleGain
from kvern.analysis.results import Analysis, GateOutcome

_METRIC_NAMES = {"token_hit_rate": "token hit rate", "request_hit_rate": "request hit rate",
                 "savings": "prefill FLOPs saved"}


def gate_renderable(g: GateOutcome) -> RenderableType:
    s = g.settings
    head = f"gate · {g.trace_name or 'trace'} · {s.policy} @ {s.capacity} · profile {s.profile}"
    if g.verdict is None:
        values = ", ".join(f"{_METRIC_NAMES[m]} {g.row[c]:.2%}" for m, c in METRICS.items()
                           if g.row.get(c) is not None)
        return Text(f"{head}\nbaseline written to {g.baseline_written}: {values}")
    parts: list[RenderableType] = [_verdict_table(head, g.verdict)]
    if g.breakers:
        parts.append(breakers_table(g.breakers, g.gains, title="Top cache breakers"))
        parts.append(Text("→ " + g.breakers[0].describe(), style="bold"))
        parts.extend(_gain_lines(g.gains))
        parts.extend(_rule_yaml(g.breakers))
    parts.extend(Text(n, style="dim") for n in g.notes)
    return Group(*parts)


def analysis_renderable(a: Analysis) -> RenderableType:
    parts: list[RenderableType] = [_profile_table(a), _distribution_table(a)]
    if a.breakers:
        parts.append(breakers_table(a.breakers, a.gains, title="Cache breakers (first divergence from a "
                                    "near-identical earlier prompt)", show_text=a.show_text))
        parts.append(Text("→ " + a.breakers[0].describe(show_text=a.show_text), style="bold"))
        parts.extend(_gain_lines(a.gains))
        parts.extend(_rule_yaml(a.breakers))
    elif len(a.scan.skipped_models) < len(a.profile.summary.models):
        parts.append(Text("No cache breakers: no request diverged from an earlier prompt and agreed again."))
    if a.hot:
        parts.append(hot_tree(a.hot))
    parts.extend(Text(n, style="dim") for n in a.notes)
    return Group(*parts)


def breakers_table(breakers: list[Breaker], gains: list[RuleGain], *, title: str,
                   show_text: bool = False) -> Table:
    t = Table(title=title, title_justify="left")
    for name, justify in [("#", "right"), ("what", "left"), ("where", "left"), ("pattern", "left"),
                          ("lost tok", "right"), ("share", "right"), ("requests", "right"),
                          ("proposed rule", "left")]:
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for i, b in enumerate(breakers, 1):
        rule = "—" if b.rule is None else f"{b.rule.name}: → {b.rule.replace}"
        g = next((g for g in gains if b.rule and g.rule.pattern == b.rule.pattern), None)
        if g is not None:
            rule += f" ({_METRIC_NAMES[g.metric]} {g.gain * 100:+.1f} pt)"
        t.add_row(str(i), b.label, b.where(), Text(repr(b.example if show_text else b.pattern)),
                  f"{b.lost_tokens:,}", f"{b.share:.1%}", f"{b.requests:,}", rule)
    return t


def hot_tree(hot: list[HotPrefix]) -> Tree:
    hint = "; --show-text to see them" if all(h.text is None for h in hot) else ""
    tree = Tree(f"Hot prefixes (tokens saved = reuses × prefix tokens{hint})")
    nodes: dict[int, Tree] = {}
    for i, h in enumerate(hot):
        label = Text(f"{h.depth_tokens:,} tok · reused {h.reuses:,}× · saves {h.tokens_saved:,} tok · "
                     f"{h.model} · key {h.key[:12]}")
        if h.text is not None:
            label.append(f"  +{h.text!r}"[:120], style="dim")
        parent = tree if h.parent is None else nodes.get(h.parent, tree)
        nodes[i] = parent.add(label)
    return tree


def _verdict_table(title: str, v: Verdict) -> Table:
    t = Table(title=title, title_justify="left",
              caption="PASSED" if v.passed else "FAILED: caching regressed (exit 1)",
              caption_style="bold green" if v.passed else "bold red", caption_justify="left",
              box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)  # one line per check in 80 columns
    for name, justify in [("metric", "left"), ("check", "left"), ("baseline", "right"), ("now", "right"),
                          ("change", "right"), ("threshold", "right"), ("result", "left")]:
        t.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for c in v.checks:
        t.add_row(_METRIC_NAMES[v.metric], c.name, _pct(v.baseline), f"{v.current:.2%}",
                  "—" if v.change is None else f"{v.change * 100:+.2f} pt", _threshold(c),
                  Text("pass", style="green") if c.passed else Text("FAIL", style="bold red"))
    return t


def _threshold(c: Check) -> str:
    return f"≥ {c.limit:.2%}" if c.name == "floor" else f"drop ≤ {c.limit * 100:.2f} pt"


def _gain_lines(gains: list[RuleGain]) -> list[Text]:
    return [Text(f"  with rule {g.rule.name or g.rule.pattern!r} ({g.rule.replace}): "
                 f"{_METRIC_NAMES[g.metric]} {g.before:.2%} → {g.after:.2%} ({g.gain * 100:+.2f} pt); "
                 f"infinite-cache bound "
                 f"{g.bound_before:.2%} → {g.bound_after:.2%}") for g in gains]


def _rule_yaml(breakers: list[Breaker]) -> list[RenderableType]:
    """The proposed rules as config.yaml lines, ready to paste (the top breaker's first)."""
    import yaml

    rules = list({(b.rule.pattern, b.rule.replace): b.rule for b in breakers if b.rule}.values())
    if not rules:
        return []
    items = [{"name": r.name, "pattern": r.pattern, "replace": r.replace} for r in rules]
    body = yaml.safe_dump({"normalize": items}, sort_keys=False, allow_unicode=True, width=1000)
    return [Text("  proposed rules for config.yaml (measure each before keeping it):", style="dim"),
            Text("".join(f"    {line}\n" for line in body.splitlines()).rstrip("\n"))]


def _profile_table(a: Analysis) -> Table:
    s = a.profile.summary
    t = Table(title=f"Trace profile · {a.trace_name or 'trace'} · block {s.block_size} tokens",
              title_justify="left",
              caption="tokens: prompt tokens (then mean, p50, p99 per request); blocks: unique blocks; "
                      "inf hit: the infinite-cache token hit rate",
              caption_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for name in ("model", "requests", "sessions", "tokens", "mean", "p50", "p99", "blocks", "inf hit"):
        t.add_column(name, justify="left" if name == "model" else "right", no_wrap=True,
                     overflow="ellipsis", max_width=14 if name == "model" else None,
                     min_width=None if name == "model" else len(name))
    rows = [*s.models, s.total] if len(s.models) > 1 else s.models
    for m in rows:
        t.add_row(m.model, f"{m.requests:,}", f"{m.sessions:,}", f"{m.prompt_tokens:,}",
                  f"{m.mean_prompt_tokens:,.0f}", f"{m.p50_prompt_tokens:,.0f}",
                  f"{m.p99_prompt_tokens:,.0f}", f"{m.unique_blocks:,}", f"{m.infinite_cache_hit_rate:.2%}")
    return t


def _distribution_table(a: Analysis) -> Table:
    p = a.profile
    t = Table(title="Distributions", title_justify="left",
              caption=f"infinite cache: token hit rate {p.infinite_token_hit_rate:.2%}, request hit rate "
                      f"{p.infinite_request_hit_rate:.2%}; LRU blocks for 50/90/99% of block reuses: "
                      + (", ".join(f"{v:,}" for v in p.capacity_for_reuses.values()) or "n/a"),
              caption_justify="left")
    for name in ("what", "count", "mean", "p50", "p90", "p99", "max"):
        t.add_column(name, justify="left" if name == "what" else "right")
    for what, d in (("prompt tokens", p.prompt_tokens), ("requests per session", p.requests_per_session),
                    ("reuse distance (blocks)", p.reuse_distance)):
        t.add_row(what, f"{d.count:,}", f"{d.mean:,.1f}", f"{d.p50:,.0f}", f"{d.p90:,.0f}", f"{d.p99:,.0f}",
                  f"{d.max:,.0f}")
    return t


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.2%}"
