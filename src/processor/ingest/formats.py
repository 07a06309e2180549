"""The wire formats the receivers accept, as one table: how each is decoded, routed to rows
and labelled, and how an OTLP export is answered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

from processor.ingest.decode import Signal, decode, decode_json, json_document
from processor.mapping import (
    RouteContext,
    fast,
    log_ingestion,
    route_logs,
    route_metrics,
    route_traces,
    telling_logger,
)
from processor.mapping.logs import route_log_views
from processor.mapping.rows import Batch
from processor.mapping.traces import route_trace_views
from processor.mapping.views import ResourceView, log_views, trace_views

# Routed rows, plus the reply a JSON API promises (None for OTLP, answered by `response`).
Routed = tuple[Batch, dict[str, Any] | None]


@dataclass(frozen=True)
class WireFormat:
    name: str
    label: str  # the `signal` label of the self-metrics
    decode: Callable[[bytes], Any]
    route: Callable[[Any, RouteContext, int], Routed]

    def process(self, body: bytes, ctx: RouteContext, max_batch_size: int) -> Routed:
        """Decode and route; CPU work, run in the routing thread."""
        return self.route(self.decode(body), ctx, max_batch_size)


_OTLP_ROUTERS: dict[Signal, Callable[[Any, RouteContext], Batch]] = {
    Signal.TRACES: route_traces,
    Signal.LOGS: route_logs,
    Signal.METRICS: route_metrics,
}


def _otlp_route(signal: Signal) -> Callable[[Any, RouteContext, int], Routed]:
    router = _OTLP_ROUTERS[signal]

    def route(message: Any, ctx: RouteContext, _max_batch_size: int) -> Routed:
        return router(message, ctx), None

    return route


def _json_api_route(
    mapper: Callable[..., tuple[Batch, dict[str, Any]]],
) -> Callable[[Any, RouteContext, int], Routed]:
    def route(document: Any, ctx: RouteContext, max_batch_size: int) -> Routed:
        return mapper(document, ctx, max_batch_size=max_batch_size)

    return route


def _protobuf(signal: Signal) -> Callable[[bytes], Message]:
    return lambda data: decode(signal, data)


def trace_views_of(data: bytes) -> list[ResourceView]:
    """OTLP protobuf traces as views: the compiled fast path, else the reference (upb)."""
    views = fast.walk_traces(data)
    return views if views is not None else trace_views(decode(Signal.TRACES, data))


def log_views_of(data: bytes) -> list[ResourceView]:
    """OTLP protobuf logs as views: the compiled fast path, else the reference (upb)."""
    views = fast.walk_logs(data)
    return views if views is not None else log_views(decode(Signal.LOGS, data))


def _views_route(
    router: Callable[[Any, RouteContext], Batch],
) -> Callable[[Any, RouteContext, int], Routed]:
    def route(views: Any, ctx: RouteContext, _max_batch_size: int) -> Routed:
        return router(views, ctx), None

    return route


def _json(signal: Signal) -> Callable[[bytes], Message]:
    return lambda data: decode_json(signal, data)


OTLP_PROTOBUF = {
    Signal.TRACES: WireFormat(
        "otlp-protobuf-traces", "traces", trace_views_of, _views_route(route_trace_views)
    ),
    Signal.LOGS: WireFormat(
        "otlp-protobuf-logs", "logs", log_views_of, _views_route(route_log_views)
    ),
    Signal.METRICS: WireFormat(
        "otlp-protobuf-metrics", "metrics", _protobuf(Signal.METRICS), _otlp_route(Signal.METRICS)
    ),
}
OTLP_JSON = {s: WireFormat(f"otlp-json-{s}", str(s), _json(s), _otlp_route(s)) for s in Signal}
TELLING_LOGGER = WireFormat(
    "telling-logger", "logs", json_document, _json_api_route(telling_logger.route_logs)
)
TELLING_LOGGER_USER_PROPERTIES = WireFormat(
    "telling-logger-user-properties",
    "user_properties",
    json_document,
    _json_api_route(telling_logger.route_user_properties),
)
LOG_INGESTION_EVENT = WireFormat(
    "log-ingestion-event", "ingest", json_document, _json_api_route(log_ingestion.route_event)
)
LOG_INGESTION_BATCH = WireFormat(
    "log-ingestion-batch", "ingest", json_document, _json_api_route(log_ingestion.route_batch)
)


# signal -> (response message, its partial_success field counting what was rejected)
RESPONSES: dict[Signal, tuple[type[Message], str]] = {
    Signal.TRACES: (trace_pb.ExportTraceServiceResponse, "rejected_spans"),
    Signal.LOGS: (logs_pb.ExportLogsServiceResponse, "rejected_log_records"),
    Signal.METRICS: (metrics_pb.ExportMetricsServiceResponse, "rejected_data_points"),
}


def response(signal: Signal, rejected: int, error_message: str) -> Message:
    """The OTLP Export response; partial_success only when something was rejected or noted."""
    kind, rejected_field = RESPONSES[signal]
    message = kind()
    if rejected or error_message:
        partial = message.partial_success
        setattr(partial, rejected_field, rejected)
        partial.error_message = error_message
    return message
