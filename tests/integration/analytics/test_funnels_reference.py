"""Funnel conversion from the database (SQL filter, rows streamed in time order, the state
machine) equals a brute-force reference over every raw row, on both databases."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from processor.analytics import funnels
from processor.analytics.funnel_machine import Step
from tests.helpers.funnels import best_attempt, summary
from tests.helpers.rollups import Event, at, batch_of, clean, database_examples, log_of, raw, write

STEP_CHOICES = [
    Step("endpoint", "GET /a"),
    Step("endpoint", "GET /b"),
    Step("feature", "f0"),
    Step("feature", "f1"),
    Step("event", "login"),
    Step("log", "m1"),
    Step("log", "m2"),
]
events = st.builds(
    Event,
    n=st.integers(0, 200),
    when=st.integers(0, 240).map(lambda m: at(0) + timedelta(minutes=m, seconds=11)),
    endpoint=st.sampled_from(["/a", "/b"]),
    status=st.just(200),
    duration=st.just(1.0),
    user=st.sampled_from(["u1", "u2", "u3", None]),
    session=st.just(None),
    span_status=st.just(None),
)
log_rows = st.builds(
    lambda n, m, user: log_of(n, at(0) + timedelta(minutes=m, seconds=11), user, None, None, None),
    st.integers(0, 3),
    st.integers(0, 240),
    st.sampled_from(["u1", "u2", None]),
)


def reference(engine, steps, window, start, end):
    per_user = defaultdict(list)

    def add(r, source, a, b):
        if r["project_id"] != 1 or r["user_id"] is None or not start <= r["timestamp"] < end:
            return
        hit = set()
        for k, s in enumerate(steps):
            if (
                (s.type == "endpoint" and source == 0 and a == s.value)
                or (s.type == "feature" and source == 1 and a == s.value)
                or (s.type == "event" and source == 2 and s.value in (a, b))
                or (s.type == "event" and source == 3 and b == s.value)
                or (s.type == "log" and source == 3 and a == s.value)
            ):
                hit.add(k)
        if hit:
            key = f"{source}:{str(r['id']).replace('-', '').lower()}"
            per_user[r["user_id"]].append((r["timestamp"], key, frozenset(hit)))

    for r in raw(engine, "endpoint_usage", "id, user_id, method, endpoint"):
        add(r, 0, f"{r['method']} {r['endpoint']}", None)
    for r in raw(engine, "feature_usage", "id, user_id, feature_name"):
        add(r, 1, r["feature_name"], None)
    for r in raw(engine, "user_activity", "id, user_id, event_type, event_metadata"):
        meta = r["event_metadata"]
        meta = json.loads(meta) if isinstance(meta, str) else meta
        add(r, 2, r["event_type"], (meta or {}).get("event.name"))
    for r in raw(engine, "logs", "id, user_id, message, metadata"):
        meta = r["metadata"]
        meta = json.loads(meta) if isinstance(meta, str) else meta
        add(r, 3, r["message"], (meta or {}).get("event.name") or (meta or {}).get("event_name"))
    attempts = [best_attempt(evs, len(steps), window) for evs in per_user.values()]
    return summary([a for a in attempts if a], len(steps))


@database_examples(20)
@given(
    traffic=st.lists(events, max_size=40),
    logs=st.lists(log_rows, max_size=8),
    steps=st.lists(st.sampled_from(STEP_CHOICES), min_size=1, max_size=4),
    window_minutes=st.integers(1, 120),
    range_minutes=st.tuples(st.integers(0, 100), st.integers(101, 260)),
)
def test_conversion_equals_a_brute_force_reference(
    engine, traffic, logs, steps, window_minutes, range_minutes
):
    clean(engine)
    b = batch_of(traffic)
    b.rows["logs"].extend(logs)
    write(engine, b)
    funnel = funnels.FunnelDef(
        id=None,  # type: ignore[arg-type]
        name="f",
        description=None,
        steps=steps,
        window_seconds=window_minutes * 60,
        created_at=at(0),
    )
    start, end = (at(0) + timedelta(minutes=m) for m in range_minutes)
    got = [vars(r) for r in funnels.compute(engine, 1, funnel, start, end)]
    assert got == reference(engine, steps, timedelta(minutes=window_minutes), start, end)
