"""The writer: commits routed rows to the database, idempotently, with group commit.

Concurrent requests are coalesced: while one transaction commits, newly arriving batches
queue up and go into the next transaction together. Each request's future resolves only
after the transaction holding its rows has committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg
import structlog
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from processor.analytics import invalidations
from processor.errors import StorageUnavailable
from processor.mapping.rows import Batch
from processor.ops import self_metrics
from processor.storage.keys import COLUMNS, UPSERT_KEY, UPSERT_SET
from processor.storage.postgres_copy import DATA_ERROR_CLASSES, PostgresBackend

log = structlog.get_logger(__name__)


@dataclass
class WriteResult:
    rejected: int = 0
    error: str = ""


class Writer(Protocol):
    async def start(self) -> None: ...
    async def write(self, batch: Batch) -> WriteResult: ...
    async def ping(self) -> bool: ...
    async def shutdown(self, grace: float = 10.0) -> None: ...


class DataRejected(Exception):
    """The database refused these rows for what they contain (not for being unreachable)."""


def create_db_engine(url: str, *, pool_size: int = 4) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # Only a new, empty file takes it (see alembic/env.py), before WAL fixes the
            # format. Never on an existing file: setting it would wait for the write lock.
            if cur.execute("PRAGMA page_count").fetchone()[0] == 0:
                cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=2,
        pool_pre_ping=True,
        pool_timeout=5,
        connect_args={
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "application_name": "telemetry-processor",
        },
    )


def is_data_error(exc: BaseException) -> bool:
    """True when the database refused the rows for what they contain.

    Everything else (lost connections, timeouts, cancels, deadlocks, a missing table after a
    skipped migration, permissions) is transient from the client's point of view: it is
    answered UNAVAILABLE so the client retries, and nothing acknowledged is dropped.
    """
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        if exc.connection_invalidated:
            return False
        exc = exc.orig
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate:
            return exc.sqlstate[:2] in DATA_ERROR_CLASSES
        return isinstance(exc, psycopg.DataError)  # raised client-side while adapting a value
    return isinstance(
        exc, sqlite3.IntegrityError | sqlite3.DataError | ValueError | TypeError | OverflowError
    )


class Backend(Protocol):
    """How rows reach one kind of database (PostgreSQL COPY, SQLite executemany)."""

    def insert(self, conn: Connection, table: str, rows: Sequence[tuple]) -> None: ...


def _sqlite_time(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLAlchemy's SQLite DATETIME text form, in UTC, so text order is time order.
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return value


class SqliteBackend:
    """Batched INSERT OR IGNORE in one transaction; WAL mode is set on connect."""

    def __init__(self) -> None:
        self._time_columns = {
            table: [
                i
                for i, c in enumerate(cols)
                if c in ("timestamp", "observed_timestamp", "updated_at")
            ]
            for table, cols in COLUMNS.items()
        }

    def insert(self, conn: Connection, table: str, rows: Sequence[tuple]) -> None:
        cols = COLUMNS[table]
        names = ", ".join(f'"{c}"' for c in cols)
        marks = ", ".join("?" for _ in cols)
        times = self._time_columns[table]
        params = []
        for row in rows:
            values = list(row)
            for i in times:
                values[i] = _sqlite_time(values[i])
            params.append(values)
        key = UPSERT_KEY.get(table)
        if key is None:
            sql = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})"
        else:
            updates = ", ".join(f'"{c}" = excluded."{c}"' for c in UPSERT_SET)
            sql = (
                f"INSERT INTO {table} ({names}) VALUES ({marks})"
                f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
                f" WHERE excluded.timestamp >= {table}.timestamp"
            )
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.executemany(sql, params)


@dataclass
class _Pending:
    batch: Batch
    future: asyncio.Future[WriteResult]


class SqlWriter:
    """Writes batches through SQLAlchemy's pool; PostgreSQL via COPY, SQLite via executemany."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_rows: int = 20000,
        flushers: int | None = None,
        direct_copy: bool = True,
    ) -> None:
        """``direct_copy``: PostgreSQL rows COPY straight into their table, falling back to the
        staging table + ON CONFLICT when they collide (storage/postgres_copy.py)."""
        self.engine = engine
        self.backend: Backend = (
            PostgresBackend(direct=direct_copy)
            if engine.dialect.name == "postgresql"
            else SqliteBackend()
        )
        self.max_rows = max_rows
        self.flushers = flushers or (2 if engine.dialect.name == "postgresql" else 1)
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._executor = ThreadPoolExecutor(self.flushers + 1, thread_name_prefix="writer")
        self._closed = False
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._tasks = [asyncio.create_task(self._flush_loop()) for _ in range(self.flushers)]

    async def write(self, batch: Batch) -> WriteResult:
        if self._closed:
            raise StorageUnavailable("the writer is shutting down")
        if batch.row_count == 0:
            return WriteResult()
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(batch, future))
        self._wakeup.set()
        return await future

    async def ping(self) -> bool:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._ping)
        except Exception:
            return False

    def _ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def shutdown(self, grace: float = 10.0) -> None:
        """Commit what is queued, then stop. Safe to call twice, and before ``start()``."""
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(StorageUnavailable("the writer shut down"))
        self._queue.clear()
        # A health check may still hold a writer thread; wait for it off the event loop.
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self.engine.dispose()

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            group = self._take()
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._commit, group)
            except StorageUnavailable as exc:
                for pending in group:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            except Exception as exc:  # a bug here must not strand the waiting requests
                log.exception("writer_failed")
                for pending in group:
                    if not pending.future.done():
                        pending.future.set_exception(StorageUnavailable(f"write failed: {exc}"))
                continue
            self_metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
            for pending, result in zip(group, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)

    def _take(self) -> list[_Pending]:
        group: list[_Pending] = []
        rows = 0
        while self._queue and (not group or rows + self._queue[0].batch.row_count <= self.max_rows):
            pending = self._queue.popleft()
            if pending.future.done():  # the client went away; its rows need no commit
                continue
            group.append(pending)
            rows += pending.batch.row_count
        return group

    # --- in the writer thread --------------------------------------------------------------

    def _commit(self, group: list[_Pending]) -> list[WriteResult]:
        merged: dict[str, list[tuple]] = {}
        for pending in group:
            for table, rows in pending.batch.rows.items():
                if rows:
                    merged.setdefault(table, []).extend(rows)
        try:
            self._transaction(merged)
        except DataRejected:
            # Some row is unacceptable; find it without costing the other requests.
            return [self._commit_alone(p.batch) for p in group]
        for table, rows in merged.items():
            self_metrics.ROWS_WRITTEN.labels(table).inc(len(rows))
        return [WriteResult() for _ in group]

    def _transaction(self, tables: dict[str, list[tuple]]) -> None:
        info: dict[Any, Any] | None = None
        try:
            with self.engine.begin() as conn:
                info = conn.info
                for table, rows in tables.items():
                    self.backend.insert(conn, table, rows)
                # Same transaction: a committed row always has its rollup marker.
                invalidations.record(conn, tables)
        except Exception as exc:
            if info is not None:
                # A staging table created in this transaction was rolled back with it; the
                # connection may live on in the pool, so it must not be remembered as made.
                info.pop("staged", None)
            if not is_data_error(exc):
                raise StorageUnavailable(f"database unavailable: {type(exc).__name__}") from exc
            raise DataRejected(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from exc

    def _commit_alone(self, batch: Batch) -> WriteResult:
        tables = {t: rows for t, rows in batch.rows.items() if rows}
        try:
            self._transaction(tables)
        except DataRejected:
            pass
        else:
            for table, rows in tables.items():
                self_metrics.ROWS_WRITTEN.labels(table).inc(len(rows))
            return WriteResult()
        # Row by row, so one unstorable record does not cost the rest of its request.
        result = WriteResult()
        for table, rows in tables.items():
            for row in rows:
                try:
                    self._transaction({table: [row]})
                    self_metrics.ROWS_WRITTEN.labels(table).inc()
                except DataRejected as exc:
                    result.rejected += 1
                    result.error = result.error or f"{table}: {exc}"[:300]
        log.warning("rows_rejected_by_database", rejected=result.rejected, error=result.error)
        return result
