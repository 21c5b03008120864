"""A run: every model × policy × capacity of one trace under one profile (docs/architecture.md §7).

This is what ``kvern replay``/``compare`` call, and the gate and sweep build on it. Each
model has its own cache of the given capacity (a byte capacity is converted per model). The
result carries the Arrow tables that ``kvern.report.write.write_report`` puts on disk.

Ctrl-C keeps what finished: the simulations done so far (whole model × policy × capacity
units; the one in flight is dropped) come back in a ``RunInterrupted`` whose result is
marked partial, for the caller to write and show before exiting 130.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from kvern.infra.config import Config
from kvern.infra.console import NULL_OUTPUT, Output
from kvern.infra.errors import Interrupted, UsageError
from kvern.infra.executor import Executor
from kvern.ingest.stream import BlockStream, block_streams
from kvern.ingest.trace import Trace
from kvern.sim.capacity import CapacitySpec, capacity_blocks, parse_capacity, say_capacity_bound
from kvern.sim.policies import POLICIES, make_policy, parse_policy_list
from kvern.sim.profiles import get_profile
from kvern.sim.result import SimResult
from kvern.sim.savings import attn_ratio
from kvern.sim.simulate import check_supported, simulate

SUMMARY_VERSION = 1
"""Version of summary.json's layout."""


@dataclass(frozen=True)
class RunResult:
    trace_name: str
    profile: str
    policies: list[str]
    capacities: list[CapacitySpec]
    results: list[SimResult]
    """One per model × policy × capacity, in that nesting order."""
    summary: pa.Table
    """One row per policy × capacity (all models together), then with several models one per
    model × policy × capacity; columns in the README."""
    requests: pa.Table
    """One row per request × policy × capacity."""
    settings: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """``summary.json``: the settings and the summary rows, JSON-clean (NaN -> null)."""
        rows = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
                for row in self.summary_rows()]
        return {"version": SUMMARY_VERSION, "settings": self.settings, "summary": rows}

    def summary_rows(self) -> list[dict[str, Any]]:
        return self.summary.to_pylist()

    def aggregate_rows(self) -> list[dict[str, Any]]:
        """The summary rows over the whole trace, one per policy × capacity."""
        from kvern.sim.metrics import aggregate_rows

        return aggregate_rows(self.summary_rows(), self.settings.get("models", []))

    def model_rows(self) -> list[dict[str, Any]]:
        """With several models, each model's own rows (model × policy × capacity); else none."""
        from kvern.sim.metrics import ALL_MODELS

        if len(self.settings.get("models", [])) < 2:
            return []
        return [r for r in self.summary_rows() if r["model"] != ALL_MODELS]

    @property
    def partial(self) -> bool:
        """Interrupted: only the simulations that finished are in the tables."""
        return bool(self.settings.get("partial", False))


class RunInterrupted(Interrupted):
    """Ctrl-C during a run; ``result`` holds the simulations that finished, marked partial."""

    def __init__(self, result: RunResult, planned: int) -> None:
        super().__init__(f"interrupted after {len(result.results)} of {planned} simulations")
        self.result = result
        self.planned = planned


def run_simulation(trace: Trace, cfg: Config, *, policies: Sequence[str] | str,
                   capacities: Sequence[str | int] | str, profile: str,
                   params: Mapping[str, Mapping[str, Any]] | None = None, points: int | None = None,
                   out: Output = NULL_OUTPUT,
                   streams: Mapping[str, BlockStream] | None = None,
                   executor: Executor | None = None) -> RunResult:
    """Simulate ``trace`` for each policy × capacity under ``profile``.

    ``capacities``: ints (blocks) or spec strings (``"1000,10000"``, ``"64k tok"``, ``"8GiB"``,
    ``"1k:1M"`` with ``points``). ``params``: per-policy overrides, e.g. ``{"lfu": {"half_life": 50}}``.
    ``streams`` may pass ``block_streams(trace)`` when the caller already has them.
    ``executor``: where the simulations run (None: one after another in this process); each
    model × policy × capacity is one task over the streams, shared once, results in plan order.
    """
    from kvern.sim.metrics import requests_table, summary_table

    names = parse_policy_list(policies if isinstance(policies, str) else list(policies))
    get_profile(profile)
    for name in names:
        check_supported(profile, name)
    specs = _specs(capacities, points)
    if trace.num_requests == 0:
        raise UsageError("the trace has no requests")
    if streams is None:  # the token ids only for a profile that reads them
        streams = block_streams(trace, tokens=get_profile(profile).uses_tokens)
    streams = dict(streams)
    plan = []
    bounded: list[dict[str, Any]] = []
    for model, stream in streams.items():
        blocks = capacity_blocks(specs, cfg, model, stream.block_size)
        labelled = [(s.label, b) for s, b in zip(specs, blocks, strict=True)]
        note = say_capacity_bound(stream, profile, labelled, out)
        bounded += [note] if note else []
        for name in names:
            user, derived = policy_param_parts(name, cfg, model, params)
            for spec, cap in zip(specs, blocks, strict=True):
                plan.append((model, stream, name, (user, derived), spec, cap))

    total = sum(p[1].num_requests for p in plan)
    results: list[SimResult] = []
    interrupted = False
    try:
        if executor is None or (executor.name == "local" and executor.workers == 1):
            with out.progress(f"simulating {len(names)} × {len(specs)} under {profile}", total) as advance:
                for _model, stream, name, (user, derived), _spec, cap in plan:
                    results.append(simulate(stream, name, cap, profile, user, advance=advance,
                                            run_defaults=derived))
        else:
            _run_on(executor, plan, streams, profile, results, out)
    except KeyboardInterrupt:
        interrupted = True
    labels = [p[4].label for p in plan[:len(results)]]
    summary = summary_table(trace, cfg, results, labels, names, specs, list(streams))
    requests = requests_table(trace, cfg, streams, results, labels)
    settings = {
        "trace": trace.meta.source,
        "profile": profile,
        "policies": names,
        "policy_params": {m: {n: _effective(n, cfg, m, params) for n in names} for m in streams},
        "capacities": [s.label for s in specs],
        "block_size": trace.meta.block_size,
        "models": list(streams),
        "effective_flops": cfg.savings.effective_flops,
    }
    if bounded:  # only then, like partial: other runs' summary.json stays as it always was
        settings["capacity_bounded"] = bounded
    if interrupted:  # only then: a complete run's summary.json stays as it always was
        settings["partial"] = True
        settings["not_run"] = [{"model": m, "policy": n, "capacity": spec.label}
                               for m, _stream, n, _params, spec, _cap in plan[len(results):]]
    result = RunResult(trace.meta.source, profile, names, specs, results, summary, requests, settings)
    if interrupted:
        raise RunInterrupted(result, len(plan))
    return result


def _simulate_unit(streams: Mapping[str, BlockStream], unit: tuple[str, str, int, str, dict[str, Any],
                                                                   dict[str, Any]]) -> SimResult:
    """One model × policy × capacity: the task an executor runs (pure, so a rerun is safe)."""
    model, name, cap, profile, user, derived = unit
    return simulate(streams[model], name, cap, profile, user, run_defaults=derived)


def _run_on(executor: Executor, plan: list[Any], streams: Mapping[str, BlockStream], profile: str,
            results: list[SimResult], out: Output) -> None:
    """Run the plan on ``executor``; ``results`` gets the longest finished prefix of the plan,
    kept there on Ctrl-C like the one-by-one loop's (a run's tables follow the plan's order)."""
    units = [(m, name, cap, profile, user, derived) for m, _s, name, (user, derived), _spec, cap in plan]
    done: dict[int, SimResult] = {}
    finished = executor.map(_simulate_unit, units, shared=dict(streams))
    with out.progress(f"simulating {len(units)} runs on {executor.name}", len(units)) as advance:
        try:
            for i, res in finished:
                done[i] = res
                while len(results) in done:
                    results.append(done.pop(len(results)))
                advance(1)
        finally:
            finished.close()  # type: ignore[attr-defined]


def policy_params(name: str, cfg: Config, model: str,
                  params: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """The parameters to pass to ``simulate`` for ``name`` on ``model``: the user's overrides
    plus what the run derives (the cost policy's ``attn_ratio`` from the model's geometry)."""
    user, derived = policy_param_parts(name, cfg, model, params)
    return {**derived, **user}


def policy_param_parts(name: str, cfg: Config, model: str, params: Mapping[str, Mapping[str, Any]] | None
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the user's overrides, from ``--param`` or the config; defaults the run derives itself).

    ``run_simulation`` passes the second as ``run_defaults`` so that it stays out of the
    policy's display name.
    """
    unknown = set(params or {}) - set(POLICIES)
    if unknown:
        raise UsageError(f"--param: parameters for unknown policies: {', '.join(sorted(unknown))}")
    user = dict((params or {}).get(name, {}))
    if name == "lfu" and "half_life" not in user and cfg.simulate.params.lfu_half_life is not None:
        user["half_life"] = cfg.simulate.params.lfu_half_life
    derived: dict[str, Any] = {}
    ratio = attn_ratio(cfg.model(model).geometry)
    if name == "cost" and ratio is not None:
        derived["attn_ratio"] = ratio
    return user, derived


def _effective(name: str, cfg: Config, model: str, params: Mapping[str, Mapping[str, Any]] | None
               ) -> dict[str, Any]:
    user, derived = policy_param_parts(name, cfg, model, params)
    return make_policy(name, user, derived).params


def _specs(capacities: Sequence[str | int] | str, points: int | None) -> list[CapacitySpec]:
    items = [capacities] if isinstance(capacities, str) else list(capacities)
    specs: list[CapacitySpec] = []
    for item in items:
        if isinstance(item, int):
            if item < 1:
                raise UsageError(f"--capacity: {item} blocks; the cache needs at least one block")
            specs.append(CapacitySpec(item, "blocks", str(item)))
        else:
            specs.extend(parse_capacity(item, points))
    if not specs:
        raise UsageError("--capacity: no capacity given")
    uniq: dict[tuple[int, str], CapacitySpec] = {}
    for s in specs:
        uniq.setdefault((s.value, s.unit), s)
    return list(uniq.values())
