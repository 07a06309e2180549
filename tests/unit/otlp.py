"""Builders for OTLP protobuf messages, so unit tests state only what they are about."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z, in nanoseconds
T0_DATETIME = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
MS = 1_000_000  # nanoseconds per millisecond
TRACE_ID = bytes(range(1, 17))
SPAN_ID = bytes(range(1, 9))

SERVER = Span.SPAN_KIND_SERVER
CLIENT = Span.SPAN_KIND_CLIENT
INTERNAL = Span.SPAN_KIND_INTERNAL

Attrs = Mapping[str, Any] | None


def value(v: Any) -> AnyValue:
    """A Python value as an OTLP AnyValue (dicts become kvlists, lists arrays)."""
    if isinstance(v, AnyValue):
        return v
    if v is None:
        return AnyValue()
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, str):
        return AnyValue(string_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, Mapping):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(v)))
    if isinstance(v, Iterable):
        return AnyValue(array_value=ArrayValue(values=[value(x) for x in v]))
    raise TypeError(f"no AnyValue for {type(v).__name__}")


def key_values(attrs: Attrs) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in (attrs or {}).items()]


def span(
    name: str = "operation",
    attributes: Attrs = None,
    *,
    kind: int = INTERNAL,
    trace_id: bytes = TRACE_ID,
    span_id: bytes = SPAN_ID,
    parent: bytes = b"",
    start: int = T0,
    duration_ms: float = 25.0,
    end: int | None = None,
    events: Iterable[Span.Event] = (),
) -> Span:
    return Span(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        start_time_unix_nano=start,
        end_time_unix_nano=end if end is not None else start + int(duration_ms * MS),
        attributes=key_values(attributes),
        events=list(events),
    )


def event(name: str, attributes: Attrs = None, *, time: int = T0 + 5 * MS) -> Span.Event:
    return Span.Event(name=name, time_unix_nano=time, attributes=key_values(attributes))


def traces(*spans: Span, resource: Attrs = None) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=key_values(resource)),
                scope_spans=[ScopeSpans(spans=list(spans))],
            )
        ]
    )


def log(
    body: Any = "hello",
    attributes: Attrs = None,
    *,
    severity_number: int = 0,
    severity_text: str = "",
    event_name: str = "",
    time: int = T0,
    observed: int = T0 + MS,
    trace_id: bytes = b"",
    span_id: bytes = b"",
) -> LogRecord:
    record = LogRecord(
        time_unix_nano=time,
        observed_time_unix_nano=observed,
        severity_number=severity_number,  # type: ignore[arg-type]
        severity_text=severity_text,
        attributes=key_values(attributes),
        trace_id=trace_id,
        span_id=span_id,
        event_name=event_name,
    )
    if body is not None:
        record.body.CopyFrom(value(body))
    return record


def logs(*records: LogRecord, resource: Attrs = None) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=key_values(resource)),
                scope_logs=[ScopeLogs(log_records=list(records))],
            )
        ]
    )


def number_point(
    v: float | int, attributes: Attrs = None, *, time: int = T0, start: int = 0
) -> NumberDataPoint:
    point = NumberDataPoint(
        time_unix_nano=time, start_time_unix_nano=start, attributes=key_values(attributes)
    )
    if isinstance(v, int):
        point.as_int = v
    else:
        point.as_double = v
    return point


def metrics(*items: Metric, resource: Attrs = None) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=Resource(attributes=key_values(resource)),
                scope_metrics=[ScopeMetrics(metrics=list(items))],
            )
        ]
    )


def one(rows: dict[str, list[Any]], table: str) -> Any:
    """The only row routed to ``table``; fails when there are none or several."""
    found = rows[table]
    assert len(found) == 1, f"expected one {table} row, got {len(found)}: {found!r}"
    return found[0]


def tables_with_rows(rows: dict[str, list[Any]]) -> set[str]:
    return {table for table, found in rows.items() if found}
