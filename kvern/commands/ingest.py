"""``kvern ingest LOG``: the canonical trace, written with ``-o``, and what it is made of."""

from __future__ import annotations

from pathlib import Path

from kvern.infra.config import Config
from kvern.infra.console import Output
from kvern.infra.files import check_target, register_input
from kvern.ingest.pipeline import LoadOptions
from kvern.sim.bounds import TraceSummary


def ingest(log: Path, cfg: Config, load: LoadOptions, output: Path | None, out: Output) -> TraceSummary:
    from kvern.ingest.trace import write_trace
    from kvern.report.ingest_table import summary_renderable
    from kvern.sim.bounds import summarize

    if output is not None:  # before the slow part: -o onto the log itself, or onto /dev/null
        register_input(log)
        check_target(output)
    trace = load.load(log, cfg, out)
    if output is not None:
        write_trace(trace, output)
    summary = summarize(trace)
    out.result(summary_renderable(summary), summary.to_dict())
    return summary
