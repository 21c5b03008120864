"""A cluster run: every model × capacity × offload × replica count × router of one trace
under one profile and policy (docs/cluster.md).

Each model of the trace gets its own fleets (as ``kvern.sim.run`` gives each its own cache).
For each model × capacity × replica count the reference is one cache of the summed capacity
(replicas × capacity) over the whole stream, the profile's own batch simulation. Ctrl-C keeps
the settings that finished (the one in flight is dropped), marked partial, in a
``ClusterInterrupted``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from kvern.cluster.fleet import SettingRun, Tiering, run_setting
from kvern.cluster.metrics import REQUESTS_SCHEMA, SUMMARY_SCHEMA, Setting, requests_part, summary_row
from kvern.cluster.routers import ROUTERS, parse_router_list
from kvern.cluster.routers.base import parse_router_params
from kvern.cluster.tiers import NO_OFFLOAD, OffloadSpec, offload_blocks, parse_offload
from kvern.cluster.timing import time_model
from kvern.infra.config import Config
from kvern.infra.console import NULL_OUTPUT, Output
from kvern.infra.errors import Interrupted, UsageError
from kvern.infra.executor import Executor
from kvern.ingest.stream import BlockStream, block_streams
from kvern.ingest.trace import Trace
from kvern.sim.capacity import capacity_blocks, parse_capacity
from kvern.sim.policies import make_policy
from kvern.sim.profiles import get_profile
from kvern.sim.simulate import check_supported

SUMMARY_VERSION = 1


@dataclass(frozen=True)
class ClusterResult:
    trace_name: str
    profile: str
    summary: pa.Table
    """One row per setting (with several models: whole-trace rows, model "*", first)."""
    requests: pa.Table
    """One row per request × setting."""
    settings: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        rows = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
                for row in self.summary.to_pylist()]
        return {"version": SUMMARY_VERSION, "settings": self.settings, "summary": rows}

    def aggregate_rows(self) -> list[dict[str, Any]]:
        rows = self.summary.to_pylist()
        if len(self.settings.get("models", [])) > 1:
            return [r for r in rows if r["model"] == "*"]
        return rows

    @property
    def partial(self) -> bool:
        return bool(self.settings.get("partial", False))


class ClusterInterrupted(Interrupted):
    """Ctrl-C during a cluster run; ``result`` holds the settings that finished, marked partial."""

    def __init__(self, result: ClusterResult, done: int, planned: int) -> None:
        super().__init__(f"interrupted after {done} of {planned} settings")
        self.result = result


def parse_replicas(text: str | Sequence[int]) -> list[int]:
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            n = int(str(item).strip())
        except ValueError:
            raise UsageError(f"--replicas: {item!r} is not a whole number") from None
        if n < 1:
            raise UsageError(f"--replicas: {n}; a fleet needs at least one replica")
        out.append(n)
    if not out:
        raise UsageError("--replicas: none given")
    return list(dict.fromkeys(out))


def offload_mode(cfg: Config, profile: str) -> str:
    mode = cfg.cluster.offload_admission
    return ("store" if profile == "vllm" else "evict") if mode == "auto" else mode


def run_cluster(trace: Trace, cfg: Config, *, replicas: str | Sequence[int], routers: str | Sequence[str],
                capacities: str, profile: str, policy: str = "lru", offloads: Sequence[str] = (),
                params: Mapping[str, Mapping[str, Any]] | None = None, out: Output = NULL_OUTPUT,
                streams: Mapping[str, BlockStream] | None = None,
                executor: Executor | None = None) -> ClusterResult:
    counts = parse_replicas(replicas)
    names = parse_router_list(routers if isinstance(routers, str) else list(routers))
    params = dict(params or {})
    unknown = set(params) - set(ROUTERS)
    if unknown:
        raise UsageError(f"--param: parameters for unknown routers: {', '.join(sorted(unknown))}")
    for name, p in params.items():
        parse_router_params(name, ROUTERS[name].defaults, p)  # fail early on a bad key
    get_profile(profile)
    check_supported(profile, policy)
    if policy == "belady":
        raise UsageError("--policy belady: Belady is offline over the whole stream; a replica sees only its "
                         "share of it, so kvern cluster does not run it")
    pol = make_policy(policy)
    specs = parse_capacity(capacities)
    offs = [NO_OFFLOAD] + [o for o in (parse_offload(t) for t in offloads) if not o.none]
    offs = list({o.label: o for o in offs}.values())
    if len(offs) > 1 and profile not in ("vllm", "ideal"):
        raise UsageError(f"--offload: not modelled for profile {profile} yet (use vllm or ideal)")
    if trace.num_requests == 0:
        raise UsageError("the trace has no requests")
    if streams is None:  # the token ids only for a profile that reads them
        streams = block_streams(trace, tokens=get_profile(profile).uses_tokens)
    streams = dict(streams)
    mode = offload_mode(cfg, profile)
    request_ids = trace.column("request_id").to_numpy(zero_copy_only=False)
    session_col = trace.column("session_id").to_pylist()
    out_col = trace.column("output_tokens").to_numpy(zero_copy_only=False)

    plan: list[tuple[str, BlockStream, str, int, OffloadSpec, tuple[int, int], int, str]] = []
    for model, stream in streams.items():
        geometry = cfg.model(model).geometry
        kv = geometry.kv_bytes_per_token if geometry is not None else cfg.cluster.kv_bytes_per_token
        blocks = capacity_blocks(specs, cfg, model, stream.block_size)
        for spec, cap in zip(specs, blocks, strict=True):
            for off in offs:
                tiers = (0, 0) if off.none else offload_blocks(off, stream.block_size, kv, model)
                for n in counts:
                    for name in names:
                        plan.append((model, stream, spec.label, cap, off, tiers, n, name))

    done: list[Setting] = []
    globals_: dict[tuple[str, int, int], int] = {}
    shared = (streams, _contexts(streams, session_col, out_col, cfg), profile, pol, params, cfg, mode)
    interrupted = False
    try:
        if executor is not None and (executor.name != "local" or executor.workers > 1):
            _run_on(executor, plan, shared, done, out)
        else:
            with out.progress(f"cluster: {len(plan)} settings under {profile}", len(plan)) as advance:
                for model, stream, label, cap, off, tiers, n, name in plan:
                    key = (model, cap, n)
                    if key not in globals_:
                        globals_[key] = _global_task(shared, key)
                    run, label_r = _setting_task(shared, (model, cap, tiers, off.none, n, name))
                    done.append(Setting(model, profile, pol.name, name, label_r, n, label, off.label, run,
                                        stream, globals_[key]))
                    advance(1)
    except KeyboardInterrupt:
        interrupted = True
    result = _result(trace, cfg, done, streams, request_ids, profile, pol.display_name, counts, names, specs,
                     offs, mode, params)
    if interrupted:
        finished = {(s.model, s.capacity, s.offload, s.replicas, s.router) for s in done}
        result.settings["partial"] = True
        result.settings["not_run"] = [
            {"model": m, "capacity": lab, "offload": o.label, "replicas": n, "router": r}
            for m, _s, lab, _c, o, _t, n, r in plan if (m, lab, o.label, n, r) not in finished]
        raise ClusterInterrupted(result, len(done), len(plan))
    return result


def _context(stream: BlockStream, session_col: list[Any], out_col: np.ndarray, cfg: Config
             ) -> tuple[list[str | None], np.ndarray]:
    """A model's sessions and output lengths (a request that logs none gets the configured one)."""
    rows = stream.rows
    outs = np.array([v if v is not None and not (isinstance(v, float) and math.isnan(v))
                     else cfg.cluster.default_output_tokens for v in out_col[rows]], np.int64)
    return [session_col[i] for i in rows], outs


def _contexts(streams: Mapping[str, BlockStream], session_col: list[Any], out_col: np.ndarray, cfg: Config
              ) -> dict[str, tuple[list[str | None], np.ndarray]]:
    return {m: _context(s, session_col, out_col, cfg) for m, s in streams.items()}


def _global_task(shared: tuple[Any, ...], item: tuple[str, int, int]) -> int:
    """The cached tokens of one cache as large as all the replicas' together (an executor task)."""
    streams, profile, pol = shared[0], shared[2], shared[3]
    model, cap, n = item
    return int(get_profile(profile).simulate(streams[model], pol, cap * n).total_cached_tokens)


def _setting_task(shared: tuple[Any, ...], item: tuple[str, int, tuple[int, int], bool, int, str]
                  ) -> tuple[SettingRun, str]:
    """One model × capacity × offload × replicas × router setting (an executor task; pure)."""
    streams, contexts, profile, pol, params, cfg, mode = shared
    model, cap, tiers, no_offload, n, name = item
    stream, (sessions, outs) = streams[model], contexts[model]
    tiering = None if no_offload else Tiering(tiers[0], tiers[1], mode)
    cls = ROUTERS[name]
    run = run_setting(stream, profile, pol, n, cap, cls, dict(params.get(name, {})), sessions,
                      cfg.cluster.seed, time_model(cfg, model), outs, tiering)
    run.engines = []
    return run, cls(_ctx(stream, n, cap, sessions, cfg), dict(params.get(name, {}))).display_name


def _run_on(executor: Executor, plan: list[Any], shared: tuple[Any, ...], done: list[Setting],
            out: Output) -> None:
    """The plan on ``executor``: the whole-fleet caches, then every setting, one task each, the
    streams shared once. ``done`` gets the longest finished prefix of the plan (the tables
    follow its order), kept there on Ctrl-C like the one-by-one loop's."""
    profile, pol = shared[2], shared[3]
    keys = list(dict.fromkeys((m, cap, n) for m, _s, _l, cap, _o, _t, n, _r in plan))
    items = [(m, cap, tiers, off.none, n, name) for m, _s, _l, cap, off, tiers, n, name in plan]
    globals_: dict[tuple[str, int, int], int] = {}
    finished: dict[int, tuple[SettingRun, str]] = {}
    with out.progress(f"cluster: {len(plan)} settings under {profile} on {executor.name}",
                      len(keys) + len(plan)) as advance:
        for tasks, fn, sink in ((keys, _global_task, globals_), (items, _setting_task, finished)):
            results = executor.map(fn, tasks, shared=shared)
            try:
                for i, value in results:
                    sink[tasks[i] if fn is _global_task else i] = value  # type: ignore[index]
                    if fn is _setting_task:
                        while len(done) in finished:
                            m, stream, label, cap, off, _t, n, name = plan[len(done)]
                            run, label_r = finished.pop(len(done))
                            done.append(Setting(m, profile, pol.name, name, label_r, n, label, off.label, run,
                                                stream, globals_[(m, cap, n)]))
                    advance(1)
            finally:
                results.close()  # type: ignore[attr-defined]


def _ctx(stream: BlockStream, n: int, cap: int, sessions: list[str | None], cfg: Config):  # type: ignore[no-untyped-def]
    from kvern.cluster.routers import RouteContext

    return RouteContext(n, stream, sessions, cap, cfg.cluster.seed)


def _result(trace: Trace, cfg: Config, done: list[Setting], streams: Mapping[str, BlockStream],
            request_ids: np.ndarray, profile: str, policy: str, counts: list[int], names: list[str],
            specs: list, offs: list[OffloadSpec], mode: str, params: Mapping[str, Any]) -> ClusterResult:
    models = list(streams)
    groups: dict[tuple, list[Setting]] = {}
    for s in done:
        groups.setdefault((s.capacity, s.offload, s.replicas, s.router), []).append(s)
    rows = []
    if len(models) > 1:
        rows += [summary_row(g) for g in groups.values() if len(g) == len(models)]
    rows += [summary_row([s]) for s in done]
    summary = pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA)
    parts = [requests_part(s, request_ids) for s in done]
    requests = pa.concat_tables(parts) if parts else REQUESTS_SCHEMA.empty_table()
    tms = {m: time_model(cfg, m) for m in models}
    settings = {
        "trace": trace.meta.source, "profile": profile, "policy": policy, "replicas": counts,
        "routers": names,
        "router_params": {k: dict(v) for k, v in sorted(params.items())},
        "capacities": [s.label for s in specs], "offloads": [o.label for o in offs],
        "offload_admission": mode, "models": models, "block_size": trace.meta.block_size,
        "time_model": {m: {"prefill": tm.basis, "estimate": True,
                           "transfer": "priced" if tm.kv_bytes_per_token is not None
                           else "not priced (no KV size)"} for m, tm in tms.items()},
        "effective_flops": cfg.savings.effective_flops,
        "prefill_tokens_per_s": cfg.cluster.prefill_tokens_per_s,
        "decode_s_per_token": cfg.cluster.decode_s_per_token,
        "cpu_gb_per_s": cfg.cluster.cpu_gb_per_s, "disk_gb_per_s": cfg.cluster.disk_gb_per_s,
        "seed": cfg.cluster.seed,
    }
    return ClusterResult(trace.meta.source, profile, summary, requests, settings)
