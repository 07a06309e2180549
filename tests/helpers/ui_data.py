"""Traffic for the web UI tests, sent by the real OpenTelemetry SDK (spans and logs over
OTLP/HTTP) and the Telling Logger API (performance logs), spread over the last hours, then
one rollup round so the KPI tiles exist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from processor.analytics.runner import rollup_once
from processor.storage.writer import create_db_engine
from tests.helpers.api_data import send_logs, tl_log
from tests.helpers.rollups import clean
from tests.helpers.sdk import otel_logger, resource

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"
LOG_COUNT = 64  # more than one page of 50
# route, method, status, duration ms, requests: spread over the last 5 hours
ROUTES = [
    ("/api/items", "GET", 200, [12, 15, 18, 22, 30, 45, 60, 80]),
    ("/api/orders", "POST", 201, [40, 55, 70, 90, 120]),
    ("/api/orders", "POST", 500, [300, 450]),
    ("/api/users/{id}", "GET", 404, [5, 7, 9]),
]
FEATURES = [("search", 6), ("checkout", 3)]


def _ns(t: datetime) -> int:
    return int(t.timestamp() * 1e9)


def send_spans(base_url: str, key: str | None, now: datetime) -> None:
    headers = {"x-api-key": key} if key else {}
    provider = TracerProvider(resource=resource(**{"service.version": "1.4.0"}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{base_url}/v1/traces", headers=headers, timeout=10)
        )
    )
    tracer = provider.get_tracer("ui-test")
    n = 0
    for route, method, status, durations in ROUTES:
        for duration in durations:
            start = now - timedelta(hours=(n % 5) + 0.5, minutes=n)
            span = tracer.start_span(
                f"{method} {route}",
                kind=SpanKind.SERVER,
                start_time=_ns(start),
                attributes={
                    "http.request.method": method,
                    "http.route": route,
                    "http.response.status_code": status,
                    "user.id": f"user-{n % 4}",
                    "session.id": f"session-{n % 4}",
                },
            )
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=_ns(start + timedelta(milliseconds=duration)))
            n += 1
    for feature, uses in FEATURES:
        for i in range(uses):
            start = now - timedelta(hours=i % 3 + 1, minutes=i)
            span = tracer.start_span(
                f"feature {feature}",
                start_time=_ns(start),
                attributes={"feature.name": feature, "user.id": f"user-{i % 3}"},
            )
            span.end(end_time=_ns(start + timedelta(milliseconds=20 + i)))
    provider.shutdown()


def send_sdk_logs(base_url: str, key: str | None) -> None:
    headers = {"x-api-key": key} if key else {}
    exporter = OTLPLogExporter(endpoint=f"{base_url}/v1/logs", headers=headers, timeout=10)
    with otel_logger(exporter, "ui") as logger:
        logger.error(XSS, extra={"user.id": "mallory", "log.type": "security"})
        for i in range(LOG_COUNT - 1):
            user = "alice" if i % 3 == 0 else "bob"
            if i % 7 == 0:
                logger.warning(f"slow response {i}", extra={"user.id": user, "log.type": "network"})
            else:
                logger.info(f"opened screen {i}", extra={"user.id": user, "log.type": "analytics"})


def send_performance(server: Any, key: str | None, now: datetime) -> None:
    logs = [
        tl_log(
            i,
            user="perf-user",
            type="performance",
            message="App Startup",
            when=now - timedelta(hours=i % 4, minutes=5),
            metadata={"startup_time_ms": v},
        )
        for i, v in enumerate([800, 950, 1000, 1100, 1250, 1400, 1800, 2200])
    ]
    send_logs(server, key, logs)


def rollup_engine(server: Any) -> Any:
    from processor.settings import Settings

    return create_db_engine(Settings(database_url=server.settings.database_url).sqlalchemy_url)


def empty_rollups(server: Any) -> None:
    """The rollup tables outlive a test's raw rows; start each test without them."""
    engine = rollup_engine(server)
    try:
        clean(engine)
    finally:
        engine.dispose()


def populate(server: Any, key: str | None = None) -> datetime:
    """Send the traffic, run one rollup round; return the time it was sent at."""
    empty_rollups(server)
    now = datetime.now(UTC)
    send_spans(server.http_url, key, now)
    send_sdk_logs(server.http_url, key)
    send_performance(server, key, now)
    engine = rollup_engine(server)
    try:
        rollup_once(engine)
    finally:
        engine.dispose()
    return now
