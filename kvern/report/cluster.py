"""A cluster run's report folder (docs/cluster.md#outputs): files, charts, console table.

``cluster.parquet`` (request × setting), ``summary.parquet`` and ``summary.json`` (one row per
setting, with the run's settings), and the charts:

* ``cluster_hit_rate.png``: token hit rate and estimated TTFT p50 per router against the
  replica count (the dashed line: one cache of the summed capacity);
* ``cluster_frontier.png``: the balance-vs-reuse frontier: load imbalance (max/mean prefill
  tokens per replica) against token hit rate, a point per router × replica count;
* ``cluster_offload.png`` (with ``--offload``): tokens served per tier, per router.

Every file is written atomically; an interrupted run is marked partial as in ``write.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table

from kvern.cluster.run import ClusterResult
from kvern.infra.files import write_json, write_parquet
from kvern.report.charts import _save
from kvern.report.write import mark_partial


def write_cluster(result: ClusterResult, folder: str | Path, *, charts: bool = True) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "cluster.parquet", folder / "summary.parquet", folder / "summary.json"]
    write_parquet(mark_partial(result.requests, result.settings), written[0])
    write_parquet(mark_partial(result.summary, result.settings), written[1])
    write_json(result.document(), written[2])
    rows = result.aggregate_rows()
    if charts and rows:
        written.append(_save(_hit_rate(result, rows), folder / "cluster_hit_rate.png"))
        written.append(_save(_frontier(result, rows), folder / "cluster_frontier.png"))
        if any(r["offload"] != "none" for r in rows):
            written.append(_save(_offload(result, rows), folder / "cluster_offload.png"))
    return written


def _title(result: ClusterResult, what: str, rows: list[dict[str, Any]]) -> str:
    r = rows[0]
    return (f"{what}\n{result.trace_name or 'trace'} · profile {result.profile} · {r['policy']} · "
            f"capacity {r['capacity']} per replica")


def _first(rows: list[dict[str, Any]], offload: str = "none") -> list[dict[str, Any]]:
    cap = rows[0]["capacity"]
    return [r for r in rows if r["capacity"] == cap and r["offload"] == offload]


def _routers(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["router_label"] for r in rows))


def _hit_rate(result: ClusterResult, rows: list[dict[str, Any]]) -> plt.Figure:
    sel = _first(rows)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for k, name in enumerate(_routers(sel)):
        pts = sorted((r["replicas"], r["token_hit_rate"] * 100, r["ttft_p50_s"]) for r in sel
                     if r["router_label"] == name)
        xs = [p[0] for p in pts]
        axes[0].plot(xs, [p[1] for p in pts], "o-", color=f"C{k}", label=name)
        axes[1].plot(xs, [max(p[2], 1e-4) for p in pts], "o-", color=f"C{k}", label=name)
    glob = sorted({(r["replicas"], r["global_token_hit_rate"] * 100) for r in sel})
    if glob:
        axes[0].plot([g[0] for g in glob], [g[1] for g in glob], "--", color="black",
                     label="one cache of the summed capacity")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("replicas")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("token hit rate (%)")
    axes[0].set_title("reuse kept")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("TTFT p50, seconds (estimate)")
    axes[1].set_title("estimated TTFT p50 (time model)")
    axes[0].legend(fontsize=8)
    fig.suptitle(_title(result, "Routers against replica count", sel), fontsize=11)
    fig.tight_layout()
    return fig


def _frontier(result: ClusterResult, rows: list[dict[str, Any]]) -> plt.Figure:
    sel = [r for r in _first(rows) if r["replicas"] > 1] or _first(rows)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = "osD^v<>ph*"
    for k, name in enumerate(_routers(sel)):
        pts = [r for r in sel if r["router_label"] == name]
        ax.scatter([r["prefill_imbalance_max_mean"] for r in pts], [r["token_hit_rate"] * 100 for r in pts],
                   marker=markers[k % len(markers)], color=f"C{k}", label=name, s=50)
        for r in pts:
            ax.annotate(f"{r['replicas']}", (r["prefill_imbalance_max_mean"], r["token_hit_rate"] * 100),
                        textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("load imbalance: max/mean prefill tokens per replica (log; 1 = even)")
    ax.set_ylabel("token hit rate (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, title="router (label: replicas)")
    ax.set_title(_title(result, "Balance against reuse", sel), fontsize=11)
    fig.tight_layout()
    return fig


def _offload(result: ClusterResult, rows: list[dict[str, Any]]) -> plt.Figure:
    cap = rows[0]["capacity"]
    top = max(r["replicas"] for r in rows)
    sel = [r for r in rows if r["capacity"] == cap and r["replicas"] == top]
    labels = [f"{r['router_label']}\n{r['offload']}" for r in sel]
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(sel)), 5))
    bottom = [0.0] * len(sel)
    for tier, color in (("gpu", "#1f77b4"), ("cpu", "#ff7f0e"), ("disk", "#8c564b")):
        vals = [r[f"{tier}_token_hit_rate"] * 100 for r in sel]
        ax.bar(range(len(sel)), vals, bottom=bottom, color=color, label=tier)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(range(len(sel)), labels, fontsize=7, rotation=60, ha="right")
    ax.set_ylabel("token hit rate (%) by tier")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(_title(result, f"Tokens served per tier at {top} replicas", sel), fontsize=11)
    fig.tight_layout()
    return fig


CAPTION = """hit: token hit rate; gpu: from the replicas' GPU caches; tier: from the
offload tiers (what offload adds). one cache: a single cache of N × the capacity,
no offload (the reuse a fleet of N could keep); lost: its hit rate minus the
fleet's GPU hit rate, points. imb: max/mean prefill tokens per replica (1 = even,
N = all on one); spread: replicas' hit rates; p50/p99: TTFT, time-model estimate;
f.hit: router's false hits; regret: best replica's prefix minus the chosen one's,
of prompt tokens"""


def cluster_renderable(result: ClusterResult) -> RenderableType:
    """One table per capacity × offload: replicas × router lines."""
    rows = result.aggregate_rows()
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["capacity"], r["offload"]), []).append(r)
    tables = []
    for (cap, off), group in groups.items():
        tiers = off != "none"
        title = (f"{result.trace_name or 'trace'} · profile {result.profile} · {group[0]['policy']} · "
                 f"{cap} per replica · offload {off}" + (" · PARTIAL" if result.partial else ""))
        # a router with non-default parameters (one set per router and run) is its name and a
        # star; its parameters are spelled out under the table
        tuned = list(dict.fromkeys(r["router_label"] for r in group if r["router_label"] != r["router"]))
        caption = CAPTION + ("\n* non-default parameters: " + ", ".join(tuned) if tuned else "")
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True,
                  pad_edge=False, caption=caption, caption_justify="left")
        for name in ["N", "router", "hit", *(["gpu", "tier"] if tiers else ["spread"]), "lost", "imb",
                     "p50", "p99", "f.hit", "regret"]:
            t.add_column(name, justify="left" if name == "router" else "right", no_wrap=True,
                         max_width=12 if name == "router" else None, overflow="ellipsis")
        last = None
        for r in sorted(group, key=lambda x: x["replicas"]):
            if r["replicas"] != last:
                if last is not None:
                    t.add_section()
                # the reference: one cache of the fleet's summed GPU capacity, no offload
                g = f"{r['global_token_hit_rate']:.1%}"
                t.add_row(str(r["replicas"]), "one cache", g, *([g, "—"] if tiers else ["—"]), *["—"] * 6,
                          style="dim")
            best = max((x["token_hit_rate"] for x in group if x["replicas"] == r["replicas"]), default=0)
            t.add_row(
                "", r["router"] + ("*" if r["router_label"] != r["router"] else ""),
                f"{r['token_hit_rate']:.1%}",
                *([f"{r['gpu_token_hit_rate']:.1%}",
                   f"{r['cpu_token_hit_rate'] + r['disk_token_hit_rate']:.1%}"]
                  if tiers else [f"{r['replica_hit_rate_min']:.0%}–{r['replica_hit_rate_max']:.0%}"]),
                f"{r['hit_rate_lost'] * 100:.1f}", f"{r['prefill_imbalance_max_mean']:.2f}",
                _secs(r["ttft_p50_s"]), _secs(r["ttft_p99_s"]),
                "—" if r["false_hits"] is None else f"{r['false_hits']:,}",
                "—" if r["regret_tokens"] is None
                else f"{r['regret_tokens'] / max(r['prompt_tokens'], 1):.1%}",
                style="bold green" if r["token_hit_rate"] == best and r["replicas"] > 1 else None)
            last = r["replicas"]
        tables.append(t)
    return Group(*tables)


def _secs(v: float) -> str:
    return f"{v * 1000:.0f}ms" if v < 1 else f"{v:.1f}s" if v < 100 else f"{v:,.0f}s"
