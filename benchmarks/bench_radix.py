"""Tokens/s and bytes per page of the ``sglang`` profile (SGLang's radix tree) at page size 1.

    .venv/bin/python -m benchmarks.bench_radix                      # both inputs below
    .venv/bin/python -m benchmarks.bench_radix --sessions 2000 --repeat 3

Inputs, both tokenized (token ids kept, so a page is one token):

* ``traces/chat_sample.jsonl`` (two models), at 64, 256 and 1,024 blocks of 16 tokens, the
  capacities of ``kvern compare traces/chat_sample.jsonl --profile sglang --capacity 64,256,1024``;
* the chat sample's sessions repeated ``--copies`` times (100), copies interleaved request by
  request, copy c's token ids shifted by c·2¹⁸ (disjoint copies, each with the sample's
  multi-turn structure: ~445 tokens a request, a split or two per request), at 1,000, 10,000
  and 100,000 blocks;
* a larger generated stream: ``gen_trace.generate`` (system prompts, documents, multi-turn
  sessions), each of its 16-token ids expanded into 16 token ids of its own (a partial tail into
  as many as it has tokens), so that prompts share exactly the token prefixes their ids share.

and, for the figures of the policy table, ``traces/mooncake_conversation.jsonl`` (512-token
hash ids, no tokens: a page is one block) at 1,000, 10,000 and 50,000 blocks, in blocks/s.

Engine time only (streams built first), best of ``--repeat`` after JIT warm-up. Tokens/s =
prompt tokens of the stream / seconds. Bytes/page = the engine's state arrays (``tree``, when
the engine has one) / the pages the tree holds at the end.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.gen_trace import GenParams, HashTrace, generate
from benchmarks.streams import to_trace
from kvern.infra.config import Config
from kvern.ingest.pipeline import load_trace
from kvern.ingest.stream import BlockStream, block_streams
from kvern.sim.policies import make_policy
from kvern.sim.profiles import get_profile

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 4096


def token_stream_of(trace: HashTrace, model: str = "bench") -> BlockStream:
    """``trace`` with token ids: id h stands for tokens ``h·bs … h·bs + bs − 1``."""
    bs = trace.block_size
    n_ids = np.diff(trace.offsets)
    per_id = np.full(len(trace.hash_ids), bs, np.int64)
    last = trace.offsets[1:] - 1
    per_id[last] = trace.input_length - (n_ids - 1) * bs
    assert (per_id >= 1).all() and (per_id <= bs).all(), "ids and prompt lengths disagree"
    start = np.repeat(trace.hash_ids * bs, per_id)
    within = np.arange(int(per_id.sum())) - np.repeat(np.cumsum(per_id) - per_id, per_id)
    tokens = start + within
    assert tokens.max() < 2**31, "too many ids for int32 token ids"
    tok_off = np.zeros(trace.num_requests + 1, np.int64)
    np.cumsum(trace.input_length, out=tok_off[1:])
    ids = pa.ListArray.from_arrays(pa.array(tok_off), pa.array(tokens.astype(np.int32)))
    return block_streams(to_trace(trace, model, ids))[model]


def repeated(stream: BlockStream, copies: int) -> BlockStream:
    """``stream``'s requests ``copies`` times, interleaved (request r's copies in a row), each
    copy on its own token ids and block ids."""
    assert stream.token_ids is not None and stream.token_offsets is not None
    shift, u = 1 << 18, stream.num_unique
    assert int(stream.token_ids.max()) < shift and copies * shift < 2**31
    tokens, blocks = [], []
    for r in range(stream.num_requests):
        t, b = stream.tokens_of(r).astype(np.int64), stream.blocks_of(r).astype(np.int64)
        tokens += [t + c * shift for c in range(copies)]
        blocks += [b + c * u for c in range(copies)]
    n_tok = np.repeat(np.diff(stream.token_offsets), copies)
    n_blk = np.repeat(np.diff(stream.req_offsets), copies)
    parent = np.concatenate([np.where(stream.parent >= 0, stream.parent + c * u, -1) for c in range(copies)])
    return BlockStream(
        model=stream.model, block_size=stream.block_size,
        req_offsets=np.concatenate([[0], np.cumsum(n_blk)]).astype(np.int64),
        block_ids=np.concatenate(blocks).astype(np.int32),
        prompt_tokens=np.repeat(stream.prompt_tokens, copies),
        rows=np.arange(stream.num_requests * copies, dtype=np.int64),
        arrival_s=np.repeat(stream.arrival_s, copies), parent=parent.astype(np.int32),
        depth=np.tile(stream.depth, copies), block_tokens=np.tile(stream.block_tokens, copies),
        token_offsets=np.concatenate([[0], np.cumsum(n_tok)]).astype(np.int64),
        token_ids=np.concatenate(tokens).astype(np.int32))


def run(stream: BlockStream, capacity: int) -> tuple[float, object]:
    """Seconds for the whole stream through a fresh engine, and the engine."""
    engine = get_profile("sglang").engine(stream, make_policy("lru"), capacity)
    n = stream.num_requests
    t0 = time.perf_counter()
    for r0 in range(0, n, CHUNK):
        engine.serve(np.arange(r0, min(n, r0 + CHUNK), dtype=np.int64))
    return time.perf_counter() - t0, engine


def state_bytes(engine: object) -> int | None:
    tree = getattr(engine, "tree", None)
    if not isinstance(tree, tuple):
        return None
    return sum(a.nbytes for a in tree if isinstance(a, np.ndarray))


def table(name: str, streams: list[BlockStream], capacities: list[int], repeat: int) -> None:
    by_token = streams[0].token_ids is not None
    tokens = sum(int(s.prompt_tokens.sum()) if by_token else len(s.block_ids) for s in streams)
    unit = "tokens" if by_token else "blocks"
    print(f"\n{name}: {sum(s.num_requests for s in streams):,} requests, {tokens:,} prompt {unit}")
    print(f"| capacity (blocks) | seconds | {unit}/s | pages held | state bytes | bytes/page |")
    print("|---:|---:|---:|---:|---:|---:|")
    for cap in capacities:
        best = float("inf")
        held, nbytes = 0, 0
        for _ in range(repeat):
            secs, engines = 0.0, []
            for s in streams:
                t, e = run(s, cap)
                secs += t
                engines.append(e)
            best = min(best, secs)
        held = sum(e.used for e in engines)  # type: ignore[attr-defined]
        sizes = [state_bytes(e) for e in engines]
        nbytes = None if None in sizes else sum(sizes)  # type: ignore[arg-type]
        per = "–" if nbytes is None else f"{nbytes / max(held, 1):.2f}"
        print(f"| {cap:,} | {best:.3f} | {tokens / best / 1e6:.2f} M | {held:,} | "
              f"{'–' if nbytes is None else f'{nbytes:,}'} | {per} |")


def streams_of(path: Path) -> list[BlockStream]:
    return list(block_streams(load_trace(path, Config())).values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=100, help="copies of the chat sample's sessions")
    ap.add_argument("--sessions", type=int, default=2000, help="sessions of the generated stream")
    ap.add_argument("--capacity", type=int, nargs="+", default=[1000, 10_000, 100_000],
                    help="capacities (blocks of 16 tokens) for the generated stream")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    chat = streams_of(ROOT / "traces" / "chat_sample.jsonl")
    many = [repeated(s, args.copies) for s in chat]
    big = token_stream_of(generate(GenParams(sessions=args.sessions)))
    print(f"{platform.processor() or platform.machine()}")
    run(chat[0], 4)  # JIT warm-up
    table("traces/chat_sample.jsonl", chat, [64, 256, 1024], args.repeat)
    table(f"chat sample × {args.copies}", many, args.capacity, args.repeat)
    table(f"generated, {args.sessions} sessions", [big], args.capacity, args.repeat)
    mooncake = streams_of(ROOT / "traces" / "mooncake_conversation.jsonl")
    table("traces/mooncake_conversation.jsonl (page = 512-token block)", mooncake, [1000, 10_000, 50_000],
          args.repeat)


if __name__ == "__main__":
    main()
