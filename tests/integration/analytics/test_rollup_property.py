"""Property: whatever the traffic (late, duplicated, out of order) and whenever the runner
runs in between, every rollup equals a recomputation from the raw rows."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from processor.analytics.rollup import run_round
from tests.helpers.rollups import Event, at, check_rollups, clean, database_examples, play

events = st.builds(
    Event,
    n=st.integers(0, 400),
    # Around 10:00 UTC, and around the midnight before it (hours of two days in one run).
    when=st.one_of(st.integers(-80 * 60, 3 * 60), st.integers(-11 * 60, -9 * 60)).map(
        lambda m: at(0) + timedelta(minutes=m, seconds=7)
    ),
    endpoint=st.sampled_from(["/a", "/b", "/c/{id}"]),
    status=st.sampled_from([200, 201, 404, 429, 500, 503, None]),
    duration=st.floats(0.0, 5000.0, allow_nan=False).map(lambda d: round(d, 3)),
    user=st.sampled_from(["u1", "u2", "u3", None]),
    session=st.sampled_from(["s1", "s2", None]),
    span_status=st.sampled_from(["unset", "ok", "error", None]),
    service=st.sampled_from(["shop", "api", None]),
)


@database_examples(25)
@given(
    traffic=st.lists(
        st.tuples(st.lists(events, max_size=25), st.booleans()), min_size=1, max_size=5
    ),
    replay=st.integers(0, 4),
)
def test_rollups_equal_a_recomputation_from_raw_rows(engine, traffic, replay):
    clean(engine)
    play(engine, traffic, replay, run_round)
    check_rollups(engine)
