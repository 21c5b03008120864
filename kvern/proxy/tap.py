"""What happens to an exchange once the client has its answer: numbered, logged, measured, queued.

Runs on the event loop right after the handler (scheduled with ``call_soon``), so it must stay
cheap: one ``json.loads`` of the request body, one line built around the raw body, one
``os.write``, a few histogram increments, one frame into the analytics pipe. The sequence
number is the line's place in the log, which is what lets the worker find dropped records.
"""

from __future__ import annotations

import time

from kvern.proxy.feed import AnalyticsFeed
from kvern.proxy.record import Exchange
from kvern.proxy.recorder import LogWriter
from kvern.proxy.stats import LatencyStats


class Tap:
    def __init__(self, content: str, log: LogWriter | None, feed: AnalyticsFeed, stats: LatencyStats) -> None:
        self.content = content
        self.log = log
        self.feed = feed
        self.stats = stats
        self.seq = 0
        self.write_errors = 0

    def __call__(self, ex: Exchange) -> None:
        ex.parse()
        ex.seq = self.seq
        self.seq += 1
        full = ex.full_line()
        file = ""
        if self.log is not None:
            line = full if self.content == "full" else ex.meta_line()
            try:
                file = self.log.write(line)
            except OSError:
                self.write_errors += 1
        self.feed.offer(file, full)
        ok = ex.served and ex.outcome == "ok"
        self.stats.add(ex.model or "unknown", time.time(), ok=ok,
                       ttft_s=None if ex.first_byte is None else ex.first_byte - ex.received,
                       e2e_s=None if ex.done is None else ex.done - ex.received, overhead_s=ex.overhead_s)
