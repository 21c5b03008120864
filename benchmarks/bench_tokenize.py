"""Multi-turn tokenization: kvern's segment-cached encoder against naive per-request tokenizing.

    .venv/bin/python -m benchmarks.bench_tokenize [--trace traces/chat_sample.jsonl] [--repeat 5]
    .venv/bin/python -m benchmarks.bench_tokenize --long 30,40    # 30 sessions of 1..40 turns

Naive = what a straightforward tool does: ``apply_chat_template(messages, tools=...,
add_generation_prompt=True, tokenize=True)`` for every request. Fast = ``RequestEncoder``
(render the template, cut at added tokens, tokenize each distinct piece once). Both start cold
(a fresh encoder per run), read the same parsed requests, and must give identical ids; the
timing is tokenizing only (parsing the log is excluded), each side producing its natural output
(lists from ``apply_chat_template``, int32 arrays from kvern): best CPU time of ``--repeat``
interleaved rounds. ``--long``
writes a longer multi-turn log with the chat-sample generator (same seed) and measures that.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kvern.infra.config import Config
from kvern.ingest.encode import RequestEncoder
from kvern.ingest.normalize import Normalizer
from kvern.ingest.readers import ReadOptions, detect_format, open_reader
from kvern.ingest.records import Fields, RawRequest
from kvern.ingest.source import iter_lines
from kvern.ingest.tokenizer import get_tokenizer, tokenizer_for_model

ROOT = Path(__file__).resolve().parent.parent


def read_requests(path: Path) -> list[RawRequest]:
    out = []
    reader = None
    for line in iter_lines(path):
        if isinstance(line, Exception):
            raise line
        reader = reader or open_reader(detect_format(line.obj, path, line.number), ReadOptions())
        out.append(reader.parse(Fields(line.obj, path, line.number)))
    return out


def naive(tok: Any, requests: list[RawRequest]) -> list[list[int]]:
    return [tok.apply_chat_template(r.messages, tools=r.tools, add_generation_prompt=True,
                                    tokenize=True, return_dict=False) for r in requests]


def fast(tok: Any, requests: list[RawRequest]) -> list[np.ndarray]:
    enc = RequestEncoder(tok, Normalizer([]))
    return [enc.encode(r) for r in requests]


def long_log(spec: str, folder: Path) -> Path:
    sessions, turns = (int(x) for x in spec.split(","))
    gen = importlib.util.spec_from_file_location("make_chat_sample", ROOT / "traces" / "make_chat_sample.py")
    assert gen is not None and gen.loader is not None
    mod = importlib.util.module_from_spec(gen)
    gen.loader.exec_module(mod)
    path = folder / f"chat_{sessions}x{turns}.jsonl"
    rows = mod.generate(7, sessions, turns)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def best_of(fns: list[Any], repeat: int) -> list[tuple[float, Any]]:
    """Best CPU time of each function over ``repeat`` interleaved rounds.

    CPU time of this process (not wall time) and interleaving keep the ratio meaningful on a
    machine shared with other jobs; the tokenizer runs single-threaded here, so they agree when
    the machine is idle.
    """
    best = [(float("inf"), None)] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.process_time()
            result = fn()
            best[i] = (min(best[i][0], time.process_time() - t0), result)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", type=Path, default=ROOT / "traces" / "chat_sample.jsonl")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--long", metavar="SESSIONS,TURNS", help="generate a longer multi-turn log instead")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trace = long_log(args.long, Path(tmp)) if args.long else args.trace
        requests = read_requests(trace)
    name = f"generated {trace.name}" if args.long else trace.name
    models = {r.model for r in requests}
    names = {tokenizer_for_model(Config(), m)[0] for m in models if m}
    assert len(names) == 1, "benchmark one tokenizer at a time"
    tok = get_tokenizer(names.pop())
    fast(tok, requests[:5])  # load the template and warm the Rust side once
    (t_naive, ids_naive), (t_fast, ids_fast) = best_of(
        [lambda: naive(tok, requests), lambda: fast(tok, requests)], args.repeat)
    assert [x.tolist() for x in ids_fast] == ids_naive, "fast path disagrees with apply_chat_template"
    tokens = sum(len(x) for x in ids_fast)
    print(f"{name}: {len(requests)} requests, {tokens:,} prompt tokens; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"naive apply_chat_template: {t_naive:8.3f} CPU s  {tokens / t_naive / 1e6:7.2f} M tokens/s")
    print(f"kvern segment cache:       {t_fast:8.3f} CPU s  {tokens / t_fast / 1e6:7.2f} M tokens/s")
    print(f"speed-up: {t_naive / t_fast:.1f}x (identical ids)")


if __name__ == "__main__":
    main()
