"""Console tables of a run: one Rich table per run, the best online policy marked."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from kvern.sim.run import RunResult


def best_policies(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Capacity label -> the online (non-Belady) policy with the highest token hit rate.

    Ties go to the policy listed first, so the mark is deterministic.
    """
    best: dict[str, tuple[float, str]] = {}
    for r in rows:
        if r["policy"] == "belady":
            continue
        cur = best.get(r["capacity"])
        if cur is None or r["token_hit_rate"] > cur[0]:
            best[r["capacity"]] = (r["token_hit_rate"], r["policy"])
    return {cap: name for cap, (_, name) in best.items()}


def summary_renderable(result: RunResult) -> Table:
    rows = result.summary.to_pylist()
    best = best_policies(rows)
    table = Table(title=f"{result.trace_name or 'trace'} · profile {result.profile}  (★ best online policy)",
                  title_justify="left")
    for name, justify in [("capacity", "right"), ("blocks", "right"), ("policy", "left"),
                          ("token hit", "right"), ("request hit", "right"), ("mean ratio", "right"),
                          ("cached tok", "right"), ("evicted", "right"), ("unsched.", "right"),
                          ("time saved", "right"), ("gap to belady", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    order = {p: i for i, p in enumerate(result.policies)}
    rows.sort(key=lambda r: ([s.label for s in result.capacities].index(r["capacity"]), order[r["policy"]]))
    last_cap = None
    for r in rows:
        if last_cap is not None and r["capacity"] != last_cap:
            table.add_section()
        last_cap = r["capacity"]
        star = best.get(r["capacity"]) == r["policy"]
        name = f"★ {r['policy_label']}" if star else f"  {r['policy_label']}"
        style = "bold green" if star else ("dim" if r["policy"] == "belady" else None)
        table.add_row(
            r["capacity"], f"{r['capacity_blocks']:,}", name,
            f"{r['token_hit_rate']:.2%}", f"{r['request_hit_rate']:.2%}",
            f"{r['mean_request_hit_ratio']:.2%}",
            f"{r['cached_tokens']:,}", f"{r['evicted_blocks']:,}", f"{r['unschedulable_requests']:,}",
            "n/a" if r["time_saved_s"] is None else f"{r['time_saved_s']:.1f} s",
            "—" if r["gap_to_belady"] is None else f"{r['gap_to_belady'] * 100:.2f} pt",
            style=style,
        )
    return table
