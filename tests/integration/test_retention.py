"""Retention per table and per log level (SPEC §13), the same on PostgreSQL and SQLite."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from processor.cli import main
from processor.settings import LOG_LEVELS, RETENTION_DEFAULTS, parse_retention
from processor.storage import partitions
from processor.storage.retention import RollupRetention, report_lines, run_retention
from tests.helpers.lifecycle_rows import add_rows, count, days_ago

AGES = (10, 40, 100, 400)
RAW = ("endpoint_usage", "feature_usage", "user_activity", "performance_metrics")
# Which of the ages each target keeps with the default policy.
KEPT_AGES = {
    "endpoint_usage": (10, 40, 100),
    "feature_usage": (10, 40, 100),
    "user_activity": (10, 40, 100),
    "performance_metrics": (10, 40),
    "logs.trace": (),
    "logs.debug": (),
    "logs.info": (10,),
    "logs.warning": (10, 40),
    "logs.error": (10, 40),
    "logs.fatal": (10, 40),
}
PER_AGE = 2


def populate(db, now: datetime) -> None:
    """PER_AGE rows at each age in every table and log level; on PostgreSQL the days get
    partitions (some of the oldest rows stay in the DEFAULT partition, as strays would)."""
    days = {(now - timedelta(days=age)).date() for age in AGES}
    if db.is_postgres:
        for table in (*RAW, "logs"):
            for day in sorted(days):
                # Fresh: an earlier test's retention may have dropped leaves of these days.
                with db.engine.begin() as conn:
                    name = partitions.partition_name(table, day)
                    conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
                if table == "logs" or day != min(days):
                    partitions.create_day(db.engine, table, day)
    times = [days_ago(age, now) for age in AGES for _ in range(PER_AGE)]
    for table in RAW:
        add_rows(db.engine, table, times)
    for level in LOG_LEVELS:
        add_rows(db.engine, "logs", times, level=level)
    add_rows(db.engine, "user_properties", times)


def expected_removed() -> dict[str, int]:
    removed = {t: PER_AGE * (len(AGES) - len(KEPT_AGES[t])) for t in RAW}
    removed["logs"] = sum(PER_AGE * (len(AGES) - len(KEPT_AGES[f"logs.{lv}"])) for lv in LOG_LEVELS)
    return removed


def test_default_policy_keeps_the_same_rows_on_both_databases(db):
    now = datetime.now(UTC)
    populate(db, now)
    results = {r.table: r for r in run_retention(db.engine, RETENTION_DEFAULTS, now=now)}
    assert {t: results[t].rows for t in (*RAW, "logs")} == expected_removed()
    assert results["user_properties"].kept
    for table in RAW:
        assert count(db.engine, table) == PER_AGE * len(KEPT_AGES[table]), table
    for level in LOG_LEVELS:
        assert count(db.engine, "logs", level=level) == PER_AGE * len(KEPT_AGES[f"logs.{level}"])
    assert count(db.engine, "user_properties") == PER_AGE * len(AGES)
    if db.is_postgres:
        # Whole partitions went: the 400-day rows of the raw tables sat in the DEFAULT
        # partition; performance_metrics lost its 100-day partition; logs lost leaves.
        assert results["endpoint_usage"].partitions == 0
        assert results["performance_metrics"].partitions == 1
        # day 10: trace+debug leaves; day 40: +info; days 100 and 400: 6 levels + other.
        assert results["logs"].partitions == 2 + 3 + 7 + 7
        with db.engine.connect() as conn:
            left = partitions.day_partitions(conn, "logs")
        assert (now - timedelta(days=100)).date() not in left


def test_dry_run_prints_what_the_real_run_then_removes(db, database_url, capsys, monkeypatch):
    populate(db, datetime.now(UTC))
    capsys.readouterr()  # populate's own log lines, when an earlier test sent logs to stdout
    monkeypatch.setenv("ANALYTICS_DATABASE_URL", database_url)
    assert main(["retention", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    before = count(db.engine, "logs")
    assert before == PER_AGE * len(AGES) * len(LOG_LEVELS)
    assert main(["retention"]) == 0
    real = capsys.readouterr().out
    assert dry == real
    lines = real.splitlines()
    assert lines[0].startswith("endpoint_usage rows=2")
    assert f"logs rows={expected_removed()['logs']}" in real
    assert "user_properties kept" in lines
    assert ("partitions=" in lines[0]) == db.is_postgres
    assert main(["retention", "--dry-run"]) == 0
    again = capsys.readouterr().out
    assert all(" rows=0" in line for line in again.splitlines() if "kept" not in line)


def test_configured_retention_overrides_the_defaults(db):
    now = datetime.now(UTC)
    populate(db, now)
    policy = parse_retention("endpoint_usage=30d,logs=forever,performance_metrics=forever")
    results = {r.table: r.rows for r in run_retention(db.engine, policy, now=now)}
    assert results["endpoint_usage"] == PER_AGE * 3
    assert results["logs"] == results["performance_metrics"] == 0
    assert count(db.engine, "endpoint_usage") == PER_AGE


def test_batched_deletes_remove_every_expired_row(db):
    now = datetime.now(UTC)
    add_rows(db.engine, "feature_usage", [days_ago(400, now)] * 23 + [days_ago(1, now)] * 2)
    results = run_retention(db.engine, RETENTION_DEFAULTS, now=now, batch_rows=5)
    assert next(r for r in results if r.table == "feature_usage").rows == 23
    assert count(db.engine, "feature_usage") == 2


def test_rollup_retention_is_table_driven(db):
    """The mechanism on a stand-in table with the rollups' shape (period column, bucket
    time); the real rollup tables are tested in tests/integration/analytics."""
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS rollup_standin"))
        conn.execute(
            text(
                "CREATE TABLE rollup_standin (project_id integer, period varchar(8),"
                " bucket_start timestamp with time zone)"
            )
        )
    now = datetime.now(UTC)
    stamp = (lambda t: t.strftime("%Y-%m-%d %H:%M:%S.%f")) if not db.is_postgres else (lambda t: t)
    with db.engine.begin() as conn:
        for period, age in (("hour", 10), ("hour", 100), ("day", 100), ("day", 2000)):
            conn.execute(
                text("INSERT INTO rollup_standin VALUES (1, :p, :t)"),
                {"p": period, "t": stamp(days_ago(age, now))},
            )
    specs = [
        RollupRetention("rollup_standin", "period", "hour", "bucket_start", "rollups.hour"),
        RollupRetention("rollup_standin", "period", "day", "bucket_start", "rollups.day"),
    ]
    try:
        dry = run_retention(db.engine, RETENTION_DEFAULTS, now=now, rollups=specs, dry_run=True)
        real = run_retention(db.engine, RETENTION_DEFAULTS, now=now, rollups=specs)
        assert report_lines(dry, db.is_postgres) == report_lines(real, db.is_postgres)
        assert next(r for r in real if r.table == "rollup_standin").rows == 2
        with db.engine.connect() as conn:
            left = conn.execute(text("SELECT period FROM rollup_standin ORDER BY 1")).scalars()
            assert list(left) == ["day", "hour"]
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE rollup_standin"))


def test_sqlite_gives_freed_pages_back(sqlite_url):
    from processor.storage.writer import create_db_engine

    engine = create_db_engine(sqlite_url)
    path = engine.url.database
    assert path
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM logs"))
        add_rows(engine, "logs", [days_ago(400)] * 3000, message="x" * 2000)
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
            pages = raw.execute("PRAGMA page_count").fetchone()[0]
        run_retention(engine, RETENTION_DEFAULTS)
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA freelist_count").fetchone()[0] == 0
            assert raw.execute("PRAGMA page_count").fetchone()[0] < pages - 1000
    finally:
        engine.dispose()


@pytest.mark.parametrize(("age", "removed"), [(0.5, 0), (1.4, 0), (1.6, 1)])
def test_a_row_goes_once_its_whole_day_is_past(db, age, removed):
    """Day granularity on both databases: with 1d retention at noon, a row 1.4 days old (early
    yesterday) is kept, one 1.6 days old (the day before) goes."""
    now = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
    add_rows(db.engine, "user_activity", [now - timedelta(days=age)])
    policy = parse_retention("user_activity=1d")
    results = run_retention(db.engine, policy, now=now)
    assert next(r for r in results if r.table == "user_activity").rows == removed
