"""The ``kvern ingest`` result as a Rich table (built here, printed by the caller's Output).

One column per model (plus "all" when there are several), one row per figure, so the table
stays narrow however long the numbers get.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.table import Table

from kvern.sim.bounds import ModelSummary, TraceSummary

_ROWS: list[tuple[str, Callable[[ModelSummary], str]]] = [
    ("requests", lambda m: f"{m.requests:,}"),
    ("sessions", lambda m: f"{m.sessions:,}"),
    ("prompt tokens", lambda m: f"{m.prompt_tokens:,}"),
    ("  mean", lambda m: f"{m.mean_prompt_tokens:,.1f}"),
    ("  p50", lambda m: f"{m.p50_prompt_tokens:,.0f}"),
    ("  p99", lambda m: f"{m.p99_prompt_tokens:,.0f}"),
    ("blocks", lambda m: f"{m.blocks:,}"),
    ("unique blocks", lambda m: f"{m.unique_blocks:,}"),
    ("infinite-cache token hit rate", lambda m: f"{m.infinite_cache_hit_rate:.2%}"),
]


def summary_renderable(s: TraceSummary) -> Table:
    columns = s.models + ([s.total] if len(s.models) > 1 else [])
    table = Table(title=f"{s.source} · {s.format} · {s.block_size} tokens per block", title_justify="left")
    table.add_column("", no_wrap=True)
    for m in columns:
        table.add_column(m.model, justify="right", no_wrap=True)
    for label, fmt in _ROWS:
        table.add_row(label, *(fmt(m) for m in columns))
    notes = [f"tokenizer of {model}: {name}" for model, name in s.tokenizers.items()]
    if s.skipped_lines:
        notes.append(f"{s.skipped_lines} invalid line(s) skipped")
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    return table
