"""RollupReader against RawReader (the reference) over generated traffic written through the
real writer and rolled up by a real round: on hour-aligned ranges counts, errors, rates and
distinct users are equal, and percentiles lie within 1 % of the raw samples around the rank."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from processor.analytics.rollup import run_round
from processor.api.raw_reader import RawReader
from processor.api.readers import Percentiles, Period, SeriesFilters
from processor.api.rollup_reader import RollupReader
from tests.helpers.rollups import QS, Event, assert_merged_percentile, at, batch_of, raw, write

ENDPOINTS = ("/a", "/b", "/c/{id}", "/d")
# T0 is 10:00 UTC: -34 h is midnight two days before, so ranges cross whole days.
RANGES = {
    "one hour": (at(1), at(2)),
    "hours in a day": (at(-3), at(5)),
    "hours, a whole day, hours": (at(-30), at(20)),
    "whole days": (at(-34), at(14)),
    "everything": (at(-40), at(40)),
}
DAY_RANGES = ("whole days",)


def traffic(n: int = 1500, seed: int = 11) -> list[Event]:
    rnd = random.Random(seed)
    return [
        Event(
            n=i,
            when=at(rnd.uniform(-36, 30)),
            endpoint=rnd.choice(ENDPOINTS),
            status=rnd.choice([200, 200, 200, 201, 404, 429, 500, 503, None]),
            duration=round(rnd.lognormvariate(4, 1), 3),
            user=rnd.choice([f"u{k}" for k in range(25)] + [None]),
            session=rnd.choice(["s1", "s2", None]),
            span_status=rnd.choice(["unset", "ok", "error", None]),
            service=rnd.choice(["shop", "api", None]),
        )
        for i in range(n)
    ]


@pytest.fixture
def readers(engine: Engine) -> tuple[RawReader, RollupReader]:
    events = traffic()
    write(engine, *(batch_of(events[i : i + 300]) for i in range(0, len(events), 300)))
    run_round(engine)
    return RawReader(engine), RollupReader(engine)


def period(name: str) -> Period:
    return Period(*RANGES[name])


def samples(
    engine: Engine, table: str, column: str, p: Period, key: Callable[[dict], object]
) -> dict[object, list[float]]:
    out: dict[object, list[float]] = defaultdict(list)
    for r in raw(engine, table, "*"):
        if p.start <= r["timestamp"] < p.end and r[column] is not None:
            out[key(r)].append(r[column])
    return {k: sorted(v) for k, v in out.items()}


def check_values(got: Percentiles, want: Percentiles, ordered: list[float]) -> None:
    assert got.samples == want.samples == len(ordered)
    assert (got.min, got.max) == (want.min, want.max)
    assert got.avg == pytest.approx(want.avg, rel=1e-9)
    for name, q in QS:
        assert_merged_percentile(getattr(got, name), ordered, q)


@pytest.mark.parametrize("name", RANGES)
def test_endpoint_stats_equal_the_raw_answer(engine, readers, name):
    raw_reader, rollup_reader = readers
    p = period(name)
    want = {
        (s.service_name, s.endpoint, s.method): s
        for s in raw_reader.endpoint_stats(1, p, None, "endpoint", 1000)
    }
    got = {
        (s.service_name, s.endpoint, s.method): s
        for s in rollup_reader.endpoint_stats(1, p, None, "endpoint", 1000)
    }
    assert set(got) == set(want) and want
    durations = samples(
        engine, "endpoint_usage", "duration_ms", p,
        lambda r: (r["service_name"], r["endpoint"], r["method"]),
    )  # fmt: skip
    for key, w in want.items():
        g = got[key]
        assert (g.requests, g.errors, g.client_errors, g.unique_users) == (
            w.requests, w.errors, w.client_errors, w.unique_users,
        )  # fmt: skip
        assert (g.error_rate, g.rpm) == (w.error_rate, w.rpm)
        check_values(g.latency, w.latency, durations[key])


def test_endpoint_stats_sort_limit_and_service_like_the_raw_reader(readers):
    raw_reader, rollup_reader = readers
    p = period("hours, a whole day, hours")
    for sort in ("requests", "errors", "error_rate", "rpm", "endpoint"):
        want = raw_reader.endpoint_stats(1, p, "shop", sort, 3)
        got = rollup_reader.endpoint_stats(1, p, "shop", sort, 3)
        assert [(s.endpoint, s.method, s.requests) for s in got] == [
            (s.endpoint, s.method, s.requests) for s in want
        ]
        assert {s.service_name for s in got} == {"shop"}


@pytest.mark.parametrize("name", RANGES)
def test_performance_overview_equals_the_raw_answer(engine, readers, name):
    raw_reader, rollup_reader = readers
    p = period(name)
    want = raw_reader.performance_overview(1, p, None)
    got = rollup_reader.performance_overview(1, p, None)
    assert (
        [(m.name, m.unit) for m in got] == [(m.name, m.unit) for m in want] == [("startup", "ms")]
    )
    values = samples(engine, "performance_metrics", "value", p, lambda r: r["metric_type"])
    check_values(got[0].stats, want[0].stats, values["startup"])
    assert rollup_reader.performance_overview(1, p, "nothing") == []


@pytest.mark.parametrize("interval", ["hour", "day", "week"])
@pytest.mark.parametrize("source", ["endpoints", "metrics"])
def test_time_series_equal_the_raw_answer(engine, readers, source, interval):
    raw_reader, rollup_reader = readers
    p = period("hours, a whole day, hours")
    filters = SeriesFilters(service="shop")
    want = raw_reader.time_series(1, source, interval, p, filters)
    got = rollup_reader.time_series(1, source, interval, p, filters)
    assert [pt.start for pt in got] == [pt.start for pt in want] and want
    table, column = (
        ("endpoint_usage", "duration_ms")
        if source == "endpoints"
        else ("performance_metrics", "value")
    )
    width = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}
    for g, w in zip(got, want, strict=True):
        assert (g.count, g.errors, g.unique_users) == (w.count, w.errors, w.unique_users)
        bucket = Period(max(g.start, p.start), min(g.start + width[interval], p.end))
        ordered = samples(engine, table, column, bucket, lambda r: r["service_name"])["shop"]
        assert g.values is not None and w.values is not None
        check_values(g.values, w.values, ordered)


def test_features_over_whole_days_equal_the_raw_answer(readers):
    raw_reader, rollup_reader = readers
    for name in DAY_RANGES:
        want = raw_reader.features(1, period(name), 10)
        got = rollup_reader.features(1, period(name), 10)
        assert [(f.feature_name, f.usage_count, f.unique_users) for f in got] == [
            (f.feature_name, f.usage_count, f.unique_users) for f in want
        ]
        for g, w in zip(got, want, strict=True):
            assert g.avg_duration_ms == pytest.approx(w.avg_duration_ms, rel=1e-9)
            assert g.success_rate == pytest.approx(w.success_rate, rel=1e-12)


def test_features_over_partial_days_come_from_raw_rows(readers):
    raw_reader, rollup_reader = readers
    p = period("hours in a day")
    assert rollup_reader.features(1, p, 10) == raw_reader.features(1, p, 10)


def test_a_range_inside_hours_is_widened_to_whole_hours(readers):
    raw_reader, rollup_reader = readers
    asked = Period(at(1) + timedelta(minutes=20), at(3) + timedelta(minutes=5))
    widened = Period(at(1), at(4))
    got = rollup_reader.endpoint_stats(1, asked, None, "endpoint", 100)
    want = raw_reader.endpoint_stats(1, widened, None, "endpoint", 100)
    assert [(s.endpoint, s.requests, s.errors, s.unique_users) for s in got] == [
        (s.endpoint, s.requests, s.errors, s.unique_users) for s in want
    ]
    # rpm is over the minutes asked for
    assert got[0].rpm == pytest.approx(got[0].requests / asked.minutes)


def test_another_project_sees_nothing(readers):
    _, rollup_reader = readers
    p = period("everything")
    assert rollup_reader.endpoint_stats(2, p, None, "requests", 10) == []
    assert rollup_reader.performance_overview(2, p, None) == []
    assert rollup_reader.time_series(2, "endpoints", "day", p, SeriesFilters()) == []
    assert rollup_reader.features(2, Period(at(-34), at(14)), 10) == []


def test_an_empty_range_answers_nothing(readers):
    _, rollup_reader = readers
    start: datetime = at(100)
    p = Period(start, start)
    assert rollup_reader.endpoint_stats(1, p, None, "requests", 10) == []
    assert rollup_reader.time_series(1, "metrics", "hour", p, SeriesFilters()) == []


def test_unique_users_over_several_buckets_are_flagged_estimates(readers):
    raw_reader, rollup_reader = readers
    one_hour = rollup_reader.endpoint_stats(1, period("one hour"), None, "endpoint", 1000)
    assert one_hour and not any(s.unique_users_estimated for s in one_hour)
    p = period("everything")
    want = {(s.endpoint, s.method, s.service_name): s.unique_users for s in
            raw_reader.endpoint_stats(1, p, None, "endpoint", 1000)}  # fmt: skip
    got = rollup_reader.endpoint_stats(1, p, None, "endpoint", 1000)
    assert all(s.unique_users_estimated for s in got)
    # 25 users at most: the HyperLogLog still holds every hash, so the estimate is exact.
    assert {(s.endpoint, s.method, s.service_name): s.unique_users for s in got} == want


def test_rows_without_a_users_sketch_are_counted_exactly_from_raw_rows(engine, readers):
    raw_reader, rollup_reader = readers
    with engine.begin() as conn:  # rows as written before revision 0008
        conn.execute(text("UPDATE endpoint_stats SET users_sketch = NULL WHERE period = 'day'"))
    p = period("hours, a whole day, hours")
    want = {(s.endpoint, s.method, s.service_name): s.unique_users for s in
            raw_reader.endpoint_stats(1, p, None, "endpoint", 1000)}  # fmt: skip
    got = rollup_reader.endpoint_stats(1, p, None, "endpoint", 1000)
    assert not any(s.unique_users_estimated for s in got)
    assert {(s.endpoint, s.method, s.service_name): s.unique_users for s in got} == want
