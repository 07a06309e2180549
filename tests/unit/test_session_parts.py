"""A client session merged from its per-hour partials equals sessionize + attach_devices over
all its rows: what lets a round re-read only its dirty hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.analytics.session_parts import hour_parts, merge
from processor.analytics.sessionize import SessionEvent, SessionLog, attach_devices, sessionize

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
# Minutes over ~3 days, clustered at hour edges often enough (multiples of 30 minutes).
minutes = st.one_of(st.integers(-2000, 2000), st.integers(-70, 70).map(lambda m: m * 30))

events = st.builds(
    lambda m, n, user, label, error: SessionEvent(
        T0 + timedelta(minutes=m), f"0:{n:04d}", user, "s", label, error
    ),
    minutes,
    st.integers(0, 50),
    st.sampled_from(["u1", "u2", None]),
    st.sampled_from(["GET /a", "GET /b", "f1", None]),
    st.booleans(),
)
logs = st.builds(
    lambda m, n, platform, version: SessionLog(
        T0 + timedelta(minutes=m), f"{n:04d}", None, "s", platform, version
    ),
    minutes,
    st.integers(0, 50),
    st.sampled_from(["ios", "android", "", None]),
    st.sampled_from(["1.0", "2.0", None]),
)


def whole(evs: list[SessionEvent], gs: list[SessionLog]):
    rows = sessionize(evs)
    attach_devices(rows, gs)
    return rows[0] if rows else None


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=12), st.lists(logs, max_size=8))
def test_merged_partials_equal_the_session_from_all_its_rows(evs, gs):
    assert merge("s", hour_parts(evs, gs)) == whole(evs, gs)


@settings(max_examples=100, deadline=None)
@given(st.lists(events, min_size=1, max_size=12), st.lists(logs, max_size=8), st.integers(1, 5))
def test_partials_of_separately_computed_hours_merge_the_same(evs, gs, cut):
    """Partials computed hour range by hour range (as rounds do) merge to the same row."""
    bound = T0 + timedelta(hours=cut - 3)
    parts = hour_parts([e for e in evs if e.when < bound], [g for g in gs if g.when < bound])
    parts += hour_parts([e for e in evs if e.when >= bound], [g for g in gs if g.when >= bound])
    assert merge("s", parts) == whole(evs, gs)


def test_a_log_before_the_first_event_of_its_hour_gives_no_platform():
    first = SessionEvent(T0 + timedelta(minutes=30), "0:1", "u1", "s", "GET /a", False)
    early = SessionLog(T0 + timedelta(minutes=10), "1", None, "s", "ios", "1.0")
    late = SessionLog(T0 + timedelta(minutes=40), "2", None, "s", "android", None)
    row = merge("s", hour_parts([first], [early, late]))
    assert row is not None and (row.device_platform, row.app_version) == (None, None)
    second = SessionEvent(T0 + timedelta(minutes=50), "0:2", "u1", "s", None, False)
    row = merge("s", hour_parts([first, second], [early, late]))
    assert row is not None and (row.device_platform, row.app_version) == ("android", None)
