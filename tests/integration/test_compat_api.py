"""The JSON ingestion APIs: the Telling Logger API ``/api/v1/logs`` and the Log Ingestion API
``/api/v1/ingest``."""

from __future__ import annotations

import copy
import gzip

import orjson
import requests

from processor.mapping.privacy import make_hasher
from tests.helpers.examples import LOG_INGESTION_EVENT, PERFORMANCE_LOG, TELLING_LOGGER_LOG

hash_id = make_hasher()


def post(server, path: str, body: object, **headers: str) -> requests.Response:
    return requests.post(
        f"{server.http_url}{path}",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json", **headers},
        timeout=10,
    )


def event(event_id: str, event_type: str, name: str, **properties: object) -> dict:
    return {
        "event_id": event_id,
        "timestamp": "2024-01-15T10:30:00Z",
        "event_type": event_type,
        "event_name": name,
        "properties": properties,
        "user_id": "user-123",
        "session_id": "session-456",
        "app_version": "1.0.0",
        "device_info": {"platform": "android", "model": "Pixel 8", "os_version": "14"},
    }


# --- Telling Logger API -------------------------------------------------------------------------


def test_telling_logger_example_lands_log_and_user_properties(server, db):
    response = post(server, "/api/v1/logs", [TELLING_LOGGER_LOG])
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "received": 1}

    [log] = db.rows("logs")
    assert (log["level"], log["type"], log["message"]) == ("info", "analytics", "User logged in")
    assert str(log["timestamp"]).startswith("2025-01-15 12:00:00")
    assert log["user_id"] == hash_id("user_123")
    assert log["session_id"] == hash_id("user_123_1700000000000")
    assert (log["device_platform"], log["device_os_version"], log["device_model"]) == (
        "iOS",
        "17.0",
        "iPhone 15 Pro",
    )
    assert (log["app_version"], log["app_build_number"]) == ("1.2.0", "42")
    metadata = db.json(log["metadata"])
    assert metadata["login_method"] == "google"
    # Kept in the log for historical segmentation, as the Telling Logger API asks.
    assert metadata["_user_properties"]["subscription_tier"] == "premium"

    props = {r["property_key"]: r for r in db.rows("user_properties")}
    assert {k: db.json(r["property_value"]) for k, r in props.items()} == {
        "subscription_tier": "premium",
        "mrr": 99.99,
        "signup_date": "2025-01-01",
    }
    assert {r["user_id"] for r in props.values()} == {hash_id("user_123")}

    dump = db.dump()
    for raw in ("user_123", "John Doe", "john@example.com"):
        assert raw not in dump


def test_telling_logger_performance_log_becomes_metrics(server, db):
    response = post(server, "/api/v1/logs", [PERFORMANCE_LOG, TELLING_LOGGER_LOG])
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "received": 2}
    assert db.count("logs") == 2
    perf = {r["metric_type"]: r for r in db.rows("performance_metrics")}
    assert {k: (r["value"], r["unit"]) for k, r in perf.items()} == {
        "startup_time": (1250.0, "ms"),
        "memory": (180.5, "MB"),
    }
    startup = perf["startup_time"]
    assert startup["user_id"] == hash_id("user_123")
    assert startup["app_version"] == "1.2.1"
    assert str(startup["timestamp"]).startswith("2025-01-15 12:00:01")
    assert "john@example.com" not in db.dump()


def test_telling_logger_accepts_a_single_object_and_gzip(server, db):
    body = gzip.compress(orjson.dumps(TELLING_LOGGER_LOG))
    response = requests.post(
        f"{server.http_url}/api/v1/logs",
        data=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "received": 1}
    assert db.count("logs") == 1


def test_telling_logger_retry_is_idempotent(server, db):
    for _ in range(3):
        response = post(server, "/api/v1/logs", [TELLING_LOGGER_LOG, PERFORMANCE_LOG])
        assert response.status_code == 200
    assert db.count("logs") == 2
    assert db.count("performance_metrics") == 2
    assert db.count("user_properties") == 3


def test_telling_logger_older_user_property_does_not_overwrite_newer(server, db):
    def log(log_id: str, when: str, tier: str) -> dict:
        return {
            **TELLING_LOGGER_LOG,
            "id": log_id,
            "timestamp": when,
            "metadata": {"_user_properties": {"subscription_tier": tier}},
        }

    def tier() -> object:
        [row] = db.rows("user_properties")
        return db.json(row["property_value"])

    assert post(server, "/api/v1/logs", [log("2", "2025-02-01T00:00:00Z", "premium")]).ok
    assert tier() == "premium"
    assert post(server, "/api/v1/logs", [log("1", "2025-01-01T00:00:00Z", "free")]).ok
    assert tier() == "premium"  # sent late, but older
    assert post(server, "/api/v1/logs", [log("3", "2025-03-01T00:00:00Z", "enterprise")]).ok
    assert tier() == "enterprise"
    assert db.count("logs") == 3


def test_telling_logger_same_client_id_from_two_users_keeps_both(server, db):
    """Client ids are epoch milliseconds: two devices can send the same one."""
    other = {**TELLING_LOGGER_LOG, "userId": "user_456", "sessionId": "user_456_1700000000000"}
    assert post(server, "/api/v1/logs", [TELLING_LOGGER_LOG]).status_code == 200
    assert post(server, "/api/v1/logs", [other]).status_code == 200
    users = sorted(r["user_id"] for r in db.rows("logs"))
    assert users == sorted([hash_id("user_123"), hash_id("user_456")])


def test_telling_logger_bad_field_is_400_naming_it(server, db):
    cases = [
        ({**TELLING_LOGGER_LOG, "level": "loud"}, "[0].level"),
        ({**TELLING_LOGGER_LOG, "type": "weird"}, "[0].type"),
        ({**TELLING_LOGGER_LOG, "timestamp": "yesterday"}, "[0].timestamp"),
        ({k: v for k, v in TELLING_LOGGER_LOG.items() if k != "message"}, "[0].message"),
        ({**TELLING_LOGGER_LOG, "metadata": "not an object"}, "[0].metadata"),
        ({**TELLING_LOGGER_LOG, "device": ["iOS"]}, "[0].device"),
    ]
    for item, field in cases:
        response = post(server, "/api/v1/logs", [item])
        assert response.status_code == 400, (field, response.text)
        body = response.json()
        assert body["success"] is False
        assert body["field"] == field
        assert field in body["error"]
    # One bad item refuses the whole request: nothing is stored.
    response = post(
        server, "/api/v1/logs", [TELLING_LOGGER_LOG, {**TELLING_LOGGER_LOG, "level": 7}]
    )
    assert response.status_code == 400
    assert response.json()["field"] == "[1].level"
    assert db.count("logs") == 0 and db.count("user_properties") == 0


def test_telling_logger_malformed_json_is_400(server, db):
    response = requests.post(
        f"{server.http_url}/api/v1/logs",
        data=b"[{",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")


# --- Log Ingestion API --------------------------------------------------------------------------


def test_log_ingestion_example_ingest(server, db):
    response = post(server, "/api/v1/ingest", LOG_INGESTION_EVENT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["received"] == 1
    assert body["event_id"] == "unique-event-id"

    # behavioral, no feature name, not an activity name: an analytics log.
    [log] = db.rows("logs")
    assert (log["level"], log["type"], log["message"]) == ("info", "analytics", "habit_completed")
    assert str(log["timestamp"]).startswith("2024-01-15 10:30:00")
    assert log["user_id"] == hash_id("user-123")
    assert log["session_id"] == hash_id("session-456")
    assert (log["device_platform"], log["device_model"], log["app_version"]) == (
        "ios",
        "iPhone 14",
        "1.0.0",
    )
    metadata = db.json(log["metadata"])
    assert metadata["habit_id"] == "123" and metadata["streak"] == 5
    assert metadata["event_name"] == "habit_completed"
    assert (metadata["sequence_number"], metadata["priority"]) == (1, "normal")
    for table in ("performance_metrics", "feature_usage", "user_activity"):
        assert db.count(table) == 0

    # Retried with the same event_id: still one row.
    assert post(server, "/api/v1/ingest", LOG_INGESTION_EVENT).status_code == 200
    assert db.count("logs") == 1
    dump = db.dump()
    assert "user-123" not in dump and "session-456" not in dump


def test_log_ingestion_batch_routes_each_event_type(server, db):
    events = [
        event("e-perf", "performance", "api_latency", value=123.4, unit="ms"),
        event("e-perf-2", "performance", "cold_start", duration_ms=900),
        event(
            "e-err",
            "error",
            "crash",
            message="NullPointerException for mia@example.com",
            stack_trace="at Main.kt:12",
        ),
        event("e-feat", "behavioral", "button_tap", feature_name="dark_mode", action="enabled"),
        event("e-login", "behavioral", "user.login"),
        event("e-start", "observability", "session_started"),
        event("e-logout", "behavioral", "logout"),
        event("e-tele", "telemetry", "api_call", endpoint="/habits"),
    ]
    response = post(server, "/api/v1/batch-ingest", {"logs": events})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "received": len(events)}

    perf = {r["metric_type"]: r for r in db.rows("performance_metrics")}
    assert {k: (r["value"], r["unit"]) for k, r in perf.items()} == {
        "api_latency": (123.4, "ms"),
        "cold_start": (900.0, "ms"),
    }
    assert perf["api_latency"]["user_id"] == hash_id("user-123")
    assert perf["api_latency"]["app_version"] == "1.0.0"

    logs = {db.json(r["metadata"])["event_name"]: r for r in db.rows("logs")}
    assert set(logs) == {"crash", "api_call"}
    crash = logs["crash"]
    assert (crash["level"], crash["type"]) == ("error", "exception")
    assert crash["message"] == f"NullPointerException for {hash_id('mia@example.com')}"
    assert crash["stack_trace"] == "at Main.kt:12"
    assert (crash["device_platform"], crash["device_os_version"]) == ("android", "14")
    assert (logs["api_call"]["level"], logs["api_call"]["type"]) == ("info", "event")

    [feature] = db.rows("feature_usage")
    assert (feature["feature_name"], feature["action"]) == ("dark_mode", "enabled")
    assert feature["user_id"] == hash_id("user-123")
    assert feature["session_id"] == hash_id("session-456")

    activity = sorted(r["event_type"] for r in db.rows("user_activity"))
    assert activity == ["login", "logout", "session_start"]
    assert "mia@example.com" not in db.dump() and "user-123" not in db.dump()

    # The whole batch again: no duplicates.
    assert post(server, "/api/v1/batch-ingest", {"logs": events}).status_code == 200
    assert db.count("performance_metrics") == 2
    assert db.count("logs") == 2
    assert db.count("feature_usage") == 1
    assert db.count("user_activity") == 3


def test_log_ingestion_batch_over_max_batch_size_is_400(make_server, db):
    server = make_server(max_batch_size=3)
    events = [event(f"e-{i}", "telemetry", "tick") for i in range(4)]
    response = post(server, "/api/v1/batch-ingest", {"logs": events})
    assert response.status_code == 400
    assert response.json()["field"] == "logs"
    assert "3" in response.json()["error"]
    assert db.count("logs") == 0
    response = post(server, "/api/v1/batch-ingest", {"logs": events[:3]})
    assert response.status_code == 200
    assert db.count("logs") == 3
    # The Telling Logger API's array is bounded by the same setting.
    logs = [{**TELLING_LOGGER_LOG, "id": str(i)} for i in range(4)]
    response = post(server, "/api/v1/logs", logs)
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert db.count("logs") == 3


def test_log_ingestion_bad_fields_are_400_naming_them(server, db):
    bad_type = copy.deepcopy(LOG_INGESTION_EVENT)
    bad_type["event_type"] = "gossip"
    no_name = {k: v for k, v in LOG_INGESTION_EVENT.items() if k != "event_name"}
    bad_props = {**LOG_INGESTION_EVENT, "properties": [1, 2]}
    bad_time = {**LOG_INGESTION_EVENT, "timestamp": "15/01/2024"}
    no_value = event("e-x", "performance", "api_latency", unit="ms")
    for body, field in (
        (bad_type, "event_type"),
        (no_name, "event_name"),
        (bad_props, "properties"),
        (bad_time, "timestamp"),
        (no_value, "properties.value"),
        ([LOG_INGESTION_EVENT], "body"),
    ):
        response = post(server, "/api/v1/ingest", body)
        assert response.status_code == 400, (field, response.text)
        assert response.json()["field"] == field
        assert response.json()["success"] is False

    for body, field in (
        ({"logs": []}, "logs"),
        ({"events": [LOG_INGESTION_EVENT]}, "logs"),
        ({"logs": [LOG_INGESTION_EVENT, "x"]}, "logs[1]"),
        ({"logs": [LOG_INGESTION_EVENT, bad_type]}, "logs[1].event_type"),
    ):
        response = post(server, "/api/v1/batch-ingest", body)
        assert response.status_code == 400, (field, response.text)
        assert response.json()["field"] == field
    assert db.count("logs") == 0
