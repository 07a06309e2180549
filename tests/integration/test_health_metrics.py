"""Health checking, reflection and Prometheus metrics (SPEC §8)."""

from __future__ import annotations

import grpc
import orjson
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.sdk import grpc_tracer_provider, otel_logger

OTLP_SERVICES = (
    "opentelemetry.proto.collector.trace.v1.TraceService",
    "opentelemetry.proto.collector.logs.v1.LogsService",
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
)


def test_grpc_health_is_serving(server, db):
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", *OTLP_SERVICES):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as excinfo:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert excinfo.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_reflection_lists_and_describes_otlp_services(server, db):
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        reflection = ProtoReflectionDescriptorDatabase(channel)
        services = set(reflection.get_services())
        assert set(OTLP_SERVICES) <= services
        assert "grpc.health.v1.Health" in services
        file = reflection.FindFileContainingSymbol(OTLP_SERVICES[0])
        assert file.package == "opentelemetry.proto.collector.trace.v1"
        assert [m.name for m in file.service[0].method] == ["Export"]


def test_http_health_liveness_readiness(server, db):
    for path in ("/health", "/liveness", "/readiness"):
        response = requests.get(f"{server.http_url}{path}", timeout=5)
        assert response.status_code == 200, path
        assert response.headers["Content-Type"].startswith("application/json")
    assert requests.get(f"{server.http_url}/health", timeout=5).json()["database"] == "up"
    assert requests.get(f"{server.http_url}/readiness", timeout=5).json()["ready"] is True


def scrape(server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(f"{server.http_url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_prometheus_counters_move_after_exports(server, db):
    before = scrape(server)
    assert value(before, "processor_database_up") == 1.0

    provider = grpc_tracer_provider(server.grpc_endpoint)
    tracer = provider.get_tracer("app")
    for _ in range(3):
        with tracer.start_as_current_span("tap", attributes={"feature.name": "search"}):
            pass
    provider.shutdown()
    exporter = OTLPLogExporter(endpoint=server.grpc_endpoint, insecure=True, timeout=10)
    with otel_logger(exporter) as logger:
        logger.info("hello")
    bad = {
        "resourceSpans": [
            {"scopeSpans": [{"spans": [{"traceId": "00", "spanId": "00", "name": "x"}]}]}
        ]
    }
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=orjson.dumps(bad),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200

    after = scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    grpc_traces = {"signal": "traces", "receiver": "grpc"}
    assert moved("processor_items_received_total", **grpc_traces) == 3
    assert moved("processor_items_accepted_total", **grpc_traces) == 3
    assert moved("processor_requests_total", **grpc_traces, outcome="ok") == 3
    assert moved("processor_export_seconds_count", **grpc_traces) == 3
    assert moved("processor_items_received_total", signal="logs", receiver="grpc") == 1
    assert moved("processor_items_received_total", signal="traces", receiver="http") == 1
    assert moved("processor_items_rejected_total", signal="traces", receiver="http") == 1
    assert moved("processor_rows_written_total", table="feature_usage") == 3
    assert moved("processor_rows_written_total", table="logs") == 1
    assert moved("processor_db_commit_seconds_count") >= 1
    assert value(after, "processor_inflight_requests") == 0
    assert db.count("feature_usage") == 3
