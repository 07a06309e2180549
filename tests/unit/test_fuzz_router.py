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
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
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
from tests.helpers.otlp_strategies import (
    ATTRS,
    INT64,
    TEXTS,
    TIMES,
    UINT64,
    key_values,
    log_requests,
    mutated,
    trace_requests,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CTX = RouteContext(hasher=make_hasher(), project_id=1, now=datetime(2024, 1, 1, tzinfo=UTC))

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


@FUZZ
@given(case=mutated())
def test_corrupted_requests_are_invalid_or_storable(target, case):
    signal, data = case
    decode_route_store(signal, data, target)


@FUZZ
@given(signal=st.sampled_from(list(Signal)), data=st.binary(max_size=512))
def test_arbitrary_bytes_are_invalid_or_storable(target, signal, data):
    decode_route_store(signal, data, target)
