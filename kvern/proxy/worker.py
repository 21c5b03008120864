"""The analytics worker: a separate process, so tokenizing and simulating never hold the
proxy's event loop (or its GIL).

It reads frames from stdin (``feed.py`` writes them): first the settings and config as JSON,
then one frame per exchange, ``LOGFILE\\n`` + the exchange's full log line. Each line goes
through ingest's own reader, template, normalization and block keys (``LineConverter``), then
the same simulator code as ``kvern replay`` fed one request at a time (``OnlineCache``), the
hot-prefix counter, and the store in batches. Sequence numbers are consecutive, so a gap means
the proxy's queue was full: the missing lines are read back from the log (catching up), and
from a ``--content none`` log they count without a prediction. With ``--content hashes`` this
process also writes the log, from the block keys it computed. Stdin's end means: finish, flush,
exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from kvern.infra.config import Config
from kvern.infra.console import Output
from kvern.infra.errors import InputError, KvernError
from kvern.ingest.source import iter_lines, log_files
from kvern.proxy import store as st
from kvern.proxy.feed import read_frame
from kvern.proxy.record import MARK
from kvern.proxy.recorder import LogWriter
from kvern.proxy.settings import ProxySettings
from kvern.proxy.trie import PrefixCounter
from kvern.sim.online import OnlineCache

FLUSH_S = 0.25
FLUSH_ROWS = 512
SNAPSHOT_S = 2.0
PENDING_FRAMES = 256
CATCH_UP_S = 0.1
MAX_WAITING = 100_000
"""Records held for a missing earlier one; past this the missing ones are counted lost."""


class Worker:
    def __init__(self, settings: ProxySettings, cfg: Config, run_id: str, out: Output) -> None:
        from kvern.ingest.pipeline import LineConverter

        self.settings = settings
        self.cfg = cfg
        self.run_id = run_id
        self.out = out
        self.block_size = cfg.ingest.block_size
        self.conv = LineConverter(cfg, Path(settings.log_dir.name or "proxy"), out=out)
        self.store = st.StoreWriter(settings.store, run_id)
        self.caches: dict[str, OnlineCache | None] = {}
        self.prefixes: dict[str, PrefixCounter] = {}
        self.snapshot_versions: dict[str, int] = {}
        self.hash_log = (LogWriter(settings.log_dir, rotate_bytes=settings.rotate_bytes,
                                   rotate_s=settings.rotate_s, fsync_s=settings.fsync_s)
                         if settings.content == "hashes" else None)
        self.next_seq = 0
        self.waiting: dict[int, tuple[str, dict[str, Any]]] = {}
        self.last_file: str | None = None
        self._cursor: tuple[str, int] = ("", 0)
        self._last_scan = 0.0
        self.lost = 0
        self.analyzed = 0
        self.caught_up = 0
        self.prediction_error: str | None = None
        self.last_done_s: float | None = None
        self.ready = False

    # -- one exchange, in sequence ------------------------------------------------------------
    def take(self, file: str, obj: dict[str, Any]) -> None:
        """Analyze records in sequence: one that comes after a gap waits for the missing ones,
        which the log gives back (the proxy dropped them while the pipe was full)."""
        seq = obj.get("seq")
        if not isinstance(seq, int) or seq < self.next_seq:
            return
        self.waiting[seq] = (file.removesuffix(".zst"), obj)
        self._advance(None)

    def mark(self, recorded: int) -> None:
        """The proxy has recorded ``recorded`` exchanges; any not received were dropped."""
        self._advance(recorded)

    def _advance(self, recorded: int | None) -> None:
        while True:
            item = self.waiting.pop(self.next_seq, None)
            if item is not None:
                if item[0]:
                    self.last_file = item[0]
                self._analyze(item[1])
                self.next_seq += 1
                continue
            upto = min(self.waiting) if self.waiting else recorded
            if upto is None or upto <= self.next_seq or self.settings.content == "hashes":
                return
            self._catch_up(upto)
            if self.next_seq in self.waiting:
                continue
            if self.next_seq < upto and len(self.waiting) > MAX_WAITING:
                self.lost += upto - self.next_seq  # never reached the log (a write error): move on
                self.next_seq = upto
                continue
            return

    def _catch_up(self, upto: int) -> None:
        """Lines ``next_seq .. upto-1`` read back from the log (at most every ``CATCH_UP_S``)."""
        now = time.monotonic()
        if now - self._last_scan < CATCH_UP_S:
            return
        self._last_scan = now
        try:
            files = log_files(self.settings.log_dir)
        except InputError:
            return
        base = self.last_file or ""
        for f in files:
            name = f.name.removesuffix(".zst")
            if name < base:
                continue
            for obj, end in self._lines(f):
                seq = obj.get("seq") if obj.get(MARK) is not None else None
                if isinstance(seq, int) and seq >= upto:
                    return
                if end is not None:
                    self._cursor = (f.name, end)
                if not isinstance(seq, int) or seq < self.next_seq:
                    continue
                self._analyze(obj)
                self.caught_up += 1
                self.next_seq = seq + 1
                self.last_file = name

    def _lines(self, f: Path) -> Any:
        """The JSON lines of a log file; the one being written is read on from where the last
        scan stopped (it may be large), a compressed one whole."""
        if f.name.endswith(".zst"):
            with contextlib.suppress(InputError, OSError):
                yield from ((i.obj, None) for i in iter_lines(f) if not isinstance(i, InputError))
            return
        start = self._cursor[1] if self._cursor[0] == f.name else 0
        try:
            with open(f, "rb") as fh:
                fh.seek(start)
                pos = start
                for raw in fh:
                    if not raw.endswith(b"\n"):
                        break  # a line still being written
                    pos += len(raw)
                    try:
                        obj = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(obj, dict):
                        yield obj, pos
        except OSError:
            return

    def _analyze(self, obj: dict[str, Any]) -> None:
        resp = obj.get("response") if isinstance(obj.get("response"), dict) else {}
        usage = resp.get("usage") if isinstance(resp.get("usage"), dict) else obj.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        details = usage.get("prompt_tokens_details")
        server_cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
        timings = resp.get("timings") if isinstance(resp.get("timings"), dict) else {}
        if server_cached is None:
            server_cached = _int(timings.get("cache_n"))
        completion = _int(usage.get("completion_tokens"))
        choices = resp.get("choices") or []
        finish = next((c.get("finish_reason") for c in choices if isinstance(c, dict)), None)
        model = obj.get("model") or "unknown"
        row: dict[str, Any] = {
            "run_id": self.run_id, "seq": obj["seq"], "request_id": obj.get("request_id") or str(obj["seq"]),
            "model": model, "endpoint": obj.get("endpoint") or "", "status": obj.get("status") or 0,
            "outcome": obj.get("outcome") or "", "served": bool(obj.get("served")),
            "stream": bool(obj.get("stream")), "received_s": float(obj.get("timestamp") or time.time()),
            "first_byte_s": (obj.get("times") or {}).get("first_byte"),
            "done_s": (obj.get("times") or {}).get("done"), "ttft_ms": obj.get("ttft_ms"),
            "e2e_ms": obj.get("e2e_ms"), "overhead_ms": obj.get("overhead_ms"),
            "server_prompt_tokens": _int(usage.get("prompt_tokens")), "server_cached_tokens": server_cached,
            "completion_tokens": completion, "finish_reason": finish if isinstance(finish, str) else None,
            "error": obj.get("error"), "analyzed_s": time.time(),
        }
        keys: list[int] | None = None
        prompt_tokens = 0
        if row["served"] and isinstance(obj.get("request"), dict):
            try:
                r = self.conv.row(obj, int(obj["seq"]))
            except KvernError as e:
                row["error"] = getattr(e, "reason", e.message)
            else:
                keys, prompt_tokens = r.block_keys, r.prompt_tokens
                row["prompt_tokens"] = prompt_tokens
                row["predicted_cached_tokens"] = self._predict(r.model, keys, prompt_tokens, r.token_ids,
                                                               completion or 0)
                counter = self.prefixes.get(r.model)
                if counter is None:
                    counter = self.prefixes[r.model] = PrefixCounter(
                        self.block_size, keep_ids=self.settings.content == "full")
                counter.add(keys, prompt_tokens, r.token_ids)
        if self.hash_log is not None:
            self.hash_log.write(_hash_line(obj, row, keys, prompt_tokens, self.block_size, usage))
        self.store.add(row)
        self.analyzed += 1
        self.last_done_s = row["done_s"]

    def _predict(self, model: str, keys: list[int], prompt_tokens: int, ids: np.ndarray | None,
                 generated: int) -> int | None:
        if model not in self.caches:
            self.caches[model] = self._new_cache(model)
        cache = self.caches[model]
        if cache is None:
            return None
        return int(cache.serve(np.asarray(keys, dtype=np.uint64), prompt_tokens, ids, generated))

    def _new_cache(self, model: str) -> OnlineCache | None:
        from kvern.sim.capacity import capacity_blocks, parse_capacity
        from kvern.sim.run import policy_params

        s = self.settings
        try:
            blocks = capacity_blocks(parse_capacity(s.capacity)[:1], self.cfg, model, self.block_size)[0]
            params = policy_params(s.policy, self.cfg, model, None)
            return OnlineCache(profile=s.profile, policy=s.policy, capacity_blocks=blocks,
                               block_size=self.block_size, params=params)
        except KvernError as e:
            if e.message != self.prediction_error:
                self.out.warn(f"kvern proxy: no predictions for model {model}: {e.message}")
            self.prediction_error = e.message
            return None

    def warm_up(self) -> None:
        """Load the default tokenizer and the simulator now, not under the first requests."""
        if self.cfg.default_tokenizer is not None:
            from kvern.ingest.tokenizer import get_tokenizer

            try:
                get_tokenizer(self.cfg.default_tokenizer)
            except KvernError as e:
                self.out.warn(f"kvern proxy analytics: {e.message}")
        s = self.settings
        try:  # the profile's code loaded (and compiled) once, before any request
            cache = OnlineCache(profile=s.profile, policy=s.policy, capacity_blocks=1,
                                block_size=self.block_size)
            cache.serve(np.zeros(1, np.uint64), 1, np.zeros(1, np.int32))
        except KvernError as e:
            self.prediction_error = e.message
            self.out.warn(f"kvern proxy: no predictions: {e.message}")
        self.ready = True

    # -- batches -----------------------------------------------------------------------------
    def flush(self, queue_depth: int) -> None:
        self.store.progress = {
            "analyzed_seq": self.next_seq - 1, "analyzed": self.analyzed, "caught_up": self.caught_up,
            "lost": self.lost,
            "last_done_s": self.last_done_s, "updated_s": time.time(), "queue_frames": queue_depth,
            "prediction_error": self.prediction_error, "ready": self.ready,
        }
        self.store.flush()

    def snapshot(self) -> None:
        changed = [m for m, c in self.prefixes.items() if self.snapshot_versions.get(m) != c.version]
        if not changed:
            return
        now = time.time()
        rows = []
        for model in changed:
            counter = self.prefixes[model]
            decode = self._decoder(model) if self.settings.content == "full" else None
            for rank, p in enumerate(counter.top(self.settings.hot_prefixes, decode)):
                rows.append((model, rank, f"{p.key:016x}", p.parent, p.depth_tokens, p.reuses,
                             p.tokens_saved, p.text, now))
            self.snapshot_versions[model] = counter.version
        self.store.hot_prefixes(rows, changed)

    def _decoder(self, model: str) -> Any:
        try:
            tok = self.conv.tokenizer(model)
        except KvernError:
            return None
        return lambda ids: tok.decode([int(i) for i in ids])

    def close(self) -> None:
        self.snapshot()
        self.flush(0)
        self.store.close()
        if self.hash_log is not None:
            self.hash_log.close()


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _hash_line(obj: dict[str, Any], row: dict[str, Any], keys: list[int] | None, prompt_tokens: int,
               block_size: int, usage: dict[str, Any]) -> bytes:
    """The ``--content hashes`` line: the record's metadata, the prompt's length and block keys."""
    head = {k: v for k, v in obj.items() if k not in ("request", "response", "response_text", "request_text")}
    head["content"] = "hashes"
    head["request_bytes"] = len(json.dumps(obj.get("request"))) if "request" in obj else None
    head["usage"] = usage or None
    head["finish_reason"] = row["finish_reason"]
    if keys is not None:
        head.update(input_length=prompt_tokens, block_size=block_size, output_length=row["completion_tokens"],
                    hash_ids=[k - (1 << 64) if k >= 1 << 63 else k for k in keys])
    elif row["served"]:
        head["prompt_error"] = row["error"] or "not a request body kvern can read"
    return (json.dumps(head, ensure_ascii=False) + "\n").encode("utf-8")


def main() -> int:
    # Ctrl-C reaches the whole process group: the proxy stops this worker (stdin ends) once
    # the requests in flight are recorded, so it must outlive the signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Analytics may lag, requests may not: on a busy machine the proxy gets the CPU first.
    with contextlib.suppress(OSError):
        os.nice(10)
    stdin = sys.stdin.buffer
    first = read_frame(stdin)
    if first is None:
        return 2
    init = json.loads(first)
    settings = ProxySettings.from_json(init["settings"])
    cfg = Config.model_validate(init["config"])
    out = Output()
    worker = Worker(settings, cfg, init["run_id"], out)
    # Bounded: when analysis falls behind, the pipe fills and the proxy starts dropping (and this
    # worker catches up from the log) instead of memory growing here.
    frames: queue.Queue[bytes | None] = queue.Queue(maxsize=PENDING_FRAMES)

    def pump() -> None:  # a thread, so the loop below can flush on time while stdin is quiet
        while (frame := read_frame(stdin)) is not None:
            frames.put(frame)
        frames.put(None)

    threading.Thread(target=pump, daemon=True).start()
    # Warm up on the side: a proxy stopped before any request need not wait for it.
    warm = threading.Thread(target=worker.warm_up, daemon=True)
    warm.start()
    last_flush = last_snap = time.monotonic()
    while True:
        try:
            frame = frames.get(timeout=FLUSH_S)
        except queue.Empty:
            frame = b""
        if frame is None:
            break
        if frame:
            file, _, line = frame.partition(b"\n")
            try:
                if frame.startswith(b"#"):
                    if int(frame[1:]) > worker.next_seq:
                        warm.join()
                        worker.mark(int(frame[1:]))
                else:
                    warm.join()
                    worker.take(file.decode(), json.loads(line))
            except Exception as e:  # one bad record must not stop the analytics
                out.warn(f"kvern proxy analytics: skipped a record ({type(e).__name__})")
        now = time.monotonic()
        if worker.store.pending >= FLUSH_ROWS or now - last_flush >= FLUSH_S:
            worker.flush(frames.qsize())
            last_flush = now
        if now - last_snap >= SNAPSHOT_S:
            worker.snapshot()
            last_snap = now
    worker.close()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # everything is flushed; do not wait for a warm-up thread still importing
