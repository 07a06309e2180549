"""Property: whatever the traffic (late, duplicated, out of order) and whenever the runner
runs in between, every rollup equals a recomputation from the raw rows."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.analytics.rollup import run_round
from tests.helpers.rollups import Event, at, batch_of, check_rollups, clean, write

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


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    traffic=st.lists(
        st.tuples(st.lists(events, max_size=25), st.booleans()), min_size=1, max_size=5
    ),
    replay=st.integers(0, 4),
)
def test_rollups_equal_a_recomputation_from_raw_rows(engine, traffic, replay):
    clean(engine)
    # Row ids come from Event.n: a repeated n is a retried (duplicate) row and must not count
    # twice, even with other values, as the writer ignores an existing id.
    sent = []
    for chunk, run_after in traffic:
        write(engine, batch_of(chunk))
        sent.extend(chunk)
        if run_after:
            run_round(engine)
    # A retry of earlier rows, and late rows for hours that were already rolled up.
    write(engine, batch_of(sent[: replay * 3]), batch_of(list(reversed(sent))[:replay]))
    run_round(engine)
    check_rollups(engine)
