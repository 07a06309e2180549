"""OTLP protobuf requests for tests: builders (so a test states only what it is about),
deterministic ids, wire-level pieces the Python classes refuse to build, and a gRPC export."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
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

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

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


# --- deterministic ids: a resent request carries the same ids, so its rows must not double ---


def ids(tag: str) -> tuple[bytes, bytes]:
    """A (trace id, span id) pair derived from ``tag``."""
    digest = hashlib.blake2b(tag.encode(), digest_size=24).digest()
    return digest[:16], digest[16:]


def span_hex(tag: str) -> str:
    """The span id of ``ids(tag)`` as stored (hex)."""
    return ids(tag)[1].hex()


def trace_request(
    tag: str, spans: int = 10, *, pad: int = 0, first: int = 0, start: int = T0
) -> tuple[bytes, list[str]]:
    """A request of ``spans`` spans of feature ``tag``, with ids derived from ``tag``,
    serialised, and the span ids it carries (hex). ``pad`` adds that many bytes to each span.
    Span ``i`` is the same span in every request of the same ``tag`` and ``start`` (so
    ``first=5`` makes a request whose first spans repeat spans 5… of another)."""
    trace_id = ids(tag)[0]
    built = []
    for i in range(first, first + spans):
        attributes: dict[str, Any] = {"feature.name": tag}
        if pad:
            attributes["padding"] = b"\x00" * pad
        built.append(
            span(
                f"{tag}-{i}",
                attributes,
                trace_id=trace_id,
                span_id=ids(f"{tag}/{i}")[1],
                start=start + i,
                end=start + i + MS,
            )
        )
    return traces(*built).SerializeToString(), [s.span_id.hex() for s in built]


# One start time for every span: the same span_byte is the same span (the same row key,
# which includes the timestamp), so sending it again is a retry.
SPAN_START = time.time_ns()


def request_with_span(user: str = "u-1", span_byte: int = 1) -> ExportTraceServiceRequest:
    """One SERVER span (GET /items) of ``user``; ids are ``span_byte`` repeated."""
    now = SPAN_START
    return traces(
        span(
            "GET /items",
            {"http.request.method": "GET", "http.route": "/items", "user.id": user},
            kind=SERVER,
            trace_id=bytes([span_byte]) * 16,
            span_id=bytes([span_byte]) * 8,
            start=now,
            end=now + 5 * MS,
        )
    )


def grpc_export(
    endpoint: str,
    request: ExportTraceServiceRequest,
    metadata: Sequence[tuple[str, str]] = (),
) -> ExportTraceServiceResponse:
    """Export ``request`` over a new gRPC channel (raises grpc.RpcError when refused)."""
    with grpc.insecure_channel(endpoint) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        reply: ExportTraceServiceResponse = stub.Export(request, metadata=metadata, timeout=10)
        return reply


def grpc_export_logs(
    endpoint: str, request: ExportLogsServiceRequest
) -> logs_service_pb2.ExportLogsServiceResponse:
    """Export a logs request over a new gRPC channel (raises grpc.RpcError when refused)."""
    with grpc.insecure_channel(endpoint) as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        reply: logs_service_pb2.ExportLogsServiceResponse = stub.Export(request, timeout=10)
        return reply


# --- the wire level ------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, for requests the Python classes cannot build."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def nested_wire(kind: str, depth: int, bottom: str = "bottom") -> bytes:
    """An AnyValue nested ``depth`` times (``kind`` "kvlist" or "array"), as bytes: the Python
    classes refuse to build what the parser refuses to read."""
    value = AnyValue(string_value=bottom).SerializeToString()
    for _ in range(depth):
        if kind == "kvlist":  # AnyValue.kvlist_value{values{key, value}}
            value = ld(6, ld(1, ld(1, b"k") + ld(2, value)))
        else:  # AnyValue.array_value{values}
            value = ld(5, ld(1, value))
    return value


def with_attribute_wire(message: bytes, field: int, key: str, value_wire: bytes) -> bytes:
    """``message`` (serialised) with one more KeyValue in its repeated ``field``, whose value
    is the raw AnyValue bytes ``value_wire`` (Span.attributes is 9, LogRecord.attributes 6)."""
    return message + ld(field, ld(1, key.encode()) + ld(2, value_wire))


def traces_wire(*span_bytes: bytes, resource: Attrs = None) -> bytes:
    """ExportTraceServiceRequest{resource_spans{resource, scope_spans{spans...}}} from raw
    span bytes."""
    resource_bytes = Resource(attributes=key_values(resource)).SerializeToString()
    scope = b"".join(ld(2, s) for s in span_bytes)  # ScopeSpans.spans = 2
    # request.resource_spans = 1; ResourceSpans.resource = 1, .scope_spans = 2
    return ld(1, ld(1, resource_bytes) + ld(2, scope))


def malformed(good: bytes) -> dict[str, bytes]:
    """Payloads no protobuf parser accepts, made from the valid request ``good``, by name."""
    return {
        "truncated": good[: len(good) // 2],
        "truncated-tail": good[:-3],
        "bad-varint": b"\xff" * 11,
        "field-zero": b"\x00\x01",
        "length-past-end": b"\x0a\xff\xff\xff\x0f" + good,
        "stray-end-group": b"\x0c" + good,
        "wire-type-7": b"\x0f" + good,
    }
