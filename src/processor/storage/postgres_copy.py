"""How rows reach PostgreSQL: binary COPY, straight into the table or through a staging table.

Both paths store every row once however often it is sent (a retried request has the same
deterministic ids):

- **staged** (the reference): binary COPY into a per-connection temporary table, then
  ``INSERT … SELECT … ON CONFLICT (primary key) DO NOTHING`` into the real table, by id.
- **direct** (``WRITER_DIRECT_COPY``, on by default): binary COPY of the rows, sorted by id,
  straight into the real table inside a SAVEPOINT. PostgreSQL is spared the staging table's
  write and read and the INSERT's conflict handling. When the COPY fails because of the rows
  (a retried or repeated row collides with the primary key: SQLSTATE 23505; or any other
  class 22/23 complaint), the savepoint is rolled back and that table's rows take the staged
  path. So duplicates skip as before, and a row the database refuses is refused by the staged
  path with its own error, exactly as without the direct path. Any other failure (connection
  lost, cancel, deadlock) fails the transaction as before.

``user_properties`` always takes the staged path: its rows are upserts (newest value wins),
and repeats are its normal case.
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import psycopg
import structlog
from psycopg.adapt import Dumper
from psycopg.postgres import types as pg_types
from psycopg.pq import Format
from sqlalchemy.engine import Connection

from processor.ops import self_metrics
from processor.storage.keys import COLUMNS, CONFLICT_KEY, UPSERT_KEY, UPSERT_SET

log = structlog.get_logger(__name__)

# SQLSTATE classes that blame the rows themselves: 22 data exception, 23 integrity violation.
DATA_ERROR_CLASSES = ("22", "23")
UNIQUE_VIOLATION = "23505"
FEATURE_NOT_SUPPORTED = "0A000"  # e.g. COPY FROM into a table whose row security applies


@dataclass(frozen=True)
class _StagePlan:
    """How one table's rows travel: binary COPY into a staging table, then INSERT … SELECT."""

    create: str  # the staging table
    copy: str  # COPY … FROM STDIN
    types: list[str] | None  # binary COPY types, or None for text COPY
    select: str  # the staging columns as the real table's types


@dataclass(frozen=True)
class _DirectPlan:
    """Binary COPY straight into the real table."""

    copy: str
    types: list[str]


# Column types whose binary form psycopg writes from the router's Python values (str, int,
# float, aware datetime). uuid and JSON columns are staged as text and cast by the INSERT.
_BINARY_TYPES = frozenset({"int2", "int4", "int8", "float8", "text", "varchar", "timestamptz"})
_CAST_FROM_TEXT = frozenset({"uuid", "json", "jsonb"})
_ID = itemgetter(0)


class _UuidTextDumper(Dumper):
    """A uuid column's binary form from the router's id text (32 hex digits)."""

    format = Format.BINARY
    oid = pg_types["uuid"].oid

    def dump(self, obj: Any) -> bytes:
        try:
            value = bytes.fromhex(obj)
        except ValueError:
            value = b""
        # Any other spelling is parsed as PostgreSQL would; bad ones raise ValueError, which
        # sends the rows to the staged path (where the cast reports them).
        return value if len(value) == 16 else uuid.UUID(obj).bytes


class _JsonbTextDumper(Dumper):
    """A jsonb column's binary form from JSON text: version 1, then the text (parsed by
    PostgreSQL, which refuses invalid JSON with a class 22 error)."""

    format = Format.BINARY
    oid = pg_types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + obj.encode()


class _JsonTextDumper(Dumper):
    format = Format.BINARY
    oid = pg_types["json"].oid

    def dump(self, obj: Any) -> bytes:
        return obj.encode()


_TEXT_DUMPERS = (_UuidTextDumper, _JsonbTextDumper, _JsonTextDumper)


def fallback_reason(exc: BaseException) -> str | None:
    """Why a failed direct COPY's rows can take the staged path, or None if they cannot
    (the failure is not about the rows, and fails the transaction). Pure."""
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state == UNIQUE_VIOLATION:
            return "conflict"
        if state == FEATURE_NOT_SUPPORTED:
            return "unsupported"
        if state:
            return "data" if state[:2] in DATA_ERROR_CLASSES else None
        return "data" if isinstance(exc, psycopg.DataError) else None
    # Raised by a dumper while adapting a value (the staged path casts it and reports it).
    return "data" if isinstance(exc, ValueError | TypeError | OverflowError) else None


class PostgresBackend:
    """Direct binary COPY with the staged insert-ignore as fallback, or staged only."""

    def __init__(self, *, direct: bool = True) -> None:
        self.direct = direct
        self._plans: dict[str, _StagePlan] = {}
        self._direct_plans: dict[str, _DirectPlan | None] = {}

    def insert(self, conn: Connection, table: str, rows: Sequence[tuple]) -> None:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            if self.direct and table not in UPSERT_KEY and self._copy_direct(cur, table, rows):
                return
            self._insert_staged(cur, conn.info, table, rows)

    # --- direct ------------------------------------------------------------------------------

    def _direct_plan(self, cur: psycopg.Cursor[Any], table: str) -> _DirectPlan | None:
        if table in self._direct_plans:
            return self._direct_plans[table]
        catalog = self._catalog(cur, table)
        cols = COLUMNS[table]
        cur.execute("SELECT row_security_active(%s::regclass)", (table,))
        row = cur.fetchone()
        plan = None
        usable = _BINARY_TYPES | _CAST_FROM_TEXT
        if row is not None and not row[0] and all(catalog.get(c, ("",))[0] in usable for c in cols):
            names = ", ".join(f'"{c}"' for c in cols)
            plan = _DirectPlan(
                copy=f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)",
                types=[catalog[c][0] for c in cols],
            )
        self._direct_plans[table] = plan
        return plan

    def _copy_direct(self, cur: psycopg.Cursor[Any], table: str, rows: Sequence[tuple]) -> bool:
        """True when the rows are in; False when they must take the staged path."""
        plan = self._direct_plan(cur, table)
        if plan is None:
            return False
        for dumper in _TEXT_DUMPERS:
            cur.adapters.register_dumper(None, dumper)
        cur.execute("SAVEPOINT direct_copy")
        try:
            # By id, as the staged INSERT: concurrent writers of the same rows (a retry while
            # the first attempt is still committing) take their key locks in one order.
            with cur.copy(plan.copy) as copy:
                copy.set_types(plan.types)
                write = copy.write_row
                for row in sorted(rows, key=_ID):
                    write(row)
        except Exception as exc:
            reason = fallback_reason(exc)
            if reason is None:
                raise
            cur.execute("ROLLBACK TO SAVEPOINT direct_copy")
            cur.execute("RELEASE SAVEPOINT direct_copy")
            self_metrics.DIRECT_COPY_FALLBACKS.labels(table, reason).inc()
            if reason == "unsupported":  # will not change while this process runs
                self._direct_plans[table] = None
                log.warning("direct_copy_unsupported", table=table, error=str(exc)[:200])
            return False
        cur.execute("RELEASE SAVEPOINT direct_copy")
        return True

    # --- staged ------------------------------------------------------------------------------

    @staticmethod
    def _catalog(cur: psycopg.Cursor[Any], table: str) -> dict[str, tuple[str, str]]:
        cur.execute(
            "SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod)"
            " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            (table,),
        )
        return {name: (typname, full) for name, typname, full in cur.fetchall()}

    def _plan(self, cur: psycopg.Cursor[Any], table: str) -> _StagePlan:
        plan = self._plans.get(table)
        if plan is not None:
            return plan
        cols = COLUMNS[table]
        names = ", ".join(f'"{c}"' for c in cols)
        stage = f"_stage_{table}"
        catalog = self._catalog(cur, table)
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

    def _insert_staged(
        self,
        cur: psycopg.Cursor[Any],
        info: MutableMapping[Any, Any],
        table: str,
        rows: Sequence[tuple],
    ) -> None:
        cols = COLUMNS[table]
        names = ", ".join(f'"{c}"' for c in cols)
        stage = f"_stage_{table}"
        # Which staging tables this connection has made (the writer forgets them when a
        # transaction that may have made one rolls back).
        staged: set[str] = info.setdefault("staged", set())
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
