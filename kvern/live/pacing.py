"""When each request is sent: the log's own timestamps (sped up), a fixed rate, or a closed loop.

A schedule is a list of send offsets in seconds from the start of the run, one per request in
trace order (``None`` everywhere for the closed loop: a request goes as soon as a worker is
free). ``sleep_until`` reaches an offset within a fraction of a millisecond: the event loop's
timers are only millisecond-grained (epoll), so it sleeps to just short of the target and then
yields in a tight loop, which keeps other requests streaming meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from kvern.infra.errors import UsageError

Mode = Literal["timestamps", "constant", "poisson", "closed"]

SPIN_S = 0.0015
"""How long before a target ``sleep_until`` stops sleeping and starts yielding."""


@dataclass(frozen=True, slots=True)
class Pacing:
    """How requests are paced; see ``pacing_from_flags`` for how the flags map to it."""

    mode: Mode
    speedup: float = 1.0
    rate: float | None = None
    concurrency: int | None = None
    """Most requests in flight at once; ``None`` = no cap (open loop)."""
    seed: int = 0

    def describe(self) -> str:
        cap = f", at most {self.concurrency} in flight" if self.concurrency else ""
        if self.mode == "timestamps":
            return f"log timestamps ×{self.speedup:g}{cap}"
        if self.mode == "closed":
            return f"closed loop, {self.concurrency} in flight"
        return f"{self.mode} rate {self.rate:g} req/s{cap}"


def pacing_from_flags(speedup: float | None, rate: str | None, concurrency: int | None) -> Pacing:
    """``--speedup X`` (log timestamps), ``--rate R[:poisson|:constant]``, ``--concurrency N``.

    With only ``--concurrency`` the run is a closed loop; with a pace as well, it caps the
    requests in flight. With none of them the log's timestamps are kept as they are.
    """
    if concurrency is not None and concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if speedup is not None and rate is not None:
        raise UsageError("--speedup paces by the log's timestamps and --rate by a fixed rate: give one")
    if speedup is not None:
        if not speedup > 0:
            raise UsageError("--speedup must be greater than 0")
        return Pacing("timestamps", speedup=speedup, concurrency=concurrency)
    if rate is not None:
        value, _, kind = rate.partition(":")
        kind = kind or "poisson"
        if kind not in ("poisson", "constant"):
            raise UsageError(f"--rate {rate}: the process is 'poisson' or 'constant', as in 20:constant")
        try:
            r = float(value)
        except ValueError:
            raise UsageError(f"--rate {rate}: expected requests per second, as 20 or 20:constant") from None
        if not r > 0:
            raise UsageError("--rate must be greater than 0")
        return Pacing(kind, rate=r, concurrency=concurrency)  # type: ignore[arg-type]
    if concurrency is not None:
        return Pacing("closed", concurrency=concurrency)
    return Pacing("timestamps", speedup=1.0)


def schedule(pacing: Pacing, arrival_s: np.ndarray) -> list[float | None]:
    """Send offsets (seconds from the run's start) for requests arriving at ``arrival_s``."""
    n = len(arrival_s)
    if pacing.mode == "closed":
        return [None] * n
    if pacing.mode == "timestamps":
        base = float(arrival_s[0]) if n else 0.0
        offsets = (np.asarray(arrival_s, dtype=np.float64) - base) / pacing.speedup
    elif pacing.mode == "constant":
        assert pacing.rate is not None
        offsets = np.arange(n, dtype=np.float64) / pacing.rate
    else:
        assert pacing.rate is not None
        # A Poisson process: exponential gaps, the first request at 0; seeded, so reruns match.
        gaps = np.random.default_rng(pacing.seed).exponential(1.0 / pacing.rate, size=n)
        offsets = np.concatenate([[0.0], np.cumsum(gaps[1:])]) if n else gaps
    return [float(x) for x in offsets]


async def sleep_until(deadline: float) -> None:
    """Wait until ``time.perf_counter() >= deadline``, within tens of microseconds."""
    now = time.perf_counter()
    if deadline - now > SPIN_S:
        await asyncio.sleep(deadline - now - SPIN_S)
    while time.perf_counter() < deadline:
        await asyncio.sleep(0)
