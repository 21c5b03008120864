"""Charts of ``kvern analyze`` (PNG, Agg): ``profile.png`` and, when caching broke, ``breakers.png``.

``profile.png``: prompt length histogram, requests per session, the cumulative share of block
reuses that an LRU cache of each size serves (the reuse distance CDF), and requests per model.
``breakers.png``: the cacheable tokens each breaker costs, with its measured rule's gain.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from kvern.analysis.results import Analysis
from kvern.analysis.trace_profile import Histogram
from kvern.infra.files import atomic_path


def write_charts(analysis: Analysis, folder: Path) -> list[Path]:
    paths = [_save(_profile(analysis), folder / "profile.png")]
    if analysis.breakers:
        paths.append(_save(_breakers(analysis), folder / "breakers.png"))
    return paths


def _profile(a: Analysis) -> plt.Figure:
    p = a.profile
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    _hist(axes[0, 0], p.prompt_hist, "prompt tokens", "requests",
          f"Prompt length (p50 {p.prompt_tokens.p50:,.0f}, p99 {p.prompt_tokens.p99:,.0f} tokens)")

    ax = axes[0, 1]
    if p.session_sizes:
        ax.bar(list(p.session_sizes), list(p.session_sizes.values()), color="#1f77b4")
        ax.set_xlabel("requests in the session")
        ax.set_ylabel("sessions")
        ax.set_title(f"Requests per session ({p.sessions:,} sessions)")
    else:
        ax.text(0.5, 0.5, "no session ids in this trace", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()

    ax = axes[1, 0]
    h = p.reuse_hist
    total = sum(h.counts)
    if total:
        cdf = np.cumsum(h.counts) / total
        ax.step([max(e, 1) for e in h.edges[1:]], cdf, where="post", color="#2ca02c")
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("LRU cache size (blocks of the model)")
        ax.set_ylabel("share of block reuses that hit")
        caps = ", ".join(f"{k}: {v:,}" for k, v in p.capacity_for_reuses.items())
        ax.set_title(f"Block reuse distance (blocks for {caps})", fontsize=10)
        ax.grid(alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no block is ever reused", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()

    ax = axes[1, 1]
    models = p.summary.models
    names = [m.model for m in models]
    ax.barh(names, [m.requests for m in models], color="#8c564b")
    for i, m in enumerate(models):
        ax.text(m.requests, i, f"  {m.infinite_cache_hit_rate:.0%} cacheable", va="center", fontsize=9)
    ax.set_xlabel("requests")
    ax.set_title(f"Requests per model (infinite-cache token hit rate {p.infinite_token_hit_rate:.1%})")
    ax.margins(x=0.3)
    fig.suptitle(f"Trace profile · {a.trace_name or 'trace'}", fontsize=12)
    fig.tight_layout()
    return fig


def _breakers(a: Analysis) -> plt.Figure:
    bs = a.breakers[::-1]
    fig, ax = plt.subplots(figsize=(11, 2.0 + 0.45 * len(bs)))
    labels = [f"{b.label}: {_short(b.pattern)}" for b in bs]
    ax.barh(range(len(bs)), [b.share * 100 for b in bs], color="#d62728")
    ax.set_yticks(range(len(bs)), labels, fontsize=8)
    for i, b in enumerate(bs):
        g = a.gain_for(b.rule)
        note = f"  {b.share:.1%}" + (f"  (rule: token hit rate {g.before:.1%} → {g.after:.1%})" if g else "")
        ax.text(b.share * 100, i, note, va="center", fontsize=8)
    ax.set_xlabel("% of cacheable tokens lost")
    ax.margins(x=0.6)
    ax.set_title(f"Cache breakers · {a.trace_name or 'trace'}", fontsize=11)
    fig.tight_layout()
    return fig


def _hist(ax: plt.Axes, h: Histogram, xlabel: str, ylabel: str, title: str) -> None:
    lefts = [max(e, 0.5) for e in h.edges[:-1]]
    widths = [max(r, 1) - left for left, r in zip(lefts, h.edges[1:], strict=True)]
    ax.bar(lefts, h.counts, width=widths, align="edge", color="#1f77b4", edgecolor="white")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def _short(text: str, n: int = 48) -> str:
    text = text.replace("\n", "⏎")
    return text if len(text) <= n else text[: n - 1] + "…"


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
