"""Record views: what routing reads of a span or log record, as plain tuples.

Two sources build them, field for field the same: the reference (`trace_views`,
`log_views`: upb messages, `values.attributes`) and the compiled fast path (`mapping.fast`,
straight from the wire). The routers (`traces`, `logs`) read only views, so one routing code
serves both, and the fast path is tested by comparing its views and rows with these.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from processor.mapping.values import MAX_STRING, MAX_TEXT, any_value, attributes, full_string

STACKTRACE_KEY = "exception.stacktrace"


class EventView(NamedTuple):
    name: str
    time_unix_nano: int
    attributes: dict[str, Any]
    stacktrace: str | None  # see long_stacktrace


class SpanView(NamedTuple):
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    name: str
    kind: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: int
    attributes: dict[str, Any]
    events: list[EventView]


class LogView(NamedTuple):
    trace_id: bytes
    span_id: bytes
    time_unix_nano: int
    observed_time_unix_nano: int
    severity_number: int
    severity_text: str
    event_name: str
    body: Any  # values.any_value(body, limit=MAX_TEXT); None without a body
    attributes: dict[str, Any]
    stacktrace: str | None
    raw: bytes  # the record as upb serializes it (deterministic): the source of its row key


# (resource attributes, the resource as serialized (logs; b"" for traces), its records)
ResourceView = tuple[dict[str, Any], bytes, list[Any]]


def long_stacktrace(kvs: Iterable[KeyValue], attrs: dict[str, Any]) -> str | None:
    """When ``attrs``' ``exception.stacktrace`` is a string cut at MAX_STRING: the first string
    KeyValue with exactly that key, clipped at MAX_TEXT (as ``values.long_text`` finds it);
    else None. Only a stack trace that long needs it."""
    short = attrs.get(STACKTRACE_KEY)
    if not isinstance(short, str) or len(short) < MAX_STRING:
        return None
    return full_string(kvs, STACKTRACE_KEY)


def stack_text(short: Any, stacktrace: str | None) -> Any:
    """``values.long_text`` on a view: the stack trace clipped at MAX_TEXT, not MAX_STRING."""
    return short if stacktrace is None else stacktrace


def trace_views(request: ExportTraceServiceRequest) -> list[ResourceView]:
    return [
        (
            attributes(resource_spans.resource.attributes),
            b"",
            [
                SpanView(
                    span.trace_id,
                    span.span_id,
                    span.parent_span_id,
                    span.name,
                    span.kind,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    span.status.code,
                    attributes(span.attributes),
                    [_event_view(event) for event in span.events],
                )
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ],
        )
        for resource_spans in request.resource_spans
    ]


def log_views(request: ExportLogsServiceRequest) -> list[ResourceView]:
    return [
        (
            attributes(resource_logs.resource.attributes),
            resource_logs.resource.SerializeToString(deterministic=True),
            [
                _log_view(record)
                for scope_logs in resource_logs.scope_logs
                for record in scope_logs.log_records
            ],
        )
        for resource_logs in request.resource_logs
    ]


def _event_view(event: Any) -> EventView:
    attrs = attributes(event.attributes)
    return EventView(
        event.name, event.time_unix_nano, attrs, long_stacktrace(event.attributes, attrs)
    )


def _log_view(record: Any) -> LogView:
    attrs = attributes(record.attributes)
    return LogView(
        record.trace_id,
        record.span_id,
        record.time_unix_nano,
        record.observed_time_unix_nano,
        record.severity_number,
        record.severity_text,
        record.event_name,
        any_value(record.body, limit=MAX_TEXT) if record.HasField("body") else None,
        attrs,
        long_stacktrace(record.attributes, attrs),
        record.SerializeToString(deterministic=True),
    )
