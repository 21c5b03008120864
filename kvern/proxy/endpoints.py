"""The proxy's own endpoints: ``/health``, ``/analytics``, ``/trie/visualize``, ``/metrics``.

They take precedence over the upstream's paths of the same name (llama-server also has a
``/health`` and ``/metrics``). Token figures come from the store (what the worker has
analyzed; ``analytics_lag`` says how far behind that is), latency figures from the proxy's
own histograms. Store reads run on one thread of their own, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kvern.infra.config import Config
from kvern.proxy.feed import AnalyticsFeed
from kvern.proxy.server import Forwarder
from kvern.proxy.settings import ProxySettings
from kvern.proxy.stats import PROM_BUCKETS, LatencyStats
from kvern.proxy.store import StoreReader
from kvern.proxy.tap import Tap
from kvern.proxy.trie import display


@dataclass
class State:
    settings: ProxySettings
    cfg: Config
    run_id: str
    forwarder: Forwarder
    tap: Tap
    feed: AnalyticsFeed
    stats: LatencyStats
    store: StoreReader
    started: float = field(default_factory=time.time)
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "kvern-store-read"))

    async def read(self, fn: Any, *args: Any) -> Any:
        """A store read on the store thread; an unreadable store gives None, not a 500."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        except Exception:
            return None


def routes(state: State) -> list[web.RouteDef]:
    async def health(_: web.Request) -> web.Response:
        s = state.settings
        progress = await state.read(state.store.progress) or {}
        return _json({
            "status": "ok", "upstream": s.public_upstream, "uptime_s": round(time.time() - state.started, 3),
            "in_flight": state.forwarder.in_flight, "recorded": state.tap.seq,
            "log": {"folder": str(s.log_dir), "content": s.content,
                    "file": state.tap.log.current.name if state.tap.log else None,
                    "write_errors": state.tap.write_errors},
            "analytics": {**_lag(state, progress), "worker_alive": state.feed.alive,
                          "ready": bool(progress.get("ready")),
                          "queue_bytes": state.feed.buffered, "dropped_to_catch_up": state.feed.dropped,
                          "prediction_error": progress.get("prediction_error")},
        })

    async def analytics(request: web.Request) -> web.Response:
        minutes = _int_param(request, "minutes", state.settings.window_minutes)
        now = time.time()
        since = (int(now // 60) - minutes + 1) * 60
        run = await state.read(state.store.sums) or {}
        recent = await state.read(state.store.sums, since) or {}
        progress = await state.read(state.store.progress) or {}
        s = state.settings
        return _json({
            "upstream": s.public_upstream, "run_id": state.run_id,
            "prediction": {"profile": s.profile, "policy": s.policy, "capacity": s.capacity,
                           "block_size": state.cfg.ingest.block_size,
                           "error": progress.get("prediction_error")},
            "run": _section(state, run, state.stats.summary(now)),
            "recent": {"minutes": minutes, **_section(state, recent, state.stats.summary(now, minutes))},
            "analytics_lag": _lag(state, progress),
        })

    async def trie(request: web.Request) -> web.Response:
        top = _int_param(request, "top", state.settings.hot_prefixes)
        only = request.query.get("model")
        snap = await state.read(state.store.hot_prefixes) or {}
        models = {}
        for model, prefixes in snap.items():
            if only is not None and model != only:
                continue
            kept = [p for p in prefixes if p["rank"] < top]
            models[model] = {"prefixes": kept, "display": display(model, kept)}
        return _json({"content": state.settings.content, "models": models,
                      "updated_s": max((p["updated_s"] for ps in snap.values() for p in ps), default=None)})

    async def metrics(_: web.Request) -> web.Response:
        run = await state.read(state.store.sums) or {}
        return web.Response(text=_prometheus(state, run), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    return [web.get("/health", health), web.get("/analytics", analytics), web.get("/trie/visualize", trie),
            web.get("/metrics", metrics)]


def _json(obj: Any) -> web.Response:
    return web.Response(text=json.dumps(obj, indent=2, allow_nan=False), content_type="application/json")


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number") from None
    if value <= 0:
        raise web.HTTPBadRequest(text=f"{name} must be positive")
    return value


def _lag(state: State, progress: dict[str, Any]) -> dict[str, Any]:
    analyzed = progress.get("analyzed_seq", -1)
    behind = max(0, state.tap.seq - 1 - analyzed)
    last = progress.get("last_done_s")
    return {"recorded": state.tap.seq, "analyzed": analyzed + 1, "behind_requests": behind,
            "behind_s": round(max(0.0, time.time() - last), 3) if behind and last else 0.0}


def _rate(num: float, den: float) -> float | None:
    return round(num / den, 6) if den else None


def _figures(state: State, model: str | None, sums: dict[str, float]) -> dict[str, Any]:
    geometry = state.cfg.model(model).geometry if model is not None else None
    out: dict[str, Any] = {
        "requests": int(sums.get("requests", 0)), "failed": int(sums.get("failed", 0)),
        "analyzed": int(sums.get("analyzed", 0)), "prompt_tokens": int(sums.get("prompt_tokens", 0)),
        "predicted_cached_tokens": int(sums.get("predicted_cached_tokens", 0)),
        "predicted_token_hit_rate": _rate(sums.get("predicted_cached_tokens", 0),
                                          sums.get("prompt_tokens", 0)),
        "server_reported": int(sums.get("reported", 0)),
        "server_prompt_tokens": int(sums.get("server_prompt_tokens", 0)),
        "server_cached_tokens": int(sums.get("server_cached_tokens", 0)),
        "server_token_hit_rate": _rate(sums.get("server_cached_tokens", 0),
                                       sums.get("server_prompt_tokens", 0)),
    }
    if model is not None:
        for who in ("predicted", "server"):
            flops = None
            # kvern.sim.savings.prefill_flops, summed: Σc and Σc(c−1)/2 are what the store keeps.
            if geometry is not None and geometry.params is not None and geometry.hidden is not None:
                flops = (2.0 * geometry.params * sums.get(f"{who}_cached_tokens", 0)
                         + 4.0 * geometry.layers * geometry.hidden * sums.get(f"{who}_cached_sq", 0))
            out[f"{who}_prefill_flops_saved"] = flops
            out[f"{who}_prefill_s_saved"] = (None if flops is None
                                             else round(flops / state.cfg.savings.effective_flops, 6))
    return out


def _section(state: State, sums: dict[str, dict[str, float]], latency: dict[str, Any]) -> dict[str, Any]:
    total: dict[str, float] = {}
    for s in sums.values():
        for k, v in s.items():
            total[k] = total.get(k, 0) + (v or 0)
    models = {}
    for model in sorted(set(sums) | set(latency["models"])):
        models[model] = {**_figures(state, model, sums.get(model, {})), **latency["models"].get(model, {})}
    overall = {**_figures(state, None, total), **latency["overall"]}
    for who in ("predicted", "server"):
        parts = [m.get(f"{who}_prefill_s_saved") for m in models.values()]
        overall[f"{who}_prefill_s_saved"] = (round(sum(p for p in parts if p), 6)
                                             if any(p is not None for p in parts) else None)
    return {"overall": overall, "models": models}


def _prometheus(state: State, sums: dict[str, dict[str, float]]) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")

    def lbl(model: str) -> str:
        return '{model="' + model.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"}'

    counters = state.stats.counters
    family("kvern_requests_total", "counter", "Completion requests through the proxy.")
    for model, c in sorted(counters.items()):
        lines.append(f"kvern_requests_total{lbl(model)} {c.requests}")
    family("kvern_failed_requests_total", "counter", "Requests the upstream did not serve (error or cut).")
    for model, c in sorted(counters.items()):
        lines.append(f"kvern_failed_requests_total{lbl(model)} {c.errors}")
    for name, col, help_ in (
            ("kvern_prompt_tokens_total", "prompt_tokens", "Prompt tokens analyzed (kvern's tokenization)."),
            ("kvern_predicted_cached_tokens_total", "predicted_cached_tokens",
             "Prompt tokens the simulated cache would have held."),
            ("kvern_server_prompt_tokens_total", "server_prompt_tokens",
             "Prompt tokens the server reported, for requests that reported cached tokens."),
            ("kvern_server_cached_tokens_total", "server_cached_tokens",
             "Cached prompt tokens the server reported (prompt_tokens_details.cached_tokens).")):
        family(name, "counter", help_)
        for model, s in sorted(sums.items()):
            lines.append(f"{name}{lbl(model)} {int(s.get(col) or 0)}")
    family("kvern_proxy_overhead_seconds", "histogram",
           "Time the proxy added before the client's first byte.")
    for model, c in sorted(counters.items()):
        cum = 0
        base = lbl(model)[:-1]
        for le, n in zip(PROM_BUCKETS, c.prom_counts, strict=True):
            cum += n
            lines.append(f'kvern_proxy_overhead_seconds_bucket{base},le="{le}"}} {cum}')
        lines.append(f'kvern_proxy_overhead_seconds_bucket{base},le="+Inf"}} {c.overhead_n}')
        lines.append(f"kvern_proxy_overhead_seconds_sum{lbl(model)} {c.overhead_sum:.9f}")
        lines.append(f"kvern_proxy_overhead_seconds_count{lbl(model)} {c.overhead_n}")
    family("kvern_analytics_behind_requests", "gauge", "Recorded requests not yet analyzed.")
    analyzed = sum(int(s.get("requests") or 0) for s in sums.values())
    lines.append(f"kvern_analytics_behind_requests {max(0, state.tap.seq - analyzed)}")
    return "\n".join(lines) + "\n"
