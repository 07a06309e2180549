"""Property tests of decode → route → rows over generated OTLP requests and bytes.

Whatever arrives, ``decode`` raises nothing but ``InvalidRequest``, the router raises
nothing, and every row it yields is accepted through the writer's own insert code (each
example is rolled back) by SQLite, always, and by PostgreSQL when there is one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from processor.errors import InvalidRequest
from processor.ingest.decode import Signal, decode
from processor.mapping import RouteContext, route_logs, route_metrics, route_traces
from processor.mapping.privacy import make_hasher
from processor.mapping.rows import ROW_TYPES, Batch
from processor.settings import Settings
from processor.storage.migrate import upgrade
from processor.storage.writer import Backend, PostgresBackend, SqliteBackend

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CTX = RouteContext(hasher=make_hasher(), project_id=1, now=datetime(2024, 1, 1, tzinfo=UTC))
T0 = 1_700_000_000_000_000_000
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)

# --- databases ------------------------------------------------------------------------------


class Target:
    """One database, reached the way the writer reaches it."""

    def __init__(self, url: str, backend: Backend) -> None:
        # A fresh connection per example: nothing (e.g. staging tables) leaks between them.
        self.engine: Engine = create_engine(
            Settings(database_url=url).sqlalchemy_url, poolclass=NullPool
        )
        self.backend = backend

    def insert(self, batch: Batch) -> None:
        with self.engine.connect() as conn:
            transaction = conn.begin()
            try:
                for table, rows in batch.rows.items():
                    if rows:
                        self.backend.insert(conn, table, rows)
            finally:
                transaction.rollback()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """Each property runs once per database, so the SQLite half runs without PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
        upgrade(url)
        out = Target(url, SqliteBackend())
    else:
        out = Target(request.getfixturevalue("postgres_url"), PostgresBackend())
    yield out
    out.engine.dispose()


def check_rows(batch: Batch, target: Target) -> None:
    assert 0 <= batch.rejected <= batch.received
    for table, rows in batch.rows.items():
        for row in rows:
            assert isinstance(row, ROW_TYPES[table])
    target.insert(batch)


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


FINITE_OR_NOT = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def metric_requests(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(key_values(draw(ATTRS)))
    scope = rm.scope_metrics.add()
    for _ in range(draw(st.integers(0, 3))):
        metric = scope.metrics.add(name=draw(TEXTS), unit=draw(st.text(max_size=70)))
        kind = draw(st.sampled_from(["gauge", "sum", "histogram", "summary", "none"]))
        for _ in range(draw(st.integers(0, 3))):
            common = {
                "time_unix_nano": draw(TIMES),
                "start_time_unix_nano": draw(TIMES),
                "flags": draw(st.integers(0, 3)),
            }
            if kind in ("gauge", "sum"):
                point = getattr(metric, kind).data_points.add(**common)
                if draw(st.booleans()):
                    point.as_int = draw(INT64)
                else:
                    point.as_double = draw(FINITE_OR_NOT)
            elif kind == "histogram":
                point = metric.histogram.data_points.add(
                    **common,
                    count=draw(UINT64),
                    bucket_counts=draw(st.lists(UINT64, max_size=4)),
                    explicit_bounds=draw(st.lists(FINITE_OR_NOT, max_size=3)),
                )
                if draw(st.booleans()):
                    point.sum = draw(FINITE_OR_NOT)
                if draw(st.booleans()):
                    point.min = draw(FINITE_OR_NOT)
            elif kind == "summary":
                point = metric.summary.data_points.add(
                    **common, count=draw(UINT64), sum=draw(FINITE_OR_NOT)
                )
                point.quantile_values.add(quantile=draw(FINITE_OR_NOT), value=draw(FINITE_OR_NOT))
            else:
                continue
            point.attributes.extend(key_values(draw(ATTRS)))
    return request


ROUTES = {Signal.TRACES: route_traces, Signal.LOGS: route_logs, Signal.METRICS: route_metrics}


def decode_route_store(signal: Signal, data: bytes, target: Target) -> Batch | None:
    try:
        message = decode(signal, data)
    except InvalidRequest:
        return None
    batch = ROUTES[signal](message, CTX)
    check_rows(batch, target)
    return batch


def count(message: Any, signal: Signal) -> int:
    if signal == Signal.TRACES:
        return sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)
    return sum(len(s.log_records) for r in message.resource_logs for s in r.scope_logs)


# --- properties -----------------------------------------------------------------------------


@FUZZ
@given(request=trace_requests())
def test_generated_traces_route_to_storable_rows(target, request):
    batch = decode_route_store(Signal.TRACES, request.SerializeToString(), target)
    assert batch is not None
    assert batch.received == count(request, Signal.TRACES)


@FUZZ
@given(request=log_requests())
def test_generated_logs_route_to_storable_rows(target, request):
    batch = decode_route_store(Signal.LOGS, request.SerializeToString(), target)
    assert batch is not None
    assert batch.received == count(request, Signal.LOGS)
    # Every log record that is not rejected becomes exactly one logs row.
    assert len(batch.rows["logs"]) == batch.received - batch.rejected


@FUZZ
@given(request=metric_requests())
def test_generated_metrics_route_to_storable_rows(target, request):
    batch = decode_route_store(Signal.METRICS, request.SerializeToString(), target)
    assert batch is not None
    for row in batch.rows["performance_metrics"]:
        assert row.value is None or math.isfinite(row.value)


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


@FUZZ
@given(case=mutated())
def test_corrupted_requests_are_invalid_or_storable(target, case):
    signal, data = case
    decode_route_store(signal, data, target)


@FUZZ
@given(signal=st.sampled_from(list(Signal)), data=st.binary(max_size=512))
def test_arbitrary_bytes_are_invalid_or_storable(target, signal, data):
    decode_route_store(signal, data, target)
