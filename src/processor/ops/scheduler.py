"""Periodic background jobs, one at a time across workers and replicas.

A job is a plain function of an Engine, run in its own thread (never on the event loop)
every ``interval`` seconds while it holds its lock: a PostgreSQL advisory lock, or on SQLite a
file lock beside the database. A process that does not get the lock skips that round. Rollups,
retention (storage/housekeeping.py, and the ``retention`` CLI through ``job_lock``) and alerts
use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

log = structlog.get_logger(__name__)

T = TypeVar("T")

_process_locks: dict[str, threading.Lock] = {}


@contextlib.contextmanager
def job_lock(engine: Engine, key: int, *, wait: bool) -> Iterator[bool]:
    """Yield True while holding the job's lock; False when ``wait`` is off and it is taken."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            fn = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
            got = conn.execute(text(f"SELECT {fn}(:key)"), {"key": key}).scalar()
            got = True if wait else bool(got)
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    conn.commit()
        return
    path = make_url(engine.url).database
    if not path or path == ":memory:":  # one process only: a lock in this process suffices
        lock = _process_locks.setdefault(str(key), threading.Lock())
        got = lock.acquire(blocking=wait)
        try:
            yield got
        finally:
            if got:
                lock.release()
        return
    with open(f"{path}.lock-{key}", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class PeriodicJob(Generic[T]):
    """A ``lifecycle.Component`` running ``job(engine)`` every ``interval`` seconds (from the
    start of one round to the start of the next; a round longer than that is followed at once).

    ``first_delay``: seconds before the first round (default: one interval). ``on_start``: a
    job run once right at start, under the same lock (e.g. work that must not wait for the
    first round). ``stop`` is set at shutdown: a long job checks it between bounded steps.
    """

    def __init__(
        self,
        name: str,
        engine: Engine,
        job: Callable[[Engine], T],
        *,
        interval: float,
        lock_key: int,
        first_delay: float | None = None,
        on_start: Callable[[Engine], object] | None = None,
    ) -> None:
        self.name = name
        self.engine = engine
        self.job = job
        self.interval = interval
        self.lock_key = lock_key
        self.first_delay = interval if first_delay is None else first_delay
        self.on_start = on_start
        self.rounds = 0  # rounds this process ran (holding the lock)
        self.skipped = 0  # rounds another process had
        self.last: T | None = None
        self.stop = threading.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._closed = False

    async def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    def run_once(self, *, wait: bool = False) -> T | None:
        """One round in the calling thread; None when another process holds the lock."""
        with job_lock(self.engine, self.lock_key, wait=wait) as got:
            if not got:
                self.skipped += 1
                return None
            result = self.job(self.engine)
        self.rounds += 1
        self.last = result
        return result

    def _start_round(self) -> bool:
        assert self.on_start is not None
        with job_lock(self.engine, self.lock_key, wait=False) as got:
            if got:
                self.on_start(self.engine)
            return got

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.on_start is not None:
            await self._step(loop, self._start_round)
        delay = self.first_delay
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            started = time.monotonic()
            await self._step(loop, self.run_once)
            # Fixed rate: rounds start an interval apart, so work that arrived just after a
            # round waits at most one interval plus that round, not the round twice over.
            delay = max(0.0, self.interval - (time.monotonic() - started))

    async def _step(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> None:
        started = time.perf_counter()
        try:
            result = await loop.run_in_executor(self._executor, fn)
        except Exception as exc:  # a failed round is retried next interval
            detail = str(exc).splitlines()[0][:300] if str(exc) else ""
            log.warning(f"{self.name}_failed", error=type(exc).__name__, detail=detail)
            return
        if result is not None and result is not False:
            log.debug(f"{self.name}_round", seconds=round(time.perf_counter() - started, 3))

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop scheduling; let a round in progress finish within ``grace``. Safe twice."""
        if self._closed:
            return
        self._closed = True
        self.stop.set()
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                log.warning(f"{self.name}_still_running_at_shutdown")
        # A round still running finishes in its thread; its transaction commits or not.
        self._executor.shutdown(wait=False)
