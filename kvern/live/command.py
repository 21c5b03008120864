"""What ``kvern replay TRACE --backend URL`` does after parsing its flags: run, then show the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from kvern.config import Config
from kvern.live.replay import LiveOptions, LiveReport, run_live
from kvern.report.console import Output


def default_folder(cfg: Config, trace: Path, profile: str) -> Path:
    stem = trace.name.split(".")[0] or "trace"
    return Path(cfg.output_dir) / f"live-{stem}-{profile}"


def replay_live(trace: Path, cfg: Config, opts: LiveOptions, out: Output) -> LiveReport:
    report = run_live(trace, cfg, opts, out)
    out.info(f"live results written to {report.output_dir}/")
    out.result(summary_table(report.summary), report.summary)
    return report


def summary_table(s: dict[str, Any]) -> Table:
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
