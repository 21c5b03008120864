"""Metrics tables of a run (docs/architecture.md §5, §7): per request, and per policy × capacity (and
per model × policy × capacity when the trace has several models).

Three hit rates, named apart because tools disagree on them: ``token_hit_rate`` (Σ cached /
Σ prompt tokens), ``request_hit_rate`` (share of requests with any cached token) and
``mean_request_hit_ratio`` (mean of cached / prompt per request). Savings need the model's
geometry; where a model lacks it they are null ("n/a"), never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from kvern.infra.config import Config
from kvern.ingest.stream import BlockStream
from kvern.ingest.trace import Trace
from kvern.sim.capacity import CapacitySpec
from kvern.sim.result import SimResult
from kvern.sim.savings import prefill_flops

SUMMARY_SCHEMA = pa.schema([
    ("policy", pa.string()), ("policy_label", pa.string()), ("profile", pa.string()),
    ("capacity", pa.string()), ("capacity_blocks", pa.int64()), ("block_size", pa.int32()),
    ("model", pa.string()), ("requests", pa.int64()), ("prompt_tokens", pa.int64()),
    ("cached_tokens", pa.int64()), ("hit_requests", pa.int64()), ("token_hit_rate", pa.float64()),
    ("request_hit_rate", pa.float64()), ("mean_request_hit_ratio", pa.float64()),
    ("evicted_blocks", pa.int64()), ("unschedulable_requests", pa.int64()),
    ("prefill_flops", pa.float64()), ("flops_saved", pa.float64()), ("flops_saved_ratio", pa.float64()),
    ("time_saved_s", pa.float64()), ("gap_to_belady", pa.float64()),
])

REQUESTS_SCHEMA = pa.schema([
    ("model", pa.string()), ("request_id", pa.string()), ("row", pa.int64()), ("arrival_s", pa.float64()),
    ("policy", pa.string()), ("profile", pa.string()), ("capacity", pa.string()),
    ("capacity_blocks", pa.int64()), ("prompt_tokens", pa.int64()), ("cached_tokens", pa.int64()),
    ("hit", pa.bool_()), ("hit_ratio", pa.float64()), ("unschedulable", pa.bool_()),
    ("flops_saved", pa.float64()),
])


ALL_MODELS = "*"
"""``model`` of a summary row over every model of a trace with several."""

Row = TypeVar("Row", bound=Mapping[str, Any])


def summary_table(trace: Trace, cfg: Config, results: Sequence[SimResult], labels: Sequence[str],
                  policies: Sequence[str], specs: Sequence[CapacitySpec], models: Sequence[str]) -> pa.Table:
    """One row per policy × capacity over the whole trace, then, with several models, one per
    model × policy × capacity.

    The first rows sum every model's cache (``model`` = "*" if several; with one model they
    are its rows and nothing follows). With several models each model's own rows follow in run
    order (``model`` its name, ``capacity_blocks`` its own cache, ``gap_to_belady`` against its
    own Belady row). ``results`` may lack some units (an interrupted run): a policy × capacity
    gets its "*" row only once every model has run it.
    """
    groups: dict[tuple[str, str], list[SimResult]] = {}
    for res, label in zip(results, labels, strict=True):
        groups.setdefault((res.policy, label), []).append(res)
    rows = []
    for policy in policies:
        for spec in specs:
            group = groups.get((policy, spec.label), [])
            if len(group) == len(models):
                rows.append(_summary_row(cfg, group, policy, spec.label))
    if len(models) > 1:
        rows += [_summary_row(cfg, [res], res.policy, label)
                 for res, label in zip(results, labels, strict=True)]
    belady = {(r["model"], r["capacity"]): r["token_hit_rate"] for r in rows if r["policy"] == "belady"}
    for r in rows:
        ceiling = belady.get((r["model"], r["capacity"]))
        r["gap_to_belady"] = None if ceiling is None else ceiling - r["token_hit_rate"]
    return pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA)


def aggregate_rows(rows: Sequence[Row], models: Sequence[str] | None = None) -> list[Row]:
    """The summary rows over the whole trace (one per policy × capacity): ``model`` "*" when the
    run had several ``models``, else every row. Without ``models`` (rows read back from a file)
    several are assumed when a row is "*" or rows name more than one model."""
    names = {r.get("model") for r in rows}
    several = len(models) > 1 if models is not None else (ALL_MODELS in names or len(names) > 1)
    return [r for r in rows if r.get("model") == ALL_MODELS] if several else list(rows)


def _summary_row(cfg: Config, group: list[SimResult], policy: str, label: str) -> dict:
    prompt = np.concatenate([g.prompt_tokens for g in group])
    cached = np.concatenate([g.cached_tokens for g in group])
    n = len(prompt)
    total_prompt, total_cached = int(prompt.sum()), int(cached.sum())
    ratio = np.divide(cached, prompt, out=np.zeros(n, dtype=np.float64), where=prompt > 0)
    full, saved = 0.0, 0.0
    known = True
    for g in group:
        geometry = cfg.model(g.model).geometry
        f_full, f_saved = prefill_flops(g.prompt_tokens, geometry), prefill_flops(g.cached_tokens, geometry)
        if f_full is None or f_saved is None:
            known = False
            break
        full += float(f_full.sum())
        saved += float(f_saved.sum())
    first = group[0]
    return {
        "policy": policy, "policy_label": first.policy_label, "profile": first.profile, "capacity": label,
        "capacity_blocks": sum(g.capacity_blocks for g in group), "block_size": first.block_size,
        "model": first.model if len(group) == 1 else ALL_MODELS, "requests": n, "prompt_tokens": total_prompt,
        "cached_tokens": total_cached, "hit_requests": int((cached > 0).sum()),
        "token_hit_rate": total_cached / total_prompt if total_prompt else 0.0,
        "request_hit_rate": float((cached > 0).mean()) if n else 0.0,
        "mean_request_hit_ratio": float(ratio.mean()) if n else 0.0,
        "evicted_blocks": sum(g.evicted_blocks for g in group),
        "unschedulable_requests": int(sum(int(g.unschedulable.sum()) for g in group)),
        "prefill_flops": full if known else None,
        "flops_saved": saved if known else None,
        "flops_saved_ratio": (saved / full if full else 0.0) if known else None,
        "time_saved_s": saved / cfg.savings.effective_flops if known else None,
        "gap_to_belady": None,
    }


def requests_table(trace: Trace, cfg: Config, streams: Mapping[str, BlockStream],
                   results: Sequence[SimResult], labels: Sequence[str]) -> pa.Table:
    """One row per request × policy × capacity, in run order then arrival order."""
    ids = trace.column("request_id").to_numpy(zero_copy_only=False)
    parts = []
    for res, label in zip(results, labels, strict=True):
        stream = streams[res.model]
        n = res.num_requests
        saved = prefill_flops(res.cached_tokens, cfg.model(res.model).geometry)
        ratio = np.divide(res.cached_tokens, res.prompt_tokens, out=np.zeros(n, dtype=np.float64),
                          where=res.prompt_tokens > 0)
        parts.append(pa.table({
            "model": pa.array([res.model] * n, pa.string()),
            "request_id": pa.array(ids[stream.rows], pa.string()),
            "row": pa.array(stream.rows, pa.int64()),
            "arrival_s": pa.array(stream.arrival_s, pa.float64()),
            "policy": pa.array([res.policy] * n, pa.string()),
            "profile": pa.array([res.profile] * n, pa.string()),
            "capacity": pa.array([label] * n, pa.string()),
            "capacity_blocks": pa.array(np.full(n, res.capacity_blocks, dtype=np.int64)),
            "prompt_tokens": pa.array(res.prompt_tokens, pa.int64()),
            "cached_tokens": pa.array(res.cached_tokens, pa.int64()),
            "hit": pa.array(res.hit, pa.bool_()),
            "hit_ratio": pa.array(ratio, pa.float64()),
            "unschedulable": pa.array(res.unschedulable, pa.bool_()),
            "flops_saved": pa.array(saved if saved is not None else [None] * n, pa.float64()),
        }, schema=REQUESTS_SCHEMA))
    return pa.concat_tables(parts) if parts else REQUESTS_SCHEMA.empty_table()
