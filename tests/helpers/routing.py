"""Routing built OTLP items as one request, for the router's unit tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from processor.mapping import RouteContext, route_logs, route_metrics, route_traces
from processor.mapping.rows import Batch
from tests.helpers.otlp import logs, metrics, traces

# item type: (the request builder, the router)
SIGNALS: dict[type, tuple[Any, Any]] = {
    Span: (traces, route_traces),
    LogRecord: (logs, route_logs),
    Metric: (metrics, route_metrics),
}


def route(ctx: RouteContext, *items: Any, resource: dict[str, Any] | None = None) -> Batch:
    """Route spans, log records or metrics (all of one kind) as one request under ``resource``."""
    (kind,) = {type(item) for item in items}
    build, router = SIGNALS[kind]
    batch: Batch = router(build(*items, resource=resource), ctx)
    return batch
