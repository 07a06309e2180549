"""Spans and logs made by the real OpenTelemetry SDK land in every table (SPEC §6)."""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from processor.mapping.privacy import make_hasher
from tests.helpers.sdk import grpc_tracer_provider, otel_logger

hash_id = make_hasher()


def test_python_logging_lands_in_logs_with_levels(server, db):
    exporter = OTLPLogExporter(endpoint=server.grpc_endpoint, insecure=True, timeout=10)
    with otel_logger(exporter, **{"os.name": "iOS", "service.version": "1.2.0"}) as logger:
        logger.debug("cache warmed")
        logger.info("user signed in", extra={"user.id": "carol-1", "log.type": "analytics"})
        logger.warning("disk at 91%")
        logger.error("payment failed for dave@example.com from 10.1.2.3")
        logger.critical("out of memory")
    rows = {r["message"]: r for r in db.rows("logs")}
    assert rows["cache warmed"]["level"] == "debug"
    assert rows["user signed in"]["level"] == "info"
    assert rows["user signed in"]["type"] == "analytics"
    assert rows["user signed in"]["user_id"] == hash_id("carol-1")
    assert rows["disk at 91%"]["level"] == "warning"
    assert rows["out of memory"]["level"] == "fatal"
    error = next(r for r in rows.values() if r["level"] == "error")
    assert "dave@example.com" not in error["message"] and "10.1.2.3" not in error["message"]
    assert hash_id("dave@example.com") in error["message"]
    for row in rows.values():
        assert row["service_name"] == "shop"
        assert row["device_platform"] == "iOS"
        assert row["app_version"] == "1.2.0"
        assert row["severity_number"] is not None
    assert "carol-1" not in db.dump()


def test_spans_feed_feature_activity_performance_and_properties(server, db):
    provider = grpc_tracer_provider(server.grpc_endpoint)
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span(
        "export report",
        attributes={
            "feature.name": "reports",
            "feature.action": "exported",
            "user.id": "erin-5",
            "user.properties.plan": "enterprise",
            "user.properties.seats": 40,
            "user.email": "erin@example.com",
        },
    ) as span:
        span.add_event("session.start", {"session.id": "s-77"})
        span.add_event("feature", {"feature.name": "charts", "feature.action": "viewed"})
        time.sleep(0.002)
    with tracer.start_as_current_span(
        "user.login", attributes={"user.id": "erin-5", "tenant.id": "t-1"}
    ):
        pass
    with tracer.start_as_current_span(
        "render", attributes={"performance.metric": "screen_load", "user.id": "erin-5"}
    ):
        time.sleep(0.003)
    with tracer.start_as_current_span(
        "measure",
        attributes={
            "performance.metric": "fps",
            "performance.value": 58.5,
            "performance.unit": "fps",
        },
    ):
        pass
    with tracer.start_as_current_span("checkout", kind=SpanKind.SERVER) as span:
        span.set_status(Status(StatusCode.ERROR))
        try:
            raise ValueError("card declined for frank@example.com")
        except ValueError as exc:
            span.record_exception(exc)
    provider.shutdown()

    features = sorted((r["feature_name"], r["action"]) for r in db.rows("feature_usage"))
    assert features == [("charts", "viewed"), ("reports", "exported")]
    reports = db.rows("feature_usage", "feature_name = 'reports'")[0]
    assert reports["user_id"] == hash_id("erin-5")
    assert reports["duration_ms"] >= 2
    metadata = db.json(reports["event_metadata"])
    assert metadata["user.email"] == hash_id("erin@example.com")

    activity = sorted((r["event_type"], r["user_id"]) for r in db.rows("user_activity"))
    assert activity == [("login", hash_id("erin-5")), ("session_start", hash_id("erin-5"))]
    login = db.rows("user_activity", "event_type = 'login'")[0]
    assert login["organization_id"] == hash_id("t-1")
    session = db.rows("user_activity", "event_type = 'session_start'")[0]
    assert session["session_id"] == hash_id("s-77")

    perf = {r["metric_type"]: r for r in db.rows("performance_metrics")}
    assert perf["screen_load"]["value"] >= 3 and perf["screen_load"]["unit"] == "ms"
    assert perf["fps"]["value"] == 58.5 and perf["fps"]["unit"] == "fps"

    props = {r["property_key"]: db.json(r["property_value"]) for r in db.rows("user_properties")}
    assert props == {"plan": "enterprise", "seats": 40}

    exceptions = db.rows("logs", "type = 'exception'")
    assert len(exceptions) == 1
    assert exceptions[0]["level"] == "error"
    assert exceptions[0]["message"].startswith("ValueError: card declined for ")
    assert "Traceback" in exceptions[0]["stack_trace"]

    dump = db.dump()
    for raw in ("erin-5", "erin@example.com", "frank@example.com", "s-77", "t-1'"):
        assert raw not in dump


def test_performance_log_attributes_become_metric_rows(server, db):
    exporter = OTLPLogExporter(endpoint=server.grpc_endpoint, insecure=True, timeout=10)
    with otel_logger(exporter) as logger:
        logger.info(
            "App Startup",
            extra={
                "log.type": "performance",
                "startup_time_ms": 1250,
                "memory_mb": 180.5,
                "user.id": "gina-3",
                "_user_properties": {"tier": "premium"},
            },
        )
    perf = {r["metric_type"]: (r["value"], r["unit"]) for r in db.rows("performance_metrics")}
    assert perf == {"startup_time": (1250.0, "ms"), "memory": (180.5, "MB")}
    props = db.rows("user_properties")
    assert [(r["property_key"], db.json(r["property_value"])) for r in props] == [
        ("tier", "premium")
    ]
    assert props[0]["user_id"] == hash_id("gina-3")


def test_user_set_by_a_middleware_child_span_reaches_the_endpoint_row(server, db):
    # Batched, as an app's SDK exports: the spans of a request travel in one export request.
    provider = grpc_tracer_provider(server.grpc_endpoint, batched=True)
    tracer = provider.get_tracer("app")
    http = {"http.request.method": "GET", "http.route": "/orders/{id}"}
    with (
        tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER, attributes=http),
        tracer.start_as_current_span("auth middleware"),  # INTERNAL, a child
    ):
        trace.get_current_span().set_attribute("user.id", "hana-8")
        trace.get_current_span().set_attribute("session.id", "s-hana")
    with tracer.start_as_current_span(
        "GET", kind=SpanKind.SERVER, attributes={"http.request.method": "GET"}
    ):
        pass
    provider.shutdown()

    rows = {r["endpoint"]: r for r in db.rows("endpoint_usage")}
    assert set(rows) == {"/orders/{id}", "GET"}  # no route, path or URL: the span name
    orders = rows["/orders/{id}"]
    assert (orders["user_id"], orders["session_id"]) == (hash_id("hana-8"), hash_id("s-hana"))
    assert orders["organization_id"] is None
    assert rows["GET"]["user_id"] is None  # another trace: nothing of hana's
    assert "hana-8" not in db.dump()
