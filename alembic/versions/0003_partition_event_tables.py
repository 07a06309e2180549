"""Partition the raw event tables by UTC day (PostgreSQL); keys with project_id and timestamp.

PostgreSQL: endpoint_usage, feature_usage, user_activity, logs and performance_metrics become
tables RANGE-partitioned by UTC day on ``timestamp``, each with a DEFAULT partition; each day
of ``logs`` is LIST-partitioned by level (one leaf per level, plus a DEFAULT leaf), so
per-level retention drops leaves instead of deleting rows. Existing rows are copied in. The
column list and the secondary indexes are read from the catalog, so columns and indexes that
other revisions added are carried over.

Both databases: every primary key includes ``project_id`` (Citus distribution column) and, on
the raw tables, the partition key ``timestamp`` (and ``level`` on logs):
(project_id, timestamp, id) / (project_id, timestamp, level, id); user_properties
(project_id, id). SQLite has no partitions: only its keys change.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RAW = ("endpoint_usage", "feature_usage", "user_activity", "logs", "performance_metrics")
LEVELS = ("trace", "debug", "info", "warning", "error", "fatal")
NEW_KEYS = {table: ("project_id", "timestamp", "id") for table in RAW}
NEW_KEYS["logs"] = ("project_id", "timestamp", "level", "id")
NEW_KEYS["user_properties"] = ("project_id", "id")
# Days the migration gives partitions to: from BACKFILL_DAYS back to PREMAKE_DAYS ahead.
# Rows outside land in the DEFAULT partition; the service's maintenance moves or expires them.
BACKFILL_DAYS = 366
PREMAKE_DAYS = 7


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        _sqlite_keys(NEW_KEYS)
        return
    for table in RAW:
        _partition(table)
    _set_primary_key("user_properties", NEW_KEYS["user_properties"])


def downgrade() -> None:
    old = {table: ("id",) for table in NEW_KEYS}
    if op.get_bind().dialect.name != "postgresql":
        _sqlite_keys(old)
        return
    for table in RAW:
        _unpartition(table)
    _set_primary_key("user_properties", ("id",))


# --- SQLite ----------------------------------------------------------------------------------


def _sqlite_keys(keys: dict[str, tuple[str, ...]]) -> None:
    with warnings.catch_warnings():
        # Batch mode copies the table; the copy's column flags still name the old key.
        warnings.filterwarnings("ignore", message=".*specifies columns.*as primary_key")
        for table, columns in keys.items():
            with op.batch_alter_table(table, recreate="always") as batch:
                batch.create_primary_key(f"{table}_pkey", list(columns))


# --- PostgreSQL ------------------------------------------------------------------------------


def _sql(statement: str, **params: object) -> sa.CursorResult:
    return op.get_bind().execute(sa.text(statement), params)


def _columns(table: str) -> str:
    names = _sql(
        "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass)"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        t=table,
    ).scalars()
    return ", ".join(f'"{name}"' for name in names)


def _secondary_indexes(table: str) -> list[str]:
    """CREATE INDEX statements of the table's indexes other than its primary key."""
    rows = _sql(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " WHERE i.indrelid = CAST(:t AS regclass) AND NOT i.indisprimary ORDER BY i.indexrelid",
        t=table,
    ).scalars()
    return [row.replace(" ON ONLY ", " ON ") for row in rows]


def _set_primary_key(table: str, columns: tuple[str, ...]) -> None:
    _sql(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_pkey")
    quoted = ", ".join(f'"{c}"' for c in columns)
    _sql(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({quoted})")


def _bound(day: date) -> str:
    # An explicit +00 offset: the bound is a UTC instant whatever the session TimeZone is.
    return f"'{day.isoformat()} 00:00:00+00'"


def _days_with_rows(table: str, first: date, last: date) -> set[date]:
    return set(
        _sql(
            f"SELECT DISTINCT CAST(timezone('UTC', timestamp) AS date) FROM {table}"
            " WHERE timestamp >= CAST(:lo AS timestamptz) AND timestamp < CAST(:hi AS timestamptz)",
            lo=f"{first.isoformat()} 00:00:00+00",
            hi=f"{(last + timedelta(days=1)).isoformat()} 00:00:00+00",
        ).scalars()
    )


def _partition(table: str) -> None:
    old = f"{table}_unpartitioned"
    indexes = _secondary_indexes(table)
    columns = _columns(table)
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=BACKFILL_DAYS), today + timedelta(days=PREMAKE_DAYS)
    days = _days_with_rows(table, first, last)
    days.update(today + timedelta(days=n) for n in range(PREMAKE_DAYS + 1))

    _sql(f"ALTER TABLE {table} RENAME TO {old}")
    _sql(f"ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey")
    _sql(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
        f" INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (timestamp)"
    )
    _sql(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    for day in sorted(days):
        name = f"{table}_p{day:%Y%m%d}"
        bounds = f"FOR VALUES FROM ({_bound(day)}) TO ({_bound(day + timedelta(days=1))})"
        if table != "logs":
            _sql(f"CREATE TABLE {name} PARTITION OF {table} {bounds}")
            continue
        _sql(f"CREATE TABLE {name} PARTITION OF {table} {bounds} PARTITION BY LIST (level)")
        for level in LEVELS:
            _sql(f"CREATE TABLE {name}_{level} PARTITION OF {name} FOR VALUES IN ('{level}')")
        _sql(f"CREATE TABLE {name}_other PARTITION OF {name} DEFAULT")
    _sql(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {old}")
    _sql(f"DROP TABLE {old}")
    _set_primary_key(table, NEW_KEYS[table])
    for statement in indexes:
        _sql(statement)
    _sql(f"ANALYZE {table}")


def _unpartition(table: str) -> None:
    old = f"{table}_partitioned"
    indexes = _secondary_indexes(table)
    columns = _columns(table)
    _sql(f"ALTER TABLE {table} RENAME TO {old}")
    _sql(f"ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey")
    _sql(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
        f" INCLUDING STORAGE INCLUDING COMMENTS)"
    )
    _sql(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {old}")
    _sql(f"DROP TABLE {old}")
    _sql(f'ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ("id")')
    for statement in indexes:
        _sql(statement)
