"""A live run's options, checked before anything is sent, and its reconciliation afterwards.

``kvern.commands.live`` runs the whole thing; this module holds what it needs from the live
package around the send loop: the options, the backend URL's safe forms, the prediction's
capacity, and ``reconcile_run``, which writes ``reconcile.parquet`` (predicted against
observed, per request, with the cause of each gap) and ``live_summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from kvern.infra.config import Config
from kvern.infra.console import Output
from kvern.infra.errors import UsageError
from kvern.infra.files import write_json, write_parquet
from kvern.ingest.pipeline import LoadOptions
from kvern.ingest.trace import Trace
from kvern.live.loop import LiveRun
from kvern.live.reconcile import predict_llamacpp, predict_with_profile, reconcile, served_order
from kvern.live.sink import LiveSink
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
    load: LoadOptions = field(default_factory=LoadOptions)
    """How the trace is loaded (the ingest flags)."""


@dataclass(frozen=True, slots=True)
class LiveReport:
    summary: dict[str, Any]
    output_dir: Path
    run: LiveRun


def public_url(url: str) -> str:
    """The URL without user:password, safe to write down."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def server_root(url: str) -> str:
    """The server's root from ``--backend``: an OpenAI-style base URL's ``/v1`` is dropped,
    since kvern appends ``/v1/...`` itself (and reads ``/props`` and ``/metrics`` at the root)."""
    root = url.rstrip("/")
    try:
        parts = urlsplit(root)
        port = parts.port  # raises for a port that is not a number from 0 to 65535
        host = parts.hostname
    except ValueError as e:
        raise UsageError(f"--backend {_shown(root)}: not a valid URL ({e}); "
                         "expected e.g. http://127.0.0.1:8080") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"--backend {_shown(root)}: expected an http:// or https:// URL")
    if not host:
        raise UsageError(f"--backend {_shown(root)}: the URL names no host; expected e.g. http://127.0.0.1:8080")
    if port == 0:
        raise UsageError(f"--backend {_shown(root)}: port 0 is not a server's port")
    if any(c.isspace() for c in root):
        raise UsageError(f"--backend {_shown(root)}: a URL has no spaces")
    return root.removesuffix("/v1")


def _shown(url: str) -> str:
    """``url`` for a message: without user:password where it parses, cut short where it does not."""
    try:
        return public_url(url)
    except ValueError:
        return url.split("@")[-1][:80]


def check_options(opts: LiveOptions) -> None:
    """Fail on bad flags before anything is sent (``prediction_capacity`` checks --capacity on the trace)."""
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


def prediction_capacity(trace: Trace, cfg: Config, opts: LiveOptions) -> CapacitySpec | None:
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


def reconcile_run(trace: Trace, cfg: Config, run: LiveRun, sink: LiveSink, opts: LiveOptions,
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
