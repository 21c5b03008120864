"""The replay loop: send each request at its scheduled time, collect and flush the results.

One dispatcher walks the requests in trace order, waits for each one's send time (when paced)
and for a free place (when ``--concurrency`` caps the requests in flight), and starts it as a
task; each task records its result in the sink as it finishes. The run stops early, keeping
what finished, when ``--duration`` is over, when the backend is unreachable for
``dead_after`` requests in a row, or on Ctrl-C (the in-flight requests are cancelled then and
do not appear in the results).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import aiohttp

from kvern.infra.console import NULL_OUTPUT, Output
from kvern.live.client import LiveRequest, LiveResult, RetryPolicy, send
from kvern.live.pacing import Pacing, sleep_until
from kvern.live.prometheus import ServerCacheStats, cache_stats, get_json, scrape
from kvern.live.sink import LiveSink


@dataclass(frozen=True, slots=True)
class LiveSettings:
    backend: str
    pacing: Pacing
    retry: RetryPolicy
    duration_s: float | None = None
    api_key: str | None = field(default=None, repr=False)
    dead_after: int = 3
    """Stop when this many requests in a row could not reach the server (after retries)."""


@dataclass(slots=True)
class LiveRun:
    stop_reason: str | None = None
    """None when every request was sent; else why the run ended early."""
    server_cache: ServerCacheStats | None = None
    server_props: dict | None = None
    """llama-server's ``/props`` (slot count), read before the run; None for other servers."""
    wall_s: float = 0.0

    @property
    def partial(self) -> bool:
        return self.stop_reason is not None and self.stop_reason != "duration"


@dataclass(slots=True)
class _State:
    run: LiveRun
    consecutive_unreachable: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def replay(requests: list[LiveRequest], offsets: list[float | None], settings: LiveSettings,
           sink: LiveSink, out: Output = NULL_OUTPUT, run: LiveRun | None = None) -> LiveRun:
    """Replay ``requests`` at ``offsets`` (seconds from the start; ``None`` = as soon as possible).

    Fills and returns ``run`` (a new one by default). Ctrl-C raises ``KeyboardInterrupt`` after
    the finished results are flushed as partial; ``run`` then holds what is known.
    """
    run = run if run is not None else LiveRun()
    t_start = time.perf_counter()
    try:
        asyncio.run(_replay(requests, offsets, settings, sink, run, out))
    except KeyboardInterrupt:
        run.stop_reason = "interrupted"
        raise
    except BaseException as e:  # a bug or an OS error: keep what finished, marked partial
        run.stop_reason = f"aborted by {type(e).__name__}"
        raise
    finally:
        run.wall_s = time.perf_counter() - t_start
        sink.flush(partial=run.partial, stop_reason=run.stop_reason)
    return run


async def _replay(requests: list[LiveRequest], offsets: list[float | None], settings: LiveSettings,
                  sink: LiveSink, run: LiveRun, out: Output) -> None:
    state = _State(run)
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    cap = settings.pacing.concurrency
    slots = asyncio.Semaphore(cap) if cap else None
    base = settings.backend
    async with aiohttp.ClientSession() as probe:
        run.server_props = await get_json(probe, base + "/props", headers)
    # llama-server closes the connection after every streamed response while announcing
    # keep-alive; reusing one then races its close ("Server disconnected"), so talk to it
    # without keep-alive. Other servers keep their connections (TLS handshakes are not free).
    connector = aiohttp.TCPConnector(limit=cap or 0, force_close=_is_llama_server(run.server_props))
    no_limit = aiohttp.ClientTimeout(total=None)  # each attempt has its own deadline
    async with aiohttp.ClientSession(connector=connector, timeout=no_limit) as session:
        before = await scrape(session, base, headers)
        sink.flush(partial=True)  # the file exists from the start (and the writer is warm)
        stop_flushing = asyncio.Event()
        flusher = asyncio.create_task(_flush_periodically(sink, stop_flushing))
        tasks: set[asyncio.Task[None]] = set()
        with out.progress("replaying", total=len(requests)) as advance:

            async def one(req: LiveRequest, sched: float | None, t0: float) -> None:
                try:
                    res = await send(session, base, req, settings.retry, t0, sched, headers)
                finally:
                    if slots is not None:
                        slots.release()
                _record(state, sink, res, settings.dead_after)
                advance(1)

            try:
                t0 = time.perf_counter()
                for req, sched in zip(requests, offsets, strict=True):
                    if settings.duration_s is not None and (
                        (sched or 0.0) >= settings.duration_s
                        or time.perf_counter() - t0 >= settings.duration_s
                    ):
                        run.stop_reason = "duration"
                        break
                    if sched is not None:
                        await sleep_until(t0 + sched)
                    if slots is not None:
                        await slots.acquire()
                    if state.stop.is_set():
                        break
                    task = asyncio.create_task(one(req, sched, t0))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                stopper = asyncio.create_task(state.stop.wait())
                tasks.add(stopper)
                while len(tasks) > 1 and not state.stop.is_set():
                    await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in list(tasks):
                    task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.gather(*tasks, return_exceptions=True)
                stop_flushing.set()
                with contextlib.suppress(BaseException):
                    await flusher
        after = await scrape(session, base, headers)
        run.server_cache = cache_stats(before, after)


def _is_llama_server(props: dict | None) -> bool:
    return props is not None and "total_slots" in props and "default_generation_settings" in props


def _record(state: _State, sink: LiveSink, res: LiveResult, dead_after: int) -> None:
    sink.add(res)
    state.consecutive_unreachable = state.consecutive_unreachable + 1 if res.connect_failed else 0
    if state.consecutive_unreachable >= dead_after and not state.stop.is_set():
        state.run.stop_reason = f"backend unreachable ({dead_after} requests in a row could not connect)"
        state.stop.set()


async def _flush_periodically(sink: LiveSink, stop: asyncio.Event) -> None:
    """Rewrite ``live.parquet`` in a worker thread every ``flush_every_s`` while results arrive."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), sink.flush_every_s)
        if sink.dirty and not stop.is_set():
            await asyncio.to_thread(sink.flush, partial=True)
