"""Property: on PostgreSQL, adding each round's new rows to feature_usage_daily and
user_activity_daily (daily.add_feature_delta / add_user_delta), whatever the batches and
however they are grouped into deltas, gives the rows, parts and sets that a recomputation
of every hour from the raw rows gives, and that the references from the raw rows give."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine

from processor.analytics import daily
from processor.analytics.buckets import DAY, HOUR
from processor.analytics.sqlparts import Delta, Sql
from processor.mapping.rows import Batch
from processor.settings import Settings
from processor.storage.writer import create_db_engine
from tests.helpers.rollups import (
    DAILY_TABLES,
    Event,
    assert_same_daily,
    at,
    batch_of,
    check_daily,
    clean,
    daily_snapshot,
    database_examples,
    hour,
    write,
)

pytestmark = pytest.mark.postgres

WHERE = "project_id = :project AND id = ANY(CAST(:ids AS uuid[]))"


@pytest.fixture(scope="module")
def pg(postgres_url: str) -> Iterator[Engine]:
    eng = create_db_engine(Settings(database_url=postgres_url).sqlalchemy_url)
    yield eng
    eng.dispose()


def delta_of(events: Sequence[Event], project: int = 1) -> Delta:
    """The delta of rows the writer just added, named by id."""
    return Delta(where=WHERE, params={"project": project, "ids": [e.key for e in events]})


def batch(events: Sequence[Event], project: int = 1) -> Batch:
    """batch_of, with some features without a duration and a second kind of activity."""
    b = batch_of(events, project)
    b.rows["feature_usage"] = [
        r._replace(duration_ms=None) if int(r.id[-4:], 16) % 5 == 0 else r
        for r in b.rows["feature_usage"]
    ]
    b.rows["user_activity"] = [
        r._replace(event_type="logout") if int(r.id[-4:], 16) % 8 == 0 else r
        for r in b.rows["user_activity"]
    ]
    return b


def add(engine: Engine, delta: Delta, project: int = 1) -> None:
    with engine.begin() as conn:
        sql = Sql(conn)
        daily.add_feature_delta(sql, project, delta)
        daily.add_user_delta(sql, project, delta)


def recompute(engine: Engine, hours: set, project: int = 1) -> None:
    """The full path over ``hours`` (a rebuild, or SQLite's round)."""
    with engine.begin() as conn:
        sql = Sql(conn)
        for h in sorted(hours):
            daily.recompute_feature_hours(sql, project, h, h + HOUR)
            daily.recompute_users(sql, project, h, h + HOUR)
        for d in sorted({h.replace(hour=0) for h in hours}):
            daily.recompute_features(sql, project, d, d + DAY)


def all_hours(engine: Engine) -> set:
    with engine.connect() as conn:
        return {
            hour(r[0])
            for t in ("endpoint_usage", "feature_usage", "user_activity")
            for r in conn.execute(text(f"SELECT timestamp FROM {t}"))
        }


def events_of(ns: list[int]) -> st.SearchStrategy[list[Event]]:
    return st.tuples(*(event(n) for n in ns)).map(list)


def event(n: int) -> st.SearchStrategy[Event]:
    return st.builds(
        Event,
        n=st.just(n),
        # Around 10:00 UTC and around the midnight before it: deltas span two days.
        when=st.one_of(st.integers(-80 * 60, 3 * 60), st.integers(-11 * 60, -9 * 60)).map(
            lambda m: at(0) + timedelta(minutes=m, seconds=7)
        ),
        endpoint=st.just("/a"),
        status=st.just(200),
        duration=st.one_of(
            st.floats(0.0, 5000.0, allow_nan=False).map(lambda d: round(d, 3)),
            st.just(0.1),
        ),
        user=st.sampled_from(["u1", "u2", "u3", None]),
        session=st.sampled_from(["s1", "s2", None]),
        span_status=st.sampled_from(["unset", "ok", "error", None]),
        service=st.just("shop"),
    )


@st.composite
def traffic(draw: st.DrawFn) -> list[tuple[list[Event], list[Event], str]]:
    """Steps: (new events, earlier events sent again, then: 'delta' | 'wait' | 'full')."""
    count = draw(st.integers(1, 60))
    sent = draw(events_of(list(range(count))))
    steps = []
    start = 0
    while start < count:
        size = draw(st.integers(1, max(1, count - start)))
        fresh = sent[start : start + size]
        again = draw(st.lists(st.sampled_from(sent[: start + size]), max_size=4))
        steps.append((fresh, again, draw(st.sampled_from(["delta", "delta", "wait", "full"]))))
        start += size
    return steps


@database_examples(40)
@given(steps=traffic())
def test_deltas_add_up_to_the_full_recompute(pg, steps):
    clean(pg)
    pending: list[Event] = []
    for fresh, again, then in steps:
        # Re-sent rows (same id and time) are ignored by the writer: not in any delta.
        write(pg, batch(fresh), batch(again))
        pending.extend(fresh)
        if then == "delta":
            add(pg, delta_of(pending))
            pending = []
        elif then == "full":  # a rebuild of these hours, after which deltas go on
            recompute(pg, {hour(e.when) for e in pending})
            pending = []
    if pending:
        add(pg, delta_of(pending))
    check_daily(pg)
    assert_recomputed_alike(pg, daily_snapshot(pg))


def test_a_delta_touches_only_its_project_and_keys(pg):
    clean(pg)
    mine = [Event(n, at(n / 10), "/a", 200, 10.0 * n, f"u{n % 3}", "s1", "ok") for n in range(6)]
    other = [Event(100 + n, at(n / 10), "/a", 200, 1.0, "u0", "s2", "ok") for n in range(3)]
    write(pg, batch(mine[:3]), batch(other, project=2))
    recompute(pg, all_hours(pg), project=2)
    add(pg, delta_of(mine[:3]))
    before = daily_snapshot(pg)
    write(pg, batch(mine[3:]))
    add(pg, delta_of(mine[3:]))
    after = daily_snapshot(pg)
    for table in DAILY_TABLES:
        project2 = {k: v for k, v in after[table].items() if k[0] == 2}
        assert project2 == {k: v for k, v in before[table].items() if k[0] == 2}, table
        assert project2, table  # project 2's rows are there, and untouched
    # Project 1 equals a recomputation of its own hours.
    assert_recomputed_alike(pg, after, project=1)


def assert_recomputed_alike(pg: Engine, by_deltas: dict, project: int | None = None) -> None:
    """Clear the daily tables (of ``project``), recompute every hour of project 1 the full
    way: the rows the deltas built come back."""
    scope = "" if project is None else f" WHERE project_id = {project}"
    with pg.begin() as conn:
        for table in DAILY_TABLES:
            conn.execute(text(f"DELETE FROM {table}{scope}"))
    recompute(pg, all_hours(pg))
    assert_same_daily(by_deltas, daily_snapshot(pg))


def test_a_delta_of_another_project_is_refused(pg):
    with pg.begin() as conn, pytest.raises(ValueError):
        daily.add_feature_delta(Sql(conn), 1, delta_of([], project=2))
