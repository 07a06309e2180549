"""Pure parts of the query API: percentiles, parameters, cursors and the SQL check."""

from __future__ import annotations

import statistics
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.analytics.sketch import percentile_cont
from processor.api import sql_guard
from processor.api.logs import decode_cursor, encode_cursor
from processor.api.params import BadParameter, integer, parse_time, period


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=200))
def test_percentile_cont_matches_linear_interpolation(values):
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    for p in (50, 90, 95, 99):
        assert percentile_cont(ordered, p / 100) == pytest.approx(cuts[p - 1], rel=1e-9, abs=1e-6)


def test_percentile_of_one_value_and_of_none():
    assert percentile_cont([7.0], 0.99) == 7.0
    assert percentile_cont([], 0.5) is None


@pytest.mark.parametrize(
    ("raw", "end", "expected"),
    [
        ("2025-01-15T12:00:00Z", False, datetime(2025, 1, 15, 12, tzinfo=UTC)),
        ("2025-01-15T13:00:00+01:00", False, datetime(2025, 1, 15, 12, tzinfo=UTC)),
        ("2025-01-15T12:00:00.000Z", False, datetime(2025, 1, 15, 12, tzinfo=UTC)),
        ("2025-01-15", False, datetime(2025, 1, 15, tzinfo=UTC)),
        ("2025-01-15", True, datetime(2025, 1, 16, tzinfo=UTC)),
        ("2025-01-15T12:00:00", False, datetime(2025, 1, 15, 12, tzinfo=UTC)),
    ],
)
def test_times_are_iso_8601_in_utc(raw, end, expected):
    assert parse_time("start", raw, end=end) == expected


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"start": "last week"}, "start"),
        ({"end": "2025-13-01"}, "end"),
        ({"start": "2025-02-01", "end": "2025-01-01"}, "start"),
    ],
)
def test_a_bad_range_names_its_parameter(query, parameter):
    with pytest.raises(BadParameter) as bad:
        period(query)
    assert bad.value.parameter == parameter


def test_integers_are_bounded():
    assert integer({"page_size": "1000"}, "page_size", 50, 1, 1000) == 1000
    for raw in ("1001", "0", "ten", "1.5"):
        with pytest.raises(BadParameter):
            integer({"page_size": raw}, "page_size", 50, 1, 1000)


def test_a_cursor_is_tied_to_its_project_and_order():
    when, row = datetime(2025, 1, 15, 12, 0, 0, 123456, tzinfo=UTC), uuid.uuid4()
    token = encode_cursor(3, "desc", when, row)
    cursor = decode_cursor(token, 3, "desc")
    assert (cursor.timestamp, cursor.id) == (when, row)
    for project, order in ((4, "desc"), (3, "asc")):
        with pytest.raises(BadParameter):
            decode_cursor(token, project, order)
    with pytest.raises(BadParameter):
        decode_cursor("eyJ", 3, "desc")


def test_a_cursor_carries_the_total_of_its_first_page():
    when, row = datetime(2025, 1, 15, 12, tzinfo=UTC), uuid.uuid4()
    assert decode_cursor(encode_cursor(3, "desc", when, row), 3, "desc").total is None
    assert decode_cursor(encode_cursor(3, "desc", when, row, 45), 3, "desc").total == 45
    for bad in (-1, "45", 4.5, True):
        with pytest.raises(BadParameter):
            decode_cursor(encode_cursor(3, "desc", when, row, bad), 3, "desc")  # type: ignore[arg-type]


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "SELECT level, count(*) FROM logs GROUP BY level ORDER BY 2 DESC",
        "WITH x AS (SELECT * FROM endpoint_usage) SELECT endpoint FROM x",
        "SELECT a.endpoint FROM endpoint_usage a JOIN logs b ON a.user_id = b.user_id",
        "SELECT endpoint FROM endpoint_usage UNION SELECT feature_name FROM feature_usage",
        "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) FROM endpoint_usage",
    ],
)
def test_plain_reads_pass(sql, database):
    assert sql_guard.check(sql, database)


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
@pytest.mark.parametrize(
    "sql",
    [
        "",
        "DELETE FROM logs",
        "SELECT 1; SELECT 2",
        "SELECT set_config('x', 'y', true)",
        "SELECT pg_sleep(1)",
        "SELECT * FROM api_keys",
        "SELECT * FROM other_schema.logs",
        "WITH d AS (UPDATE logs SET level = 'x' RETURNING *) SELECT * FROM d",
        "SELECT * FROM logs FOR SHARE",
        "SELECT (",
    ],
)
def test_everything_else_is_refused(sql, database):
    with pytest.raises(sql_guard.QueryRejected):
        sql_guard.check(sql, database)
