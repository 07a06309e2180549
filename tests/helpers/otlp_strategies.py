"""Hypothesis strategies for OTLP requests: generated traces and logs (hostile values
included) and corrupted request bytes. Shared by the router fuzz tests and the fast-path
equivalence tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from processor.ingest.decode import Signal

T0 = 1_700_000_000_000_000_000
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)

# --- strategies -----------------------------------------------------------------------------

INTERESTING_KEYS = [
    "feature.name",
    "feature.action",
    "feature.duration_ms",
    "user.id",
    "enduser.id",
    "organization.id",
    "tenant.id",
    "session.id",
    "service.name",
    "service.version",
    "deployment.type",
    "http.request.method",
    "http.method",
    "http.route",
    "url.path",
    "http.target",
    "url.full",
    "http.url",
    "http.response.status_code",
    "http.status_code",
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "rpc.grpc.status_code",
    "event.name",
    "performance.metric",
    "performance.value",
    "performance.unit",
    "user.properties.plan",
    "_user_properties",
    "user.email",
    "client.address",
    "log.type",
    "exception.type",
    "exception.message",
    "exception.stacktrace",
    "startup_time_ms",
    "fps",
    "memory_mb",
    "screen_load_ms",
    "os.name",
    "os.version",
    "device.model.name",
    "app.build_id",
]
EVENT_NAMES = ["exception", "user.login", "session.start", "session.end", "feature", ""]
TEXTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "\x00",
            "GET",
            "performance",
            "1e400",
            "nan",
            "-inf",
            "99999999999999999999",
            "/users/123/orders/550e8400-e29b-41d4-a716-446655440000?x=1",
            "alice@example.com",
            "10.0.0.1",
            "::1",
            *EVENT_NAMES,
        ]
    ),
    st.sampled_from(["x" * 5000, "é" * 70_000, "a\x00" * 3000]),  # over column widths
)
KEYS = st.one_of(st.sampled_from(INTERESTING_KEYS), st.text(max_size=20))
SCALARS = st.one_of(
    TEXTS,
    INT64,
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.binary(max_size=24),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=6,
)
ATTRS = st.dictionaries(KEYS, VALUES, max_size=6)
IDS16 = st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=20))
IDS8 = st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=12))
TIMES = st.one_of(st.just(0), UINT64, st.integers(T0 - 10**15, T0 + 10**15))


def any_value(value: Any) -> AnyValue:
    out = AnyValue()
    if value is None:
        pass
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, list):
        out.array_value.values.extend(any_value(v) for v in value)
    else:
        out.kvlist_value.values.extend(key_values(value))
    return out


def key_values(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


@st.composite
def span_events(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "name": draw(st.one_of(st.sampled_from(EVENT_NAMES), st.text(max_size=10))),
        "time_unix_nano": draw(TIMES),
        "attributes": draw(ATTRS),
    }


@st.composite
def trace_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(key_values(draw(ATTRS)))
        for _ in range(draw(st.integers(0, 1))):
            scope = rs.scope_spans.add()
            scope.scope.name = draw(st.text(max_size=10))
            for _ in range(draw(st.integers(0, 3))):
                start = draw(TIMES)
                span = scope.spans.add(
                    trace_id=draw(IDS16),
                    span_id=draw(IDS8),
                    name=draw(st.one_of(st.sampled_from(EVENT_NAMES), TEXTS)),
                    kind=draw(st.one_of(st.integers(0, 5), INT32)),
                    start_time_unix_nano=start,
                    end_time_unix_nano=draw(
                        st.one_of(TIMES, st.integers(start, min(start + 10**12, 2**64 - 1)))
                    ),
                )
                span.attributes.extend(key_values(draw(ATTRS)))
                for event in draw(st.lists(span_events(), max_size=2)):
                    added = span.events.add(
                        name=event["name"], time_unix_nano=event["time_unix_nano"]
                    )
                    added.attributes.extend(key_values(event["attributes"]))
    return request


@st.composite
def log_requests(draw: st.DrawFn) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rl = request.resource_logs.add()
        rl.resource.attributes.extend(key_values(draw(ATTRS)))
        for _ in range(draw(st.integers(0, 1))):
            scope = rl.scope_logs.add()
            for _ in range(draw(st.integers(0, 3))):
                record = scope.log_records.add(
                    time_unix_nano=draw(TIMES),
                    observed_time_unix_nano=draw(TIMES),
                    severity_number=draw(st.one_of(st.integers(0, 24), INT32)),
                    severity_text=draw(TEXTS),
                    trace_id=draw(st.one_of(st.just(b""), IDS16)),
                    span_id=draw(st.one_of(st.just(b""), IDS8)),
                    event_name=draw(st.one_of(st.sampled_from(EVENT_NAMES), TEXTS)),
                    flags=draw(st.integers(0, 2**32 - 1)),
                )
                body = draw(st.one_of(st.just("<unset>"), VALUES))
                if body != "<unset>":
                    record.body.CopyFrom(any_value(body))
                record.attributes.extend(key_values(draw(ATTRS)))
    return request


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Signal, bytes]:
    """A valid request's bytes, truncated, with bytes flipped, inserted or deleted."""
    signal = draw(st.sampled_from([Signal.TRACES, Signal.LOGS]))
    request = draw(trace_requests() if signal == Signal.TRACES else log_requests())
    data = bytearray(request.SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return signal, bytes(data)


# --- hostile wire bytes: what a protobuf library would not write ----------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, wire: int, payload: bytes | int) -> bytes:
    """One encoded field: a varint (wire 0), 8 or 4 raw bytes (1, 5) or a length-delimited
    payload (2)."""
    tag = varint(number << 3 | wire)
    if wire == 0:
        assert isinstance(payload, int)
        return tag + varint(payload)
    assert isinstance(payload, bytes)
    return tag + (varint(len(payload)) + payload if wire == 2 else payload)


def nested_kvlist(depth: int, leaf: bytes) -> bytes:
    """An AnyValue holding ``depth`` kvlists, one inside the other, around ``leaf``."""
    value = field(1, 2, leaf)
    for _ in range(depth):
        value = field(6, 2, field(1, 2, field(1, 2, b"k") + field(2, 2, value)))
    return value


BAD_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"a\xe2\x82", b"\xf4\x90\x80\x80"]

UNKNOWN_FIELDS = st.one_of(
    st.builds(lambda n, v: field(n, 0, v), st.integers(17, 2000), st.integers(0, 2**64 - 1)),
    st.builds(lambda n, v: field(n, 2, v), st.integers(17, 2000), st.binary(max_size=12)),
    st.builds(
        lambda n, v: field(n, 1, v), st.integers(17, 2000), st.binary(min_size=8, max_size=8)
    ),
    st.builds(
        lambda n, v: field(n, 5, v), st.integers(17, 2000), st.binary(min_size=4, max_size=4)
    ),
)


@st.composite
def hostile_additions(draw: st.DrawFn, attributes_field: int) -> bytes:
    """Fields appended to a span or log record: unknown fields, attributes with duplicate
    keys, invalid UTF-8, deep kvlists, and repeated singular scalars (the last one wins)."""
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["unknown", "duplicate", "utf8", "deep", "scalar"]))
        if kind == "unknown":
            out += draw(UNKNOWN_FIELDS)
        elif kind == "duplicate":
            key = draw(st.sampled_from(["user.id", "feature.name", "exception.stacktrace", "k"]))
            for value in draw(st.lists(st.text(max_size=5000), min_size=2, max_size=3)):
                kv = field(1, 2, key.encode()) + field(2, 2, field(1, 2, value.encode()))
                out += field(attributes_field, 2, kv)
        elif kind == "utf8":
            bad = draw(st.sampled_from(BAD_UTF8))
            kv = field(1, 2, bad) if draw(st.booleans()) else field(2, 2, field(1, 2, bad))
            out += field(attributes_field, 2, kv)
        elif kind == "deep":
            depth = draw(st.integers(0, 120))
            kv = field(1, 2, b"deep") + field(2, 2, nested_kvlist(depth, b"leaf"))
            out += field(attributes_field, 2, kv)
        else:  # a scalar field again: name / severity_text (string), kind / severity (enum)
            number = draw(st.sampled_from([5, 6] if attributes_field == 9 else [2, 3]))
            if number in (5, 3):
                out += field(number, 2, draw(st.text(max_size=10)).encode())
            else:
                out += field(number, 0, draw(st.integers(0, 2**64 - 1)))
    return out


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[Signal, bytes]:
    """A generated request with hostile fields appended to one of its spans or records, and
    unknown fields around it; as raw request bytes."""
    signal = draw(st.sampled_from([Signal.TRACES, Signal.LOGS]))
    if signal == Signal.TRACES:
        request = draw(trace_requests())
        items = [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
        attributes_field = 9
    else:
        request = draw(log_requests())
        items = [
            rec for r in request.resource_logs for sl in r.scope_logs for rec in sl.log_records
        ]
        attributes_field = 6
    if not items:
        return signal, request.SerializeToString() + draw(UNKNOWN_FIELDS)
    item = draw(st.sampled_from(items))
    raw = item.SerializeToString() + draw(hostile_additions(attributes_field))
    scope = field(2, 2, raw)
    if draw(st.booleans()):
        scope += draw(UNKNOWN_FIELDS)
    resource = field(2, 2, scope)
    return signal, request.SerializeToString() + field(1, 2, resource)
