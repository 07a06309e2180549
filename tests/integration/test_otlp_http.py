"""OTLP/HTTP (SPEC §8): the real Python HTTP exporters, hand-written OTLP/JSON, and errors."""

from __future__ import annotations

import gzip
import math
import time

import orjson
import requests
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.trace import SpanKind

from processor.mapping.privacy import make_hasher
from tests.helpers.sdk import http_tracer_provider, otel_logger, resource

hash_id = make_hasher()

JSON = {"Content-Type": "application/json"}
PROTOBUF = {"Content-Type": "application/x-protobuf"}
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
START = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


# --- the real opentelemetry-exporter-otlp-proto-http exporters --------------------------------


def test_http_span_exporter_lands_endpoint_and_feature_rows(server, db):
    provider = http_tracer_provider(server.http_url)
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span(
        "GET /invoices/{id}",
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "GET",
            "url.path": "/invoices/981",
            "http.response.status_code": 200,
            "user.id": "hank-9",
        },
    ):
        time.sleep(0.002)
    with tracer.start_as_current_span(
        "share", attributes={"feature.name": "sharing", "user.id": "hank-9"}
    ):
        pass
    provider.shutdown()

    [endpoint] = db.rows("endpoint_usage")
    assert (endpoint["endpoint"], endpoint["method"], endpoint["status_code"]) == (
        "/invoices/{id}",
        "GET",
        200,
    )
    assert endpoint["duration_ms"] >= 2
    assert endpoint["service_name"] == "shop"
    assert endpoint["user_id"] == hash_id("hank-9")
    [feature] = db.rows("feature_usage")
    assert (feature["feature_name"], feature["action"]) == ("sharing", "used")
    assert "hank-9" not in db.dump()


def test_http_log_exporter_with_gzip_lands_logs(server, db):
    exporter = OTLPLogExporter(
        endpoint=f"{server.http_url}/v1/logs", timeout=10, compression=Compression.Gzip
    )
    with otel_logger(exporter, **{"service.version": "2.0.1"}) as logger:
        logger.warning("quota at 95%", extra={"user.id": "ivy-2", "log.type": "security"})
        logger.error("boom", extra={"feature.name": "export", "feature.action": "failed"})
    rows = {r["message"]: r for r in db.rows("logs")}
    assert set(rows) == {"quota at 95%", "boom"}
    quota = rows["quota at 95%"]
    assert (quota["level"], quota["type"], quota["app_version"]) == ("warning", "security", "2.0.1")
    assert quota["user_id"] == hash_id("ivy-2")
    assert rows["boom"]["level"] == "error"
    assert [(r["feature_name"], r["action"]) for r in db.rows("feature_usage")] == [
        ("export", "failed")
    ]


def test_http_metric_exporter_lands_performance_metrics(server, db):
    exporter = OTLPMetricExporter(
        endpoint=f"{server.http_url}/v1/metrics", timeout=10, compression=Compression.Deflate
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    provider = MeterProvider(metric_readers=[reader], resource=resource())
    meter = provider.get_meter("app")
    meter.create_counter("checkout.completed", unit="1").add(3, {"plan": "pro"})
    meter.create_histogram("render.ms", unit="ms").record(40.0)
    provider.force_flush()
    provider.shutdown()

    rows = {r["metric_type"]: r for r in db.rows("performance_metrics")}
    assert set(rows) == {"checkout.completed", "render.ms"}
    counter = rows["checkout.completed"]
    assert counter["value"] == 3.0 and counter["unit"] == "1"
    assert counter["service_name"] == "shop"
    metadata = db.json(counter["metadata"])
    assert metadata["kind"] == "sum" and metadata["is_monotonic"] is True
    assert metadata["attributes"] == {"plan": "pro"}
    histogram = db.json(rows["render.ms"]["metadata"])
    assert (histogram["count"], histogram["sum"]) == (1, 40.0)
    assert rows["render.ms"]["value"] == 40.0


# --- hand-written OTLP/JSON ---------------------------------------------------------------------


def json_traces(*spans: dict) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "billing"}},
                        {"key": "deployment.type", "value": {"stringValue": "on-prem"}},
                    ],
                    "someFutureField": {"x": 1},
                },
                "scopeSpans": [{"scope": {"name": "hand"}, "spans": list(spans)}],
            }
        ],
        "unknownTopLevel": [1, 2, 3],
    }


def json_span(trace_id: str = TRACE_ID, span_id: str = SPAN_ID, **extra: object) -> dict:
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": "",
        "name": "POST /payments",
        "kind": 2,  # SPAN_KIND_SERVER, as OTLP/JSON encodes enums
        "startTimeUnixNano": str(START),
        "endTimeUnixNano": str(START + 12_500_000),
        "attributes": [
            {"key": "http.method", "value": {"stringValue": "POST"}},
            {"key": "http.target", "value": {"stringValue": "/payments/77?retry=1"}},
            {"key": "http.status_code", "value": {"intValue": "201"}},
            {"key": "enduser.id", "value": {"stringValue": "jane@example.com"}},
        ],
        "status": {"code": 1},
        "notInTheProto": True,
        **extra,
    }


def test_otlp_json_traces_hex_ids_enums_unknown_fields(server, db):
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=orjson.dumps(json_traces(json_span())),
        headers=JSON,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {}

    [row] = db.rows("endpoint_usage")
    assert (row["trace_id"], row["span_id"]) == (TRACE_ID, SPAN_ID)
    assert (row["endpoint"], row["method"], row["status_code"]) == ("/payments/{id}", "POST", 201)
    assert row["duration_ms"] == 12.5
    assert row["service_name"] == "billing" and row["deployment_type"] == "on-prem"
    assert row["user_id"] == hash_id("jane@example.com")
    assert str(row["timestamp"]).startswith("2023-11-14 22:13:20")
    assert "jane@example.com" not in db.dump()


def test_otlp_json_logs_and_metrics(server, db):
    logs = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "m"}}]
                },
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": str(START),
                                "severityNumber": 17,
                                "severityText": "ERROR",
                                "body": {"stringValue": "card declined"},
                                "traceId": TRACE_ID,
                                "spanId": SPAN_ID,
                                "attributes": [
                                    {"key": "log.type", "value": {"stringValue": "network"}}
                                ],
                                "eventName": "",
                                "mysteryField": 5,
                            }
                        ]
                    }
                ],
            }
        ]
    }
    metrics = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "m"}}]
                },
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "queue.depth",
                                "unit": "{items}",
                                "gauge": {
                                    "dataPoints": [{"timeUnixNano": str(START), "asInt": "12"}]
                                },
                            },
                            {
                                "name": "latency",
                                "unit": "ms",
                                "histogram": {
                                    "aggregationTemporality": 2,
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": str(START),
                                            "count": "4",
                                            "sum": 100.0,
                                            "min": 5.0,
                                            "max": 60.0,
                                            "bucketCounts": ["1", "2", "1"],
                                            "explicitBounds": [10.0, 50.0],
                                        }
                                    ],
                                },
                            },
                        ]
                    }
                ],
            }
        ]
    }
    for path, body in (("/v1/logs", logs), ("/v1/metrics", metrics)):
        response = requests.post(
            f"{server.http_url}{path}", data=orjson.dumps(body), headers=JSON, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.json() == {}

    [log] = db.rows("logs")
    assert (log["level"], log["severity_number"], log["type"]) == ("error", 17, "network")
    assert log["message"] == "card declined"
    assert (log["trace_id"], log["span_id"]) == (TRACE_ID, SPAN_ID)

    rows = {r["metric_type"]: r for r in db.rows("performance_metrics")}
    assert rows["queue.depth"]["value"] == 12.0 and rows["queue.depth"]["unit"] == "{items}"
    assert rows["latency"]["value"] == 25.0  # the mean: sum / count
    histogram = db.json(rows["latency"]["metadata"])
    assert histogram["count"] == 4 and histogram["sum"] == 100.0
    assert (histogram["min"], histogram["max"]) == (5.0, 60.0)
    assert histogram["bucket_counts"] == [1, 2, 1]
    assert histogram["explicit_bounds"] == [10.0, 50.0]


def test_gzip_json_body_is_accepted(server, db):
    body = gzip.compress(orjson.dumps(json_traces(json_span())))
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=body,
        headers={**JSON, "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert db.count("endpoint_usage") == 1


def test_protobuf_request_gets_protobuf_response(server, db):
    request = ExportTraceServiceRequest()
    request.resource_spans.add()  # no spans: an empty request succeeds
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=request.SerializeToString(),
        headers=PROTOBUF,
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/x-protobuf")
    reply = ExportTraceServiceResponse.FromString(response.content)
    assert not reply.HasField("partial_success")


def test_partial_success_stores_the_good_span(server, db):
    good = json_span()
    bad = json_span(trace_id="not-hex", span_id="00f067aa0ba902b7")
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=orjson.dumps(json_traces(good, bad)),
        headers=JSON,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1
    assert "trace_id" in partial["errorMessage"]
    rows = db.rows("endpoint_usage")
    assert [(r["trace_id"], r["span_id"]) for r in rows] == [(TRACE_ID, SPAN_ID)]

    # The same request again: still one row (idempotent), still one rejection reported.
    again = requests.post(
        f"{server.http_url}/v1/traces",
        data=orjson.dumps(json_traces(good, bad)),
        headers=JSON,
        timeout=10,
    )
    assert int(again.json()["partialSuccess"]["rejectedSpans"]) == 1
    assert db.count("endpoint_usage") == 1


# --- errors ------------------------------------------------------------------------------------


def test_text_plain_is_415(server, db):
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=b"hello",
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert response.status_code == 415
    assert db.count("endpoint_usage") == 0


def test_malformed_json_is_400_with_json_status(server, db):
    for body in (b"{not json", b"[1, 2]", b'{"resourceSpans": [{"scopeSpans": "nope"}]}'):
        response = requests.post(
            f"{server.http_url}/v1/traces", data=body, headers=JSON, timeout=10
        )
        assert response.status_code == 400, body
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["code"] == 3  # INVALID_ARGUMENT
        assert response.json()["message"]


def test_malformed_protobuf_is_400_with_protobuf_status(server, db):
    response = requests.post(
        f"{server.http_url}/v1/logs", data=b"\xff\xff\xff\xff", headers=PROTOBUF, timeout=10
    )
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/x-protobuf")
    status = status_pb2.Status.FromString(response.content)
    assert status.code == 3 and "malformed" in status.message


def test_malformed_gzip_is_400(server, db):
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=b"definitely not gzip",
        headers={**JSON, "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 400


def test_body_over_the_limit_is_413(make_server, db):
    server = make_server(max_http_body_mib=1)
    url = f"{server.http_url}/v1/traces"
    big = orjson.dumps(json_traces(json_span(name="x" * (1 << 20))))
    assert len(big) > 1 << 20
    response = requests.post(url, data=big, headers=JSON, timeout=10)
    assert response.status_code == 413
    assert response.json()["code"] == 8  # RESOURCE_EXHAUSTED
    assert "Retry-After" not in response.headers

    # Chunked, so the size is only known while reading.
    def chunks():
        for start in range(0, len(big), 64 << 10):
            yield big[start : start + (64 << 10)]

    response = requests.post(url, data=chunks(), headers=JSON, timeout=10)
    assert response.status_code == 413

    # A kept-alive connection still works after a refused body.
    with requests.Session() as session:
        for _ in range(2):
            assert session.post(url, data=big, headers=JSON, timeout=10).status_code == 413
            ok = session.post(url, data=orjson.dumps(json_traces()), headers=JSON, timeout=10)
            assert ok.status_code == 200, ok.text

    # Just under the limit is fine.
    small = orjson.dumps(json_traces(json_span(name="y" * (900 << 10))))
    assert len(small) < 1 << 20
    assert requests.post(url, data=small, headers=JSON, timeout=10).status_code == 200
    assert db.count("endpoint_usage") == 1


def test_gzip_bomb_is_413(make_server, db):
    server = make_server(max_http_body_mib=1)
    document = json_traces(json_span(name="z" * (3 << 20)))
    bomb = gzip.compress(orjson.dumps(document), compresslevel=9)
    assert len(bomb) < 64 << 10  # small on the wire, over 3 MiB inflated
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=bomb,
        headers={**JSON, "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["code"] == 8

    # Several members, each under the limit, together over it.
    members = b"".join(gzip.compress(b" " * (512 << 10)) for _ in range(3))
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=members,
        headers={**JSON, "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 413
    assert db.count("endpoint_usage") == 0


def test_truncated_gzip_is_400_and_multi_member_gzip_is_whole(server, db):
    body = orjson.dumps(json_traces(json_span()))
    packed = gzip.compress(body)
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=packed[: len(packed) // 2],
        headers={**JSON, "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 400
    assert db.count("endpoint_usage") == 0

    # gzip allows several members; the body is their concatenation (RFC 1952 §2.2).
    half = len(body) // 2
    members = gzip.compress(body[:half]) + gzip.compress(body[half:])
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=members,
        headers={**JSON, "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert db.count("endpoint_usage") == 1


def test_snake_case_hex_ids_are_read_as_hex(server, db):
    span = json_span()
    span["trace_id"], span["span_id"] = span.pop("traceId"), span.pop("spanId")
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=orjson.dumps(json_traces(span)),
        headers=JSON,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert [(r["trace_id"], r["span_id"]) for r in db.rows("endpoint_usage")] == [
        (TRACE_ID, SPAN_ID)
    ]
