"""Predicted against observed cached tokens, request by request, with the likely cause of each gap.

The prediction simulates the profile that matches the server on the requests the server
actually served, in the order it received them (first send time), so a run cut short or a
request that failed does not shift the others. For ``llamacpp`` the prediction is token-exact:
it runs ``LlamaServerModel`` on the prompts' token ids with the server's slot count and the
generated-token counts the server reported (the slot keeps them). Other profiles run through
the simulator's own profile on the block stream, at the capacity given.

A gap's cause is named when the data can tell it, checked in this order: the server counted a
different prompt (template or tokenization drift), the request was retried, it or an earlier
request overlapped another in flight (concurrency), the gap is within one block of a block boundary
(block rounding), it is one token at the end of the prompt (last-token rule), the server held
less than simulated (eviction), or more.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from kvern.infra.config import Config
from kvern.ingest.stream import block_streams
from kvern.ingest.trace import Trace
from kvern.live.bodies import row_prompt
from kvern.sim.capacity import CapacitySpec, capacity_blocks
from kvern.sim.profiles.llamacpp import LlamaServerConfig, predict

RECONCILE_SCHEMA = pa.schema([
    pa.field("row", pa.int64(), nullable=False),
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("session_id", pa.string()),
    pa.field("sent_s", pa.float64(), nullable=False),
    pa.field("prompt_tokens", pa.int32(), nullable=False),
    pa.field("server_prompt_tokens", pa.int32()),
    pa.field("predicted_cached", pa.int64()),
    pa.field("observed_cached", pa.int32()),
    pa.field("gap", pa.int64()),
    pa.field("agree", pa.bool_()),
    pa.field("cause", pa.string()),
    pa.field("ttft_s", pa.float64()),
])

CAUSE_DRIFT = "template or tokenization drift"
CAUSE_RETRIED = "retried"
CAUSE_CONCURRENCY = "concurrency"
CAUSE_BLOCK = "block rounding"
CAUSE_LAST_TOKEN = "last-token rule"
CAUSE_EVICTION = "eviction"
CAUSE_MORE = "server kept more than simulated"
CAUSE_ERROR = "request failed"
CAUSE_UNREPORTED = "not reported by the server"


@dataclass(frozen=True, slots=True)
class Reconciliation:
    table: pa.Table
    summary: dict[str, Any]


def served_order(live: pa.Table) -> np.ndarray:
    """Indices of the live rows the server answered, in the order they were first sent."""
    ok = np.asarray(live.column("ok").to_numpy(zero_copy_only=False), dtype=bool)
    sent = live.column("sent_s").to_numpy()
    idx = np.flatnonzero(ok)
    return idx[np.argsort(sent[idx], kind="stable")]


def prompts_of(trace: Trace, rows: np.ndarray) -> Iterator[np.ndarray]:
    """The token ids each trace row's prompt was sent as, one at a time (long traces are big)."""
    for r in rows:
        yield np.asarray(row_prompt(trace, int(r)), dtype=np.int64)


def predict_llamacpp(trace: Trace, live: pa.Table, order: np.ndarray,
                     config: LlamaServerConfig) -> np.ndarray:
    """llama-server's cached tokens for the served requests, its slots holding what it generated."""
    rows = live.column("row").to_numpy()[order]
    gen = live.column("completion_tokens").to_numpy(zero_copy_only=False)[order]
    max_tokens = live.column("max_tokens").to_numpy()[order]
    generated = [int(g) if g == g and g is not None else int(m) for g, m in zip(gen, max_tokens, strict=True)]
    return predict(prompts_of(trace, rows), generated, config)


def predict_with_profile(trace: Trace, cfg: Config, live: pa.Table, order: np.ndarray, profile: str,
                         policy: str, capacity: CapacitySpec) -> np.ndarray:
    """Any registered profile, on the block stream of the served requests in served order."""
    from kvern.sim.policies import make_policy
    from kvern.sim.profiles import get_profile

    rows = live.column("row").to_numpy()[order]
    sub = Trace(trace.table.take(pa.array(rows)), trace.meta)
    predicted = np.zeros(len(rows), dtype=np.int64)
    engine = get_profile(profile)
    for model, stream in block_streams(sub).items():
        blocks = capacity_blocks([capacity], cfg, model, stream.block_size)[0]
        res = engine.simulate(stream, make_policy(policy), blocks)
        predicted[stream.rows] = res.cached_tokens
    return predicted


def reconcile(trace: Trace, live: pa.Table, predicted: np.ndarray, order: np.ndarray,
              block_size: int) -> Reconciliation:
    """Set ``predicted`` (one per ``order`` row of ``live``) beside what the server reported."""
    n = live.num_rows
    pred = np.full(n, -1, dtype=np.int64)
    pred[order] = predicted
    col = {name: live.column(name).to_pylist() for name in
           ("row", "request_id", "session_id", "sent_s", "done_s", "prompt_tokens",
            "server_prompt_tokens", "cached_tokens", "ok", "retries", "ttft_s")}
    sent = np.asarray(col["sent_s"], dtype=np.float64)
    done = np.asarray(col["done_s"], dtype=np.float64)
    overlapped = _overlaps(sent, done)
    # A request after an overlap may meet a server state that the overlap changed.
    first_overlap = sent[overlapped].min() if overlapped.any() else np.inf
    after_overlap = sent > first_overlap
    causes: list[str | None] = []
    agree: list[bool | None] = []
    gaps: list[int | None] = []
    for i in range(n):
        p = int(pred[i]) if pred[i] >= 0 else None
        obs = col["cached_tokens"][i]
        if not col["ok"][i]:
            causes.append(CAUSE_ERROR), agree.append(None), gaps.append(None)
            continue
        if obs is None or p is None:
            causes.append(CAUSE_UNREPORTED), agree.append(None), gaps.append(None)
            continue
        gaps.append(obs - p)
        agree.append(obs == p)
        causes.append(None if obs == p else _cause(
            obs, p, col["prompt_tokens"][i], col["server_prompt_tokens"][i], col["retries"][i],
            bool(overlapped[i]), bool(after_overlap[i]), block_size))
    table = pa.table({
        "row": col["row"], "request_id": col["request_id"], "session_id": col["session_id"],
        "sent_s": col["sent_s"], "prompt_tokens": col["prompt_tokens"],
        "server_prompt_tokens": col["server_prompt_tokens"],
        "predicted_cached": [int(x) if x >= 0 else None for x in pred],
        "observed_cached": col["cached_tokens"], "gap": gaps, "agree": agree, "cause": causes,
        "ttft_s": col["ttft_s"],
    }, schema=RECONCILE_SCHEMA)
    return Reconciliation(table, _summary(table, live))


def _overlaps(sent: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Whether each request's [sent, done] interval meets another's."""
    order = np.argsort(sent, kind="stable")
    out = np.zeros(len(sent), dtype=bool)
    latest_done, latest_i = -np.inf, -1
    for i in order:
        if sent[i] < latest_done:
            out[i] = True
            out[latest_i] = True
        if done[i] > latest_done:
            latest_done, latest_i = done[i], i
    return out


def _cause(obs: int, pred: int, prompt: int, server_prompt: int | None, retries: int,
           overlapped: bool, after_overlap: bool, block_size: int) -> str:
    if server_prompt is not None and server_prompt != prompt:
        return f"{CAUSE_DRIFT} (server counted {server_prompt} prompt tokens, the trace {prompt})"
    if retries:
        return f"{CAUSE_RETRIED} ({retries}×: an earlier attempt may have filled the cache)"
    if overlapped:
        return CAUSE_CONCURRENCY
    if after_overlap:
        return f"{CAUSE_CONCURRENCY} (earlier requests overlapped: the server's state may differ)"
    gap = abs(obs - pred)
    if block_size > 1 and gap < block_size and (obs % block_size == 0 or pred % block_size == 0):
        return CAUSE_BLOCK
    if gap == 1 and max(obs, pred) >= prompt - 1:
        return CAUSE_LAST_TOKEN
    return CAUSE_EVICTION if obs < pred else CAUSE_MORE


def _summary(table: pa.Table, live: pa.Table) -> dict[str, Any]:
    agree = [a for a in table.column("agree").to_pylist() if a is not None]
    gaps = [abs(g) for g in table.column("gap").to_pylist() if g is not None]
    causes: dict[str, int] = {}
    for c in table.column("cause").to_pylist():
        if c is not None:
            key = c.split(" (")[0]
            causes[key] = causes.get(key, 0) + 1
    ok = np.asarray(live.column("ok").to_numpy(zero_copy_only=False), dtype=bool)
    prompt = np.asarray(live.column("prompt_tokens").to_numpy(), dtype=np.int64)
    obs = [c for c, good in zip(live.column("cached_tokens").to_pylist(), ok, strict=True) if good]
    pred = [p for p, good in zip(table.column("predicted_cached").to_pylist(), ok, strict=True) if good]
    served_prompt = int(prompt[ok].sum())
    reported = [o for o in obs if o is not None]
    return {
        "requests": live.num_rows,
        "succeeded": int(ok.sum()),
        "failed": int((~ok).sum()),
        "compared": len(agree),
        "agreed": int(sum(agree)),
        "agreement_rate": (sum(agree) / len(agree)) if agree else None,
        "mean_abs_gap": (float(np.mean(gaps)) if gaps else None),
        "observed_cached_tokens": int(sum(reported)) if reported else None,
        "predicted_cached_tokens": int(sum(p for p in pred if p is not None)),
        "prompt_tokens": served_prompt,
        "observed_token_hit_rate": (sum(reported) / served_prompt) if reported and served_prompt else None,
        "predicted_token_hit_rate": (sum(p for p in pred if p is not None) / served_prompt)
        if served_prompt else None,
        "gap_causes": dict(sorted(causes.items())),
    }
