"""Migration 0003 keeps populated data: counts and checksums before and after, both ways."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from processor.mapping.rows import TABLES
from processor.settings import LOG_LEVELS, Settings
from processor.storage import partitions
from processor.storage.migrate import alembic_config
from tests.helpers.lifecycle_rows import add_rows

pytestmark = pytest.mark.postgres


@pytest.fixture
def fresh_url(postgres_admin_url):
    admin_url = Settings(database_url=postgres_admin_url).sqlalchemy_url
    name = f"tp_part_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(admin_url).set(database=name)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def checksums(engine) -> dict[str, tuple[int, str]]:  # type: ignore[no-untyped-def]
    sums = {}
    with engine.connect() as conn:
        for table in TABLES:
            sums[table] = tuple(
                conn.execute(
                    text(
                        f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id),"
                        f" '')) FROM {table} t"
                    )
                ).one()
            )
    return sums


def test_partitioning_keeps_rows_extra_columns_and_indexes(fresh_url):
    plain = fresh_url.render_as_string(hide_password=False)
    # Migrate in a session whose TimeZone is not UTC (and not a whole hour off).
    offset = fresh_url.update_query_dict({"options": "-c TimeZone=America/St_Johns"})
    config = alembic_config(offset.render_as_string(hide_password=False))
    command.upgrade(config, "0002")
    engine = create_engine(plain)
    try:
        with engine.begin() as conn:  # what a later revision (span status) adds
            conn.execute(text("ALTER TABLE endpoint_usage ADD COLUMN extra_note varchar(8)"))
            conn.execute(
                text("CREATE INDEX ix_endpoint_usage_status ON endpoint_usage (extra_note)")
            )
        now = datetime.now(UTC)
        edge = partitions.day_start(now.date())  # midnight UTC: the first instant of today
        times = [
            now,
            edge,
            edge - timedelta(microseconds=1),
            now - timedelta(days=5),
            now - timedelta(days=200),
            datetime(1971, 3, 1, tzinfo=UTC),
            datetime(2500, 1, 1, tzinfo=UTC),
        ]
        for table in ("endpoint_usage", "feature_usage", "user_activity", "performance_metrics"):
            add_rows(engine, table, times)
        for level in LOG_LEVELS:
            add_rows(engine, "logs", times, level=level, metadata={"k": level})
        add_rows(engine, "user_properties", times[:3])
        with engine.begin() as conn:
            conn.execute(text("UPDATE endpoint_usage SET extra_note = 'error'"))
        before = checksums(engine)

        command.upgrade(config, "0003")  # the partitioning revision
        assert checksums(engine) == before
        with engine.connect() as conn:
            for table in partitions.RAW_TABLES:
                assert partitions.is_partitioned(conn, table)
            located = dict(
                conn.execute(
                    text("SELECT timestamp, tableoid::regclass::text FROM endpoint_usage")
                ).all()
            )
            status = conn.execute(
                text("SELECT count(*) FROM endpoint_usage WHERE extra_note = 'error'")
            ).scalar()
            index = conn.execute(
                text(
                    "SELECT indexdef FROM pg_indexes WHERE tablename = 'endpoint_usage'"
                    " AND indexname = 'ix_endpoint_usage_status'"
                )
            ).scalar()
            leaf = conn.execute(
                text("SELECT tableoid::regclass::text FROM logs WHERE level = 'debug' LIMIT 1")
            ).scalar()
        assert status == len(times) and index is not None
        assert located[edge] == partitions.partition_name("endpoint_usage", now.date())
        yesterday = (edge - timedelta(days=1)).date()
        assert located[edge - timedelta(microseconds=1)] == partitions.partition_name(
            "endpoint_usage", yesterday
        )
        assert located[datetime(2500, 1, 1, tzinfo=UTC)] == "endpoint_usage_default"
        assert located[datetime(1971, 3, 1, tzinfo=UTC)] == "endpoint_usage_default"
        assert leaf is not None and leaf.endswith("_debug")

        command.downgrade(config, "0002")
        assert checksums(engine) == before
        with engine.connect() as conn:
            assert not partitions.is_partitioned(conn, "logs")
        command.upgrade(config, "0003")  # the partitioning revision
        assert checksums(engine) == before
    finally:
        engine.dispose()
