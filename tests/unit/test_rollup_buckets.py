"""Dirty buckets, range pieces and invalidation markers: pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processor.analytics.buckets import DAY, HOUR, days_of, month_of, next_month, runs, week_of
from processor.analytics.invalidations import hour_of, touched
from processor.analytics.query import pieces
from processor.mapping.rows import EndpointUsageRow, PerformanceMetricRow, UserPropertyRow

T = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)  # a Monday


def test_adjacent_dirty_hours_become_one_run_and_gaps_split_runs():
    hours = [T, T + HOUR, T + 2 * HOUR, T + 5 * HOUR, T + HOUR]
    assert runs(hours, HOUR, 24) == [(T, T + 3 * HOUR), (T + 5 * HOUR, T + 6 * HOUR)]


def test_a_run_is_cut_at_its_longest():
    hours = [T + i * HOUR for i in range(5)]
    assert runs(hours, HOUR, 2) == [
        (T, T + 2 * HOUR),
        (T + 2 * HOUR, T + 4 * HOUR),
        (T + 4 * HOUR, T + 5 * HOUR),
    ]


def test_days_weeks_and_months_of_hours():
    assert days_of([T, T + HOUR, T + 20 * HOUR]) == {T.replace(hour=0), T.replace(hour=0) + DAY}
    sunday = T.replace(hour=0) + 6 * DAY
    assert week_of(sunday) == T.replace(hour=0)
    assert month_of(sunday) == datetime(2024, 3, 1, tzinfo=UTC)
    assert next_month(datetime(2024, 12, 1, tzinfo=UTC)) == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(T, T + 3 * HOUR, [("hour", T, T + 3 * HOUR)], id="within-a-day"),
        pytest.param(
            T.replace(minute=30), T + timedelta(minutes=10), [("hour", T, T + HOUR)], id="widened"
        ),
        pytest.param(
            T,
            T + 3 * DAY,
            [
                ("day", T.replace(hour=0) + DAY, T.replace(hour=0) + 3 * DAY),
                ("hour", T, T.replace(hour=0) + DAY),
                ("hour", T.replace(hour=0) + 3 * DAY, T + 3 * DAY),
            ],
            id="days-inside-hours-around",
        ),
        pytest.param(T + HOUR, T, [], id="empty"),
    ],
)
def test_a_range_is_whole_days_inside_and_hours_around(start, end, expected):
    assert pieces(start, end) == expected


def test_a_batch_touches_one_marker_per_kind_project_and_event_hour():
    def endpoint(project: int, when: datetime) -> EndpointUsageRow:
        return EndpointUsageRow(
            "id",
            project,
            when,
            None,
            None,
            "/",
            "GET",
            None,
            None,
            None,
            200,
            1.0,
            None,
            None,
            "{}",
        )

    late = T - 3 * DAY
    tables = {
        "endpoint_usage": [
            endpoint(1, T + timedelta(minutes=1)),
            endpoint(1, T + timedelta(minutes=59)),
            endpoint(2, T),
            endpoint(1, late),
        ],
        "performance_metrics": [
            PerformanceMetricRow(
                "id", 1, T, None, None, "fps", 60.0, None, None, None, None, None, "{}"
            )
        ],
        "user_properties": [UserPropertyRow("id", 1, T, None, None, "u", "k", "1", T)],
    }
    assert touched(tables) == {
        ("endpoint_usage", 1, T),
        ("endpoint_usage", 2, T),
        ("endpoint_usage", 1, late),
        ("performance_metrics", 1, T),
    }


def test_hours_are_utc():
    from zoneinfo import ZoneInfo

    local = datetime(2024, 3, 4, 12, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert hour_of(local) == datetime(2024, 3, 4, 11, 0, tzinfo=UTC)


def test_postgres_markers_name_the_event_minute():
    from processor.analytics.invalidations import minute_of

    # touched() reads (id, project_id, timestamp, …) of each row.
    rows = {"endpoint_usage": [("a", 1, T + timedelta(minutes=1, seconds=30)), ("b", 1, T)]}
    assert touched(rows, minute_of) == {
        ("endpoint_usage", 1, T),
        ("endpoint_usage", 1, T + timedelta(minutes=1)),
    }


def test_a_delta_names_its_minutes_as_few_ranges_and_its_transactions():
    from processor.analytics.rollup import MAX_RANGES, delta_of

    minute = timedelta(minutes=1)
    delta = delta_of(7, [T, T + minute, T + 5 * minute], {42, 41})
    assert delta.params["txids"] == [41, 42]
    assert (delta.params["lo0"], delta.params["hi0"]) == (T, T + 2 * minute)
    assert (delta.params["lo1"], delta.params["hi1"]) == (T + 5 * minute, T + 6 * minute)
    assert "ingest_txid = ANY(:txids)" in delta.where and ":project" in delta.where
    # Scattered late minutes: the closest ranges are joined, never a minute left out.
    scattered = [T + 3 * i * minute for i in range(MAX_RANGES + 5)]
    wide = delta_of(7, scattered, {1})
    spans = [(wide.params[f"lo{i}"], wide.params[f"hi{i}"]) for i in range(MAX_RANGES)]
    assert f"lo{MAX_RANGES}" not in wide.params
    assert all(any(lo <= m < hi for lo, hi in spans) for m in scattered)
