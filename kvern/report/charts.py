"""Charts of a run (PNG, Matplotlib's Agg backend), each titled with trace, profile, capacity.

* ``policies.png``: token hit rate per policy at each capacity, and the prefill time saved
  (or cached tokens where the geometry is unknown): the ranking at a glance, best marked.
* ``capacity.png`` (several capacities): token hit rate against capacity per policy, Belady
  drawn as the dashed ceiling.
* ``timeline.png``: token hit rate over the trace's time per policy, at the capacity where
  the online policies differ most (the largest one on a tie).

An interrupted run's charts show what finished: a policy × capacity that did not run is a gap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyarrow.compute as pc

from kvern.infra.files import atomic_path
from kvern.report.tables import best_policies
from kvern.sim.run import RunResult

_COLORS = {"lru": "#1f77b4", "fifo": "#8c564b", "lfu": "#2ca02c", "cost": "#ff7f0e", "belady": "#555555"}
_TIME_BINS = 48


def write_charts(result: RunResult, folder: Path) -> list[Path]:
    """The charts of the rows over the whole trace (with several models, the "*" rows)."""
    rows = result.aggregate_rows()
    paths = [_save(_policies(result, rows), folder / "policies.png")]
    if len(result.capacities) > 1:
        paths.append(_save(_capacity(result, rows), folder / "capacity.png"))
    paths.append(_save(_timeline(result, rows), folder / "timeline.png"))
    return paths


def _title(result: RunResult, what: str) -> str:
    return f"{what}\n{result.trace_name or 'trace'} · profile {result.profile}"


def _color(policy: str, i: int) -> str:
    return _COLORS.get(policy, f"C{i}")


def _policies(result: RunResult, rows: list[dict[str, Any]]) -> plt.Figure:
    caps = [s.label for s in result.capacities]
    pols = result.policies
    by = {(r["policy"], r["capacity"]): r for r in rows}
    blocks = {r["capacity"]: r["capacity_blocks"] for r in rows}
    best_hit = best_policies(rows)
    savings_known = all(r["time_saved_s"] is not None for r in rows)
    def best_by(which: int) -> dict[str, str]:
        column = "time_saved_s" if which == 1 else "cached_tokens"
        return best_policies([{**r, "token_hit_rate": r[column]} for r in rows])

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    width = 0.8 / len(pols)
    x = np.arange(len(caps))
    for panel, ax in enumerate(axes):
        for i, pol in enumerate(pols):
            vals = [np.nan if (pol, c) not in by else
                    by[(pol, c)]["token_hit_rate"] * 100 if panel == 0 else
                    by[(pol, c)]["time_saved_s"] if savings_known else
                    by[(pol, c)]["cached_tokens"] / 1e6 for c in caps]
            bars = ax.bar(x + (i - (len(pols) - 1) / 2) * width, vals, width, label=pol,
                          color=_color(pol, i), hatch="//" if pol == "belady" else None,
                          alpha=0.55 if pol == "belady" else 1.0)
            best = best_hit if panel == 0 else best_by(1 if savings_known else 2)
            for c_i, c in enumerate(caps):
                if best.get(c) == pol:
                    bar = bars[c_i]
                    ax.annotate("★", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=13, color="black")
        several = len(result.settings.get("models", [])) > 1  # rows then sum the models' caches
        ax.set_xticks(x, [c if several or c not in blocks else f"{c}\n({blocks[c]:,} blocks)"
                          for c in caps])
        ax.set_xlabel("capacity (per model)" if several else "capacity")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].set_ylabel("token hit rate (%)")
    axes[0].set_title("token hit rate (★ best online policy)")
    if savings_known:
        axes[1].set_ylabel("prefill time saved (s)")
        axes[1].set_title("estimated prefill time saved (★ most saved)")
    else:
        axes[1].set_ylabel("cached tokens (millions)")
        axes[1].set_title("cached tokens (savings n/a: no model geometry)")
    axes[0].legend(title="policy", fontsize=9)
    fig.suptitle(_title(result, "Policy comparison"), fontsize=11)
    fig.tight_layout()
    return fig


def _capacity(result: RunResult, rows: list[dict[str, Any]]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, pol in enumerate(result.policies):
        pts = sorted((r["capacity_blocks"], r["token_hit_rate"] * 100) for r in rows if r["policy"] == pol)
        if not pts:  # interrupted before this policy ran
            continue
        xs, ys = zip(*pts, strict=True)
        if pol == "belady":
            ax.plot(xs, ys, "--", color="black", lw=2, label="belady (offline ceiling)")
        else:
            ax.plot(xs, ys, "o-", color=_color(pol, i), label=pol)
    ax.set_xscale("log")
    ax.set_xlabel("capacity (blocks, log scale)")
    ax.set_ylabel("token hit rate (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="policy")
    ax.set_title(_title(result, "Hit rate against capacity"), fontsize=11)
    fig.tight_layout()
    return fig


def _timeline(result: RunResult, rows: list[dict[str, Any]]) -> plt.Figure:
    table = result.requests
    spread: dict[str, list[float]] = {}
    for r in rows:
        if r["policy"] != "belady":
            spread.setdefault(r["capacity"], []).append(r["token_hit_rate"])
    blocks = {r["capacity"]: r["capacity_blocks"] for r in rows}
    largest = max(blocks, key=lambda c: (max(spread.get(c, [0])) - min(spread.get(c, [0])), blocks[c]))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    arrival = table.column("arrival_s").to_numpy()
    # A log without timestamps has every arrival at 0: plot against arrival order instead.
    xcol = "arrival_s" if len(arrival) and arrival.max() > arrival.min() else "row"
    x = table.column(xcol).to_numpy().astype(np.float64)
    lo, span = (float(x.min()), float(x.max() - x.min())) if len(x) else (0.0, 0.0)
    edges = np.linspace(lo, lo + max(span, 1e-9), _TIME_BINS + 1)
    ran = {r["policy"] for r in rows if r["capacity"] == largest}
    for i, pol in enumerate(result.policies):
        if pol not in ran:  # interrupted before this policy ran at that capacity
            continue
        sub = table.filter(pc.and_(pc.equal(table.column("policy"), pol),
                                   pc.equal(table.column("capacity"), largest)))
        t = sub.column(xcol).to_numpy().astype(np.float64)
        idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, _TIME_BINS - 1)
        cached = np.bincount(idx, weights=sub.column("cached_tokens").to_numpy(), minlength=_TIME_BINS)
        prompt = np.bincount(idx, weights=sub.column("prompt_tokens").to_numpy(), minlength=_TIME_BINS)
        rate = np.divide(cached, prompt, out=np.full(_TIME_BINS, np.nan), where=prompt > 0) * 100
        mids = (edges[:-1] + edges[1:]) / 2
        style = "--" if pol == "belady" else "-"
        ax.plot(mids, rate, style, color="black" if pol == "belady" else _color(pol, i), label=pol)
    ax.set_xlabel("trace time (s since the first request)" if xcol == "arrival_s" else
                  "request (arrival order; the log has no timestamps)")
    ax.set_ylabel("token hit rate (%)")
    ax.grid(alpha=0.3)
    ax.legend(title="policy")
    ax.set_title(_title(result, f"Hit rate over time at capacity {largest}"), fontsize=11)
    fig.tight_layout()
    return fig


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
