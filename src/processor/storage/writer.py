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
from sqlalchemy import Table, create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from processor.analytics import invalidations
from processor.errors import StorageUnavailable
from processor.mapping.rows import ROW_TYPES, Batch
from processor.ops import self_metrics
from processor.storage.schema import MODELS

log = structlog.get_logger(__name__)

COLUMNS = {table: row_type._fields for table, row_type in ROW_TYPES.items()}  # type: ignore[attr-defined]
UPSERT_KEY = {"user_properties": ("project_id", "user_id", "property_key")}
# The raw tables' primary keys (project_id, timestamp[, level], id): on a partitioned table a
# unique key must hold the partition key, so a retried row is recognised by all of it.
CONFLICT_KEY = {
    table.name: ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
    for table in (model.__table__ for model in MODELS)
    if isinstance(table, Table)
}
UPSERT_SET = ("timestamp", "trace_id", "span_id", "property_value", "updated_at")


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


# SQLSTATE classes that blame the rows themselves: 22 data exception, 23 integrity violation.
DATA_ERROR_CLASSES = ("22", "23")


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


@dataclass(frozen=True)
class _StagePlan:
    """How one table's rows travel: binary COPY into a staging table, then INSERT … SELECT."""

    create: str  # the staging table
    copy: str  # COPY … FROM STDIN
    types: list[str] | None  # binary COPY types, or None for text COPY
    select: str  # the staging columns as the real table's types


# Column types whose binary form psycopg writes from the router's Python values (str, int,
# float, aware datetime). uuid and JSON columns are staged as text and cast by the INSERT.
_BINARY_TYPES = frozenset({"int2", "int4", "int8", "float8", "text", "varchar", "timestamptz"})
_CAST_FROM_TEXT = frozenset({"uuid", "json", "jsonb"})


class PostgresBackend:
    """COPY into a per-connection staging table, then insert-ignore into the real one.

    The COPY is binary (cheap to produce and to parse), with ids and JSON staged as text.
    """

    def __init__(self) -> None:
        self._plans: dict[str, _StagePlan] = {}

    def _plan(self, cur: psycopg.Cursor[Any], table: str) -> _StagePlan:
        plan = self._plans.get(table)
        if plan is not None:
            return plan
        cols = COLUMNS[table]
        names = ", ".join(f'"{c}"' for c in cols)
        stage = f"_stage_{table}"
        cur.execute(
            "SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod)"
            " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            (table,),
        )
        catalog = {name: (typname, full) for name, typname, full in cur.fetchall()}
        if all(c in catalog for c in cols) and all(
            catalog[c][0] in _BINARY_TYPES | _CAST_FROM_TEXT for c in cols
        ):
            staged = ["text" if catalog[c][0] in _CAST_FROM_TEXT else catalog[c][1] for c in cols]
            plan = _StagePlan(
                create=f"CREATE TEMP TABLE IF NOT EXISTS {stage} ("
                + ", ".join(f'"{c}" {t}' for c, t in zip(cols, staged, strict=True))
                + ") ON COMMIT DELETE ROWS",
                copy=f"COPY {stage} ({names}) FROM STDIN (FORMAT BINARY)",
                types=["text" if catalog[c][0] in _CAST_FROM_TEXT else catalog[c][0] for c in cols],
                select=", ".join(
                    f'"{c}"::{catalog[c][0]}' if catalog[c][0] in _CAST_FROM_TEXT else f'"{c}"'
                    for c in cols
                ),
            )
        else:  # an unexpected column type: text COPY into a copy of the table
            plan = _StagePlan(
                create=f"CREATE TEMP TABLE IF NOT EXISTS {stage}"
                f" (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
                copy=f"COPY {stage} ({names}) FROM STDIN",
                types=None,
                select=names,
            )
        self._plans[table] = plan
        return plan

    def insert(self, conn: Connection, table: str, rows: Sequence[tuple]) -> None:
        cols = COLUMNS[table]
        names = ", ".join(f'"{c}"' for c in cols)
        stage = f"_stage_{table}"
        raw = conn.connection.driver_connection
        assert raw is not None
        staged: set[str] = conn.info.setdefault("staged", set())
        with raw.cursor() as cur:
            plan = self._plan(cur, table)
            if table not in staged:
                cur.execute(plan.create)
                staged.add(table)
            with cur.copy(plan.copy) as copy:
                if plan.types is not None:
                    copy.set_types(plan.types)
                write = copy.write_row
                for row in rows:
                    write(row)
            key = UPSERT_KEY.get(table)
            if key is None:
                # Ordered by id so concurrent transactions take index locks in one order.
                cur.execute(
                    f"INSERT INTO {table} ({names}) SELECT {plan.select} FROM {stage}"
                    f" ORDER BY id ON CONFLICT ({CONFLICT_KEY[table]}) DO NOTHING"
                )
            else:
                keys = ", ".join(key)
                updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in UPSERT_SET)
                cur.execute(
                    f"INSERT INTO {table} ({names}) SELECT DISTINCT ON ({keys}) {plan.select}"
                    f" FROM {stage} ORDER BY {keys}, timestamp DESC"
                    f" ON CONFLICT ({keys}) DO UPDATE SET {updates}"
                    f" WHERE EXCLUDED.timestamp >= {table}.timestamp"
                )


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
        self, engine: Engine, *, max_rows: int = 20000, flushers: int | None = None
    ) -> None:
        self.engine = engine
        self.backend: Backend = (
            PostgresBackend() if engine.dialect.name == "postgresql" else SqliteBackend()
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
