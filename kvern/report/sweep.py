"""What ``kvern sweep`` writes and shows: curves as Parquet, one chart, the capacity answer.

Files in the run folder, each written atomically:

* ``sweep.parquet``: one row per model × policy × sampled capacity (``source`` says whether
  the row comes from the exact one-pass LRU curve or a simulation).
* ``lru_curve.parquet`` (profiles with an exact curve): the LRU curve at *every* capacity,
  stored losslessly as steps: a row per capacity where a value changes, valid up to the
  next row's capacity; the last row holds from there to the infinite cache.
* ``sweep.json``: settings, the achievable rate per model and every capacity answer;
  deterministic (sorted keys, no timestamps), so a rerun is byte-identical.
* ``sweep.png``: token hit rate against capacity, Belady as the ceiling, the infinite cache
  as a line, the LRU answers marked.

An interrupted sweep is written the same way with what finished, marked: ``"partial": true``
and ``not_run`` in sweep.json's settings and in the Parquet files' schema metadata.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Group
from rich.table import Table
from rich.text import Text

from kvern.infra.files import atomic_path, write_json, write_parquet
from kvern.report.write import mark_partial
from kvern.sim.curve import LRUCurve
from kvern.sim.sweep import PERCENTS, ModelSweep, SweepResult

SWEEP_VERSION = 1
_MAX_PLOTTED = 4000
"""Curve points drawn per model (log-spaced capacities, each value exact)."""

POINTS_SCHEMA = pa.schema([
    ("model", pa.string()), ("policy", pa.string()), ("policy_label", pa.string()),
    ("profile", pa.string()), ("source", pa.string()), ("capacity_blocks", pa.int64()),
    ("capacity_tokens", pa.int64()), ("capacity_bytes", pa.int64()), ("block_size", pa.int32()),
    ("requests", pa.int64()), ("prompt_tokens", pa.int64()), ("cached_tokens", pa.int64()),
    ("hit_requests", pa.int64()), ("token_hit_rate", pa.float64()), ("request_hit_rate", pa.float64()),
    ("mean_request_hit_ratio", pa.float64()), ("evicted_blocks", pa.int64()),
    ("unschedulable_requests", pa.int64()), ("achievable_token_hit_rate", pa.float64()),
])

CURVE_SCHEMA = pa.schema([
    ("model", pa.string()), ("capacity_blocks", pa.int64()), ("cached_tokens", pa.int64()),
    ("hit_requests", pa.int64()), ("hit_blocks", pa.int64()), ("token_hit_rate", pa.float64()),
    ("request_hit_rate", pa.float64()), ("mean_request_hit_ratio", pa.float64()),
])


def points_table(result: SweepResult) -> pa.Table:
    rows = []
    for m in result.models:
        for p in m.points:
            tokens = p.capacity_blocks * m.block_size
            rows.append({
                "model": m.model, "policy": p.policy, "policy_label": p.policy_label,
                "profile": result.profile, "source": p.source, "capacity_blocks": p.capacity_blocks,
                "capacity_tokens": tokens,
                "capacity_bytes": None if m.kv_bytes_per_token is None else tokens * m.kv_bytes_per_token,
                "block_size": m.block_size, "requests": p.requests, "prompt_tokens": p.prompt_tokens,
                "cached_tokens": p.cached_tokens, "hit_requests": p.hit_requests,
                "token_hit_rate": p.token_hit_rate,
                "request_hit_rate": p.hit_requests / p.requests if p.requests else 0.0,
                "mean_request_hit_ratio": p.hit_ratio_sum / p.requests if p.requests else 0.0,
                "evicted_blocks": p.evicted_blocks, "unschedulable_requests": p.unschedulable_requests,
                "achievable_token_hit_rate": m.achievable_rate,
            })
    return pa.Table.from_pylist(rows, schema=POINTS_SCHEMA)


def curve_table(result: SweepResult) -> pa.Table:
    """Every model's exact LRU curve as steps (rows where a value changes)."""
    parts = []
    for m in result.models:
        c = m.curve
        if c is None:
            continue
        keep = np.ones(c.num_unique + 1, dtype=bool)
        keep[1:] = ((np.diff(c.cached_tokens) != 0) | (np.diff(c.hit_requests) != 0)
                    | (np.diff(c.hit_blocks) != 0))
        idx = np.flatnonzero(keep)
        n = max(c.requests, 1)
        parts.append(pa.table({
            "model": pa.array([m.model] * len(idx), pa.string()),
            "capacity_blocks": pa.array(idx.astype(np.int64)),
            "cached_tokens": pa.array(c.cached_tokens[idx]),
            "hit_requests": pa.array(c.hit_requests[idx]),
            "hit_blocks": pa.array(c.hit_blocks[idx]),
            "token_hit_rate": pa.array(c.cached_tokens[idx] / max(c.prompt_tokens, 1)),
            "request_hit_rate": pa.array(c.hit_requests[idx] / n),
            "mean_request_hit_ratio": pa.array(c.hit_ratio_sum[idx] / n),
        }, schema=CURVE_SCHEMA))
    return pa.concat_tables(parts) if parts else CURVE_SCHEMA.empty_table()


def sweep_document(result: SweepResult) -> dict[str, Any]:
    models = []
    for m in result.models:
        models.append({
            "model": m.model, "block_size": m.block_size, "unique_blocks": m.num_unique,
            "prompt_tokens": m.prompt_tokens, "achievable_cached_tokens": m.achievable_tokens,
            "achievable_token_hit_rate": m.achievable_rate, "kv_bytes_per_token": m.kv_bytes_per_token,
            "capacities_blocks": m.capacities,
            "answers": [{"policy": a.policy, "percent": a.percent, "target_cached_tokens": a.target_tokens,
                         "exact": a.exact, "capacity_blocks": a.capacity_blocks,
                         "capacity_tokens": a.capacity_tokens, "capacity_bytes": a.capacity_bytes,
                         "words": a.words()} for a in m.answers],
        })
    return {"version": SWEEP_VERSION, "settings": result.settings, "models": models}


def write_sweep(result: SweepResult, folder: str | Path, *, charts: bool = True) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "sweep.parquet", folder / "sweep.json"]
    write_parquet(mark_partial(points_table(result), result.settings), written[0])
    write_json(sweep_document(result), written[1])
    if result.exact_lru:
        written.append(folder / "lru_curve.parquet")
        write_parquet(mark_partial(curve_table(result), result.settings), written[-1])
    if charts:
        written.append(_chart(result, folder / "sweep.png"))
    return written


# -- console -----------------------------------------------------------------------------------

def sweep_renderable(result: SweepResult) -> Group:
    parts: list[Any] = []
    if result.partial:
        parts.append(Text(f"PARTIAL: interrupted, {len(result.settings.get('not_run', []))} run(s) did not "
                          "finish; a policy without all its points has no answers", style="bold red"))
    for m in result.models:
        rate = "not run" if m.achievable_rate is None else f"{m.achievable_rate:.2%}"
        table = Table(title=f"{result.trace_name or 'trace'} · {m.model} · profile {result.profile} · "
                            f"achievable token hit rate {rate}", title_justify="left",
                      caption="blocks to reach that share of the achievable token hit rate"
                              + ("" if result.exact_lru else " (≤ N: smallest sampled capacity that does)"),
                      caption_justify="left")
        table.add_column("policy")
        for pct in PERCENTS:
            table.add_column(f"{pct}%", justify="right")
        for name in result.policies:
            cells = []
            for a in (a for a in m.answers if a.policy == name):
                if a.target_tokens == 0:
                    cells.append("0")
                elif a.capacity_blocks is None:
                    cells.append("not reached")
                else:
                    cells.append(f"{'' if a.exact else '≤ '}{a.capacity_blocks:,}")
            cells = cells or ["not run"] * len(PERCENTS)  # an interrupted sweep
            table.add_row(name, *cells, style="dim" if name == "belady" else None)
        parts.append(table)
        lines = [a.words() for a in m.answers if a.policy == _headline_policy(result)]
        parts.append(Text("\n".join(lines)))
    return Group(*parts)


def _headline_policy(result: SweepResult) -> str:
    online = [p for p in result.policies if p != "belady"]
    return "lru" if "lru" in result.policies else (online or result.policies)[0]


# -- chart -------------------------------------------------------------------------------------

def _chart(result: SweepResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = result.models
    fig, axes = plt.subplots(len(models), 1, figsize=(9, 5.2 * len(models)), squeeze=False)
    for ax, m in zip(axes[:, 0], models, strict=True):
        _plot_model(ax, result, m)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def _plot_model(ax: Any, result: SweepResult, m: ModelSweep) -> None:
    colors = {"lru": "#1f77b4", "fifo": "#8c564b", "lfu": "#2ca02c", "cost": "#ff7f0e"}
    scale = 100 / max(m.prompt_tokens, 1)
    for i, name in enumerate(result.policies):
        pts = [(p.capacity_blocks, p.cached_tokens * scale) for p in m.points if p.policy == name]
        xs, ys = zip(*pts, strict=True) if pts else ((), ())
        if name == "belady":
            ax.plot(xs, ys, "--", color="black", lw=2, label="belady (offline ceiling)")
        elif name == "lru" and m.curve is not None:
            cx, cy = _curve_xy(m.curve)
            ax.step(cx, cy * scale, where="post", color=colors["lru"], lw=1.8, label="lru (exact, one pass)")
        else:
            ax.plot(xs, ys, "o-", ms=4, color=colors.get(name, f"C{i + 4}"), label=name)
    if m.achievable_rate is not None:
        ax.axhline(m.achievable_rate * 100, color="grey", ls=":", lw=1.5,
                   label=f"infinite cache ({m.achievable_rate:.1%})")
    headline = _headline_policy(result)
    reached = {p.capacity_blocks: p.cached_tokens for p in m.points if p.policy == headline}
    for a in m.answers:
        if a.policy == headline and a.capacity_blocks:
            # On the line: the curve's value at the answer (at least the target).
            y = (m.curve.cached_tokens[min(a.capacity_blocks, m.curve.num_unique)]
                 if m.curve is not None and headline == "lru" else reached[a.capacity_blocks]) * scale
            ax.plot([a.capacity_blocks], [y], "v", color="black", ms=6)
            ax.annotate(f"{a.percent}%", (a.capacity_blocks, y), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"capacity (blocks of {m.block_size} tokens, log scale)")
    ax.set_ylabel("token hit rate (%)")
    top_rate = m.achievable_rate if m.achievable_rate is not None else max(
        (p.token_hit_rate for p in m.points), default=0.0)
    ax.set_ylim(0, max(5.0, top_rate * 100 * 1.08))
    ax.grid(alpha=0.3, which="both")
    if m.kv_bytes_per_token is not None:
        per_block = m.block_size * m.kv_bytes_per_token / 2**30
        top = ax.secondary_xaxis("top", functions=(lambda b: b * per_block, lambda g: g / per_block))
        top.set_xlabel("KV memory (GiB)")
    ax.legend(loc="lower right", fontsize=9)
    note = f"▼ {headline}: smallest capacity reaching 50/80/90/95% of the achievable rate"
    ax.set_title(f"Hit rate against capacity — {result.trace_name or 'trace'} · {m.model} · "
                 f"profile {result.profile}\n{note}", fontsize=10)


def _curve_xy(curve: LRUCurve) -> tuple[np.ndarray, np.ndarray]:
    u = curve.num_unique
    if u < 1:
        return np.array([1]), np.array([0.0])
    n = min(u, _MAX_PLOTTED)
    caps = np.unique(np.round(np.geomspace(1, u, n)).astype(np.int64))
    return caps, curve.cached_tokens[caps].astype(np.float64)


def sweep_json(result: SweepResult) -> dict[str, Any]:
    """The sweep document for ``--json`` (NaN -> null all the way down)."""
    return _clean(sweep_document(result))


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
