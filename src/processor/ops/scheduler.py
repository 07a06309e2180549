"""Periodic background jobs, one at a time across workers and replicas.

A job is a plain function of an Engine, run in its own thread (never on the event loop)
every ``interval`` seconds while it holds its lock: a PostgreSQL advisory lock, or on SQLite a
file lock beside the database. A process that does not get the lock skips that round. Rollups
use it; retention and alerts can too.
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
    """A ``lifecycle.Component`` running ``job(engine)`` every ``interval`` seconds."""

    def __init__(
        self,
        name: str,
        engine: Engine,
        job: Callable[[Engine], T],
        *,
        interval: float,
        lock_key: int,
    ) -> None:
        self.name = name
        self.engine = engine
        self.job = job
        self.interval = interval
        self.lock_key = lock_key
        self.rounds = 0  # rounds this process ran (holding the lock)
        self.skipped = 0  # rounds another process had
        self.last: T | None = None
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

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            if self._stopping.is_set():
                return
            started = time.perf_counter()
            try:
                result = await loop.run_in_executor(self._executor, self.run_once)
            except Exception as exc:  # a failed round is retried next interval
                log.warning(f"{self.name}_failed", error=type(exc).__name__, detail=str(exc)[:300])
                continue
            if result is not None:
                log.debug(f"{self.name}_round", seconds=round(time.perf_counter() - started, 3))

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop scheduling; let a round in progress finish within ``grace``. Safe twice."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                log.warning(f"{self.name}_still_running_at_shutdown")
        # A round still running finishes in its thread; its transaction commits or not.
        self._executor.shutdown(wait=False)
