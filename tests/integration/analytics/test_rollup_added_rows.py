"""Open hours grown by their added rows (the serving runner on PostgreSQL) equal a
recomputation from the raw rows; the round after an hour closes makes its percentiles exact."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from processor.analytics.rollup import CLOSE_AFTER, run_round
from tests.helpers.rollups import (
    Event,
    as_utc,
    at,
    batch_of,
    check_rollups,
    clean,
    database_examples,
    play,
    stored,
    write,
)
from tests.integration.analytics.test_rollup_property import events as spread_events

# The runner's clock: a few minutes after at(0), so the hours around at(0) are open and the
# hours around the midnight before are closed.
NOW = at(0) + timedelta(minutes=5)


# Mostly in the open hours (9:00 to 12:00; 8:00 is closed), some late ones days back.
events = st.one_of(
    spread_events.map(lambda e: replace(e, when=at(0) + (e.when - at(0)) / 40)),
    spread_events,
)


def open_round(engine):
    return run_round(engine, final=False, now=NOW)


def hour_rows(engine, hour):
    return [
        r
        for r in stored(engine, "endpoint_stats")
        if r["period"] == "hour" and as_utc(r["bucket_start"]) == hour
    ]


def hour_set(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM endpoint_hour_users")).scalar()


@database_examples(25)
@given(
    traffic=st.lists(
        st.tuples(st.lists(events, max_size=25), st.booleans()), min_size=1, max_size=5
    ),
    replay=st.integers(0, 4),
)
def test_open_hours_grown_by_added_rows_equal_a_recomputation(engine, traffic, replay):
    clean(engine)
    play(engine, traffic, replay, open_round)
    check_rollups(engine, exact_hours=False)
    run_round(engine)  # `rollup`: every hour final
    check_rollups(engine)
    assert hour_set(engine) == 0


def event(n, minutes, user, duration):
    return Event(
        n=n,
        when=at(0) + timedelta(minutes=minutes),
        endpoint="/a",
        status=200,
        duration=duration,
        user=user,
        session=None,
        span_status="ok",
        service="shop",
    )


def test_rows_added_in_two_rounds_add_up_and_count_each_user_once(engine):
    clean(engine)
    write(engine, batch_of([event(1, 1, "u1", 10.0), event(2, 2, "u2", 20.0)]))
    open_round(engine)
    write(engine, batch_of([event(3, 3, "u1", 30.0), event(4, 4, "u3", 40.0)]))
    open_round(engine)
    (row,) = hour_rows(engine, at(0))
    assert (row["request_count"], row["unique_users"], row["duration_sum_ms"]) == (4, 3, 100.0)
    if engine.dialect.name == "postgresql":
        assert not row["percentiles_exact"]  # open: from the merged sketch
        assert hour_set(engine) == 3
    check_rollups(engine, exact_hours=False)
    # Ten minutes past its end the hour has closed: the next round sets its percentiles from
    # the raw rows. A minute before, it was still open.
    run_round(engine, final=False, now=at(1) + CLOSE_AFTER - timedelta(minutes=1))
    assert not hour_rows(engine, at(0))[0]["percentiles_exact"] or engine.dialect.name == "sqlite"
    run_round(engine, final=False, now=at(1) + CLOSE_AFTER)
    (row,) = hour_rows(engine, at(0))
    assert row["percentiles_exact"]
    assert row["p50_ms"] == 25.0  # percentile_cont of 10, 20, 30, 40
    assert hour_set(engine) == 0
    check_rollups(engine)


def test_a_late_row_for_a_closed_hour_recomputes_it(engine):
    clean(engine)
    write(engine, batch_of([event(1, 1, "u1", 10.0)]))
    open_round(engine)
    later = NOW + timedelta(hours=2)
    run_round(engine, final=False, now=later)  # closes at(0)'s hour
    write(engine, batch_of([event(2, 2, "u1", 30.0), event(3, 3, "u2", 50.0)]))
    run_round(engine, final=False, now=later)
    (row,) = hour_rows(engine, at(0))
    assert (row["request_count"], row["unique_users"]) == (3, 2)
    assert row["percentiles_exact"] and row["p50_ms"] == 30.0
    assert hour_set(engine) == 0
    check_rollups(engine)
