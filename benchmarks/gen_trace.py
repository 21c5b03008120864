"""Large hash-id traces with realistic sharing, for the simulator benchmarks.

What is shared, and how often, is what decides a prefix cache's behaviour, so the generator
models the three sources of reuse seen in chat serving logs:

* **system prompts**: a few dozen, ~1k tokens each, picked with Zipf popularity;
* **documents** (RAG, few-shot, tool schemas): thousands, 1.6k–9.6k tokens, Zipf-popular,
  placed after the system prompt in a share of the sessions;
* **multi-turn growth**: a session's request t repeats everything of request t−1 plus the
  reply and a new user message, with think-time gaps between turns, sessions interleaved.

Ids are prefix-chained like Mooncake's: each id names one whole prefix (a system prompt's
blocks are shared by everyone on it; a document's blocks by everyone with the same system
prompt and document; history blocks by one session), and a prompt's partial tail gets an id
of its own. ``python -m benchmarks.gen_trace -o big.jsonl`` writes Mooncake-format JSONL
(``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids``; ``--block-size``
tokens per id), which ``kvern`` reads with ``--trace-block-size`` set to match.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, slots=True)
class HashTrace:
    """Requests in arrival order as flat arrays (the shape ``BlockStream`` is built from)."""

    block_size: int
    offsets: np.ndarray
    """int64[R+1]"""
    hash_ids: np.ndarray
    """int64[N]: prefix-chained ids, ``offsets[r]:offsets[r+1]`` for request r"""
    input_length: np.ndarray
    """int64[R]: prompt tokens"""
    output_length: np.ndarray
    """int64[R]"""
    timestamp_ms: np.ndarray
    """int64[R]"""

    @property
    def num_requests(self) -> int:
        return len(self.input_length)

    @property
    def num_accesses(self) -> int:
        return len(self.hash_ids)


@dataclass(frozen=True, slots=True)
class GenParams:
    sessions: int = 8000
    system_prompts: int = 40
    documents: int = 3000
    doc_share: float = 0.4
    """Share of sessions that put a document after the system prompt."""
    zipf_a: float = 1.2
    mean_turns: float = 5.0
    duration_s: float = 6 * 3600.0
    think_time_s: float = 40.0
    block_size: int = 16
    seed: int = 0


def generate(p: GenParams) -> HashTrace:
    rng = np.random.default_rng(p.seed)
    bs = p.block_size
    sys_len = np.clip(rng.lognormal(np.log(60), 0.5, p.system_prompts), 8, 400).astype(np.int64)
    doc_len = rng.integers(100, 600, p.documents)
    sys_of = _zipf_choice(rng, p.system_prompts, p.zipf_a, p.sessions)
    doc_of = np.where(rng.random(p.sessions) < p.doc_share,
                      _zipf_choice(rng, p.documents, p.zipf_a, p.sessions), -1)
    turns = rng.geometric(1.0 / p.mean_turns, p.sessions)
    start = rng.uniform(0, p.duration_s, p.sessions)

    next_id = int(sys_len.sum())
    sys_base = np.concatenate([[0], np.cumsum(sys_len)[:-1]])
    pair_base: dict[tuple[int, int], int] = {}
    req_t: list[np.ndarray] = []
    req_blocks: list[list[np.ndarray]] = []
    req_len: list[int] = []
    req_out: list[int] = []
    for s in range(p.sessions):
        sp = int(sys_of[s])
        head = [np.arange(sys_base[sp], sys_base[sp] + sys_len[sp])]
        d = int(doc_of[s])
        if d >= 0:
            base = pair_base.get((sp, d))
            if base is None:
                base = pair_base[(sp, d)] = next_id
                next_id += int(doc_len[d])
            head.append(np.arange(base, base + doc_len[d]))
        hist_base = next_id
        t = start[s]
        history = 0
        prev_reply = 0
        for _turn in range(int(turns[s])):
            history += prev_reply + int(rng.integers(2, 40))  # the reply, then a new user message
            tail_tokens = int(rng.integers(0, bs))
            blocks = [*head, np.arange(hist_base, hist_base + history)]
            length = (sum(len(b) for b in blocks)) * bs + tail_tokens
            if tail_tokens:
                blocks.append(np.array([-1]))  # a partial tail: an id of its own, set below
            req_blocks.append(blocks)
            req_t.append(np.array([t]))
            req_len.append(length)
            prev_reply = int(rng.integers(2, 30))
            req_out.append(prev_reply * bs)
            t += rng.exponential(p.think_time_s)
        next_id += history

    order = np.argsort(np.concatenate(req_t), kind="stable")
    flat: list[np.ndarray] = []
    lengths = np.empty(len(order), np.int64)
    for i, r in enumerate(order):
        ids = np.concatenate(req_blocks[r])
        if ids[-1] == -1:
            ids[-1] = next_id
            next_id += 1
        flat.append(ids)
        lengths[i] = len(ids)
    offsets = np.zeros(len(order) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    times = np.concatenate(req_t)[order]
    return HashTrace(
        block_size=bs,
        offsets=offsets,
        hash_ids=np.concatenate(flat).astype(np.int64),
        input_length=np.asarray(req_len, np.int64)[order],
        output_length=np.asarray(req_out, np.int64)[order],
        timestamp_ms=np.round((times - times.min()) * 1000).astype(np.int64),
    )


def expand_blocks(trace: HashTrace, block_size: int) -> HashTrace:
    """Cut each id's tokens into smaller blocks (Mooncake's 512-token ids into 16-token blocks).

    Sub-block k of id h is keyed by (h, k); a partial last sub-block also by its token count,
    since a real key covers the tokens of the block. Keys still name whole prefixes.
    """
    big = trace.block_size
    if big % block_size:
        raise ValueError(f"{big} is not a multiple of {block_size}")
    per = big // block_size
    n_small = -(-trace.input_length // block_size)
    offsets = np.zeros(len(n_small) + 1, np.int64)
    np.cumsum(n_small, out=offsets[1:])
    req = np.repeat(np.arange(len(n_small)), n_small)
    pos = np.arange(offsets[-1]) - offsets[req]
    parent = trace.hash_ids[trace.offsets[req] + pos // per]
    tokens = np.minimum(block_size, trace.input_length[req] - pos * block_size)
    partial = np.where(tokens < block_size, tokens, 0)
    keys = (parent << 16) | ((pos % per) << 8) | partial
    return HashTrace(block_size, offsets, keys, trace.input_length, trace.output_length,
                     trace.timestamp_ms)


def read_mooncake(path: str | Path, block_size: int = 512) -> HashTrace:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    lengths = np.array([len(r["hash_ids"]) for r in rows], np.int64)
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return HashTrace(
        block_size=block_size,
        offsets=offsets,
        hash_ids=np.fromiter((h for r in rows for h in r["hash_ids"]), np.int64, int(offsets[-1])),
        input_length=np.array([r["input_length"] for r in rows], np.int64),
        output_length=np.array([r["output_length"] for r in rows], np.int64),
        timestamp_ms=np.array([r["timestamp"] for r in rows], np.int64),
    )


def write_mooncake(trace: HashTrace, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in range(trace.num_requests):
            ids = trace.hash_ids[trace.offsets[r] : trace.offsets[r + 1]].tolist()
            f.write(json.dumps({"timestamp": int(trace.timestamp_ms[r]),
                                "input_length": int(trace.input_length[r]),
                                "output_length": int(trace.output_length[r]),
                                "hash_ids": ids}) + "\n")


def _zipf_choice(rng: np.random.Generator, n: int, a: float, size: int) -> np.ndarray:
    """Items 0..n-1 with probability ∝ 1/(rank+1)^a, ranks shuffled so popularity ≠ id order."""
    w = 1.0 / np.arange(1, n + 1) ** a
    return rng.permutation(n)[rng.choice(n, size=size, p=w / w.sum())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", required=True, help="JSONL file to write (Mooncake format)")
    ap.add_argument("--sessions", type=int, default=GenParams.sessions)
    ap.add_argument("--block-size", type=int, default=GenParams.block_size)
    ap.add_argument("--seed", type=int, default=GenParams.seed)
    args = ap.parse_args()
    trace = generate(GenParams(sessions=args.sessions, block_size=args.block_size, seed=args.seed))
    write_mooncake(trace, args.output)
    print(f"{trace.num_requests} requests, {trace.num_accesses} block accesses, "
          f"{len(np.unique(trace.hash_ids))} unique blocks -> {args.output}")


if __name__ == "__main__":
    main()
