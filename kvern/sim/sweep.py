"""Hit rate against capacity for each policy, and the capacity answer (docs/architecture.md §4–5).

LRU under a profile the one-pass curve supports (``CURVE_PROFILES``) comes exactly, for every
capacity, from ``kvern.sim.curve``; every other policy (and LRU under other profiles) is
simulated at log-spaced capacities, the runs spread over the machine's cores. Then, per
model and policy, the *capacity answer*: the smallest cache that reaches 50/80/90/95% of
the achievable token hit rate (the infinite cache's), in blocks, tokens and bytes of KV.

Ctrl-C keeps what finished: ``run_sweep`` raises ``SweepInterrupted`` holding a result with
the points that were simulated (the runs in flight are dropped), marked partial; a policy
whose points are not all there (or a model without its achievable rate) gets no capacity
answers, since a missing capacity could change them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kvern.infra.config import Config
from kvern.infra.console import NULL_OUTPUT, Output
from kvern.infra.errors import Interrupted, UsageError
from kvern.infra.executor import Executor, LocalExecutor, all_cores
from kvern.ingest.stream import BlockStream, block_streams
from kvern.ingest.trace import Trace
from kvern.sim.capacity import (
    CapacitySpec,
    capacity_blocks,
    parse_capacity,
    say_capacity_bound,
    useful_capacity,
)
from kvern.sim.curve import LRUCurve, lru_curve
from kvern.sim.policies import make_policy, parse_policy_list
from kvern.sim.profiles import get_profile
from kvern.sim.result import SimResult
from kvern.sim.run import policy_params
from kvern.sim.simulate import check_supported, simulate

PERCENTS = (50, 80, 90, 95)
SWEEP_POINTS = 20
"""Log-spaced capacities a sweep samples per policy (``--points``; the CLI shows the same default)."""

CURVE_PROFILES = frozenset({"ideal"})
"""Profiles whose LRU cache is exactly the stack of the ``min(C, seen)`` most recent blocks."""
WHY_NO_CURVE = {
    "vllm": "vLLM's pool also holds each running request's partial tail block and a second copy "
            "of a block-aligned exact repeat, so its contents at C blocks are not the C most "
            "recent blocks",
    "sglang": "SGLang evicts whole radix nodes and may free more than it needs, so its contents "
              "depend on the capacity in ways a single stack cannot follow",
    "llamacpp": "llama-server keeps one prompt per slot rather than a recency stack of blocks",
}


@dataclass(frozen=True, slots=True)
class Point:
    """One policy at one capacity for one model: the same totals a simulation reports."""

    model: str
    policy: str
    policy_label: str
    capacity_blocks: int
    source: str
    """"curve" (exact one-pass LRU) or "simulation"."""
    requests: int
    prompt_tokens: int
    cached_tokens: int
    hit_requests: int
    hit_ratio_sum: float
    evicted_blocks: int
    unschedulable_requests: int

    @property
    def token_hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(frozen=True, slots=True)
class Answer:
    """The smallest capacity that reaches ``percent`` % of the achievable cached tokens."""

    model: str
    policy: str
    percent: int
    target_tokens: int
    """Cached tokens to reach: ``ceil(percent/100 × achievable)``."""
    capacity_blocks: int | None
    """None: not reached at any capacity of the sweep."""
    exact: bool
    """True from the one-pass curve; False = the smallest *sampled* capacity that reaches it."""
    block_size: int
    kv_bytes_per_token: int | None

    @property
    def capacity_tokens(self) -> int | None:
        return None if self.capacity_blocks is None else self.capacity_blocks * self.block_size

    @property
    def capacity_bytes(self) -> int | None:
        if self.capacity_tokens is None or self.kv_bytes_per_token is None:
            return None
        return self.capacity_tokens * self.kv_bytes_per_token

    def words(self) -> str:
        head = f"to reach {self.percent}% of the achievable token hit rate with {self.policy}"
        if self.target_tokens == 0:
            return f"{head}: nothing to reach, the trace has no prefix reuse for {self.model}"
        if self.capacity_blocks is None:
            return f"{head}: not reached within the sweep's capacities (widen --capacity)"
        need = "you need" if self.exact else "you need at most"
        gib = ("n/a GiB (no KV geometry: set models." + self.model + ".geometry)"
               if self.capacity_bytes is None else f"{self.capacity_bytes / 2**30:,.2f} GiB")
        return (f"{head} {need} {self.capacity_blocks:,} blocks = {self.capacity_tokens:,} tokens "
                f"= {gib} of KV for {self.model}"
                + ("" if self.exact else " (the smallest sampled capacity that reaches it)"))


@dataclass(frozen=True)
class ModelSweep:
    model: str
    block_size: int
    num_unique: int
    capacities: list[int]
    """Sampled capacities in blocks, ascending."""
    prompt_tokens: int
    achievable_tokens: int | None
    """Cached tokens with an unbounded cache under the profile (the ceiling of every policy);
    None when an interrupted sweep did not get to it."""
    kv_bytes_per_token: int | None
    points: list[Point]
    answers: list[Answer]
    curve: LRUCurve | None
    """The exact LRU curve, when the profile supports it."""

    @property
    def achievable_rate(self) -> float | None:
        if self.achievable_tokens is None:
            return None
        return self.achievable_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(frozen=True)
class SweepResult:
    trace_name: str
    profile: str
    policies: list[str]
    models: list[ModelSweep]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def exact_lru(self) -> bool:
        """LRU came from the one-pass curve (an exact profile, and LRU among the policies)."""
        return any(m.curve is not None for m in self.models)

    @property
    def partial(self) -> bool:
        """Interrupted: only the points that finished are here."""
        return bool(self.settings.get("partial", False))


class SweepInterrupted(Interrupted):
    """Ctrl-C during a sweep; ``result`` holds what finished, marked partial."""

    def __init__(self, result: SweepResult, done: int, planned: int) -> None:
        super().__init__(f"interrupted after {done} of {planned} simulations")
        self.result = result


def run_sweep(trace: Trace, cfg: Config, *, policies: Sequence[str] | str, profile: str,
              capacity: str | None = None, points: int = SWEEP_POINTS,
              params: Mapping[str, Mapping[str, Any]] | None = None, jobs: int | None = None,
              out: Output = NULL_OUTPUT, executor: Executor | None = None) -> SweepResult:
    """Sweep ``policies`` over capacities under ``profile`` (see the module docstring).

    ``capacity``: a range (``1k:1M``, ``points`` log-spaced values) or a list, in any unit
    ``kvern.sim.capacity`` reads; None = ``points`` values from 1/1000 of the trace's unique
    blocks up to where the cache holds them all. ``executor``: where the simulations run
    (default: ``jobs`` local processes); the result is the same on any.
    """
    names = parse_policy_list(policies if isinstance(policies, str) else list(policies))
    get_profile(profile)
    for name in names:
        check_supported(profile, name)
    if points < 2:
        raise UsageError(f"--points: {points}; a sweep needs at least 2 points")
    if trace.num_requests == 0:
        raise UsageError("the trace has no requests")
    streams = block_streams(trace, tokens=get_profile(profile).uses_tokens)
    specs = None if capacity is None else parse_capacity(capacity, points)
    exact = profile in CURVE_PROFILES
    use_curve = exact and "lru" in names
    if not exact and "lru" in names:
        out.info(f"LRU is simulated at {points} capacities, not drawn exactly: under --profile {profile}, "
                 f"{WHY_NO_CURVE.get(profile, 'its cache is not a recency stack of blocks')}.")

    plans: dict[str, list[int]] = {}
    bounded: list[dict[str, Any]] = []
    tasks: list[tuple[str, str, int, dict[str, Any]]] = []
    for model, stream in streams.items():
        caps = _capacities(stream, specs, points, cfg, model, exact)
        plans[model] = caps
        note = say_capacity_bound(stream, profile, [(f"{c:,} blocks", c) for c in caps], out)
        if note:  # in blocks, as the sweep's other capacities are recorded
            bounded.append({**note, "capacities": [c for c in caps if c > note["simulated_as_blocks"]]})
        if not use_curve:  # the achievable rate: LRU in a cache that never has to evict (first,
            # so that an interrupted sweep most likely has it)
            tasks.append((model, "lru", unbounded_capacity(stream), policy_params("lru", cfg, model, params)))
        for name in names:
            merged = policy_params(name, cfg, model, params)
            make_policy(name, merged)  # unknown parameters fail here, even for the curve
            if not (use_curve and name == "lru"):
                tasks.extend((model, name, c, merged) for c in caps)

    results, interrupted = _run_bounded(tasks, streams, profile, jobs, executor, out)
    by_task = {(t[0], t[1], t[2]): r for t, r in zip(tasks, results, strict=True) if r is not None}
    curves: dict[str, LRUCurve | None] = dict.fromkeys(streams)
    if use_curve and not interrupted:
        try:
            with out.progress("one-pass LRU curve", len(streams)) as advance:
                for model, stream in streams.items():
                    curves[model] = lru_curve(stream, last_token_rule=get_profile(profile).last_token_rule)
                    advance(1)
        except KeyboardInterrupt:
            interrupted = True
    models = [_model_sweep(cfg, stream, names, plans[model], by_task, curves[model], use_curve)
              for model, stream in streams.items()]
    settings = {
        "trace": trace.meta.source, "profile": profile, "policies": names,
        "capacity": capacity, "points": points, "exact_lru_curve": use_curve,
        "block_size": trace.meta.block_size, "models": list(streams),
        "policy_params": {m: {n: policy_params(n, cfg, m, params) for n in names} for m in streams},
    }
    if bounded:  # only then: other sweeps' settings stay as they always were
        settings["capacity_bounded"] = bounded
    if not interrupted:  # a complete sweep's settings stay as they always were
        return SweepResult(trace.meta.source, profile, names, models, settings)
    # What did not run: simulations by capacity, an LRU curve as a whole (capacity_blocks None).
    settings["partial"] = True
    settings["not_run"] = [{"model": t[0], "policy": t[1], "capacity_blocks": t[2]}
                           for t, r in zip(tasks, results, strict=True) if r is None]
    if use_curve:
        settings["not_run"] += [{"model": m, "policy": "lru", "capacity_blocks": None}
                                for m, c in curves.items() if c is None]
    result = SweepResult(trace.meta.source, profile, names, models, settings)
    raise SweepInterrupted(result, sum(r is not None for r in results), len(tasks))


# -- capacities ----------------------------------------------------------------------------------

def _capacities(stream: BlockStream, specs: list[CapacitySpec] | None, points: int, cfg: Config,
                model: str, exact: bool) -> list[int]:
    if specs is not None:
        return sorted(set(capacity_blocks(specs, cfg, model, stream.block_size)))
    longest = int(np.diff(stream.req_offsets).max())
    # The pool of a non-ideal profile also holds running requests' partial tails.
    hi = max(2, stream.num_unique if exact else stream.num_unique + longest)
    lo = max(1, hi // 1000)
    return sorted(set(np.round(np.geomspace(lo, hi, points)).astype(np.int64).tolist()))


def unbounded_capacity(stream: BlockStream) -> int:
    """Blocks after which no block profile ever evicts (``kvern.sim.capacity.useful_capacity``)."""
    bound = useful_capacity(stream, "vllm")
    assert bound is not None
    return bound


# -- parallel simulations --------------------------------------------------------------------------

def _simulate_task(shared: tuple[Mapping[str, BlockStream], str], task: tuple[str, str, int, dict[str, Any]]
                   ) -> SimResult:
    """One model × policy × capacity: the task an executor runs over the streams, shared once."""
    streams, profile = shared
    model, policy, cap, params = task
    return simulate(streams[model], policy, cap, profile, params)


def _run_bounded(tasks: list[tuple[str, str, int, dict[str, Any]]], streams: Mapping[str, BlockStream],
                 profile: str, jobs: int | None, executor: Executor | None,
                 out: Output) -> tuple[list[SimResult | None], bool]:
    """``_run_parallel``, each capacity beyond what its trace can fill run once at that bound and
    shared (a range up to 1G blocks costs what the trace costs, not a pass per point)."""
    index: dict[tuple[str, str, int], int] = {}
    unique: list[tuple[str, str, int, dict[str, Any]]] = []
    slots: list[int] = []
    for model, name, cap, params in tasks:
        bound = useful_capacity(streams[model], profile)
        key = (model, name, cap if bound is None else min(cap, bound))
        if key not in index:
            index[key] = len(unique)
            unique.append((model, name, key[2], params))
        slots.append(index[key])
    done, interrupted = _run_parallel(unique, streams, profile, jobs, executor, out)
    results: list[SimResult | None] = []
    for (_m, _n, cap, _p), slot in zip(tasks, slots, strict=True):
        res = done[slot]
        if res is not None and res.capacity_blocks != cap:
            res = dataclasses.replace(res, capacity_blocks=cap)
        results.append(res)
    return results, interrupted


IN_PROCESS_BELOW = 4_000_000
"""Block accesses (over all the runs) below which a sweep not told ``--jobs`` runs here: each
forked worker would load its compiled kernels itself (0.1-0.3 s), more than such runs take."""


def _run_parallel(tasks: list[tuple[str, str, int, dict[str, Any]]], streams: Mapping[str, BlockStream],
                  profile: str, jobs: int | None, executor: Executor | None,
                  out: Output) -> tuple[list[SimResult | None], bool]:
    """Run the simulations on ``executor`` (default: ``jobs`` local processes, all cores unless
    set or the work is small), results in task order. On Ctrl-C: (the results so far, None
    where a task did not finish; True)."""
    if executor is None:
        if jobs is None:
            work = sum(len(streams[model].block_ids) for model, *_ in tasks)
            jobs = 1 if work < IN_PROCESS_BELOW else all_cores()
        if jobs < 1:
            raise UsageError(f"--jobs: {jobs}; at least 1")
        executor = LocalExecutor(1 if len(tasks) <= 1 else min(jobs, len(tasks)))
    results: list[SimResult | None] = [None] * len(tasks)
    if not tasks:
        return results, False
    where = f" on {executor.workers} cores" if executor.name == "local" and executor.workers > 1 else (
        f" on {executor.name}" if executor.name != "local" else "")
    try:
        # Local workers fork here, before the progress bar starts its thread.
        finished = executor.map(_simulate_task, tasks, shared=(dict(streams), profile))
        with out.progress(f"simulating {len(tasks)} runs{where}", len(tasks)) as advance:
            try:
                for i, res in finished:
                    results[i] = res
                    advance(1)
            finally:
                finished.close()  # type: ignore[attr-defined]  # on Ctrl-C, the runs in flight are dropped
    except KeyboardInterrupt:
        return results, True
    assert all(r is not None for r in results), "a simulation task returned nothing"
    return results, False


# -- per model: points and answers -----------------------------------------------------------------

def _model_sweep(cfg: Config, stream: BlockStream, names: list[str], caps: list[int],
                 by_task: Mapping[tuple[str, str, int], SimResult], curve: LRUCurve | None,
                 use_curve: bool) -> ModelSweep:
    """``by_task`` and ``curve`` may lack what an interrupted sweep did not run: the points
    that did run are kept, and answers come only with every point and the achievable rate."""
    model = stream.model
    geometry = cfg.model(model).geometry
    per_token = None if geometry is None else geometry.kv_bytes_per_token
    prompt = int(stream.prompt_tokens.sum())
    achievable: int | None = None
    if curve is not None:
        achievable = int(curve.cached_tokens[-1])
    elif not use_curve and (model, "lru", unbounded_capacity(stream)) in by_task:
        achievable = by_task[(model, "lru", unbounded_capacity(stream))].total_cached_tokens
    points: list[Point] = []
    answers: list[Answer] = []
    for name in names:
        if use_curve and name == "lru":
            row = [] if curve is None else [_curve_point(curve, model, c) for c in caps]
        else:
            row = [_sim_point(by_task[(model, name, c)]) for c in caps if (model, name, c) in by_task]
        points.extend(row)
        if achievable is None or len(row) < len(caps):
            continue
        for pct in PERCENTS:
            target = -(-pct * achievable // 100)
            if curve is not None and name == "lru":
                cap: int | None = curve.capacity_for(target)
                exact = True
            else:
                cap = next((p.capacity_blocks for p in row if p.cached_tokens >= target), None)
                exact = False
            answers.append(Answer(model, name, pct, target, cap, exact, stream.block_size, per_token))
    return ModelSweep(model, stream.block_size, stream.num_unique, caps, prompt, achievable, per_token,
                      points, answers, curve)


def _curve_point(curve: LRUCurve, model: str, cap: int) -> Point:
    p = curve.at(cap)
    return Point(model, "lru", "lru", cap, "curve", p.requests, p.prompt_tokens, p.cached_tokens,
                 p.hit_requests, p.hit_ratio_sum, p.evicted_blocks, 0)


def _sim_point(res: SimResult) -> Point:
    ratio = np.divide(res.cached_tokens, res.prompt_tokens, out=np.zeros(res.num_requests),
                      where=res.prompt_tokens > 0)
    return Point(res.model, res.policy, res.policy_label, res.capacity_blocks, "simulation",
                 res.num_requests, res.total_prompt_tokens, res.total_cached_tokens,
                 int(res.hit.sum()), float(ratio.sum()), res.evicted_blocks, int(res.unschedulable.sum()))
