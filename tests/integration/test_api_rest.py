"""The query API's REST answers, over a real HTTP client, on SQLite and PostgreSQL."""

from __future__ import annotations

import statistics

import pytest

from tests.helpers.api_data import (
    RANGE,
    Request,
    at,
    get,
    hash_id,
    post,
    roll_up,
    send_events,
    send_logs,
    send_requests,
    tl_log,
)
from tests.helpers.examples import LOG_INGESTION_EVENT
from tests.helpers.rollups import assert_merged_percentile

STARTUP = [800, 950, 1000, 1100, 1250, 1400, 1800, 2200, 3500, 900, 1050]


def near_quantile(value: float, values: list[float], p: int) -> None:
    """Answers come from merged latency sketches: within 1 % of a value between the two raw
    samples around the exact rank (SPEC §10), not percentile_cont itself."""
    assert_merged_percentile(value, sorted(values), p / 100)


def test_performance_overview_answers_percentiles_in_the_telling_logger_shape(server):
    logs = [
        tl_log(
            i,
            user=f"u{i}",
            type="performance",
            message="App Startup",
            when=at(i),
            metadata={"startup_time_ms": v},
        )
        for i, v in enumerate(STARTUP)
    ]
    logs += [
        tl_log(100 + i, user="u1", type="performance", when=at(i), metadata={"fps": v})
        for i, v in enumerate([58, 59, 60, 57])
    ]
    send_logs(server, None, logs)
    roll_up(server)
    resp = get(
        server,
        "/api/v1/analytics/performance/overview",
        startDate="2025-01-01T00:00:00.000Z",
        endDate="2025-01-31T23:59:59.000Z",
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["period"] == {
        "start": "2025-01-01T00:00:00.000Z",
        "end": "2025-01-31T23:59:59.000Z",
    }
    startup = body["metrics"]["startup_time"]
    assert startup["samples"] == len(STARTUP)
    assert startup["avg_ms"] == pytest.approx(statistics.fmean(STARTUP))
    for p in (50, 90, 95, 99):
        near_quantile(startup[f"p{p}"], STARTUP, p)
        assert startup[f"p{p}_ms"] == startup[f"p{p}"]
    assert startup["unit"] == "ms"
    fps = body["metrics"]["fps"]
    assert fps["avg"] == pytest.approx(58.5) and fps["samples"] == 4 and "avg_ms" not in fps
    only = get(
        server,
        "/api/v1/analytics/performance/overview",
        metric="fps",
        startDate="2025-01-01",
        endDate="2025-01-31",
    ).json()
    assert list(only["metrics"]) == ["fps"]


def test_endpoint_stats_count_errors_rates_and_percentiles(server):
    durations = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 1000.0]
    statuses = [200] * 7 + [404, 500, 503]
    reqs = [
        Request("/items/{id}", s, d, at(i), user=f"user-{i % 3}")
        for i, (s, d) in enumerate(zip(statuses, durations, strict=True))
    ]
    reqs += [Request("/health", 200, 1.0, at(i)) for i in range(3)]
    send_requests(server, None, reqs)
    roll_up(server)
    body = get(server, "/api/v1/analytics/endpoints", **RANGE).json()
    items = next(e for e in body["endpoints"] if e["endpoint"] == "/items/{id}")
    assert body["endpoints"][0] is not items or items["requests"] >= 3
    assert items["requests"] == 10 and items["errors"] == 2 and items["client_errors"] == 1
    assert items["error_rate"] == pytest.approx(0.2)
    assert items["unique_users"] == 3
    assert items["rpm"] == pytest.approx(10 / (31 * 24 * 60))
    for p in (50, 90, 95, 99):
        near_quantile(items[f"p{p}"], durations, p)
    by_rate = get(server, "/api/v1/analytics/endpoints", sort="error_rate", limit=1, **RANGE).json()
    assert [e["endpoint"] for e in by_rate["endpoints"]] == ["/items/{id}"]
    assert (
        get(server, "/api/v1/analytics/endpoints", service="other", **RANGE).json()["endpoints"]
        == []
    )


def test_time_series_buckets_by_hour_and_day(server):
    send_requests(
        server,
        None,
        [
            Request("/a", 200, 10, at(5)),
            Request("/a", 500, 30, at(10)),
            Request("/a", 200, 20, at(70)),
        ],
    )
    roll_up(server)
    hourly = get(
        server, "/api/v1/analytics/timeseries", source="endpoints", interval="hour", **RANGE
    )
    points = hourly.json()["points"]
    assert [(p["start"], p["count"], p["errors"]) for p in points] == [
        ("2025-01-15T12:00:00.000Z", 2, 1),
        ("2025-01-15T13:00:00.000Z", 1, 0),
    ]
    assert points[0]["error_rate"] == 0.5
    near_quantile(points[0]["p50"], [10, 30], 50)
    daily = get(server, "/api/v1/analytics/timeseries", source="endpoints", interval="day", **RANGE)
    assert [(p["start"], p["count"]) for p in daily.json()["points"]] == [
        ("2025-01-15T00:00:00.000Z", 3)
    ]


def test_features_active_users_and_sessions(server):
    events = [
        {
            "event_id": f"f{i}",
            "timestamp": at(i * 10).isoformat(),
            "event_type": "behavioral",
            "event_name": "clicked",
            "user_id": user,
            "properties": {"feature_name": feature, "duration_ms": 100 * (i + 1)},
        }
        for i, (user, feature) in enumerate(
            [("ann", "search"), ("bob", "search"), ("ann", "search"), ("ann", "export")]
        )
    ]
    send_events(server, None, events)
    # Two sessions for ann by inactivity (no session ids), one for bob by session id.
    send_requests(
        server,
        None,
        [
            Request("/x", 200, 5, at(0), user="ann"),
            Request("/x", 500, 5, at(20), user="ann"),
            Request("/x", 200, 5, at(120), user="ann"),
            Request("/x", 200, 5, at(1440 * 2), user="bob", session="s-bob"),
            Request("/x", 200, 5, at(1440 * 2 + 5), user="bob", session="s-bob"),
        ],
    )
    roll_up(server)
    features = get(server, "/api/v1/analytics/features", **RANGE).json()["features"]
    search = next(f for f in features if f["feature_name"] == "search")
    assert (search["usage_count"], search["unique_users"]) == (3, 2)
    assert search["avg_duration_ms"] == pytest.approx(200.0)
    assert features[0]["feature_name"] == "search"

    daily = get(server, "/api/v1/analytics/active-users", interval="day", **RANGE).json()
    assert [(p["start"][:10], p["users"]) for p in daily["points"]] == [
        ("2025-01-15", 2),
        ("2025-01-17", 1),
    ]
    assert daily["total_users"] == 2
    weekly = get(server, "/api/v1/analytics/active-users", interval="week", **RANGE).json()
    assert [(p["start"][:10], p["users"]) for p in weekly["points"]] == [("2025-01-13", 2)]

    sessions = get(server, "/api/v1/analytics/sessions", **RANGE).json()
    # ann: events at 0, 0, 20, 20, 30 and 120 min: two sessions (90 idle minutes). bob: a
    # feature event without a session id (inferred) and two requests of session s-bob.
    assert sessions["sessions"] == 4
    assert sessions["sessions_with_errors"] == 1
    assert [(d["start"][:10], d["sessions"]) for d in sessions["per_day"]] == [
        ("2025-01-15", 3),
        ("2025-01-17", 1),
    ]
    assert "ann" not in str(sessions) and "s-bob" not in str(sessions)


def test_error_rate_by_user_property_is_the_telling_logger_tier_query(server):
    logs = []
    for user, tier, levels in (
        ("p1", "premium", ["info", "info", "info", "error"]),
        ("f1", "free", ["info", "error"]),
        ("f2", "free", ["fatal", "info"]),
    ):
        logs.append(
            tl_log(0, user=user, metadata={"_user_properties": {"subscription_tier": tier}})
        )
        logs += [tl_log(i + 1, user=user, level=lv) for i, lv in enumerate(levels)]
    send_logs(server, None, logs)
    body = get(
        server,
        "/api/v1/analytics/error-rate",
        by="user_property",
        property="subscription_tier",
        **RANGE,
    ).json()
    rates = {v["value"]: (v["total"], v["errors"], v["error_rate"]) for v in body["values"]}
    assert rates == {"premium": (5, 1, 0.2), "free": (6, 2, pytest.approx(2 / 6))}
    missing = get(server, "/api/v1/analytics/error-rate", by="user_property")
    assert missing.status_code == 400 and missing.json()["parameter"] == "property"


def test_user_properties_round_trip_in_the_telling_logger_shape(server, db):
    assert get(server, "/api/v1/users/user_123/properties").status_code == 404
    resp = post(
        server,
        "/api/v1/users/user_123/properties",
        {"properties": {"subscription_tier": "enterprise", "mrr": 299.99}},
    )
    assert resp.status_code == 200 and resp.json() == {"success": True, "updated": 2}
    got = get(server, "/api/v1/users/user_123/properties").json()
    assert got["userId"] == "user_123"
    assert got["properties"] == {"subscription_tier": "enterprise", "mrr": 299.99}
    assert got["updatedAt"].endswith("Z")
    stored = db.rows("user_properties")
    assert {r["user_id"] for r in stored} == {hash_id("user_123")}
    assert "user_123" not in db.dump()
    bad = post(server, "/api/v1/users/user_123/properties", {"properties": [1]})
    assert bad.status_code == 400 and bad.json()["parameter"] == "properties"


def test_pages_reached_by_cursor_keep_the_total_of_the_first_page(server):
    send_logs(server, None, [tl_log(i, user="u1", when=at(i // 2)) for i in range(30)])
    first = get(server, "/api/v1/logs/filter", page_size=10).json()
    assert first["total"] == 30
    send_logs(server, None, [tl_log(100 + i, user="u1", when=at(40)) for i in range(5)])
    second = get(server, "/api/v1/logs/filter", page_size=10, cursor=first["next_cursor"])
    assert second.json()["total"] == 30  # counted once per chain, not per page
    assert get(server, "/api/v1/logs/filter", page_size=10).json()["total"] == 35


def test_logs_filter_pages_by_offset_and_by_cursor_alike(server):
    logs = [
        tl_log(i, user=f"u{i % 4}", level="error" if i % 3 == 0 else "info", when=at(i // 2))
        for i in range(45)
    ]
    send_logs(server, None, logs)
    by_page = []
    for page in range(1, 6):
        body = get(server, "/api/v1/logs/filter", page=page, page_size=10).json()
        assert body["total"] == 45 and body["page"] == page
        by_page += [log["id"] for log in body["logs"]]
    by_cursor, cursor = [], None
    while True:
        params = {"page_size": 10, **({"cursor": cursor} if cursor else {})}
        body = get(server, "/api/v1/logs/filter", **params).json()
        assert body["total"] == 45
        by_cursor += [log["id"] for log in body["logs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert by_cursor == by_page and len(set(by_page)) == 45
    times = [
        log["timestamp"] for log in get(server, "/api/v1/logs/filter", page_size=45).json()["logs"]
    ]
    assert times == sorted(times, reverse=True)
    errors = get(server, "/api/v1/logs/filter", level="error", user_id="u0", page_size=100).json()
    assert errors["total"] == len([i for i in range(45) if i % 3 == 0 and i % 4 == 0])
    assert {log["user_id"] for log in errors["logs"]} == {hash_id("u0")}
    asc = get(server, "/api/v1/logs/filter", sort_by="level", sort_order="asc", page_size=45).json()
    assert [log["level"] for log in asc["logs"]] == sorted(log["level"] for log in asc["logs"])
    recent = get(server, "/api/v1/logs/recent", limit=3).json()
    assert [log["id"] for log in recent["logs"]] == by_page[:3]


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/v1/logs/filter", {"sort_by": "message; drop table logs"}, "sort_by"),
        ("/api/v1/logs/filter", {"page_size": "1001"}, "page_size"),
        ("/api/v1/logs/filter", {"page": "zero"}, "page"),
        ("/api/v1/logs/filter", {"start_time": "yesterday"}, "start_time"),
        ("/api/v1/logs/filter", {"cursor": "not-a-cursor"}, "cursor"),
        ("/api/v1/logs/filter", {"level": "loud"}, "level"),
        ("/api/v1/logs/recent", {"limit": "-1"}, "limit"),
        ("/api/v1/analytics/endpoints", {"start": "2025-02-01", "end": "2025-01-01"}, "start"),
        ("/api/v1/analytics/timeseries", {"source": "tables"}, "source"),
        ("/api/v1/analytics/active-users", {"interval": "year"}, "interval"),
        ("/api/v1/analytics/performance/overview", {"endDate": "31/01/2025"}, "endDate"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(server, path, params, parameter):
    resp = get(server, path, **params)
    assert resp.status_code == 400, resp.text
    assert resp.json()["parameter"] == parameter and parameter in resp.json()["error"]


def test_log_ingestion_api_example_reads(server):
    """The Log Ingestion API's documented read requests, after its documented event."""

    resp = post(server, "/api/v1/ingest", LOG_INGESTION_EVENT)
    assert resp.status_code == 200
    found = get(
        server, "/api/v1/logs/filter?event_type=behavioral&user_id=user-123&page=1&page_size=50"
    )
    body = found.json()
    assert set(body) == {"logs", "page", "page_size", "total", "next_cursor"}
    assert (body["page"], body["page_size"], body["total"]) == (1, 50, 1)
    log = body["logs"][0]
    assert log["event_name"] == "habit_completed" and log["user_id"] == hash_id("user-123")
    assert log["metadata"]["streak"] == 5 and log["app_version"] == "1.0.0"
    assert "user-123" not in found.text
    by_name = get(server, "/api/v1/logs/filter", event_name="habit_completed").json()
    assert by_name["total"] == 1
    assert get(server, "/api/v1/logs/recent?limit=50").json()["logs"][0]["id"] == log["id"]
    status = get(server, "/api/v1/status").json()
    assert status["status"] == "ok" and status["database"] == "up"
    metrics = get(server, "/api/v1/metrics").json()
    assert metrics["tables"]["logs"]["rows"] == 1 and metrics["total_rows"] == 1
