"""Where independent tasks run: local processes (the default) or a Ray cluster (docs/scale-out.md).

Domain code hands ``Executor.map`` a pure, module-level function ``fn(shared, item)``, the
items, and one ``shared`` object that every task reads (the block streams of a trace, say).
Local workers inherit ``shared`` through ``fork``; on Ray it is put in the object store once
and every task reads it from there (zero-copy for numpy arrays on the same node). Results come
back as ``(index, result)`` in completion order, so the caller can show progress and still put
them in task order. Ctrl-C (a ``KeyboardInterrupt`` in the caller's thread) ends the tasks in
flight, local or remote, and propagates; what the caller already received stays its own,
which is how Ctrl-C keeps finished runs marked partial. At most ``window`` tasks are in flight,
so that items produced on the fly (shards of a log) never pile up in memory.

This module imports nothing of kvern's domain: Ray is imported only when asked for, so
``local`` needs no extra.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from kvern.infra.errors import UsageError

T = TypeVar("T")
R = TypeVar("R")
Task = Callable[[Any, Any], Any]

RAY_ADDRESS_ENV = "RAY_ADDRESS"
RAY_MISSING = "--executor ray needs Ray, an optional extra: pip install 'kvern[ray]'"
RAY_RETRIES = 3
"""Times Ray reruns a task whose worker or node died (the task is pure, so a rerun is safe)."""


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    """Which executor to use: the ``--executor``/``--ray-address`` flags over the ``executor:`` config."""

    kind: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    """None: ``$RAY_ADDRESS``, else a local Ray started for this run."""
    jobs: int | None = None
    """Local processes; None = the caller's default (1 for ingest, compare and cluster; all cores
    for sweep)."""
    ship_code: bool = True
    """Ray: send this kvern package to the workers (``py_modules``), so that they run exactly the
    driver's code; False = the workers import the kvern installed on them."""

    @classmethod
    def of(cls, kind: str | None, ray_address: str | None, config: Any = None) -> ExecutorSpec:
        """From the flags, falling back to the ``executor:`` section (``ExecutorConfig``)."""
        kind = kind or (config.kind if config is not None else "local")
        if kind not in ("local", "ray"):
            raise UsageError(f"--executor: {kind!r}; choose local or ray")
        if ray_address is not None and kind != "ray":
            raise UsageError("--ray-address needs --executor ray")
        address = ray_address or (config.ray_address if config is not None else None)
        return cls(kind, address,  # type: ignore[arg-type]
                   jobs=config.jobs if config is not None else None,
                   ship_code=config.ship_code if config is not None else True)


class Executor(Protocol):
    name: str

    @property
    def workers(self) -> int:
        """Tasks that can run at once (the local processes, or the cluster's CPUs)."""
        ...

    def map(self, fn: Task, items: Iterable[Any], shared: Any = None, *,
            window: int | None = None) -> Iterator[tuple[int, Any]]:
        """Start running ``fn(shared, item)`` for each item; yield ``(index, result)`` as they finish.

        The iterator is a generator: ``close()`` ends the tasks still in flight. Setup
        (forking, connecting) happens in this call, not on the first ``next``, so a caller can
        start a progress bar's thread only after it.
        """
        ...


def open_executor(spec: ExecutorSpec, *, default_jobs: int = 1) -> Executor:
    if spec.kind == "ray":
        return RayExecutor(spec.ray_address, ship_code=spec.ship_code)
    jobs = spec.jobs if spec.jobs is not None else default_jobs
    if jobs < 1:
        raise UsageError(f"--jobs / executor.jobs: {jobs}; at least 1")
    return LocalExecutor(jobs)


def all_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# -- local ---------------------------------------------------------------------------------------

_SHARED: Any = None
"""What the forked workers read (inherited, never pickled)."""


def _local_call(fn: Task, item: Any) -> Any:
    return fn(_SHARED, item)


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which keeps what finished and ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalExecutor:
    """``jobs`` forked processes; one job (or no ``fork``) runs the tasks in this process."""

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = jobs

    @property
    def workers(self) -> int:
        return self.jobs

    def map(self, fn: Task, items: Iterable[Any], shared: Any = None, *,
            window: int | None = None) -> Iterator[tuple[int, Any]]:
        if self.jobs == 1 or "fork" not in mp.get_all_start_methods():
            return ((i, fn(shared, item)) for i, item in enumerate(items))
        global _SHARED
        _SHARED = shared
        try:
            pool = mp.get_context("fork").Pool(self.jobs, initializer=_ignore_sigint)
        finally:
            _SHARED = None  # the children have their copy; the parent drops its reference
        return self._collect(pool, fn, items, window or 2 * self.jobs)

    @staticmethod
    def _collect(pool: Any, fn: Task, items: Iterable[Any], window: int) -> Iterator[tuple[int, Any]]:
        done: queue.Queue[tuple[int, bool, Any]] = queue.Queue()
        source = iter(enumerate(items))
        in_flight = 0
        try:
            while True:
                while in_flight < window:
                    nxt = next(source, None)
                    if nxt is None:
                        break
                    i, item = nxt
                    pool.apply_async(_local_call, (fn, item),
                                     callback=lambda r, i=i: done.put((i, True, r)),
                                     error_callback=lambda e, i=i: done.put((i, False, e)))
                    in_flight += 1
                if in_flight == 0:
                    break
                while True:  # a timeout keeps the wait interruptible by Ctrl-C
                    with contextlib.suppress(queue.Empty):
                        i, ok, value = done.get(timeout=0.2)
                        break
                in_flight -= 1
                if not ok:
                    raise value
                yield i, value
            pool.close()
        finally:
            pool.terminate()  # on Ctrl-C or an early stop, the tasks in flight are dropped
            pool.join()


# -- Ray -----------------------------------------------------------------------------------------

def _ray_call(fn: Task, shared: Any, item: Any) -> Any:
    return fn(shared, item)


_ray_remote: Any = None


class RayExecutor:
    """Tasks on a Ray cluster: ``address`` (else ``$RAY_ADDRESS``, else a local Ray for this run)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, ship_code: bool = True) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError(RAY_MISSING) from None
        self._ray = ray
        self.address = address or os.environ.get(RAY_ADDRESS_ENV) or None
        if not ray.is_initialized():
            env: dict[str, Any] = {}
            if ship_code:
                package = Path(__file__).resolve().parent.parent
                env = {"py_modules": [str(package)], "excludes": ["__pycache__", "*.pyc"]}
            kwargs: dict[str, Any] = {"runtime_env": env, "logging_level": logging.WARNING,
                                      "log_to_driver": False, "namespace": "kvern"}
            if self.address is None:  # never attach to some other cluster found on this machine
                kwargs.update(address="local", include_dashboard=False)
            else:
                kwargs["address"] = self.address
            try:
                ray.init(**kwargs)
            except ConnectionError as e:
                raise UsageError(f"--ray-address {self.address}: cannot connect to Ray ({e})") from None
        global _ray_remote
        if _ray_remote is None:
            _ray_remote = ray.remote(max_retries=RAY_RETRIES, retry_exceptions=False)(_ray_call)

    @property
    def workers(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def map(self, fn: Task, items: Iterable[Any], shared: Any = None, *,
            window: int | None = None) -> Iterator[tuple[int, Any]]:
        shared_ref = self._ray.put(shared)
        return self._collect(fn, items, shared_ref, window or 2 * self.workers)

    def _collect(self, fn: Task, items: Iterable[Any], shared_ref: Any,
                 window: int) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        source = iter(enumerate(items))
        pending: dict[Any, int] = {}
        try:
            while True:
                while len(pending) < window:
                    nxt = next(source, None)
                    if nxt is None:
                        break
                    i, item = nxt
                    pending[_ray_remote.remote(fn, shared_ref, item)] = i
                if not pending:
                    break
                ready: list[Any] = []
                while not ready:  # a timeout keeps the wait interruptible by Ctrl-C
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                ref = ready[0]
                i = pending.pop(ref)
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    raise e.as_instanceof_cause() from None
                yield i, value
        finally:
            for ref in pending:  # Ctrl-C or an early stop: end what is still running
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)


__all__ = ["RAY_ADDRESS_ENV", "RAY_MISSING", "Executor", "ExecutorSpec", "LocalExecutor", "RayExecutor",
           "all_cores", "open_executor"]
