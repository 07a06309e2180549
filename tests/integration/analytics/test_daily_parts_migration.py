"""Revision 0009 fills the daily tables' hour parts and day sets from the raw rows already
stored, so a day rolled up before the upgrade stays exact when a late row re-dirties it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from processor.analytics.rollup import run_round
from processor.analytics.sqlparts import as_date
from processor.settings import Settings
from processor.storage.migrate import upgrade
from processor.storage.writer import create_db_engine
from tests.helpers.rollups import (
    Event,
    as_utc,
    at,
    batch_of,
    check_day_parts,
    feature_reference,
    stored,
    user_reference,
    write,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def at_0008(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh database migrated up to revision 0008 only."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/at_0008.db"
        upgrade(url, "0008")
        yield url
        return
    admin_url = Settings(database_url=request.getfixturevalue("postgres_admin_url")).sqlalchemy_url
    name = f"tp_0009_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url, "0008")
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def events(first: int, hours: list[float]) -> list[Event]:
    return [
        Event(first + i, at(h), f"/e{i % 2}", (200, 503)[i % 2], 10.0 + i, f"u{i % 3}",
              (f"s{i % 2}", None)[i % 5 == 0], ("ok", "error")[i % 4 == 0])
        for i, h in enumerate(hours)
    ]  # fmt: skip


def test_the_upgrade_fills_the_parts_and_late_rows_keep_days_exact(at_0008):
    engine: Engine = create_db_engine(at_0008)
    try:
        # Two days of traffic, rolled up before the upgrade (their markers consumed).
        write(engine, batch_of(events(0, [0.1 * i + 24 * (i % 2) for i in range(40)])))
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM rollup_invalidations"))
        upgrade(at_0008)
        check_day_parts(engine)  # filled from the raw rows by the migration
        # A late row re-dirties one hour of the first day: its day rows, built from the
        # parts, still count the other hours' events, users and sessions.
        late = events(100, [2.5])
        write(engine, batch_of(late))
        run_round(engine)
        check_day_parts(engine)
        # The day row of the late row's feature (on PostgreSQL a round rewrites the day rows
        # its added rows touch; the others were rolled up before the upgrade).
        day, feature = at(2.5).date(), f"f{late[0].n % 3}"
        want = {k: v for k, v in feature_reference(engine).items() if k == (day, feature)}
        got = {
            (as_date(r["date"]), r["feature_name"]): r
            for r in stored(engine, "feature_usage_daily")
            if r["feature_name"] == feature
        }
        assert set(got) == set(want) and want
        for key, w in want.items():
            assert (got[key]["usage_count"], got[key]["unique_users"]) == (
                w["usage_count"],
                w["unique_users"],
            )
            assert got[key]["success_rate"] == pytest.approx(w["success_rate"], rel=1e-12)
        user = late[0].user
        (row,) = [
            r
            for r in stored(engine, "user_activity_daily")
            if as_date(r["date"]) == day and r["user_id"] == user
        ]
        w = user_reference(engine)[(day, user)]
        assert w["event_count"] > 3  # the user had events in other hours of that day
        assert (row["event_count"], row["session_count"]) == (w["event_count"], w["session_count"])
        assert row["total_duration_ms"] == pytest.approx(w["total_duration_ms"], rel=1e-12)
        assert as_utc(row["first_seen_at"]) == w["first_seen_at"]
        assert as_utc(row["last_seen_at"]) == w["last_seen_at"]
    finally:
        engine.dispose()
