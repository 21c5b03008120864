"""Console tables of a run: one Rich table per run, the best online policy marked.

With several models the main table shows the rows over the whole trace ("*"), and a compact
per-model table follows (token hit rate per policy, each model's own cache), 80 columns wide.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table

from kvern.sim.metrics import aggregate_rows
from kvern.sim.run import RunResult

_MODEL_WIDTH = 18
"""Model names are cut to this in the per-model table (so that five policies fit in 80 columns)."""


def best_policies(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Capacity label -> the online (non-Belady) policy with the highest token hit rate, among
    the rows over the whole trace (``aggregate_rows``: a model's own rows are not compared).

    Ties go to the policy listed first, so the mark is deterministic.
    """
    best: dict[str, tuple[float, str]] = {}
    for r in aggregate_rows(rows):
        if r["policy"] == "belady":
            continue
        cur = best.get(r["capacity"])
        if cur is None or r["token_hit_rate"] > cur[0]:
            best[r["capacity"]] = (r["token_hit_rate"], r["policy"])
    return {cap: name for cap, (_, name) in best.items()}


def summary_renderable(result: RunResult) -> RenderableType:
    """Rows grouped by capacity; ★ marks the best online policy, Belady (the ceiling) is dim.
    With several models, the per-model table follows."""
    rows = result.aggregate_rows()
    best = best_policies(rows)
    models = result.settings.get("models", [])
    several = len(models) > 1
    caption = "gap = Belady's token hit rate minus the policy's, in points"
    if several:
        caption += f"\ncapacity is per model: each of the {len(models)} models has its own cache"
    if result.partial:
        not_run = len(result.settings.get("not_run", []))
        caption += f"\nPARTIAL: interrupted, {not_run} simulation(s) did not run"
    table = Table(title=f"{result.trace_name or 'trace'} · profile {result.profile} · ★ best online policy"
                        + (" · PARTIAL" if result.partial else ""),
                  title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False)
    table.add_column("capacity", justify="right", no_wrap=True)
    table.add_column("policy", no_wrap=True)
    for name in ("tok hit", "req hit", "mean", "evicted", "unsch", "saved", "gap"):
        table.add_column(name, justify="right", no_wrap=True)
    labels = [s.label for s in result.capacities]
    order = {p: i for i, p in enumerate(result.policies)}
    rows.sort(key=lambda r: (labels.index(r["capacity"]), order[r["policy"]]))
    last_cap, line = None, 0
    for r in rows:
        if last_cap is not None and r["capacity"] != last_cap:
            table.add_section()
        line = 0 if r["capacity"] != last_cap else line + 1
        last_cap = r["capacity"]
        # The label on a group's first line; on its second, what a token or byte capacity came
        # to in blocks (one model only: with several the row sums their caches).
        cap = ""
        if line == 0:
            cap = r["capacity"]
        elif line == 1 and not several and r["capacity"] != str(r["capacity_blocks"]):
            cap = f"{r['capacity_blocks']:,} blk"
        star = best.get(r["capacity"]) == r["policy"]
        table.add_row(
            cap, ("★ " if star else "  ") + r["policy_label"],
            f"{r['token_hit_rate']:.2%}", f"{r['request_hit_rate']:.1%}",
            f"{r['mean_request_hit_ratio']:.1%}",
            f"{r['evicted_blocks']:,}", f"{r['unschedulable_requests']:,}",
            "n/a" if r["time_saved_s"] is None else f"{r['time_saved_s']:.1f}s",
            "—" if r["gap_to_belady"] is None else f"{r['gap_to_belady'] * 100:.2f}",
            style="bold green" if star else ("dim" if r["policy"] == "belady" else None),
        )
    return Group(table, per_model_renderable(result)) if several else table


def per_model_renderable(result: RunResult) -> Table:
    """Model × capacity lines, a token hit rate column per policy; ★ the best online policy of
    the line. ``blocks`` is the model's own cache (a token or byte capacity differs per model)."""
    rows = result.model_rows()
    table = Table(title="per model · token hit rate · ★ best online policy", title_justify="left",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    table.add_column("model", no_wrap=True, max_width=_MODEL_WIDTH, overflow="ellipsis")
    table.add_column("capacity", justify="right", no_wrap=True)
    # Blocks only where a token or byte capacity came to a count other than its label.
    show_blocks = any(r["capacity"] != str(r["capacity_blocks"]) for r in rows)
    if show_blocks:
        table.add_column("blocks", justify="right", no_wrap=True)
    for name in result.policies:
        table.add_column(name, justify="right", no_wrap=True)
    cells: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["model"], r["capacity"]), {})[r["policy"]] = r
    last = None
    for (model, cap), by_policy in cells.items():
        if last is not None and model != last:
            table.add_section()
        online = [p for p in result.policies if p != "belady" and p in by_policy]
        top = max(online, key=lambda p: by_policy[p]["token_hit_rate"], default=None)  # ties: the first
        blocks = next(iter(by_policy.values()))["capacity_blocks"]
        line = [model if model != last else "", cap] + ([f"{blocks:,}"] if show_blocks else [])
        for name in result.policies:
            r = by_policy.get(name)
            line.append("—" if r is None else f"{'★' if name == top else ''}{r['token_hit_rate']:.2%}")
        table.add_row(*line)
        last = model
    return table


def live_renderable(s: dict[str, Any]) -> Table:
    """The run at a glance: what ran, what the server cached, how well the profile predicted it."""
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def num(v: float | None, unit: str = "") -> str:
        return "n/a" if v is None else f"{v:,.1f}{unit}" if isinstance(v, float) else f"{v:,}{unit}"

    t = Table(title=f"live replay on {s['backend']} · profile {s['profile']} · {s['pacing']}",
              show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    rows = [
        ("requests (ok / failed)", f"{s['succeeded']:,} / {s['failed']:,}"),
        ("prompt tokens", num(s["prompt_tokens"])),
        ("cached tokens, observed", num(s["observed_cached_tokens"])),
        ("cached tokens, predicted", num(s["predicted_cached_tokens"])),
        ("token hit rate, observed / predicted",
         f"{pct(s['observed_token_hit_rate'])} / {pct(s['predicted_token_hit_rate'])}"),
        ("server-side hit rate (/metrics)", pct(s.get("server_token_hit_rate"))),
        ("requests where prediction = observation",
         f"{s['agreed']:,} of {s['compared']:,} ({pct(s['agreement_rate'])})"),
        ("mean |observed − predicted|", num(s["mean_abs_gap"], " tok")),
        ("TTFT p50 / p99", f"{num(s['ttft_p50_ms'], ' ms')} / {num(s['ttft_p99_ms'], ' ms')}"),
        ("retries", num(s["retries"])),
    ]
    rows += [(f"gap cause: {cause}", f"{n:,}") for cause, n in s["gap_causes"].items()]
    if s["partial"]:
        rows.append(("[red]partial run[/]", str(s["stop_reason"])))
    for k, v in rows:
        t.add_row(k, v)
    return t
