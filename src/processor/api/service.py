"""The query API's operations, shared by the REST handlers and the gRPC servicer.

Blocking database work runs on a small thread pool of its own, so slow analyst queries
never take the threads that ingestion uses.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from sqlalchemy import Table, func, select
from sqlalchemy.engine import Engine

from processor import __version__
from processor.api import logs, sql_guard, sql_runner, users
from processor.api.readers import AnalyticsReader
from processor.api.sqlbits import as_utc, iso
from processor.errors import NotFound, PermissionDenied
from processor.ingest.auth import ADMIN, Caller
from processor.ingest.formats import TELLING_LOGGER_USER_PROPERTIES
from processor.ingest.pipeline import Pipeline
from processor.settings import Settings
from processor.storage import admin
from processor.storage.schema import MODELS

T = TypeVar("T")
TABLES: list[Table] = [m.__table__ for m in MODELS]  # type: ignore[misc]
SQLITE_SHARED = (
    "on SQLite the SQL endpoint cannot isolate projects: it needs an admin key once "
    "there is more than one project"
)


class QueryService:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        reader: AnalyticsReader,
        pipeline: Pipeline,
        ready: Callable[[], Awaitable[bool]],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.reader = reader
        self.pipeline = pipeline
        self.hasher = pipeline.hasher
        self.ready = ready
        self.started = time.monotonic()
        self.dialect = engine.dialect.name
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="query-api")
        self._secret: str | None = None

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def start(self) -> None:
        """Nothing to acquire: the pool's threads start on first use."""

    async def shutdown(self, grace: float = 10.0) -> None:
        """Drop queued queries; running ones finish on their own. Safe to call twice."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- user properties -----------------------------------------------------------------

    async def user_properties(self, project: int, raw_user: str) -> tuple[dict[str, Any], datetime]:
        hashed = users.user_hash(self.hasher, raw_user)
        found = await self.call(users.get_properties, self.engine, project, hashed)
        if found is None:
            raise NotFound("no properties are stored for this user")
        return found

    async def set_user_properties(
        self, project: int, raw_user: str, properties: Any, *, receiver: str = "http"
    ) -> int:
        """Ingestion: the same pipeline (admission, routing thread, group commit) as OTLP."""
        body = orjson.dumps({"userId": raw_user, "properties": properties})
        with self.pipeline.admit(len(body)):
            outcome = await self.pipeline.export(
                TELLING_LOGGER_USER_PROPERTIES, body, project_id=project, receiver=receiver
            )
        return int((outcome.reply or {}).get("updated", 0))

    # --- logs ----------------------------------------------------------------------------

    async def log_page(self, f: logs.LogFilter, **paging: Any) -> logs.LogPage:
        return await self.call(logs.fetch_page, self.engine, f, **paging)

    async def recent_logs(self, project: int, limit: int) -> list[dict[str, Any]]:
        return await self.call(logs.recent, self.engine, project, limit)

    # --- status and counts ----------------------------------------------------------------

    async def status(self, caller: Caller) -> dict[str, Any]:
        up = await self.ready()
        return {
            "status": "ok" if up else "degraded",
            "service": "telemetry-processor",
            "version": __version__,
            "database": "up" if up else "down",
            "database_kind": self.dialect,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "time": iso(datetime.now(UTC)),
            "project_id": caller.project_id,
            "scope": caller.scope,
        }

    async def table_counts(self, project: int) -> dict[str, Any]:
        return await self.call(self._table_counts, project)

    def _table_counts(self, project: int) -> dict[str, Any]:
        now = datetime.now(UTC)
        counts: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for table in TABLES:
                c = table.c
                mine = c.project_id == project
                rows, latest = conn.execute(
                    select(func.count(), func.max(c.timestamp)).where(mine)
                ).one()
                recent = {
                    label: int(
                        conn.execute(
                            select(func.count()).where(mine, c.timestamp >= now - span)
                        ).scalar_one()
                    )
                    for label, span in (
                        ("last_hour", timedelta(hours=1)),
                        ("last_24h", timedelta(days=1)),
                    )
                }
                counts[table.name] = {
                    "rows": int(rows),
                    **recent,
                    "latest": iso(as_utc(latest)) if latest is not None else None,
                }
        return counts

    # --- SQL -----------------------------------------------------------------------------

    async def query(self, caller: Caller, sql: str, limit: int | None) -> sql_runner.QueryResult:
        checked = sql_guard.check(sql, self.dialect)
        max_rows = min(limit or self.settings.query_max_rows, self.settings.query_max_rows)
        timeout = float(self.settings.query_timeout_seconds)
        if self.dialect == "postgresql":
            if self._secret is None:
                self._secret = await self.call(sql_runner.load_secret, self.engine)
            token = sql_runner.project_token(self._secret, caller.project_id)
            return await self.call(
                sql_runner.run_postgres, self.engine, checked, token, timeout, max_rows
            )
        if caller.scope != ADMIN and await self.call(admin.count_projects, self.engine) > 1:
            raise PermissionDenied(SQLITE_SHARED)
        path = self.engine.url.database
        if not path or path == ":memory:":
            raise PermissionDenied("the SQL endpoint needs a file database")
        return await self.call(sql_runner.run_sqlite, path, checked, timeout, max_rows)
