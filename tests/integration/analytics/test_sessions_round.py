"""Sessions maintained by the rollup round equal a brute-force recomputation from the raw
rows, after late, duplicate and out-of-order data; --rebuild gives the same rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event, text

from processor.analytics import sessions
from processor.analytics.rollup import run_round
from processor.analytics.sqlparts import Sql
from processor.mapping.rows import Batch
from tests.helpers.rollups import (
    Event,
    at,
    batch_of,
    clean,
    database_examples,
    log_of,
    session_reference,
    stored,
    stored_sessions,
    write,
)

events = st.builds(
    Event,
    n=st.integers(0, 300),
    # Minutes over ~5 hours, so idle gaps of more and less than 30 minutes and sessions
    # crossing hour boundaries both happen.
    when=st.integers(-150, 150).map(lambda m: at(0) + timedelta(minutes=m * 1.7, seconds=3)),
    endpoint=st.sampled_from(["/a", "/b"]),
    status=st.sampled_from([200, 500, None]),
    duration=st.just(1.0),
    user=st.sampled_from(["u1", "u2", None]),
    session=st.sampled_from(["s1", "s2", None, None, None]),
    span_status=st.sampled_from(["ok", "error", None]),
)
logs = st.builds(
    lambda n, m, user, session, platform, version: log_of(
        n, at(0) + timedelta(minutes=m * 1.7, seconds=5), user, session, platform, version
    ),
    st.integers(0, 50),
    st.integers(-150, 150),
    st.sampled_from(["u1", "u2", None]),
    st.sampled_from(["s1", None]),
    st.sampled_from(["ios", "android", None]),
    st.sampled_from(["1.0", "2.0", None]),
)


def check(engine) -> None:
    assert stored_sessions(engine) == session_reference(engine)


@database_examples(20)
@given(
    traffic=st.lists(
        st.tuples(st.lists(events, max_size=15), st.lists(logs, max_size=3), st.booleans()),
        min_size=1,
        max_size=5,
    ),
    replay=st.integers(0, 4),
)
def test_sessions_equal_a_recomputation_after_late_and_duplicate_data(engine, traffic, replay):
    clean(engine)
    sent = []
    for chunk, log_rows, run_after in traffic:
        b = batch_of(chunk)
        b.rows["logs"].extend(log_rows)
        write(engine, b)
        sent.extend(chunk)
        if run_after:
            run_round(engine)
    write(engine, batch_of(sent[: replay * 3]), batch_of(list(reversed(sent))[:replay]))
    run_round(engine)
    check(engine)
    before = stored_sessions(engine)
    run_round(engine)
    assert stored_sessions(engine) == before
    run_round(engine, rebuild=True)
    assert stored_sessions(engine) == before


def test_a_late_event_joins_two_idle_sessions_into_one(engine):
    early = Event(1, at(0), "/a", 200, 1.0, "u1", None, None)
    late = Event(3, at(0) + timedelta(minutes=50), "/b", 200, 1.0, "u1", None, None)
    write(engine, batch_of([early, late]))
    run_round(engine)
    assert len(stored_sessions(engine)) == 2
    bridge = Event(2, at(0) + timedelta(minutes=25), "/c", 500, 1.0, "u1", None, None)
    b = batch_of([bridge])
    b.rows["logs"].append(log_of(1, at(0) + timedelta(minutes=30), "u1", None, "ios", "3.1"))
    write(engine, b)
    run_round(engine)
    (only,) = stored_sessions(engine).values()
    assert (only["event_count"], only["error_count"]) == (
        6,
        1,
    )  # an endpoint and a feature row per event
    assert (only["entry"], only["exit"]) == ("GET /a", "f0")
    assert (only["device_platform"], only["app_version"]) == ("ios", "3.1")
    check(engine)


def test_empty_batch_keeps_sessions(engine):
    write(engine, Batch())
    run_round(engine)
    assert stored_sessions(engine) == {}


RAW = ("endpoint_usage", "feature_usage", "user_activity", "logs")


def _instants(params: Any) -> list[datetime]:
    """The timestamps bound to a statement (datetimes on PostgreSQL, text on SQLite)."""
    values = params.values() if isinstance(params, dict) else params or ()
    found = []
    for v in values:
        if isinstance(v, datetime):
            found.append(v.astimezone(UTC))
        elif isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] == " ":
            found.append(datetime.fromisoformat(v).replace(tzinfo=UTC))
    return found


def test_a_session_id_kept_for_days_costs_a_round_only_its_dirty_hour(engine):
    """A client keeps one session id for 20 days. A late event in a new hour: the sessions
    step binds no instant outside that hour in any statement reading a raw table (it used
    to re-read the whole span), and the session row still covers all 20 days."""
    days = [
        Event(n, at(0) - timedelta(days=20 - n), "/a", 200, 1.0, "u1", "kept", None)
        for n in range(20)
    ]
    b = batch_of(days)
    b.rows["logs"].append(log_of(1, at(0) - timedelta(days=19), None, "kept", "ios", "1.0"))
    write(engine, b)
    run_round(engine)
    assert len(stored(engine, "session_hours")) == 20
    late = Event(20, at(2) + timedelta(minutes=5), "/b", 500, 1.0, "u1", "kept", None)
    write(engine, batch_of([late]))
    hour = at(2)
    reads: list[list[datetime]] = []

    def spy(conn, cursor, statement, params, context, executemany):
        if any(f"FROM {t} " in statement or f"FROM {t}\n" in statement for t in RAW):
            reads.append(_instants(params))

    event.listen(engine, "before_cursor_execute", spy)
    try:
        with engine.begin() as conn:
            # As a round does: it claims the markers of the rows it recomputes (else the
            # next round would add the late row a second time).
            conn.execute(text("DELETE FROM rollup_invalidations"))
            sessions.recompute(Sql(conn), 1, hour, hour + timedelta(hours=1))
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    assert reads and all(reads)
    assert all(hour <= t <= hour + timedelta(hours=1) for ts in reads for t in ts)
    (row,) = stored_sessions(engine).values()
    assert (row["started_at"], row["ended_at"]) == (days[0].when, late.when)
    assert (row["entry"], row["device_platform"]) == ("GET /a", "ios")
    check(engine)
    run_round(engine)
    assert stored_sessions(engine) == session_reference(engine)
