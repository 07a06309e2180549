"""Session partials merge: traffic written in random batches and added batch group by batch
group as deltas (``sessions.add_delta``) gives exactly the partials and sessions that
``sessions.recompute`` over all hours gives, and the brute-force reference."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event

from processor.analytics import sessions
from processor.analytics.sqlparts import Delta, Sql
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

START, END = at(-6), at(6)

events = st.builds(
    lambda m, endpoint, status, user, session, span: (m, endpoint, status, user, session, span),
    # Minutes over ~5 hours, so idle gaps of more and less than 30 minutes and sessions
    # crossing hour boundaries both happen; whole minutes, so instants repeat (tie-breaks).
    st.integers(-150, 150),
    # the longest route makes a label over the 512 characters entry and exit keep
    st.sampled_from(["/a", "/b", "/" + "x" * 510]),
    st.sampled_from([200, 500, None]),
    st.sampled_from(["u1", "u2", None]),
    st.sampled_from(["s1", "s2", None, None]),
    st.sampled_from(["ok", "error", None]),
)
logs = st.builds(
    lambda m, user, session, platform, version: (m, user, session, platform, version),
    st.integers(-150, 150),
    st.sampled_from(["u1", "u2", None]),
    st.sampled_from(["s1", "s2", None]),
    st.sampled_from(["ios", "android", "", None]),
    st.sampled_from(["1.0", "2.0", None]),
)


def _batch(chunk: list[tuple], log_rows: list[tuple], first: int) -> tuple[Batch, list[str]]:
    """A batch with ids unique across the test (first, first + 1, ...), and those ids."""
    evs = [
        Event(first + i, at(0) + timedelta(minutes=m), e, st_, 1.0, u, s, sp)
        for i, (m, e, st_, u, s, sp) in enumerate(chunk)
    ]
    b = batch_of(evs)
    for i, (m, u, s, p, v) in enumerate(log_rows):
        b.rows["logs"].append(log_of(first + i, at(0) + timedelta(minutes=m), u, s, p, v))
    ids = [e.key for e in evs] + [row[0] for row in b.rows["logs"]]
    return b, ids


def _add(engine, ids: list[str]) -> None:
    # Test-only: the ids inline (uuid text matches both databases' id column).
    quoted = ", ".join(f"'{i}'" for i in ids) if ids else "NULL"
    where = f"project_id = :project AND id IN ({quoted})"
    with engine.begin() as conn:
        sessions.add_delta(Sql(conn), 1, Delta(where, {"project": 1}))


def _partials(engine) -> dict:
    return {(r["session_id"], str(r["hour"])): r for r in stored(engine, "session_hours")}


@database_examples(25)
@given(
    traffic=st.lists(
        st.tuples(st.lists(events, max_size=12), st.lists(logs, max_size=4), st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_deltas_in_any_grouping_equal_the_full_recompute_and_the_reference(engine, traffic):
    clean(engine)
    pending: list[str] = []
    first = 0
    for chunk, log_rows, apply_now in traffic:
        b, ids = _batch(chunk, log_rows, first)
        first += 100
        write(engine, b)
        pending += ids
        if apply_now:
            _add(engine, pending)
            pending = []
    _add(engine, pending)
    assert stored_sessions(engine) == session_reference(engine)
    added, parts = stored_sessions(engine), _partials(engine)
    with engine.begin() as conn:
        sessions.recompute(Sql(conn), 1, START, END)
    assert stored_sessions(engine) == added
    assert _partials(engine) == parts


def test_a_later_delta_with_earlier_events_merges_into_the_stored_partial(engine):
    """The second delta's events come before the first's in the same hour: the entry moves
    to them, the exit and the user (the second has none) stay, the counts add."""
    b, ids = _batch([(5, "/a", 200, "u1", "s1", None)], [(6, None, "s1", "ios", "1.0")], 0)
    write(engine, b)
    _add(engine, ids)
    b, later = _batch([(3, "/b", 500, None, "s1", None)], [(2, None, "s1", "web", None)], 100)
    write(engine, b)
    _add(engine, later)
    (row,) = stored_sessions(engine).values()
    # endpoint + feature rows each, and an activity row for ids 0 and 100
    assert (row["event_count"], row["error_count"]) == (6, 1)
    assert (row["user_id"], row["entry"], row["exit"]) == ("u1", "GET /b", "f0")
    assert (row["started_at"], row["ended_at"]) == (
        at(0) + timedelta(minutes=3),
        at(0) + timedelta(minutes=5),
    )
    assert (row["device_platform"], row["app_version"]) == ("ios", "1.0")
    assert stored_sessions(engine) == session_reference(engine)
    (part,) = stored(engine, "session_hours")
    assert part["event_count"] == 6


def test_a_delta_reads_only_its_rows(engine):
    """Client sessions: every statement of add_delta that reads a raw table selects the
    delta's rows (its where), not the hours they fall in."""
    b, ids = _batch([(m, "/a", 200, "u1", "s1", None) for m in (1, 20, 59)], [], 0)
    write(engine, b)
    _add(engine, ids)
    b, later = _batch([(30, "/b", 200, "u1", "s1", None)], [(31, None, "s1", "ios", None)], 100)
    write(engine, b)
    reads: list[str] = []

    def spy(conn, cursor, statement, params, context, executemany):
        if any(f"FROM {t} " in statement for t in ("endpoint_usage", "feature_usage", "logs")):
            reads.append(statement)

    event.listen(engine, "before_cursor_execute", spy)
    try:
        _add(engine, later)
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    assert reads
    assert all(f"'{later[0]}'" in statement for statement in reads)
    (row,) = stored_sessions(engine).values()
    # endpoint + feature rows each, activity rows for ids 0 and 100; the exit stays at minute 59
    assert (row["event_count"], row["exit"], row["device_platform"]) == (10, "f2", "ios")
    assert stored_sessions(engine) == session_reference(engine)
