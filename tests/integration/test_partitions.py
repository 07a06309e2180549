"""Daily partitions on PostgreSQL (SPEC §13): layout, pre-creation, UTC bounds, the DEFAULT
partition, racing creators, keys for Citus, forget-user across partitions."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text

from processor.cli import main
from processor.mapping.rows import TABLES
from processor.settings import LOG_LEVELS, RETENTION_DEFAULTS, Settings
from processor.storage import admin, partitions
from processor.storage.retention import run_retention
from tests.helpers.lifecycle_rows import add_rows, count, days_ago

pytestmark = pytest.mark.postgres
RAW = partitions.RAW_TABLES


@pytest.fixture
def pg(postgres_url):
    engine = create_engine(Settings(database_url=postgres_url).sqlalchemy_url)
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
    yield engine
    engine.dispose()


def where(engine, table: str, moment: datetime) -> str:
    """The partition (leaf) a row at ``moment`` is stored in."""
    with engine.connect() as conn:
        return conn.execute(
            text(f"SELECT tableoid::regclass::text FROM {table} WHERE timestamp = :t LIMIT 1"),
            {"t": moment},
        ).scalar_one()


def test_raw_tables_are_partitioned_by_day_with_a_default(pg):
    with pg.connect() as conn:
        for table in RAW:
            key = conn.execute(text(f"SELECT pg_get_partkeydef('{table}'::regclass)")).scalar()
            assert key == 'RANGE ("timestamp")'
            assert partitions.default_partition(conn, table) == f"{table}_default"
        today = datetime.now(UTC).date()
        name = partitions.partition_name("logs", today)
        assert conn.execute(text(f"SELECT pg_get_partkeydef('{name}'::regclass)")).scalar() == (
            "LIST (level)"
        )
        leaves = set(partitions.children(conn, name))
        assert leaves == {f"{name}_{lv}" for lv in (*LOG_LEVELS, "other")}
        assert not partitions.is_partitioned(conn, "user_properties")


def test_partitions_are_made_ahead_on_days_without_data(pg):
    future = datetime.now(UTC) + timedelta(days=40)  # a clock 40 days on: no data there
    report = partitions.ensure_partitions(pg, premake_days=7, policy=RETENTION_DEFAULTS, now=future)
    try:
        with pg.connect() as conn:
            for table in RAW:
                days = partitions.day_partitions(conn, table)
                for n in range(8):
                    assert future.date() + timedelta(days=n) in days, (table, n)
        assert len(report.created) == 8 * len(RAW)
        again = partitions.ensure_partitions(
            pg, premake_days=7, policy=RETENTION_DEFAULTS, now=future
        )
        assert again.created == []
    finally:
        with pg.begin() as conn:
            for name in report.created:
                conn.execute(text(f"DROP TABLE {name}"))


def test_bounds_are_utc_days_whatever_the_session_time_zone(postgres_url, pg):
    url = Settings(database_url=postgres_url).sqlalchemy_url
    kiritimati = create_engine(url, connect_args={"options": "-c TimeZone=Pacific/Kiritimati"})
    day = datetime.now(UTC).date() + timedelta(days=9)  # beyond the premade days
    try:
        assert partitions.create_day(kiritimati, "endpoint_usage", day) == 0
        start = partitions.day_start(day)
        edges = [start - timedelta(microseconds=1), start, start + timedelta(hours=23, minutes=59)]
        add_rows(kiritimati, "endpoint_usage", edges)
        assert where(pg, "endpoint_usage", edges[0]) == "endpoint_usage_default"
        assert where(pg, "endpoint_usage", edges[1]) == partitions.partition_name(
            "endpoint_usage", day
        )
        assert where(pg, "endpoint_usage", edges[2]) == partitions.partition_name(
            "endpoint_usage", day
        )
    finally:
        kiritimati.dispose()
        with pg.begin() as conn:
            conn.execute(text("DELETE FROM endpoint_usage"))
            conn.execute(text(f"DROP TABLE {partitions.partition_name('endpoint_usage', day)}"))


def test_two_runners_racing_for_one_partition_both_succeed(pg):
    day = datetime.now(UTC).date() + timedelta(days=12)
    add_rows(pg, "logs", [partitions.day_start(day) + timedelta(hours=3)] * 5, level="error")
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def create() -> None:
        barrier.wait()
        try:
            outcomes.append(partitions.create_day(pg, "logs", day))
        except Exception as exc:  # pragma: no cover - the failure being tested for
            outcomes.append(exc)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert sorted(outcomes, key=str) == sorted([5, None], key=str)
        name = partitions.partition_name("logs", day)
        assert where(pg, "logs", partitions.day_start(day) + timedelta(hours=3)) == f"{name}_error"
    finally:
        with pg.begin() as conn:
            conn.execute(text("DELETE FROM logs"))
            conn.execute(text(f"DROP TABLE {partitions.partition_name('logs', day)}"))


def gauge(table: str) -> float | None:
    return REGISTRY.get_sample_value("processor_default_partition_rows", {"table": table})


def test_default_partition_rows_are_reported_then_moved_or_expired(pg):
    now = datetime.now(UTC)
    stray_day = (now - timedelta(days=20)).date()  # within retention, no partition yet
    year_2500 = datetime(2500, 1, 1, 12, tzinfo=UTC)
    year_1971 = datetime(1971, 6, 1, 12, tzinfo=UTC)
    recent = partitions.day_start(stray_day) + timedelta(hours=6)
    add_rows(pg, "feature_usage", [year_2500, year_1971, recent, recent])
    assert where(pg, "feature_usage", recent) == "feature_usage_default"
    with structlog.testing.capture_logs() as logs:
        report = partitions.ensure_partitions(pg, premake_days=7, policy=RETENTION_DEFAULTS)
    try:
        assert partitions.partition_name("feature_usage", stray_day) in report.created
        assert where(pg, "feature_usage", recent) == partitions.partition_name(
            "feature_usage", stray_day
        )
        assert report.default_rows["feature_usage"] == 2
        assert gauge("feature_usage") == 2
        warning = next(e for e in logs if e["event"] == "default_partition_rows")
        assert warning["log_level"] == "warning" and warning["table"] == "feature_usage"
        # The 1971 rows are past retention: removed from the DEFAULT partition, never given
        # a partition. The year-2500 row waits there until its day is PREMAKE days away.
        run_retention(pg, RETENTION_DEFAULTS)
        partitions.ensure_partitions(pg, premake_days=7, policy=RETENTION_DEFAULTS)
        assert gauge("feature_usage") == 1
        assert where(pg, "feature_usage", year_2500) == "feature_usage_default"
        assert count(pg, "feature_usage") == 3
    finally:
        with pg.begin() as conn:
            conn.execute(text("DELETE FROM feature_usage"))
            conn.execute(
                text(f"DROP TABLE {partitions.partition_name('feature_usage', stray_day)}")
            )
        partitions.ensure_partitions(pg, premake_days=7, policy=RETENTION_DEFAULTS)


def test_rows_of_a_missing_day_never_block_creating_it(pg):
    """A premade partition is gone (dropped by hand) and its rows fill the DEFAULT partition:
    making the partition moves them, instead of failing on the default's rows."""
    day = datetime.now(UTC).date() + timedelta(days=3)
    name = partitions.partition_name("user_activity", day)
    with pg.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    moments = [partitions.day_start(day) + timedelta(minutes=m) for m in range(50)]
    add_rows(pg, "user_activity", moments)
    report = partitions.ensure_partitions(pg, premake_days=7, policy=RETENTION_DEFAULTS)
    assert name in report.created and report.rows_moved == 50
    assert where(pg, "user_activity", moments[0]) == name
    assert report.default_rows["user_activity"] == 0


def test_forget_user_reaches_every_partition(pg):
    now = datetime.now(UTC)
    partitions.create_day(pg, "logs", (now - timedelta(days=5)).date())
    times = [now, days_ago(5, now), datetime(2500, 1, 1, tzinfo=UTC)]  # two days + default
    for table in RAW:
        add_rows(pg, table, times, user_id="gone")
        add_rows(pg, table, times, user_id="stays")
    add_rows(pg, "user_properties", times[:1], user_id="gone")
    removed = admin.forget_user(pg, "gone")
    rollups = {  # no round ran
        "user_activity_daily": 0,
        "sessions": 0,
        "endpoint_day_users": 0,
        "endpoint_hour_users": 0,
        "feature_day_users": 0,
        "user_hour_parts": 0,
        "user_day_sessions": 0,
        "session_hours": 0,
    }
    assert removed == {**{t: 3 for t in RAW}, "user_properties": 1, **rollups}
    for table in RAW:
        assert count(pg, table, user_id="gone") == 0
        assert count(pg, table, user_id="stays") == 3


def test_every_unique_key_fits_citus_distribution_by_project(pg):
    """Distributed tables (all but the reference tables projects and api_keys) need
    project_id in every unique index, and partitioned ones the partition key too; foreign
    keys may only point at reference tables."""
    reference = {
        "projects",
        "api_keys",
        "analyst_roles",
        "query_secret",
        "rollup_invalidations",
        "alembic_version",
    }
    with pg.connect() as conn:
        uniques = conn.execute(
            text(
                "SELECT t.relname, i.relname, ARRAY(SELECT a.attname FROM pg_attribute a"
                "  WHERE a.attrelid = t.oid AND a.attnum = ANY(x.indkey)), t.relkind"
                " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
                " JOIN pg_class t ON t.oid = x.indrelid"
                " JOIN pg_namespace n ON n.oid = t.relnamespace"
                " WHERE x.indisunique AND n.nspname = current_schema() AND NOT t.relispartition"
            )
        ).all()
        foreign = conn.execute(
            text(
                "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c"
                " WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace"
            )
        ).all()
    checked = {table for table, *_ in uniques if table not in reference}
    assert set(TABLES) <= checked
    for table, index, columns, kind in uniques:
        if table in reference:
            continue
        assert "project_id" in columns, (table, index)
        if kind == "p":  # partitioned
            assert "timestamp" in columns, (table, index)
    for child, parent in foreign:
        assert parent in reference, (child, parent)
        assert child in reference or parent == "projects", (child, parent)


def flat_logs_days(engine) -> dict[str, bool]:
    """Each logs day partition: True when it is single-level (no level leaves)."""
    with engine.connect() as conn:
        return {
            name: not partitions.is_partitioned(conn, name)
            for name in partitions.day_partitions(conn, "logs").values()
        }


def test_single_level_logs_days_for_citus_keep_rows_and_per_level_retention(pg):
    """LOGS_PARTITION_BY_LEVEL=false (Citus): upkeep turns the level-partitioned logs days
    into plain day partitions with their rows, makes new days plain, and retention still
    removes only the expired levels (bounded deletes inside the day)."""
    now = datetime.now(UTC)
    old = (now - timedelta(days=10)).date()  # debug (7 days) expired, info and error kept
    partitions.create_day(pg, "logs", old)
    moment = partitions.day_start(old) + timedelta(hours=6)
    for level in ("debug", "info", "error"):
        add_rows(pg, "logs", [moment, moment], level=level)
    ahead = partitions.partition_name("logs", now.date() + timedelta(days=7))
    with pg.begin() as conn:
        conn.execute(text(f"DROP TABLE {ahead}"))
    try:
        report = partitions.ensure_partitions(
            pg, premake_days=7, policy=RETENTION_DEFAULTS, logs_by_level=False
        )
        assert partitions.partition_name("logs", old) in report.flattened
        assert ahead in report.created
        assert all(flat_logs_days(pg).values())
        assert where(pg, "logs", moment) == partitions.partition_name("logs", old)
        assert count(pg, "logs") == 6
        assert report.failed == []

        run_retention(pg, RETENTION_DEFAULTS)
        assert count(pg, "logs", level="debug") == 0
        assert count(pg, "logs", level="info") == count(pg, "logs", level="error") == 2
        again = partitions.ensure_partitions(
            pg, premake_days=7, policy=RETENTION_DEFAULTS, logs_by_level=False
        )
        assert again.flattened == [] and again.created == []
    finally:
        with pg.begin() as conn:
            conn.execute(text("DELETE FROM logs"))
            for name, flat in flat_logs_days(pg).items():
                if flat:
                    conn.execute(text(f"DROP TABLE {name}"))
        partitions.ensure_partitions(pg, premake_days=7, policy=RETENTION_DEFAULTS)
    assert not any(flat_logs_days(pg).values())


def test_partitions_command_makes_the_missing_days(postgres_url, pg, capsys):
    name = partitions.partition_name("endpoint_usage", datetime.now(UTC).date() + timedelta(days=7))
    with pg.begin() as conn:
        conn.execute(text(f"DROP TABLE {name}"))
    assert main(["partitions", "--database-url", postgres_url]) == 0
    assert capsys.readouterr().out.startswith("partitions created: 1, rows moved: 0")
    with pg.connect() as conn:
        assert name in partitions.day_partitions(conn, "endpoint_usage").values()


def test_partitions_command_refuses_sqlite(sqlite_url, capsys):
    assert main(["partitions", "--database-url", sqlite_url]) == 2
    assert "PostgreSQL only" in capsys.readouterr().err
