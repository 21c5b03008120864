"""TTFT against cached tokens: does the cache pay on this backend?

Left: time to first token against the tokens the server served from cache. Right: against
the tokens it had to compute (prompt − cached), which is what prefill time follows when the
cache works; a flat left panel and a rising right one say the cache pays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from kvern.infra.files import atomic_path


def ttft_chart(live: pa.Table, path: Path, title: str) -> bool:
    """Write the chart; False when no request reported both TTFT and cache.

    Then there is no file: a chart left by an earlier run in the same folder is removed, so it
    is never read as this run's.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ttft = np.array([np.nan if v is None else v for v in live.column("ttft_s").to_pylist()], dtype=float)
    cached = np.array([np.nan if v is None else v for v in live.column("cached_tokens").to_pylist()],
                      dtype=float)
    prompt = np.array(live.column("prompt_tokens").to_pylist(), dtype=float)
    keep = np.isfinite(ttft) & np.isfinite(cached)
    if not keep.any():
        path.unlink(missing_ok=True)
        return False
    ms = ttft[keep] * 1000.0
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    hit = cached[keep] > 0
    for ax, x, label in ((left, cached[keep], "cached tokens (server-reported)"),
                         (right, prompt[keep] - cached[keep], "computed tokens (prompt − cached)")):
        ax.scatter(x[~hit], ms[~hit], s=14, alpha=0.7, color="tab:red", label="no cache hit")
        ax.scatter(x[hit], ms[hit], s=14, alpha=0.7, color="tab:blue", label="cache hit")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    left.set_ylabel("time to first token (ms)")
    left.legend(loc="upper left", frameon=False)
    med_hit = f"{np.median(ms[hit]):.1f} ms" if hit.any() else "n/a"
    med_miss = f"{np.median(ms[~hit]):.1f} ms" if (~hit).any() else "n/a"
    fig.suptitle(f"{title}\nmedian TTFT: hits {med_hit}, misses {med_miss} ({int(keep.sum())} requests)")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return True
