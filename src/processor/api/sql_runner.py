"""Runs checked read-only SQL for ``POST /api/v1/query`` with the database's own limits.

PostgreSQL: a READ ONLY transaction as the SELECT-only role ``processor_reader`` (SET LOCAL
ROLE), ``statement_timeout`` = QUERY_TIMEOUT_SECONDS, and the transaction setting
``processor.project`` = ``ID:sha256(secret:ID)``, which the row-level-security policies of
migration 0004 turn into "only project ID's rows". Rows come through a server-side cursor,
so a huge result is never held: at most QUERY_MAX_ROWS + 1 rows are fetched.

SQLite: a second, read-only connection (``mode=ro``), ``PRAGMA query_only``, an authorizer
that allows only reading the analytics tables and calling functions (no ATTACH, PRAGMA,
writes or other tables), and a progress handler that stops it after the timeout. SQLite
cannot enforce project isolation, so the endpoint checks who may call it (see service.py).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Engine

from processor.api.sql_guard import READABLE_TABLES, QueryRejected
from processor.errors import StorageUnavailable

READER_ROLE = "processor_reader"
DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


def json_value(value: Any) -> Any:
    """A database value as JSON: times as ISO 8601, UUIDs and decimals as text/numbers."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (str, int, float, bool, dict, list)) or value is None:
        return value
    return str(value)


def project_token(secret: str, project: int) -> str:
    """The value of ``processor.project`` that the RLS function accepts for ``project``."""
    digest = hashlib.sha256(f"{secret}:{project}".encode()).hexdigest()
    return f"{project}:{digest}"


def load_secret(engine: Engine) -> str:
    try:
        with engine.connect() as conn:
            secret = conn.execute(text("SELECT secret FROM query_secret LIMIT 1")).scalar()
    except Exception as exc:
        raise StorageUnavailable(f"the SQL endpoint is not set up (migrate): {exc}") from exc
    if not secret:
        raise StorageUnavailable("the SQL endpoint is not set up: query_secret is empty")
    return str(secret)


def run_postgres(
    engine: Engine, sql: str, token: str, timeout_s: float, max_rows: int
) -> QueryResult:
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        transaction = conn.begin()
        try:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
            conn.exec_driver_sql(
                "SELECT set_config('processor.project', %(token)s, true)", {"token": token}
            )
            conn.exec_driver_sql(f"SET LOCAL ROLE {READER_ROLE}")
            with raw.cursor(name=f"analyst_{uuid.uuid4().hex[:12]}") as cursor:
                cursor.execute(sql.encode())
                rows = cursor.fetchmany(max_rows + 1)
                columns = [c.name for c in cursor.description or ()]
        except psycopg.errors.QueryCanceled:
            raise QueryRejected(f"stopped after the time limit of {timeout_s:g} s") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if raw.closed or raw.broken:
                raise StorageUnavailable(f"database unavailable: {exc}") from exc
            raise QueryRejected(_pg_message(exc)) from None
        except psycopg.Error as exc:
            raise QueryRejected(_pg_message(exc)) from None
        finally:
            if transaction.is_active:
                transaction.rollback()
    return _result(columns, rows, max_rows)


def _pg_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(exc).splitlines()[0]
    return f"the database refused it: {primary[:300]}"


def run_sqlite(path: str, sql: str, timeout_s: float, max_rows: int) -> QueryResult:
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=5)
    try:
        conn.execute("PRAGMA query_only = ON")
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            )
        }
        hidden = frozenset(tables - READABLE_TABLES)
        conn.set_authorizer(functools.partial(_sqlite_authorizer, hidden))
        deadline = time.monotonic() + timeout_s
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            cursor = conn.execute(sql)
            rows = cursor.fetchmany(max_rows + 1)
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise QueryRejected(f"stopped after the time limit of {timeout_s:g} s") from None
            raise QueryRejected(f"the database refused it: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise QueryRejected(f"the database refused it: {exc}") from None
        columns = [c[0] for c in cursor.description or ()]
    finally:
        conn.close()
    return _result(columns, rows, max_rows)


def _sqlite_authorizer(
    hidden: frozenset[str], action: int, arg1: str | None, arg2: str | None, *_: Any
) -> int:
    if action == sqlite3.SQLITE_SELECT or action == sqlite3.SQLITE_RECURSIVE:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_READ:
        # arg1 is a table, or a recursive CTE: any name but the other tables and the schema.
        name = (arg1 or "").lower()
        ok = name not in hidden and not name.startswith("sqlite_")
        return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION:
        ok = (arg2 or "").lower() not in DENIED_FUNCTIONS
        return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_DENY  # ATTACH, PRAGMA, writes, DDL, transactions


def _result(columns: list[str], rows: list[Any], max_rows: int) -> QueryResult:
    truncated = len(rows) > max_rows
    return QueryResult(
        columns, [[json_value(v) for v in row] for row in rows[:max_rows]], truncated
    )
