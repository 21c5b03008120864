"""Synthetic pre-tokenized traces for the live tests (replayed through /v1/completions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from kvern.ingest.blocks import token_block_keys
from kvern.ingest.trace import TRACE_SCHEMA, Trace, TraceMeta, with_meta, write_trace


def token_trace(path: Path, prompts: list[np.ndarray], outputs: list[int]) -> Path:
    """A pre-tokenized trace of ``prompts`` (replayed through /v1/completions as token ids)."""
    rows = {
        "request_id": [f"r{i}" for i in range(len(prompts))],
        "arrival_s": [float(i) for i in range(len(prompts))],
        "model": ["m"] * len(prompts),
        "session_id": [None] * len(prompts),
        "prompt_tokens": [len(p) for p in prompts],
        "output_tokens": outputs,
        "block_keys": [token_block_keys("m", p, 16) for p in prompts],
        "token_ids": [p.tolist() for p in prompts],
    }
    meta = TraceMeta(block_size=16, source="synthetic", format="tokens")
    write_trace(Trace(with_meta(pa.table(rows, schema=TRACE_SCHEMA), meta), meta), path)
    return path


def shared_prefix_prompts(seed: int, n: int) -> tuple[list[np.ndarray], list[int]]:
    """Requests over a few documents: repeats, extensions, branches and strangers, interleaved.

    That is what exercises each rule of the model: slot choice by similarity and by LRU,
    saves to and loads from the host cache, the keep < 0.5 save, and the last-token rule.
    """
    rng = np.random.default_rng(seed)
    docs = [rng.integers(1000, 30000, size=int(rng.integers(20, 300))) for _ in range(6)]
    prompts, outputs = [], []
    for _ in range(n):
        doc = docs[int(rng.integers(len(docs)))]
        kind = rng.integers(4)
        if kind == 0:
            p = doc
        elif kind == 1:
            p = np.concatenate([doc, rng.integers(1000, 30000, size=int(rng.integers(1, 80)))])
        elif kind == 2:
            p = doc[: int(rng.integers(1, len(doc) + 1))]
        else:
            p = rng.integers(1000, 30000, size=int(rng.integers(5, 200)))
        prompts.append(p.astype(np.int64))
        outputs.append(int(rng.integers(1, 9)))
    return prompts, outputs
