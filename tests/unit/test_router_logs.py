"""route_logs: log records to logs, feature, activity, metric and property rows."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from processor.mapping import RouteContext, route_logs
from processor.mapping.privacy import Hasher
from tests.helpers.otlp import (
    MS,
    SPAN_ID,
    T0,
    T0_DATETIME,
    TRACE_ID,
    log,
    logs,
    one,
    tables_with_rows,
)
from tests.helpers.routing import route
from tests.helpers.spec import ACTIVITIES


def test_log_record_gives_logs_row(ctx: RouteContext, h: Hasher) -> None:
    record = log(
        "payment accepted",
        {
            "user.id": "u1",
            "session.id": "s1",
            "os.name": "iOS",
            "os.version": "17.2",
            "device.model.name": "iPhone15,2",
            "app.build_id": "4711",
        },
        severity_number=9,
        severity_text="INFO",
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
    )
    batch = route(ctx, record, resource={"service.name": "payments", "service.version": "1.2"})
    row = one(batch.rows, "logs")
    assert (row.level, row.severity_number, row.type, row.message) == (
        "info",
        9,
        "general",
        "payment accepted",
    )
    assert (row.user_id, row.session_id, row.service_name) == (h("u1"), h("s1"), "payments")
    assert (
        row.device_platform,
        row.device_os_version,
        row.device_model,
        row.app_version,
        row.app_build_number,
    ) == ("iOS", "17.2", "iPhone15,2", "1.2", "4711")
    assert (row.trace_id, row.span_id) == (TRACE_ID.hex(), SPAN_ID.hex())
    assert row.timestamp == T0_DATETIME
    assert row.observed_timestamp is not None
    assert row.observed_timestamp.timestamp() == pytest.approx((T0 + MS) / 1e9)
    assert json.loads(row.metadata)["severity_text"] == "INFO"


def test_log_record_without_time_uses_observed_time(ctx: RouteContext) -> None:
    row = one(route(ctx, log("x", time=0, observed=T0)).rows, "logs")
    assert row.timestamp == T0_DATETIME


def test_log_record_without_trace_context_has_null_ids(ctx: RouteContext) -> None:
    row = one(route(ctx, log("x")).rows, "logs")
    assert (row.trace_id, row.span_id) == (None, None)


# --- level ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity_number", "level"),
    [
        (1, "trace"),
        (4, "trace"),
        (5, "debug"),
        (8, "debug"),
        (9, "info"),
        (12, "info"),
        (13, "warning"),
        (16, "warning"),
        (17, "error"),
        (20, "error"),
        (21, "fatal"),
        (24, "fatal"),
    ],
)
def test_level_from_severity_number_ranges(
    ctx: RouteContext, severity_number: int, level: str
) -> None:
    row = one(route(ctx, log("x", severity_number=severity_number)).rows, "logs")
    assert (row.level, row.severity_number) == (level, severity_number)


@pytest.mark.parametrize(
    ("severity_text", "level"),
    [
        ("TRACE", "trace"),
        ("debug", "debug"),
        ("Information", "info"),
        ("WARN", "warning"),
        ("warning", "warning"),
        ("ERROR", "error"),
        (" err ", "error"),
        ("CRITICAL", "fatal"),
        ("fatal", "fatal"),
        ("", "info"),
        ("verbose-ish", "info"),
    ],
)
def test_level_falls_back_to_severity_text(
    ctx: RouteContext, severity_text: str, level: str
) -> None:
    row = one(route(ctx, log("x", severity_text=severity_text)).rows, "logs")
    assert (row.level, row.severity_number) == (level, None)


def test_severity_number_wins_over_severity_text(ctx: RouteContext) -> None:
    row = one(route(ctx, log("x", severity_number=9, severity_text="ERROR")).rows, "logs")
    assert row.level == "info"


# --- type -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "event_name", "log_type"),
    [
        ({"log.type": "security"}, "", "security"),
        ({"log.type": "Network"}, "", "network"),
        ({"log.type": "crash"}, "", "crash"),
        ({"log.type": "bogus"}, "", "custom"),
        ({}, "", "general"),
        ({"exception.type": "ValueError"}, "", "exception"),
        ({}, "app.opened", "event"),
        ({"event.name": "app.opened"}, "", "event"),
    ],
)
def test_type_from_log_type_attribute(
    ctx: RouteContext, attributes: dict[str, Any], event_name: str, log_type: str
) -> None:
    row = one(route(ctx, log("x", attributes, event_name=event_name)).rows, "logs")
    assert row.type == log_type


# --- message ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"order": 7, "items": ["a", "b"], "paid": True},
        [1, "two", 3.5],
        42,
        2.5,
        True,
    ],
)
def test_non_string_body_is_serialised_as_json(ctx: RouteContext, body: Any) -> None:
    row = one(route(ctx, log(body)).rows, "logs")
    assert json.loads(row.message) == body


def test_bytes_body_is_base64(ctx: RouteContext) -> None:
    row = one(route(ctx, log(b"\x00\x01binary")).rows, "logs")
    assert base64.b64decode(row.message) == b"\x00\x01binary"


def test_string_body_is_the_message(ctx: RouteContext) -> None:
    row = one(route(ctx, log('plain "text" {not json')).rows, "logs")
    assert row.message == 'plain "text" {not json'


@pytest.mark.parametrize(("body", "message"), [(None, "app.opened"), ("", "app.opened")])
def test_empty_body_falls_back_to_event_name(ctx: RouteContext, body: Any, message: str) -> None:
    row = one(route(ctx, log(body, event_name="app.opened")).rows, "logs")
    assert row.message == message


def test_long_string_body_is_kept_up_to_the_text_limit(ctx: RouteContext) -> None:
    body = "x" * 10_000
    row = one(route(ctx, log(body)).rows, "logs")
    assert row.message == body


def test_long_stack_trace_is_kept_up_to_the_text_limit(ctx: RouteContext) -> None:
    stack = "  File 'app.py', line 1\n" * 400
    attributes = {"exception.type": "E", "exception.stacktrace": stack}
    row = one(route(ctx, log("failed", attributes)).rows, "logs")
    assert row.stack_trace == stack


# --- feature_usage and user_activity ----------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "action"),
    [
        ({"feature.name": "share", "feature.action": "opened"}, "opened"),
        ({"feature.name": "share"}, "used"),
    ],
)
def test_feature_name_on_log_record_gives_feature_usage(
    ctx: RouteContext, h: Hasher, attributes: dict[str, Any], action: str
) -> None:
    attributes = {**attributes, "user.id": "u1", "feature.duration_ms": 250}
    batch = route(ctx, log("x", attributes), resource={"deployment.type": "saas"})
    row = one(batch.rows, "feature_usage")
    assert (row.feature_name, row.action, row.duration_ms) == ("share", action, 250.0)
    assert (row.user_id, row.deployment_type) == (h("u1"), "saas")


@pytest.mark.parametrize(("name", "event_type"), ACTIVITIES)
def test_user_activity_from_log_record_event_name(
    ctx: RouteContext, h: Hasher, name: str, event_type: str
) -> None:
    batch = route(ctx, log(None, {"user.id": "u1", "tenant.id": "t1"}, event_name=name))
    row = one(batch.rows, "user_activity")
    assert (row.event_type, row.user_id, row.organization_id) == (event_type, h("u1"), h("t1"))


@pytest.mark.parametrize(("name", "event_type"), ACTIVITIES)
def test_user_activity_from_log_event_name_attribute(
    ctx: RouteContext, name: str, event_type: str
) -> None:
    batch = route(ctx, log("signed in", {"event.name": name}))
    assert one(batch.rows, "user_activity").event_type == event_type


def test_log_record_event_name_wins_over_attribute(ctx: RouteContext) -> None:
    record = log(None, {"event.name": "user.logout"}, event_name="user.login")
    assert one(route(ctx, record).rows, "user_activity").event_type == "login"


def test_log_record_event_name_hides_an_activity_attribute(ctx: RouteContext) -> None:
    record = log(None, {"event.name": "user.login"}, event_name="page.view")
    assert route(ctx, record).rows["user_activity"] == []


def test_ordinary_log_gives_only_a_logs_row(ctx: RouteContext) -> None:
    assert tables_with_rows(route(ctx, log("hello", {"a": 1})).rows) == {"logs"}


# --- performance_metrics ----------------------------------------------------------------------


def test_performance_metric_log_record(ctx: RouteContext) -> None:
    attributes = {"performance.metric": "api_latency", "performance.value": 87, "user.id": "u"}
    row = one(route(ctx, log("x", attributes)).rows, "performance_metrics")
    assert (row.metric_type, row.value, row.unit) == ("api_latency", 87.0, None)


def test_performance_metric_log_record_without_value_gives_no_metric(ctx: RouteContext) -> None:
    batch = route(ctx, log("x", {"performance.metric": "api_latency"}))
    assert batch.rows["performance_metrics"] == []


def test_performance_log_gives_one_row_per_known_attribute(ctx: RouteContext) -> None:
    attributes = {
        "log.type": "performance",
        "startup_time_ms": 1200,
        "fps": 58.5,
        "memory_mb": 256,
        "screen_load_ms": "300",
        "battery_pct": 80,
    }
    batch = route(ctx, log("perf", attributes), resource={"service.version": "3.0"})
    found = {
        r.metric_type: (r.value, r.unit, r.app_version) for r in batch.rows["performance_metrics"]
    }
    assert found == {
        "startup_time": (1200.0, "ms", "3.0"),
        "fps": (58.5, "fps", "3.0"),
        "memory": (256.0, "MB", "3.0"),
        "screen_load": (300.0, "ms", "3.0"),
    }
    ids = [r.id for r in batch.rows["performance_metrics"]]
    assert len(set(ids)) == 4


def test_performance_log_gives_its_named_metric_and_its_attributes(ctx: RouteContext) -> None:
    attributes = {
        "log.type": "performance",
        "performance.metric": "api_latency",
        "performance.value": 87,
        "performance.unit": "ms",
        "fps": 60,
    }
    batch = route(ctx, log("perf", attributes))
    found = [(r.metric_type, r.value, r.unit) for r in batch.rows["performance_metrics"]]
    assert found == [("api_latency", 87.0, "ms"), ("fps", 60.0, "fps")]
    assert len({r.id for r in batch.rows["performance_metrics"]}) == 2


def test_performance_attributes_outside_performance_logs_are_not_metrics(
    ctx: RouteContext,
) -> None:
    batch = route(ctx, log("x", {"log.type": "general", "fps": 60, "memory_mb": 100}))
    assert batch.rows["performance_metrics"] == []


# --- user_properties --------------------------------------------------------------------------


def test_user_properties_from_log_record(ctx: RouteContext, h: Hasher) -> None:
    attributes = {
        "enduser.id": "u1",
        "user.properties.country": "NZ",
        "_user_properties": {"plan": {"tier": "gold", "seats": 3}},
    }
    batch = route(ctx, log("x", attributes))
    found = {r.property_key: json.loads(r.property_value) for r in batch.rows["user_properties"]}
    assert found == {"country": "NZ", "plan": {"tier": "gold", "seats": 3}}
    assert {r.user_id for r in batch.rows["user_properties"]} == {h("u1")}


# --- rejections and determinism ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (log("a", trace_id=b"\x01" * 8), "trace_id"),
        (log("b", trace_id=TRACE_ID, span_id=b"\x01" * 16), "span_id"),
        (log("c", time=0, observed=0), "time_unix_nano"),
    ],
)
def test_unusable_log_record_is_rejected_and_the_rest_is_routed(
    ctx: RouteContext, bad: LogRecord, reason: str
) -> None:
    batch = route(ctx, bad, log("good"))
    assert (batch.received, batch.rejected) == (2, 1)
    assert reason in batch.error_message
    assert one(batch.rows, "logs").message == "good"


def test_routing_the_same_logs_twice_gives_the_same_row_ids(ctx: RouteContext) -> None:
    def request() -> Any:
        return logs(
            log("a", {"feature.name": "f", "user.id": "u", "user.properties.k": 1}),
            log("b", {"log.type": "performance", "fps": 30}, event_name="user.login"),
        )

    first, second = route_logs(request(), ctx), route_logs(request(), ctx)
    first_ids = {t: [r.id for r in rows] for t, rows in first.rows.items()}
    assert first_ids == {t: [r.id for r in rows] for t, rows in second.rows.items()}
    assert len(first_ids["logs"]) == 2 and len(set(first_ids["logs"])) == 2

    other = route_logs(request(), RouteContext(hasher=ctx.hasher, project_id=7, now=ctx.now))
    other_ids = {r.id for rows in other.rows.values() for r in rows}
    assert not other_ids & {i for ids in first_ids.values() for i in ids}


def test_log_records_differing_only_in_resource_get_different_ids(ctx: RouteContext) -> None:
    a = route(ctx, log("same"), resource={"service.name": "a"})
    b = route(ctx, log("same"), resource={"service.name": "b"})
    assert one(a.rows, "logs").id != one(b.rows, "logs").id
