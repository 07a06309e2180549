"""Retention (SPEC §13): remove rows older than their table's (or log level's) period.

One rule on both databases, so they keep the same rows: a row goes once its whole UTC day is
older than ``now - period``, i.e. rows before the *cutoff* ``midnight UTC of (now - period)``
are removed. PostgreSQL removes whole day partitions (and, for logs, level leaves) with DROP,
and deletes only inside the small DEFAULT partitions (rows of days without a partition) and
the per-day ``other`` leaf of logs. SQLite deletes in bounded batches (``batch_rows`` per
transaction, a pause between them, so the writer never waits long) and then gives the freed
pages back with ``PRAGMA incremental_vacuum``. ``user_properties`` are kept.

Rollup tables are not partitioned: their expired buckets are deleted in the same bounded
batches. They are registered as :class:`RollupRetention` rows in ``ROLLUP_TABLES``: hourly
rows expire under ``rollups.hour``, daily and longer rows (and sessions, with their hour
partials) under ``rollups.day``.
A bucket goes once it *ends* before the cutoff, so a week or month is never cut short. Dropping
raw rows never touches a rollup (the rollup round freezes buckets older than their raw tables'
cutoff, see processor.analytics.rollup).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from processor.settings import LOG_LEVELS
from processor.storage import partitions as parts
from processor.storage.partitions import day_start, utc_day
from processor.storage.schema import RAW_TABLES

log = structlog.get_logger(__name__)

BATCH_ROWS = 5000
BATCH_PAUSE_SECONDS = 0.05  # lets a waiting writer in between two delete batches (SQLite)
VACUUM_PAGES = 2000  # pages freed per incremental_vacuum step (SQLite)
KEPT = ("user_properties",)
DROP_LOCK_TIMEOUT = "200ms"
DROP_ATTEMPTS = 5
LOCK_NOT_AVAILABLE = "55P03"


HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@dataclass(frozen=True)
class RollupRetention:
    """One rollup table's expiry: rows whose ``period_column`` equals ``period_value`` (every
    row when the column is None) whose bucket, ``time_column`` + ``length``, ends at or
    before the cutoff of ``target`` (``rollups.hour`` or ``rollups.day``) are deleted.
    ``dates``: the time column is a DATE (compared as a date on SQLite, where it is text)."""

    table: str
    period_column: str | None
    period_value: str | None
    time_column: str
    target: str
    length: timedelta = timedelta(0)
    dates: bool = False
    # More SQL the expired rows must match; ``:cutoff`` is the cutoff instant itself.
    also: str | None = None


# Every rollup table of SPEC §10 that grows with time. Hourly rows under rollups.hour; daily,
# weekly and monthly rows and sessions (one row per visit, read as daily history) under
# rollups.day. A month counts as 31 days, so a short month is kept up to 3 days longer.
# endpoint_day_users (the day user sets day rows count) go with their day's raw rows, under
# endpoint_usage: the day is frozen from then on and its set is never read again (so do
# endpoint_hour_users an open hour leaves behind, when no round closed it). The parts
# and sets feature and user day rows are built from likewise, under feature_usage and
# user_activity (a user's day is frozen once any of its three raw tables' cutoff passes it).
# Not here: dashboard_metrics (current values only), funnels (definitions) and
# rollup_invalidations (a queue each round empties).
ROLLUP_TABLES: list[RollupRetention] = [
    RollupRetention("endpoint_stats", "period", "hour", "bucket_start", "rollups.hour", HOUR),
    RollupRetention("endpoint_stats", "period", "day", "bucket_start", "rollups.day", DAY),
    RollupRetention(
        "metric_aggregates", "period_type", "hourly", "period_start", "rollups.hour", HOUR
    ),
    RollupRetention(
        "metric_aggregates", "period_type", "daily", "period_start", "rollups.day", DAY
    ),
    RollupRetention(
        "metric_aggregates", "period_type", "weekly", "period_start", "rollups.day", 7 * DAY
    ),
    RollupRetention(
        "metric_aggregates", "period_type", "monthly", "period_start", "rollups.day", 31 * DAY
    ),
    RollupRetention("feature_usage_daily", None, None, "date", "rollups.day", DAY, dates=True),
    RollupRetention("user_activity_daily", None, None, "date", "rollups.day", DAY, dates=True),
    RollupRetention("sessions", None, None, "ended_at", "rollups.day"),
    # A session's hour partials go with the session row (which they rebuild when a late row
    # comes): an ended hour whose session is expired too, or has no row (logs only).
    RollupRetention(
        "session_hours",
        None,
        None,
        "hour",
        "rollups.day",
        HOUR,
        also="NOT EXISTS (SELECT 1 FROM sessions s WHERE s.project_id = session_hours.project_id"
        " AND s.session_id = session_hours.session_id AND s.ended_at >= :cutoff)",
    ),
    RollupRetention("endpoint_day_users", None, None, "day", "endpoint_usage", DAY, dates=True),
    RollupRetention("endpoint_hour_users", None, None, "hour", "endpoint_usage", HOUR),
    RollupRetention("feature_hour_parts", None, None, "bucket_start", "feature_usage", HOUR),
    RollupRetention("feature_day_users", None, None, "day", "feature_usage", DAY, dates=True),
    RollupRetention("user_hour_parts", None, None, "bucket_start", "user_activity", HOUR),
    RollupRetention("user_day_sessions", None, None, "day", "user_activity", DAY, dates=True),
]


@dataclass(frozen=True)
class Run:
    """How one retention run goes: ``dry_run`` only counts; ``stop`` (set at shutdown) ends
    batched deletes between two batches."""

    dry_run: bool = False
    batch_rows: int = BATCH_ROWS
    stop: threading.Event | None = None

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()


@dataclass
class TableResult:
    table: str
    rows: int = 0
    partitions: int = 0
    kept: bool = False

    def line(self, postgres: bool) -> str:
        if self.kept:
            return f"{self.table} kept"
        tail = f" partitions={self.partitions}" if postgres else ""
        return f"{self.table} rows={self.rows}{tail}"


def cutoff(period: timedelta | None, now: datetime) -> datetime | None:
    """Rows before this instant are expired; None when kept forever."""
    if period is None:
        return None
    return day_start(utc_day(now - period))


# A condition is (SQL, params) over one table's rows; the level conditions of logs are ORed.
Condition = tuple[str, dict[str, Any]]


def raw_condition(
    table: str, policy: Mapping[str, timedelta | None], now: datetime, sqlite: bool
) -> Condition | None:
    """Which rows of a raw table are expired, per table or per log level."""

    def instant(moment: datetime) -> Any:
        # SQLite stores UTC text "YYYY-MM-DD HH:MM:SS.ffffff", so text order is time order.
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else moment

    if table != "logs":
        cut = cutoff(policy[table], now)
        return None if cut is None else ("timestamp < :cut", {"cut": instant(cut)})
    clauses, params = [], {}
    for level in LOG_LEVELS:
        cut = cutoff(policy[f"logs.{level}"], now)
        if cut is not None:
            clauses.append(f"(level = :l_{level} AND timestamp < :c_{level})")
            params[f"l_{level}"], params[f"c_{level}"] = level, instant(cut)
    # A level outside the six (none is routed today) keeps the longest period.
    periods = [policy[f"logs.{level}"] for level in LOG_LEVELS]
    if None not in periods:
        cut = cutoff(max(p for p in periods if p is not None), now)
        assert cut is not None
        levels = ", ".join(f"'{lv}'" for lv in LOG_LEVELS)
        clauses.append(f"(level NOT IN ({levels}) AND timestamp < :c_other)")
        params["c_other"] = instant(cut)
    return (" OR ".join(clauses), params) if clauses else None


def rollup_condition(
    spec: RollupRetention, policy: Mapping[str, timedelta | None], now: datetime, sqlite: bool
) -> Condition | None:
    cut = cutoff(policy[spec.target], now)
    if cut is None:
        return None
    # A bucket [start, start + length) has ended by the cutoff when start <= cut - length; an
    # instant (length 0) goes when it is before the cutoff, as raw rows do.
    last = cut - spec.length
    value: Any
    if spec.dates:
        value = last.date().isoformat() if sqlite else last.date()
    else:
        value = last.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else last
    op = "<=" if spec.length else "<"
    sql, params = f'"{spec.time_column}" {op} :cut', {"cut": value}
    if spec.period_column is not None:
        sql += f' AND "{spec.period_column}" = :period'
        params["period"] = spec.period_value
    if spec.also is not None:
        sql += f" AND {spec.also}"
        params["cutoff"] = cut.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else cut
    return sql, params


def count(engine: Engine, table: str, condition: Condition | None = None) -> int:
    where = f" WHERE {condition[0]}" if condition else ""
    params = condition[1] if condition else {}
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}{where}"), params).scalar_one())


def delete_batched(engine: Engine, table: str, condition: Condition, run: Run) -> int:
    """Delete matching rows, at most ``run.batch_rows`` per transaction."""
    batch_rows = run.batch_rows
    key = "ctid" if engine.dialect.name == "postgresql" else "rowid"
    statement = text(
        f"DELETE FROM {table} WHERE {key} IN"
        f" (SELECT {key} FROM {table} WHERE {condition[0]} LIMIT {int(batch_rows)})"
    )
    removed = 0
    while True:
        with engine.begin() as conn:
            done = int(conn.execute(statement, condition[1]).rowcount)
        removed += done
        if done < batch_rows or run.stopping:
            return removed
        time.sleep(BATCH_PAUSE_SECONDS)


def expire(engine: Engine, table: str, condition: Condition | None, run: Run) -> int:
    if condition is None:
        return 0
    if run.dry_run:
        return count(engine, table, condition)
    return delete_batched(engine, table, condition, run)


def drop(engine: Engine, partition: str, dry_run: bool) -> tuple[int, int]:
    """(rows, leaf partitions) of a partition, dropped unless ``dry_run``.

    DROP takes an ACCESS EXCLUSIVE lock on the parent, which inserts queue behind: it waits
    at most DROP_LOCK_TIMEOUT per attempt, and a partition still locked is left for the
    next run.
    """
    for attempt in range(DROP_ATTEMPTS):
        try:
            with engine.begin() as conn:
                if not dry_run:
                    parts.lock_partitions(conn, lock_timeout=DROP_LOCK_TIMEOUT)
                leaves = parts.children(conn, partition) or [partition]
                rows = int(conn.execute(text(f"SELECT count(*) FROM {partition}")).scalar_one())
                if not dry_run:
                    conn.execute(text(f"DROP TABLE {partition}"))
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            time.sleep(0.5 * (attempt + 1))
            continue
        if not dry_run:
            log.info("partition_dropped", partition=partition, rows=rows)
        return rows, len(leaves)
    log.warning("partition_not_dropped", partition=partition, reason="lock timeout")
    return 0, 0


def _postgres_table(
    engine: Engine,
    table: str,
    policy: Mapping[str, timedelta | None],
    now: datetime,
    run: Run,
) -> TableResult:
    result = TableResult(table)
    condition = raw_condition(table, policy, now, sqlite=False)
    with engine.connect() as conn:
        partitioned = parts.is_partitioned(conn, table)
        days = parts.day_partitions(conn, table) if partitioned else {}
        default = parts.default_partition(conn, table) if partitioned else None
    dry_run = run.dry_run
    if not partitioned:  # not migrated to partitions (yet): bounded deletes
        result.rows = expire(engine, table, condition, run)
        return result
    if table == "logs":
        level_cut = {lv: cutoff(policy[f"logs.{lv}"], now) for lv in LOG_LEVELS}
    for day, name in sorted(days.items()):
        if table != "logs":
            cut = cutoff(policy[table], now)
            if cut is not None and day_start(day) < cut:
                rows, leaves = drop(engine, name, dry_run)
                result.rows += rows
                result.partitions += leaves
            continue
        expired = {lv for lv, cut in level_cut.items() if cut is not None and day_start(day) < cut}
        if not expired:
            continue
        with engine.connect() as conn:
            leaves_now = set(parts.children(conn, name))
        if expired == set(LOG_LEVELS):  # every level is past: the whole day goes
            rows, leaves = drop(engine, name, dry_run)
            result.rows += rows
            result.partitions += leaves
            continue
        if not leaves_now:  # a day not divided by level: bounded deletes inside it
            result.rows += expire(engine, name, condition, run)
            continue
        for level in sorted(expired):
            if f"{name}_{level}" in leaves_now:
                rows, leaves = drop(engine, f"{name}_{level}", dry_run)
                result.rows += rows
                result.partitions += leaves
        if f"{name}_other" in leaves_now:
            result.rows += expire(engine, f"{name}_other", condition, run)
    if default is not None:
        result.rows += expire(engine, default, condition, run)
    return result


def incremental_vacuum(engine: Engine) -> int:
    """Give freed SQLite pages back to the file system, a bounded step at a time."""
    freed = 0
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        if raw.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            log.warning(
                "sqlite_auto_vacuum_off",
                hint="deleted rows' pages are reused but the file does not shrink;"
                " run VACUUM once (offline) to switch to auto_vacuum=INCREMENTAL",
            )
            return 0
        while (before := raw.execute("PRAGMA freelist_count").fetchone()[0]) > 0:
            # Each step of this statement frees one page, and Python's execute() takes only
            # one step for a statement without result columns; executescript() runs it out.
            raw.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
            after = raw.execute("PRAGMA freelist_count").fetchone()[0]
            freed += before - after
            if after >= before:
                break
            time.sleep(BATCH_PAUSE_SECONDS)
    return freed


def run_retention(
    engine: Engine,
    policy: Mapping[str, timedelta | None],
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    rollups: Sequence[RollupRetention] | None = None,
    batch_rows: int = BATCH_ROWS,
    stop: threading.Event | None = None,
) -> list[TableResult]:
    """Apply (or, with ``dry_run``, only measure) retention; one result per table."""
    now = now or datetime.now(UTC)
    run = Run(dry_run, batch_rows, stop)
    postgres = engine.dialect.name == "postgresql"
    results: list[TableResult] = []
    for table in RAW_TABLES:
        if postgres:
            results.append(_postgres_table(engine, table, policy, now, run))
        else:
            condition = raw_condition(table, policy, now, sqlite=True)
            results.append(TableResult(table, rows=expire(engine, table, condition, run)))
    results.extend(TableResult(table, kept=True) for table in KEPT)
    for spec in ROLLUP_TABLES if rollups is None else rollups:
        condition = rollup_condition(spec, policy, now, sqlite=not postgres)
        rows = expire(engine, spec.table, condition, run)
        merged = next((r for r in results if r.table == spec.table), None)
        if merged is None:
            results.append(TableResult(spec.table, rows=rows))
        else:
            merged.rows += rows
    if not dry_run and not postgres and any(r.rows for r in results):
        incremental_vacuum(engine)
    if not dry_run:
        log.info("retention_done", **{r.table: r.rows for r in results if not r.kept})
    return results


def report_lines(results: Iterable[TableResult], postgres: bool) -> list[str]:
    return [r.line(postgres) for r in results]
