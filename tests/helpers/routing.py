"""Routing built OTLP items as one request, for the router's unit tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from processor.ingest.decode import Signal
from processor.mapping import RouteContext, route_logs, route_metrics, route_traces
from processor.mapping.rows import Batch
from tests.helpers.fastpath import compare
from tests.helpers.otlp import logs, metrics, traces

# item type: (the request builder, the router)
SIGNALS: dict[type, tuple[Any, Any]] = {
    Span: (traces, route_traces),
    LogRecord: (logs, route_logs),
    Metric: (metrics, route_metrics),
}

FAST = {Span: Signal.TRACES, LogRecord: Signal.LOGS}


def route(ctx: RouteContext, *items: Any, resource: dict[str, Any] | None = None) -> Batch:
    """Route spans, log records or metrics (all of one kind) as one request under ``resource``."""
    (kind,) = {type(item) for item in items}
    build, router = SIGNALS[kind]
    request = build(*items, resource=resource)
    batch: Batch = router(request, ctx)
    if kind in FAST:  # every router test is also a fast-path equivalence test
        compare(FAST[kind], request.SerializeToString(), ctx)
    return batch
