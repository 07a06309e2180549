"""A periodic background job that runs in one process at a time, in a thread.

PostgreSQL: a session advisory lock, held on a dedicated connection while the job runs, so one
runner works across workers and replicas (a process that does not get it skips that round).
SQLite: an exclusive ``flock`` on a file beside the database, so ``serve --workers N`` and the
CLI take turns too. The job runs in its own thread: the event loop, and so ingestion, never
waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = structlog.get_logger(__name__)


class RunnerLock:
    """One holder at a time across processes: PostgreSQL advisory lock or SQLite flock."""

    def __init__(self, engine: Engine, key: int) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None
        self._file: IO[bytes] | None = None
        self._local = threading.Lock()  # in-memory SQLite: this process only

    def acquire(self, blocking: bool = False) -> bool:
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            function = "pg_advisory_lock" if blocking else "pg_try_advisory_lock"
            got = conn.execute(text(f"SELECT {function}(:k)"), {"k": self.key}).scalar()
            conn.commit()
            if got is False:
                conn.close()
                return False
            self._conn = conn
            return True
        path = self.engine.url.database
        if not path or path == ":memory:":
            return self._local.acquire(blocking)
        handle = open(f"{path}.lock-{self.key:x}", "ab")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                conn.commit()
            conn.close()  # a lost connection has released the lock already
        elif self._file is not None:
            handle, self._file = self._file, None
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        elif self._local.locked():
            self._local.release()

    @contextlib.contextmanager
    def held(self, blocking: bool = True) -> Iterator[bool]:
        got = self.acquire(blocking)
        try:
            yield got
        finally:
            if got:
                self.release()


class PeriodicRunner:
    """Calls ``job(first)`` after ``first_delay`` seconds and then every ``interval`` seconds,
    in a worker thread, while holding ``lock``; a round whose lock is held elsewhere is
    skipped. ``job`` gets ``first=True`` on the round run right at start (``at_start``).

    ``start()`` / ``shutdown(grace)`` follow processor.lifecycle.Component, safe twice."""

    def __init__(
        self,
        name: str,
        lock: RunnerLock,
        job: Callable[[bool], Any],
        *,
        interval: float,
        first_delay: float,
        at_start: bool = False,
    ) -> None:
        self.name = name
        self.lock = lock
        self.job = job
        self.interval = interval
        self.first_delay = first_delay
        self.at_start = at_start
        self.stop = threading.Event()  # jobs may check it between bounded steps
        self.rounds = 0  # rounds run (lock held), for tests and logs
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopped = False

    async def start(self) -> None:
        if self._task is not None or self._stopped:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=self.name)
        self._task = asyncio.create_task(self._loop())

    async def shutdown(self, grace: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._executor is not None:
            # A round in progress sees ``stop`` and ends at its next step; wait for it.
            loop = asyncio.get_running_loop()
            executor = self._executor
            waiting = loop.run_in_executor(None, lambda: executor.shutdown(wait=True))
            try:
                await asyncio.wait_for(asyncio.shield(waiting), grace)
            except TimeoutError:
                log.warning("runner_still_busy_at_shutdown", runner=self.name)

    def run_once(self, first: bool = False) -> bool:
        """One round in this thread; False when another process holds the lock."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            self.job(first)
            self.rounds += 1
        finally:
            self.lock.release()
        return True

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        first = self.at_start
        delay = 0.0 if first else self.first_delay
        while not self.stop.is_set():
            if delay:
                await asyncio.sleep(delay)
            try:
                await loop.run_in_executor(self._executor, self.run_once, first)
            except Exception as exc:  # a failed round is logged; the next one tries again
                log.warning(
                    "runner_round_failed",
                    runner=self.name,
                    error=type(exc).__name__,
                    detail=str(exc).splitlines()[0][:300] if str(exc) else "",
                )
            delay = self.first_delay if first else self.interval
            first = False


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a runner name."""
    return int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "big", signed=True)
