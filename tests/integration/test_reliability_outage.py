"""Database outage (SPEC §8): while PostgreSQL is unreachable, exports are refused with a
retryable status, health reports it, and after it comes back the processor reconnects by
itself; every span the SDK produced is stored exactly once.

A TCP proxy sits between the processor and PostgreSQL; the test cuts it for a few seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest
import requests
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id
from sqlalchemy import text

from tests.helpers import DEADLINE, wait_for
from tests.helpers.otlp import TRACE_EXPORT, span, traces
from tests.helpers.sdk import resource
from tests.helpers.storage import stored_counts, writes_held


class Collect(SpanProcessor):
    """Keeps ended spans so the test decides when (and how often) to export them."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def make_spans(tracer_provider: TracerProvider, collect: Collect, n: int, tag: str) -> list[Any]:
    tracer = tracer_provider.get_tracer("reliability")
    for i in range(n):
        with tracer.start_as_current_span(f"{tag}-{i}", attributes={"feature.name": tag}):
            pass
    spans, collect.spans = collect.spans, []
    return spans


class Producer(threading.Thread):
    """Makes batches of spans and exports each until the server acknowledges it."""

    def __init__(self, exporter: SpanExporter, tag: str) -> None:
        super().__init__(daemon=True)
        self.exporter = exporter
        self.tag = tag
        self.stop = threading.Event()
        self.produced: list[str] = []
        self.acked: list[str] = []
        self.failed_exports = 0
        self.error: BaseException | None = None
        self.collect = Collect()
        self.provider = TracerProvider(resource=resource())
        self.provider.add_span_processor(self.collect)

    def run(self) -> None:
        try:
            batch_no = 0
            while not self.stop.is_set():
                spans = make_spans(self.provider, self.collect, 5, f"{self.tag}-{batch_no}")
                batch_no += 1
                ids = [format_span_id(s.context.span_id) for s in spans if s.context]
                self.produced.extend(ids)
                end = time.monotonic() + DEADLINE
                while self.exporter.export(spans) != SpanExportResult.SUCCESS:
                    self.failed_exports += 1
                    if time.monotonic() > end:
                        raise AssertionError(f"{self.tag}: batch never acknowledged")
                    time.sleep(0.2)
                self.acked.extend(ids)
                time.sleep(0.05)
        except BaseException as exc:
            self.error = exc


def probe_request(span_id: bytes) -> bytes:
    probe = span("probe", {"feature.name": "probe"}, trace_id=b"\x0b" * 16, span_id=span_id)
    return traces(probe).SerializeToString()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_database_outage_is_retryable_and_loses_nothing(make_server, db, pg_proxy):
    proxy, proxied_url = pg_proxy
    server = make_server(database_url=proxied_url)
    channel = grpc.insecure_channel(server.grpc_endpoint)
    health = health_pb2_grpc.HealthStub(channel)
    export = channel.unary_unary(
        TRACE_EXPORT, response_deserializer=ExportTraceServiceResponse.FromString
    )

    def serving() -> int:
        return health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status

    def readiness() -> int:
        return requests.get(f"{server.http_url}/readiness", timeout=10).status_code

    wait_for(lambda: serving() == health_pb2.HealthCheckResponse.SERVING, "health SERVING")
    assert readiness() == 200

    producers = [
        Producer(GrpcSpanExporter(endpoint=server.grpc_endpoint, insecure=True), "grpc"),
        Producer(HttpSpanExporter(endpoint=f"{server.http_url}/v1/traces"), "http"),
    ]
    for p in producers:
        p.start()
    wait_for(lambda: all(len(p.acked) >= 10 for p in producers), "exports before the outage")

    proxy.cut()
    try:
        # Every export is now refused with a retryable status, on both protocols.
        with pytest.raises(grpc.RpcError) as failure:
            export(probe_request(b"\x01" * 8), timeout=30)
        call = failure.value
        assert call.code() == grpc.StatusCode.UNAVAILABLE
        status = rpc_status.from_call(call)
        assert status is not None
        retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert len(retry) == 1

        http_reply = requests.post(
            f"{server.http_url}/v1/traces",
            data=probe_request(b"\x02" * 8),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        assert http_reply.status_code == 503
        assert int(http_reply.headers["Retry-After"]) >= 1

        assert readiness() == 503
        wait_for(
            lambda: serving() == health_pb2.HealthCheckResponse.NOT_SERVING,
            "health NOT_SERVING during the outage",
        )
        time.sleep(1)
        acked_during = sum(len(p.acked) for p in producers)
        time.sleep(2)  # the outage lasts a few seconds while the producers keep trying
        assert sum(len(p.acked) for p in producers) == acked_during
        assert readiness() == 503
    finally:
        proxy.restore()

    # The processor reconnects by itself.
    wait_for(lambda: readiness() == 200, "readiness 200 after the outage")
    wait_for(lambda: serving() == health_pb2.HealthCheckResponse.SERVING, "health SERVING")
    after = {p.tag: len(p.acked) for p in producers}
    wait_for(
        lambda: all(len(p.acked) >= after[p.tag] + 10 for p in producers),
        "exports after the outage",
    )
    for p in producers:
        p.stop.set()
    for p in producers:
        p.join(DEADLINE)
        assert not p.is_alive()
        assert p.error is None, p.error
        p.exporter.shutdown()

    # The refused probes succeed when retried.
    reply = export(probe_request(b"\x01" * 8), timeout=30)
    assert not reply.partial_success.rejected_spans
    http_reply = requests.post(
        f"{server.http_url}/v1/traces",
        data=probe_request(b"\x02" * 8),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    assert http_reply.status_code == 200
    channel.close()

    produced = [i for p in producers for i in p.produced]
    assert len(produced) == len(set(produced))
    assert sorted(produced) == sorted(i for p in producers for i in p.acked)
    stored = stored_counts(db)
    assert {i: n for i, n in stored.items() if n != 1} == {}
    assert set(stored) == {*produced, "01" * 8, "02" * 8}
    assert proxy.refused > 0  # the processor did try to reconnect during the outage


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_cancelled_transaction_is_retried_not_rejected(make_server, db):
    """A transaction PostgreSQL cancels (statement timeout, admin cancel, deadlock) is a
    retryable failure, and it leaves the connection fit for the retry."""
    server = make_server()
    channel = grpc.insecure_channel(server.grpc_endpoint)
    export = channel.unary_unary(
        TRACE_EXPORT, response_deserializer=ExportTraceServiceResponse.FromString
    )
    outcome: list[Any] = []

    def send_blocked() -> None:
        try:
            outcome.append(export(probe_request(b"\x03" * 8), timeout=60))
        except grpc.RpcError as exc:
            outcome.append(exc)

    def waiting_writers(conn: Any) -> list[int]:
        return list(
            conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'telemetry-processor' AND wait_event_type = 'Lock'"
                )
            ).scalars()
        )

    # SHARE mode: the writer's COPY into the table (or its INSERT from the staging table) waits.
    with writes_held(db, "SHARE"):
        sender = threading.Thread(target=send_blocked)
        sender.start()
        with db.engine.connect() as admin:
            wait_for(lambda: bool(waiting_writers(admin)), "the export to wait for the lock")
            for pid in waiting_writers(admin):
                admin.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})
        sender.join(60)
    [failure] = outcome
    assert isinstance(failure, grpc.RpcError)
    assert failure.code() == grpc.StatusCode.UNAVAILABLE

    # The client retries; later requests may use the same pooled connection.
    assert not export(probe_request(b"\x03" * 8), timeout=60).HasField("partial_success")
    for n in range(10):
        reply = export(probe_request(bytes([0x10 + n]) * 8), timeout=60)
        assert not reply.HasField("partial_success"), reply.partial_success.error_message
    channel.close()
    stored = stored_counts(db)
    assert stored == {f"{n:02x}" * 8: 1 for n in [3, *range(0x10, 0x1A)]}
