"""``run_proxy``: start every part, serve until Ctrl-C or SIGTERM, stop them in order.

Start: lock the log folder (one proxy per folder), create or check the store, open the log,
listen, start the analytics worker. The worker loads its tokenizer in the background, so the
proxy answers within a second; records wait in the pipe meanwhile.

Stop: stop accepting, let in-flight requests finish for up to ``grace_s`` (then cancel them,
recorded as such), close the upstream session, close the log (fsync, compress), then let the
worker analyze what it was sent, flush the store and exit. Exit status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from datetime import UTC, datetime
from typing import IO

from aiohttp import web

from kvern.infra.config import Config
from kvern.infra.console import Output
from kvern.infra.errors import UsageError
from kvern.proxy import store
from kvern.proxy.endpoints import State, routes
from kvern.proxy.feed import AnalyticsFeed
from kvern.proxy.recorder import LogWriter
from kvern.proxy.server import Forwarder
from kvern.proxy.settings import ProxySettings
from kvern.proxy.stats import LatencyStats
from kvern.proxy.tap import Tap

MARK_EVERY_S = 0.5
"""How often the worker is told how many records exist (to catch up on dropped ones)."""
MAX_BODY_BYTES = 256 * 2**20
"""Largest request body the proxy accepts (aiohttp's default, 1 MiB, is too small for long prompts)."""


def run_proxy(settings: ProxySettings, cfg: Config, out: Output) -> int:
    """Run the proxy in the foreground until Ctrl-C or SIGTERM; returns the exit status."""
    return asyncio.run(_serve(settings, cfg, out))


def _lock(folder: os.PathLike[str]) -> IO[bytes]:
    os.makedirs(folder, exist_ok=True)
    f = open(os.path.join(folder, ".kvern-proxy.lock"), "ab")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UsageError(f"--log-dir {folder}: another kvern proxy is recording there") from None
    return f


async def _serve(settings: ProxySettings, cfg: Config, out: Output) -> int:
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        lock = _lock(settings.log_dir)
    except OSError as e:
        raise UsageError(f"--log-dir {settings.log_dir}: {e.strerror or e}") from None
    public = {**settings.to_json(), "upstream": settings.public_upstream}
    store.create(settings.store, run_id, public)
    log = (LogWriter(settings.log_dir, rotate_bytes=settings.rotate_bytes, rotate_s=settings.rotate_s,
                     fsync_s=settings.fsync_s) if settings.content != "hashes" else None)
    feed = AnalyticsFeed(settings, cfg.model_dump(mode="json"), run_id)
    stats = LatencyStats(settings.window_minutes)
    tap = Tap(settings.content, log, feed, stats)
    forwarder = Forwarder(settings, run_id, tap)
    reader = store.StoreReader(settings.store, run_id)
    state = State(settings, cfg, run_id, forwarder, tap, feed, stats, reader)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.add_routes(routes(state))
    app.router.add_route("*", "/{tail:.*}", forwarder.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=settings.grace_s, access_log=None)
    await runner.setup()
    try:
        await forwarder.start()
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        try:
            await site.start()
        except OSError as e:
            raise UsageError(f"--host/--port: cannot listen on {settings.host}:{settings.port}: "
                             f"{e.strerror or e}") from None
        # After listening, so a port in use fails at once; a record made before the worker is
        # up counts as dropped and is read back from the log.
        await feed.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        out.info(f"kvern proxy listening on http://{settings.host}:{port} -> {settings.public_upstream}")
        out.info(f"log: {settings.log_dir}/ (content: {settings.content}); store: {settings.store}; "
                 f"prediction: {settings.profile}/{settings.policy} at {settings.capacity}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), MARK_EVERY_S)
            feed.mark(tap.seq)
        out.info(f"stopping: {forwarder.in_flight} request(s) in flight, "
                 f"up to {settings.grace_s:g}s to finish")
        forwarder.stopping = True
    finally:
        await runner.cleanup()
        await forwarder.close()
        await asyncio.sleep(0)  # the taps scheduled by the last handlers
        if log is not None:
            await asyncio.to_thread(log.close)
        code = await feed.close(tap.seq, timeout=max(30.0, settings.grace_s))
        state.store.close()
        state.pool.shutdown(wait=False)
        with contextlib.suppress(OSError):
            lock.close()
    out.info(f"stopped: {tap.seq} request(s) recorded; log and store flushed"
             + ("" if code in (0, None) else f" (the analytics worker exited with {code})"))
    return 0
