"""Rollups have their own retention (SPEC §13), and dropping raw rows never changes a rollup."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from processor import cli
from processor.analytics.rollup import run_round
from processor.settings import RETENTION_DEFAULTS
from processor.storage.retention import ROLLUP_TABLES
from tests.helpers.rollups import (
    Event,
    add_session,
    as_utc,
    batch_of,
    check_rollups,
    cli_url,
    percentile_cont,
    raw,
    stored,
    write,
)

NOW = datetime.now(UTC)
# The derived rollups whose rows stand for raw buckets (dashboard tiles are current values).
DERIVED = ("endpoint_stats", "metric_aggregates", "feature_usage_daily", "user_activity_daily")


def noon(days: int) -> datetime:
    """Noon UTC of the day ``days`` back: far from any day boundary."""
    return (NOW - timedelta(days=days)).replace(hour=12, minute=0, second=0, microsecond=0)


def events_at(days: int, first: int, count: int = 6) -> list[Event]:
    return [
        Event(first + i, noon(days) + timedelta(minutes=7 * i), f"/e{i % 2}", (200, 503)[i % 2],
              10.0 + i * 3, f"u{i % 3}", f"s{days}-{i % 2}", ("ok", "error")[i % 2])
        for i in range(count)
    ]  # fmt: skip


def cli_lines(engine: Engine, capsys: Any, *args: str) -> list[str]:
    assert cli.main([*args, "--database-url", cli_url(engine)]) == 0
    return capsys.readouterr().out.splitlines()


def frozen(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def rows_by_day(engine: Engine) -> dict[str, set[tuple]]:
    """Every derived rollup row as (table, period, the UTC day it starts) -> its full values."""
    out: dict[str, set[tuple]] = {}
    for table in DERIVED:
        got = set()
        for r in stored(engine, table):
            when = r.get("bucket_start") or r.get("period_start") or r.get("date")
            period = r.get("period") or r.get("period_type") or "daily"
            got.add(
                (period, str(when)[:10], tuple(sorted((k, repr(frozen(v))) for k, v in r.items())))
            )
        out[table] = got
    return out


def days_back(day: str) -> int:
    return (NOW.date() - datetime.fromisoformat(day).date()).days


def periods_left(engine: Engine, table: str) -> set[tuple[str, int]]:
    return {(period, days_back(day)) for period, day, _ in rows_by_day(engine)[table]}


def add_sessions(engine: Engine, ages: list[int]) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM sessions"))
    for age in ages:
        add_session(engine, f"s{age}", "u", noon(age))


def test_every_rollup_table_with_history_is_registered():
    registered = {(r.table, r.period_value): r.target for r in ROLLUP_TABLES}
    assert registered == {
        ("endpoint_stats", "hour"): "rollups.hour",
        ("endpoint_stats", "day"): "rollups.day",
        ("metric_aggregates", "hourly"): "rollups.hour",
        ("metric_aggregates", "daily"): "rollups.day",
        ("metric_aggregates", "weekly"): "rollups.day",
        ("metric_aggregates", "monthly"): "rollups.day",
        ("feature_usage_daily", None): "rollups.day",
        ("user_activity_daily", None): "rollups.day",
        ("endpoint_day_users", None): "endpoint_usage",
        ("endpoint_hour_users", None): "endpoint_usage",
        # The parts and sets day rows are built from go with raw rows of their own (the day
        # is frozen from then on): feature days under feature_usage, user days under
        # user_activity (one of the three raw tables whose cutoff freezes a user's day).
        ("feature_hour_parts", None): "feature_usage",
        ("feature_day_users", None): "feature_usage",
        ("user_hour_parts", None): "user_activity",
        ("user_day_sessions", None): "user_activity",
        ("sessions", None): "rollups.day",
        ("session_hours", None): "rollups.day",
    }


def test_old_rollup_rows_go_young_ones_stay_and_the_dry_run_tells_it_first(engine, capsys):
    ages = (10, 100, 400, 2000)
    write(engine, batch_of([e for n, age in enumerate(ages) for e in events_at(age, 100 * n)]))
    run_round(engine)  # rolled up back when the raw rows were all there
    add_sessions(engine, [10, 2000])
    dry = cli_lines(engine, capsys, "retention", "--dry-run")
    assert any(line.startswith("endpoint_stats rows=") for line in dry)
    real = cli_lines(engine, capsys, "retention")
    assert dry == real
    removed = {
        line.split()[0]: int(line.split("rows=")[1].split()[0]) for line in real if "rows=" in line
    }
    assert removed["sessions"] == 1
    # Hour rows live 90 days, day rows and longer 5 years (a bucket goes once it has ended).
    assert periods_left(engine, "endpoint_stats") == {
        ("hour", 10), ("day", 10), ("day", 100), ("day", 400),
    }  # fmt: skip
    left = periods_left(engine, "metric_aggregates")
    assert {(p, a) for p, a in left if p in ("hourly", "daily")} == {
        ("hourly", 10), ("daily", 10), ("daily", 100), ("daily", 400),
    }  # fmt: skip
    # The 2000-day week and month are gone; those of 10, 100 and 400 days back stay.
    assert all(a < 1825 for p, a in left)
    assert sum(p == "weekly" for p, _ in left) == sum(p == "monthly" for p, _ in left) == 3
    for table in ("feature_usage_daily", "user_activity_daily"):
        assert {a for _, a in periods_left(engine, table)} == {10, 100, 400}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sessions")).scalar() == 1
    again = cli_lines(engine, capsys, "retention", "--dry-run")
    assert all(" rows=0" in line for line in again if "kept" not in line)


def test_weeks_and_months_go_only_once_they_have_ended():
    from processor.storage.retention import rollup_condition

    policy = {**RETENTION_DEFAULTS, "rollups.day": timedelta(days=30)}
    now = datetime(2026, 3, 20, 15, tzinfo=UTC)  # cutoff: 2026-02-18 00:00 UTC
    specs = {r.period_value: r for r in ROLLUP_TABLES if r.table == "metric_aggregates"}
    limits = {p: rollup_condition(s, policy, now, sqlite=False)[1]["cut"] for p, s in specs.items()}
    assert limits["daily"] == datetime(2026, 2, 17, tzinfo=UTC)  # the 17th has ended
    assert limits["weekly"] == datetime(2026, 2, 11, tzinfo=UTC)  # the week of the 11th too
    assert limits["monthly"] == datetime(2026, 1, 18, tzinfo=UTC)  # January: yes; February: no


def test_dropping_raw_rows_never_changes_a_rollup(engine, capsys):
    """A round, then retention drops the 400-day raw rows: their day rollups stay the same
    through later rounds, a late row for that day, `rollup` and `rollup --rebuild`."""
    write(engine, batch_of(events_at(400, 0) + events_at(10, 100)))
    run_round(engine)
    cli_lines(engine, capsys, "retention")
    assert not [r for r in raw(engine, "endpoint_usage", "id") if r["timestamp"] < noon(365)]
    old = {t: {r for r in rows if days_back(r[1]) > 365} for t, rows in rows_by_day(engine).items()}
    assert old["endpoint_stats"] and old["user_activity_daily"] and old["feature_usage_daily"]
    assert {p for p, _, _ in old["metric_aggregates"]} == {"daily", "weekly", "monthly"}

    write(engine, batch_of(events_at(10, 200, 3)))
    cli_lines(engine, capsys, "rollup")
    write(engine, batch_of(events_at(400, 300, 1)))  # a late row for the dropped day
    cli_lines(engine, capsys, "rollup")
    for flags in ((), ("--rebuild",)):
        cli_lines(engine, capsys, "rollup", *flags)
        now = rows_by_day(engine)
        assert {t: {r for r in rows if days_back(r[1]) > 365} for t, rows in now.items()} == old
    # The young buckets are still exact: the day's request count and hour percentiles.
    young = [r for r in stored(engine, "endpoint_stats") if r["period"] == "hour"]
    assert sum(r["request_count"] for r in young) == 9
    durations = sorted(
        r["duration_ms"]
        for r in raw(engine, "endpoint_usage", "endpoint, duration_ms")
        if r["endpoint"] == "/e0" and r["timestamp"] > noon(365)
    )
    (e0,) = [
        r for r in stored(engine, "endpoint_stats") if r["period"] == "day" and r["endpoint"] == "/e0"
        and days_back(str(as_utc(r["bucket_start"]))[:10]) == 10
    ]  # fmt: skip
    assert e0["request_count"] == len(durations)
    assert e0["duration_max_ms"] == durations[-1]
    assert percentile_cont(durations, 0.5) > 0


def test_a_late_row_for_a_day_without_hour_rollups_recomputes_the_whole_day(
    engine, capsys, monkeypatch
):
    """Raw rows 100 days back are kept (365 days) but their hour rows expired (90 days): a
    late row there recomputes all the day's hours, so the day's percentiles stay right."""
    monkeypatch.setenv("RETENTION", "performance_metrics=365d")
    write(engine, batch_of(events_at(100, 0, 12)))
    run_round(engine)
    cli_lines(engine, capsys, "retention")
    assert not [r for r in stored(engine, "endpoint_stats") if r["period"] == "hour"]
    write(engine, batch_of(events_at(100, 500, 1)))
    cli_lines(engine, capsys, "rollup")
    check_rollups(engine)  # hours again from the raw rows; the next retention drops them


def test_session_hour_partials_go_with_their_expired_session_only(engine, capsys):
    """Partials of a session retention removes go; a session id kept from 2,000 days back to
    10 days back keeps all its partials (a late row rebuilds it whole); a round after
    retention leaves that session as it was."""
    kept = [replace(e, session="kept") for e in events_at(2000, 0, 2) + events_at(10, 10, 2)]
    write(engine, batch_of(events_at(2000, 100) + kept))
    run_round(engine)
    hours = {(r["session_id"], as_utc(r["hour"]).date()) for r in stored(engine, "session_hours")}
    old_day, new_day = noon(2000).date(), noon(10).date()
    assert {("s2000-0", old_day), ("kept", old_day), ("kept", new_day)} <= hours
    session = next(r for r in stored(engine, "sessions") if r["session_id"] == "kept")
    cli_lines(engine, capsys, "retention")
    left = {(r["session_id"], as_utc(r["hour"]).date()) for r in stored(engine, "session_hours")}
    assert left == {("kept", old_day), ("kept", new_day)}
    write(engine, batch_of([replace(events_at(10, 20, 1)[0], session="kept")]))
    run_round(engine)
    again = next(r for r in stored(engine, "sessions") if r["session_id"] == "kept")
    assert again["started_at"] == session["started_at"]
    assert again["event_count"] > session["event_count"]
