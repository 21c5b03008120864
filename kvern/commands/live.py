"""``kvern replay TRACE --backend URL``: replay a trace live, then reconcile with the simulation.

Writes to the output folder: ``live.parquet`` (one row per request, kept valid and marked
partial while the run goes on), ``reconcile.parquet`` (predicted against observed, per
request, with the cause of each gap), ``live_summary.json`` and ``ttft_vs_cached.png``. A run
that is interrupted or loses its backend still writes all of them from what finished, then
raises ``Interrupted`` (exit 130) or ``BackendError``.
"""

from __future__ import annotations

import os
from pathlib import Path

from kvern.commands.common import clear_folder, write_page
from kvern.infra.config import Config
from kvern.infra.console import NULL_OUTPUT, Output
from kvern.infra.errors import BackendError, Interrupted
from kvern.infra.files import check_target
from kvern.infra.secrets import register_secret
from kvern.live.bodies import build_requests
from kvern.live.client import RetryPolicy
from kvern.live.loop import LiveRun, LiveSettings, replay
from kvern.live.pacing import pacing_from_flags, schedule
from kvern.live.replay import (
    LiveOptions,
    LiveReport,
    check_options,
    prediction_capacity,
    public_url,
    reconcile_run,
    server_root,
)
from kvern.live.sink import LiveSink
from kvern.report.live_chart import ttft_chart


def default_folder(cfg: Config, trace: Path, profile: str) -> Path:
    stem = trace.name.split(".")[0] or "trace"
    return Path(cfg.output_dir) / f"live-{stem}-{profile}"


def replay_live(trace: Path, cfg: Config, opts: LiveOptions, out: Output) -> LiveReport:
    """Run, then show the summary."""
    from kvern.report.tables import live_renderable

    report = run_live(trace, cfg, opts, out)
    out.info(f"live results written to {report.output_dir}/")
    out.result(live_renderable(report.summary), report.summary)
    return report


def run_live(trace_path: Path, cfg: Config, opts: LiveOptions, out: Output = NULL_OUTPUT) -> LiveReport:
    backend = server_root(opts.backend)
    check_options(opts)
    pacing = pacing_from_flags(opts.speedup, opts.rate, opts.concurrency)
    retry = RetryPolicy(timeout_s=cfg.live.timeout_s if opts.timeout_s is None else opts.timeout_s,
                        retries=cfg.live.retries if opts.retries is None else opts.retries,
                        backoff_s=cfg.live.backoff_s)
    api_key = opts.api_key or os.environ.get(cfg.live.api_key_env) or None
    for secret in (opts.api_key, os.environ.get(cfg.live.api_key_env)):
        register_secret(secret)  # whichever the server echoes, it is cut from files and output

    cfg = opts.load.config(cfg)
    trace = opts.load.load(trace_path, cfg, out)
    capacity = prediction_capacity(trace, cfg, opts)
    if trace.meta.normalized:
        out.warn("the trace was normalized: the server sees the logged text, so gaps may be "
                 "normalization rather than cache behaviour")
    requests = build_requests(trace, trace_path, default_max_tokens=cfg.live.default_max_tokens,
                              served_model=opts.served_model, out=out)[: opts.max_requests]
    arrival = trace.column("arrival_s").to_numpy()[: len(requests)]
    offsets = schedule(pacing, arrival)
    meta = {"backend": public_url(backend), "trace": trace_path.name, "pacing": pacing.describe(),
            "profile": opts.profile, "requests_planned": len(requests)}
    check_target(opts.output_dir / "live.parquet")
    clear_folder(opts.output_dir)  # filled as the run goes: it starts without an earlier run's files
    sink = LiveSink(opts.output_dir / "live.parquet", meta)
    out.info(f"replaying {len(requests)} requests against {public_url(backend)} ({pacing.describe()})")
    settings = LiveSettings(backend=backend, pacing=pacing, retry=retry, duration_s=opts.duration_s,
                            api_key=api_key)
    interrupted = False
    run = LiveRun()
    try:
        replay(requests, offsets, settings, sink, out, run)
    except KeyboardInterrupt:
        interrupted = True
    summary = reconcile_run(trace, cfg, run, sink, opts, capacity, out)
    title = f"{sink.meta['trace']} on {sink.meta['backend']} (profile {opts.profile})"
    if not ttft_chart(sink.table(), opts.output_dir / "ttft_vs_cached.png", title):
        out.info("no TTFT chart: no request reported both its TTFT and its cached tokens")
    write_page(opts.output_dir)
    report = LiveReport(summary, opts.output_dir, run)
    done = f"{summary['requests']} of {len(requests)} requests ran; partial results in {opts.output_dir}"
    if interrupted:
        raise Interrupted(f"interrupted: {done}")
    if run.partial:
        raise BackendError(f"{run.stop_reason}: {done}")
    _require_some_success(sink, opts.output_dir)
    return report


def _require_some_success(sink: LiveSink, folder: Path) -> None:
    """A run in which the backend answered every request with an error (a wrong key, URL or
    model name) measured nothing: exit 2 with the first error, not 0 with "0 of N ok"."""
    live = sink.table()
    if live.num_rows == 0 or any(live.column("ok").to_pylist()):
        return
    first = next((e for e in live.column("error").to_pylist() if e), "no error text")
    raise BackendError(f"no request succeeded ({live.num_rows} sent; the first error: {first}); "
                       f"results in {folder}")


