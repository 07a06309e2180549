"""Daily partitions of the raw event tables on PostgreSQL (SPEC §13), plain PostgreSQL DDL.

Layout (made by migration 0003): ``{table}_pYYYYMMDD`` holds one UTC day, ``{table}_default``
catches rows of days without a partition. A day of ``logs`` is itself LIST-partitioned by
level: ``logs_pYYYYMMDD_{level}`` per level plus ``logs_pYYYYMMDD_other`` (DEFAULT), so each
level's retention drops leaves.

A new day is built as a standalone table and then ATTACHed, which takes only SHARE UPDATE
EXCLUSIVE on the parent, so ingestion keeps inserting. Rows of that day already in the DEFAULT
partition are moved in, in the same transaction, before the ATTACH, so a filled default
partition never blocks creating partitions. All partition DDL runs under one transaction-level
advisory lock, so racing creators (workers, replicas, the CLI) all succeed.

With ``logs_by_level=False`` (setting LOGS_PARTITION_BY_LEVEL=false, for Citus, which does not
distribute multi-level partitioned tables) a logs day is one plain partition, and upkeep turns
existing level-partitioned days into plain ones, rows kept; retention then removes expired
levels inside a logs day by bounded batched deletes.

Which days get partitions: every day from today to ``premake_days`` ahead (whether or not data
arrives), and any day that has rows in the DEFAULT partition from the oldest day retention
still keeps (at most ``BACKFILL_LIMIT`` back when retention is forever) up to ``premake_days``
ahead. Older rows are deleted from the DEFAULT partition by the next retention run; rows
further ahead (a client's year-2500 clock) stay there, reported, until their day comes near.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from processor.ops import self_metrics
from processor.settings import LOG_LEVELS
from processor.storage.schema import RAW_TABLES

log = structlog.get_logger(__name__)

# Advisory lock key serialising partition DDL (an arbitrary constant: "tp-parts").
PARTITION_LOCK = 0x74702D7061727473
BACKFILL_LIMIT = timedelta(days=5 * 365)
# How long partition DDL waits for a lock before giving up (and retrying next run), so
# inserts queued behind it wait at most this long.
DDL_LOCK_TIMEOUT = "2s"
_DAY_NAME = re.compile(r"_p(\d{8})$")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def bound(day: date) -> str:
    # An explicit +00 offset: a UTC instant whatever the session's TimeZone.
    return f"'{day.isoformat()} 00:00:00+00'"


def is_partitioned(conn: Connection, table: str) -> bool:
    return bool(
        conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table"
                " WHERE partrelid = to_regclass(:t))"
            ),
            {"t": table},
        ).scalar_one()
    )


def children(conn: Connection, parent: str) -> list[str]:
    return list(
        conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = CAST(:t AS regclass) ORDER BY c.relname"
            ),
            {"t": parent},
        ).scalars()
    )


def day_partitions(conn: Connection, table: str) -> dict[date, str]:
    """The table's attached day partitions, by day."""
    days: dict[date, str] = {}
    for name in children(conn, table):
        match = _DAY_NAME.search(name)
        if match and name == partition_name(table, datetime.strptime(match[1], "%Y%m%d").date()):
            days[datetime.strptime(match[1], "%Y%m%d").date()] = name
    return days


def default_partition(conn: Connection, table: str) -> str | None:
    return conn.execute(
        text(
            "SELECT CAST(partdefid AS regclass)::text FROM pg_partitioned_table"
            " WHERE partrelid = CAST(:t AS regclass) AND partdefid <> 0"
        ),
        {"t": table},
    ).scalar_one_or_none()


def column_list(conn: Connection, table: str) -> str:
    names = conn.execute(
        text(
            "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass)"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
        {"t": table},
    ).scalars()
    return ", ".join(f'"{n}"' for n in names)


def lock_partitions(conn: Connection, lock_timeout: str = DDL_LOCK_TIMEOUT) -> None:
    """Serialise partition DDL until the end of this transaction."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PARTITION_LOCK})
    conn.execute(text(f"SET LOCAL lock_timeout = '{lock_timeout}'"))


def default_days(conn: Connection, table: str) -> dict[date, int]:
    """Rows in the DEFAULT partition per UTC day."""
    default = default_partition(conn, table)
    if default is None:
        return {}
    rows = conn.execute(
        text(
            f"SELECT CAST(timezone('UTC', timestamp) AS date) AS day, count(*) FROM {default}"
            " GROUP BY 1"
        )
    ).all()
    return {day: int(count) for day, count in rows}


def create_day(engine: Engine, table: str, day: date, *, logs_by_level: bool = True) -> int | None:
    """Create ``table``'s partition for ``day`` (moving that day's rows out of the DEFAULT
    partition into it). Returns the rows moved, or None when it already existed."""
    name = partition_name(table, day)
    lo, hi = bound(day), bound(day + timedelta(days=1))
    with engine.begin() as conn:
        lock_partitions(conn)
        if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None:
            return None
        like = f"LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE"
        if table == "logs" and logs_by_level:
            conn.execute(text(f"CREATE TABLE {name} ({like}) PARTITION BY LIST (level)"))
            for level in LOG_LEVELS:
                conn.execute(
                    text(
                        f"CREATE TABLE {name}_{level} PARTITION OF {name} FOR VALUES IN ('{level}')"
                    )
                )
            conn.execute(text(f"CREATE TABLE {name}_other PARTITION OF {name} DEFAULT"))
        else:
            conn.execute(text(f"CREATE TABLE {name} ({like})"))
        moved = 0
        default = default_partition(conn, table)
        if default is not None:
            cols = column_list(conn, table)
            moved = conn.execute(
                text(
                    f"WITH moved AS (DELETE FROM {default} WHERE timestamp >= {lo}"
                    f" AND timestamp < {hi} RETURNING {cols})"
                    f" INSERT INTO {name} ({cols}) SELECT {cols} FROM moved"
                )
            ).rowcount
        conn.execute(
            text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")
        )
    log.info("partition_created", table=table, partition=name, rows_moved=moved)
    return int(moved)


def flatten_logs_day(engine: Engine, day: date) -> int | None:
    """Turn the level-partitioned logs partition of ``day`` into a single-level one, rows kept
    (copied in one transaction that holds the logs table's lock: instant for the empty days
    made ahead, as long as the copy for days with data). Returns the rows copied, or None when
    the day is not level-partitioned."""
    name = partition_name("logs", day)
    lo, hi = bound(day), bound(day + timedelta(days=1))
    with engine.begin() as conn:
        lock_partitions(conn)
        if not is_partitioned(conn, name):
            return None
        like = "LIKE logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE"
        conn.execute(text(f"CREATE TABLE {name}_flat ({like})"))
        conn.execute(text(f"ALTER TABLE logs DETACH PARTITION {name}"))
        cols = column_list(conn, "logs")
        copied = conn.execute(
            text(f"INSERT INTO {name}_flat ({cols}) SELECT {cols} FROM {name}")
        ).rowcount
        conn.execute(text(f"DROP TABLE {name}"))
        conn.execute(text(f"ALTER TABLE {name}_flat RENAME TO {name}"))
        conn.execute(
            text(f"ALTER TABLE logs ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")
        )
    log.info("logs_day_flattened", partition=name, rows=copied)
    return int(copied)


def oldest_kept_day(table: str, policy: Mapping[str, timedelta | None], now: datetime) -> date:
    """The oldest day whose rows ``table``'s retention still keeps (for logs, any level)."""
    if table == "logs":
        periods = [policy[f"logs.{level}"] for level in LOG_LEVELS]
    else:
        periods = [policy[table]]
    longest = BACKFILL_LIMIT if None in periods else max(p for p in periods if p is not None)
    return utc_day(now - min(longest, BACKFILL_LIMIT))


@dataclass
class PartitionReport:
    created: list[str] = field(default_factory=list)
    rows_moved: int = 0
    flattened: list[str] = field(default_factory=list)
    default_rows: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def ensure_partitions(
    engine: Engine,
    *,
    premake_days: int,
    policy: Mapping[str, timedelta | None],
    now: datetime | None = None,
    logs_by_level: bool = True,
) -> PartitionReport:
    """Partitions from today to ``premake_days`` ahead, and for days stranded in the DEFAULT
    partition (see the module doc); reports what remains there. PostgreSQL only."""
    now = now or datetime.now(UTC)
    today = utc_day(now)
    horizon = today + timedelta(days=premake_days)
    report = PartitionReport()
    for table in RAW_TABLES:
        with engine.connect() as conn:
            if not is_partitioned(conn, table):
                continue
            existing = set(day_partitions(conn, table))
            stranded = default_days(conn, table)
            leveled = (
                sorted(
                    d
                    for d, name in day_partitions(conn, "logs").items()
                    if is_partitioned(conn, name)
                )
                if table == "logs" and not logs_by_level
                else []
            )
        for day in leveled:
            try:
                if flatten_logs_day(engine, day) is not None:
                    report.flattened.append(partition_name(table, day))
            except Exception as exc:  # a lock timeout: the next run tries again
                report.failed.append(partition_name(table, day))
                log.warning(
                    "logs_day_not_flattened",
                    day=day.isoformat(),
                    error=str(exc).splitlines()[0][:200],
                )
        oldest = oldest_kept_day(table, policy, now)
        wanted = {today + timedelta(days=n) for n in range(premake_days + 1)}
        wanted |= {d for d in stranded if oldest <= d <= horizon}
        for day in sorted(wanted - existing):
            try:
                moved = create_day(engine, table, day, logs_by_level=logs_by_level)
            except Exception as exc:  # a lock timeout: the next run tries again
                report.failed.append(partition_name(table, day))
                log.warning(
                    "partition_not_created",
                    table=table,
                    day=day.isoformat(),
                    error=str(exc).splitlines()[0][:200],
                )
                continue
            if moved is not None:
                report.created.append(partition_name(table, day))
                report.rows_moved += moved
        with engine.connect() as conn:
            left = default_days(conn, table)
        report.default_rows[table] = count = sum(left.values())
        self_metrics.DEFAULT_PARTITION_ROWS.labels(table).set(count)
        if count:
            log.warning(
                "default_partition_rows",
                table=table,
                rows=count,
                first_day=min(left).isoformat(),
                last_day=max(left).isoformat(),
                hint="rows outside the partitioned days: retention removes old ones; "
                "future ones move in when their day is within PARTITION_PREMAKE_DAYS",
            )
    return report
