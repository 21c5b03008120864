"""``kvern replay TRACE --backend URL``: replay a trace live, then reconcile with the simulation.

Writes to the output folder: ``live.parquet`` (one row per request, kept valid and marked
partial while the run goes on), ``reconcile.parquet`` (predicted against observed, per
request, with the cause of each gap), ``live_summary.json`` and ``ttft_vs_cached.png``. A run
that is interrupted or loses its backend still writes all of them from what finished, then
raises ``Interrupted`` (exit 130) or ``BackendError``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from kvern.config import Config
from kvern.errors import BackendError, Interrupted, UsageError
from kvern.ingest.pipeline import load_trace
from kvern.ingest.trace import Trace
from kvern.live.bodies import build_requests
from kvern.live.chart import ttft_chart
from kvern.live.client import RetryPolicy
from kvern.live.pacing import pacing_from_flags, schedule
from kvern.live.reconcile import predict_llamacpp, predict_with_profile, reconcile, served_order
from kvern.live.runner import LiveRun, LiveSettings, replay
from kvern.live.sink import LiveSink
from kvern.report.atomic import write_json, write_parquet
from kvern.report.console import NULL_OUTPUT, Output
from kvern.report.html import write_html
from kvern.sim.capacity import CapacitySpec, capacity_blocks, parse_capacity
from kvern.sim.profiles.llamacpp import LlamaServerConfig


@dataclass(frozen=True, slots=True)
class LiveOptions:
    backend: str
    output_dir: Path
    speedup: float | None = None
    rate: str | None = None
    concurrency: int | None = None
    max_requests: int | None = None
    duration_s: float | None = None
    timeout_s: float | None = None
    retries: int | None = None
    served_model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    profile: str = "vllm"
    policy: str = "lru"
    capacity: str | None = None
    """Simulated cache size for the prediction (``--capacity``); default: the config's first."""
    fmt: str | None = None
    skip_invalid: bool = False
    no_cache: bool = False
    model: str | None = None


@dataclass(frozen=True, slots=True)
class LiveReport:
    summary: dict[str, Any]
    output_dir: Path
    run: LiveRun


def public_url(url: str) -> str:
    """The URL without user:password, safe to write down."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def server_root(url: str) -> str:
    """The server's root from ``--backend``: an OpenAI-style base URL's ``/v1`` is dropped,
    since kvern appends ``/v1/...`` itself (and reads ``/props`` and ``/metrics`` at the root)."""
    root = url.rstrip("/")
    if urlsplit(root).scheme not in ("http", "https"):
        raise UsageError(f"--backend {public_url(root)}: expected an http:// or https:// URL")
    return root.removesuffix("/v1")


def run_live(trace_path: Path, cfg: Config, opts: LiveOptions, out: Output = NULL_OUTPUT) -> LiveReport:
    backend = server_root(opts.backend)
    _check(opts)
    pacing = pacing_from_flags(opts.speedup, opts.rate, opts.concurrency)
    retry = RetryPolicy(timeout_s=cfg.live.timeout_s if opts.timeout_s is None else opts.timeout_s,
                        retries=cfg.live.retries if opts.retries is None else opts.retries,
                        backoff_s=cfg.live.backoff_s)
    api_key = opts.api_key or os.environ.get(cfg.live.api_key_env) or None

    trace = load_trace(trace_path, cfg, fmt=opts.fmt, skip_invalid=opts.skip_invalid,
                       no_cache=opts.no_cache, model=opts.model, out=out)
    capacity = _capacity(trace, cfg, opts)
    if trace.meta.normalized:
        out.warn("the trace was normalized: the server sees the logged text, so gaps may be "
                 "normalization rather than cache behaviour")
    requests = build_requests(trace, trace_path, default_max_tokens=cfg.live.default_max_tokens,
                              served_model=opts.served_model, out=out)[: opts.max_requests]
    arrival = trace.table.column("arrival_s").to_numpy()[: len(requests)]
    offsets = schedule(pacing, arrival)
    meta = {"backend": public_url(backend), "trace": trace_path.name, "pacing": pacing.describe(),
            "profile": opts.profile, "requests_planned": len(requests)}
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
    summary = _finish(trace, cfg, run, sink, opts, capacity, out)
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


def _check(opts: LiveOptions) -> None:
    """Fail on bad flags before anything is sent (``_capacity`` checks --capacity on the trace)."""
    from kvern.sim.policies import make_policy
    from kvern.sim.profiles import get_profile

    for flag, value, low in (("--max-requests", opts.max_requests, 1), ("--retries", opts.retries, 0)):
        if value is not None and value < low:
            raise UsageError(f"{flag} must be at least {low}")
    for flag, seconds in (("--timeout", opts.timeout_s), ("--duration", opts.duration_s)):
        if seconds is not None and not seconds > 0:
            raise UsageError(f"{flag} must be greater than 0 seconds")
    get_profile(opts.profile)
    if opts.profile != "llamacpp":
        make_policy(opts.policy)


def _capacity(trace: Trace, cfg: Config, opts: LiveOptions) -> CapacitySpec | None:
    """The prediction's cache size, checked on every model of the trace before anything is sent.

    ``llamacpp``: ``--capacity`` or None (an unbounded host prompt cache); other profiles:
    ``--capacity`` or the config's first.
    """
    text = opts.capacity if opts.profile == "llamacpp" else opts.capacity or cfg.simulate.capacity
    if text is None:
        return None
    spec = parse_capacity(text)[0]
    block_size = 1 if opts.profile == "llamacpp" else trace.meta.block_size
    for model in trace.models():
        capacity_blocks([spec], cfg, model, block_size)  # bytes need the model's geometry
    return spec


def _finish(trace: Trace, cfg: Config, run: LiveRun, sink: LiveSink, opts: LiveOptions,
            capacity: CapacitySpec | None, out: Output) -> dict[str, Any]:
    live = sink.table()
    order = served_order(live)
    if opts.profile == "llamacpp":
        slots = int((run.server_props or {}).get("total_slots") or 1)
        if run.server_props is None:
            out.warn("the backend has no llama.cpp /props; predicting with one slot")
        # No --capacity: --cache-ram of a small model, effectively unlimited.
        cache_tokens = None if capacity is None else capacity_blocks([capacity], cfg, trace.models()[0], 1)[0]
        server = LlamaServerConfig(slots=slots, cache_tokens=cache_tokens)
        predicted = predict_llamacpp(trace, live, order, server)
        block_size = 1
    else:
        assert capacity is not None
        predicted = predict_with_profile(trace, cfg, live, order, opts.profile, opts.policy, capacity)
        block_size = trace.meta.block_size
    rec = reconcile(trace, live, predicted, order, block_size)
    write_parquet(rec.table, opts.output_dir / "reconcile.parquet")
    summary = {**rec.summary, "profile": opts.profile, "backend": sink.meta["backend"],
               "pacing": sink.meta["pacing"], "partial": run.partial, "stop_reason": run.stop_reason,
               "wall_s": round(run.wall_s, 3), **_latency(live)}
    if run.server_cache is not None:
        summary["server_metrics_engine"] = run.server_cache.engine
        summary["server_token_hit_rate"] = run.server_cache.hit_rate
    write_json(summary, opts.output_dir / "live_summary.json")
    if not ttft_chart(live, opts.output_dir / "ttft_vs_cached.png",
                      f"{sink.meta['trace']} on {sink.meta['backend']} (profile {opts.profile})"):
        out.info("no TTFT chart: no request reported both its TTFT and its cached tokens")
    write_html(opts.output_dir)
    return summary


def _latency(live: Any) -> dict[str, Any]:
    def floats(name: str) -> np.ndarray:
        return np.asarray(live.column(name).to_numpy(zero_copy_only=False), dtype=float)  # nulls -> NaN

    ttft, e2e, sched = floats("ttft_s"), floats("e2e_s"), floats("scheduled_s")
    sent = live.column("sent_s").to_numpy() if live.num_rows else np.array([])
    lag = (sent - sched)[np.isfinite(sched)] * 1000.0

    def pct(a: np.ndarray, q: float, scale: float = 1000.0) -> float | None:
        a = a[np.isfinite(a)]
        return round(float(np.percentile(a, q)) * scale, 3) if len(a) else None

    return {"ttft_p50_ms": pct(ttft, 50), "ttft_p99_ms": pct(ttft, 99), "e2e_p50_ms": pct(e2e, 50),
            "e2e_p99_ms": pct(e2e, 99), "send_lag_p99_ms": pct(lag, 99, 1.0),
            "retries": int(sum(live.column("retries").to_pylist()))}
