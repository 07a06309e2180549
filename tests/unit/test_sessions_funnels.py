"""Sessionization and the funnel state machine against simple brute-force references."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.analytics.funnel_machine import Hit, conversion, parse_steps, progress
from processor.analytics.sessionize import (
    INFERRED,
    SessionEvent,
    SessionLog,
    attach_devices,
    sessionize,
)
from tests.helpers.funnels import best_attempt, summary

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


def ev(minute: float, user="u1", session=None, label=None, error=False, n=0):
    return SessionEvent(T0 + timedelta(minutes=minute), f"0:{n:04d}", user, session, label, error)


# --- sessions ------------------------------------------------------------------------------


def test_idle_gap_of_more_than_30_minutes_starts_a_new_session():
    rows = sessionize([ev(0, n=1), ev(30, n=2), ev(60.01, n=3)])
    assert [r.event_count for r in rows] == [2, 1]
    assert all(r.session_id.startswith(INFERRED) for r in rows)
    assert rows[0].duration_ms == 30 * 60 * 1000


def test_client_session_id_wins_over_inactivity():
    rows = sessionize([ev(0, session="s", n=1), ev(300, session="s", n=2), ev(1, n=3)])
    client = [r for r in rows if r.session_id == "s"]
    assert client[0].event_count == 2 and client[0].user_id == "u1"
    assert len(rows) == 2


def test_entry_exit_errors_and_events_without_user_or_session():
    rows = sessionize(
        [
            ev(5, label="GET /b", error=True, n=2),
            ev(1, label="GET /a", n=1),
            ev(2, label=None, n=3),
            ev(3, user=None, label="GET /x", n=4),
        ]
    )
    (row,) = rows
    assert (row.entry, row.exit, row.error_count, row.event_count) == ("GET /a", "GET /b", 1, 3)


def test_inferred_session_id_is_deterministic():
    a = sessionize([ev(0, n=1), ev(10, n=2)])
    b = sessionize([ev(10, n=2), ev(0, n=1)])
    assert a == b


def test_device_comes_from_the_latest_log_inside_the_session():
    rows = sessionize([ev(0, n=1), ev(20, n=2), ev(0, session="s", n=3), ev(5, session="s", n=4)])
    logs = [
        SessionLog(T0 + timedelta(minutes=1), "a", "u1", None, "ios", "1.0"),
        SessionLog(T0 + timedelta(minutes=2), "b", "u1", None, None, "1.1"),
        SessionLog(T0 + timedelta(minutes=40), "c", "u1", None, "android", "9"),
        SessionLog(T0 + timedelta(minutes=3), "d", "u1", "s", "web", None),
    ]
    attach_devices(rows, logs)
    got = {r.session_id.startswith(INFERRED): (r.device_platform, r.app_version) for r in rows}
    assert got == {True: ("ios", "1.1"), False: ("web", None)}


events = st.lists(
    st.builds(
        lambda m, u, s, lab, err: (m, u, s, lab, err),
        st.integers(0, 400),
        st.sampled_from(["u1", "u2", None]),
        st.sampled_from(["s1", "s2", None, None]),
        st.sampled_from(["GET /a", "feat", None]),
        st.booleans(),
    ),
    max_size=40,
)


def reference_sessions(raw):
    """Brute force: for every pair of a user's session-less events, they share a session iff
    every consecutive gap between them is at most 30 minutes."""
    out = {}
    items = [(i, r) for i, r in enumerate(raw)]
    for sid in {r[2] for r in raw if r[2] is not None}:
        mine = sorted((r[0], i) for i, r in items if r[2] == sid)
        out[("client", sid)] = (mine[0][0], mine[-1][0], len(mine))
    for user in {r[1] for r in raw if r[1] is not None}:
        mine = sorted((r[0], i) for i, r in items if r[2] is None and r[1] == user)
        group = []
        for m in mine:
            if group and m[0] - group[-1][0] > 30:
                out[("idle", user, group[0][0])] = (group[0][0], group[-1][0], len(group))
                group = []
            group.append(m)
        if group:
            out[("idle", user, group[0][0])] = (group[0][0], group[-1][0], len(group))
    return out


@settings(max_examples=200, deadline=None)
@given(events)
def test_sessions_agree_with_a_brute_force_reference(raw):
    rows = sessionize(
        ev(m, user=u, session=s, label=lab, error=e, n=i) for i, (m, u, s, lab, e) in enumerate(raw)
    )
    got = {}
    for r in rows:
        start = int((r.started_at - T0).total_seconds() // 60)
        end = int((r.ended_at - T0).total_seconds() // 60)
        key = ("idle", r.user_id, start) if r.inferred else ("client", r.session_id)
        got[key] = (start, end, r.event_count)
    assert got == reference_sessions(raw)
    assert sum(r.error_count for r in rows) == sum(
        1 for m, u, s, lab, e in raw if e and (s is not None or u is not None)
    )


# --- funnels -------------------------------------------------------------------------------


def test_funnel_counts_steps_in_order_within_the_window():
    window = timedelta(minutes=10)
    hits = [
        Hit(T0 + timedelta(minutes=0), "1", frozenset({0})),
        Hit(T0 + timedelta(minutes=3), "2", frozenset({2})),  # out of order: not step 2 yet
        Hit(T0 + timedelta(minutes=4), "3", frozenset({1})),
        Hit(T0 + timedelta(minutes=11), "4", frozenset({2})),  # past the window of minute 0
    ]
    assert progress(hits, 3, window) == [T0, T0 + timedelta(minutes=4)]


def test_best_attempt_counts_and_ties_go_to_the_earliest_start():
    window = timedelta(minutes=10)
    hits = [
        Hit(T0, "1", frozenset({0})),
        Hit(T0 + timedelta(minutes=8), "2", frozenset({0})),
        Hit(T0 + timedelta(minutes=9), "3", frozenset({1})),
        Hit(T0 + timedelta(minutes=15), "4", frozenset({2})),
    ]
    assert progress(hits, 3, window) == [
        T0 + timedelta(minutes=8),
        T0 + timedelta(minutes=9),
        T0 + timedelta(minutes=15),
    ]
    assert progress(hits[:3], 3, window)[0] == T0


def test_conversion_rates_and_medians():
    a = [T0, T0 + timedelta(seconds=10)]
    b = [T0, T0 + timedelta(seconds=30)]
    c = [T0]
    result = conversion([a, b, c], 3)
    assert [s.users for s in result] == [3, 2, 0]
    assert [s.conversion_rate for s in result] == [1.0, 2 / 3, 0.0]
    assert [s.median_seconds_from_previous for s in result] == [None, 20.0, None]


def test_step_definitions_are_checked():
    assert parse_steps([{"type": "endpoint", "value": "GET /a"}])[0].value == "GET /a"
    for bad in (
        [],
        [{"type": "x", "value": "a"}],
        [{"type": "log"}],
        [{"type": "endpoint", "value": "/a"}],
        "x",
    ):
        try:
            parse_steps(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


hit_lists = st.lists(
    st.builds(
        lambda m, steps: (m, steps),
        st.integers(0, 120),
        st.frozensets(st.integers(0, 3), max_size=2),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(hit_lists, max_size=6), st.integers(1, 4), st.integers(0, 60))
def test_funnel_agrees_with_a_brute_force_reference(users, n, window_minutes):
    window = timedelta(minutes=window_minutes)
    reached = []
    for raw in users:
        hits = [
            Hit(T0 + timedelta(minutes=m), f"{i:03d}", frozenset(k for k in s if k < n))
            for i, (m, s) in enumerate(raw)
        ]
        got = progress(hits, n, window)
        assert got == best_attempt([(h.when, h.tiebreak, h.steps) for h in hits], n, window)
        reached.append(got)
    result = conversion([r for r in reached if r], n)
    assert [vars(r) for r in result] == summary(reached, n)


def test_entry_and_exit_fit_their_columns():
    (row,) = sessionize([ev(0, label="GET /" + "x" * 600)])
    assert row.entry is not None and len(row.entry) == 512
