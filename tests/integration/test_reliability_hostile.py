"""Hostile input over OTLP/gRPC (SPEC §8), one case each, with hand-built protobufs.

Malformed and oversized requests are refused whole with the right status; otherwise the good
records of a request are stored, unstorable ones are counted in partial_success with an
error_message, sanitised ones are stored bounded, and the server keeps serving afterwards.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.helpers import otlp
from tests.helpers.otlp import (
    MS,
    T0,
    ids,
    key_values,
    malformed,
    nested_wire,
    span_hex,
    traces_wire,
)
from tests.helpers.otlp import with_attribute_wire as with_attribute

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
RESPONSES: dict[str, Any] = {
    TRACES: ExportTraceServiceResponse,
    LOGS: ExportLogsServiceResponse,
    METRICS: ExportMetricsServiceResponse,
}


# --- building requests ----------------------------------------------------------------------


def span(
    tag: str,
    attrs: dict[str, Any] | None = None,
    *,
    start: int = T0,
    end: int | None = None,
    kind: int = Span.SPAN_KIND_INTERNAL,
    name: str | None = None,
) -> Span:
    """A span that lands in feature_usage (``feature.name`` = tag unless overridden), with
    ids derived from ``tag``."""
    trace_id, span_id = ids(tag)
    return otlp.span(
        tag if name is None else name,
        {"feature.name": tag, **(attrs or {})},
        kind=kind,
        trace_id=trace_id,
        span_id=span_id,
        start=start,
        end=end,
    )


def traces(*spans: Span, resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    return otlp.traces(*spans, resource={"service.name": "hostile", **(resource or {})})


# --- talking to the server ------------------------------------------------------------------


class Client:
    def __init__(self, endpoint: str, **options: Any) -> None:
        self.channel = grpc.insecure_channel(
            endpoint, options=[("grpc.max_send_message_length", 256 << 20)]
        )

    def call(self, method: str, data: bytes | Any, **kwargs: Any) -> Any:
        payload = data if isinstance(data, bytes) else data.SerializeToString()
        rpc = self.channel.unary_unary(method, response_deserializer=RESPONSES[method].FromString)
        return rpc(payload, timeout=60, **kwargs)

    def refused(self, method: str, data: bytes | Any, **kwargs: Any) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as failure:
            self.call(method, data, **kwargs)
        return failure.value

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def client(server: Any) -> Iterator[Client]:
    c = Client(server.grpc_endpoint)
    yield c
    c.close()


def feature_rows(db: Any) -> dict[str, dict[str, Any]]:
    """feature_usage rows by span id; fails on a duplicate."""
    rows: dict[str, dict[str, Any]] = {}
    for row in db.rows("feature_usage"):
        assert row["span_id"] not in rows, f"duplicate row for span {row['span_id']}"
        rows[row["span_id"]] = row
    return rows


def assert_still_serving(client: Client, db: Any, tag: str) -> None:
    """A well-formed request after the hostile one is accepted and stored."""
    reply = client.call(TRACES, traces(span(tag)))
    assert not reply.HasField("partial_success")
    assert span_hex(tag) in feature_rows(db)


def assert_no_retry_info(error: Any) -> None:
    status = rpc_status.from_call(error)
    assert status is None or not status.details
    assert "google.rpc.retryinfo-bin" not in dict(error.trailing_metadata() or ())


# --- refused whole --------------------------------------------------------------------------

MALFORMED = malformed(traces(span("good"), span("good-2")).SerializeToString())


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_protobuf_is_invalid_argument(client, db, payload):
    error = client.refused(TRACES, payload)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed" in error.details()
    assert_no_retry_info(error)
    assert feature_rows(db) == {}
    assert_still_serving(client, db, "after-malformed")


def big_request(size: int) -> ExportTraceServiceRequest:
    return traces(span("big", {"blob": "x" * size}))


def test_message_over_default_limit_is_resource_exhausted(client, db):
    error = client.refused(TRACES, big_request(5 << 20))  # the default limit is 4 MiB
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_no_retry_info(error)
    assert feature_rows(db) == {}
    # Just under the limit is fine.
    assert not client.call(TRACES, big_request((4 << 20) - 4096)).HasField("partial_success")
    assert span_hex("big") in feature_rows(db)
    assert_still_serving(client, db, "after-big")


def test_message_over_configured_limit_is_resource_exhausted(make_server, db):
    server = make_server(max_recv_msg_mib=1)
    client = Client(server.grpc_endpoint)
    error = client.refused(TRACES, big_request(3 << 19))  # 1.5 MiB
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_no_retry_info(error)
    assert feature_rows(db) == {}
    assert_still_serving(client, db, "after-configured-limit")
    client.close()


def test_gzip_bomb_is_bounded(client, db):
    """64 MiB of zeros compress to ~64 KiB; the server refuses it before inflating it all."""
    bomb = traces(span("bomb", {"zeros": "\x30" * (64 << 20)})).SerializeToString()
    error = client.refused(TRACES, bomb, compression=grpc.Compression.Gzip)
    del bomb
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_no_retry_info(error)
    assert feature_rows(db) == {}
    # A small compressed request is fine.
    reply = client.call(TRACES, traces(span("gzip-ok")), compression=grpc.Compression.Gzip)
    assert not reply.HasField("partial_success")
    assert span_hex("gzip-ok") in feature_rows(db)
    assert_still_serving(client, db, "after-bomb")


# --- sanitised and stored -------------------------------------------------------------------


def metadata(db: Any, row: dict[str, Any]) -> dict[str, Any]:
    value = db.json(row["event_metadata"])
    assert isinstance(value, dict)
    return value


def test_nul_characters_are_removed(client, db):
    request = traces(
        span(
            "nul",
            {
                "feature.name": "fea\x00ture",
                "note": "a\x00b",
                "ke\x00y": "v",
                "user.properties.pl\x00an": "pro\x00",
                "user.id": "u\x001",
            },
            name="na\x00me",
        ),
        span("nul-good"),
        resource={"service.name": "svc\x00name", "deployment.type": "\x00"},
    )
    reply = client.call(TRACES, request)
    assert not reply.HasField("partial_success")
    rows = feature_rows(db)
    assert set(rows) == {span_hex("nul"), span_hex("nul-good")}
    row = rows[span_hex("nul")]
    assert row["feature_name"] == "feature"
    assert row["service_name"] == "svcname"
    meta = metadata(db, row)
    assert meta["note"] == "ab" and meta["key"] == "v" and meta["span.name"] == "name"
    props = db.rows("user_properties")
    assert [(p["property_key"], db.json(p["property_value"])) for p in props] == [("plan", "pro")]
    assert "\x00" not in db.dump()
    assert_still_serving(client, db, "after-nul")


def test_nan_and_infinite_doubles(client, db):
    request = traces(
        span(
            "nan",
            {
                "nan": math.nan,
                "inf": math.inf,
                "-inf": -math.inf,
                "performance.metric": "latency",
                "performance.value": math.nan,
            },
        ),
        span("nan-good", {"performance.metric": "fps", "performance.value": 60.0}),
    )
    reply = client.call(TRACES, request)
    assert not reply.HasField("partial_success")
    rows = feature_rows(db)
    assert set(rows) == {span_hex("nan"), span_hex("nan-good")}
    meta = metadata(db, rows[span_hex("nan")])
    assert (meta["nan"], meta["inf"], meta["-inf"]) == ("nan", "inf", "-inf")
    perf = {r["span_id"]: r for r in db.rows("performance_metrics")}
    # A NaN performance.value falls back to the span's duration.
    assert perf[span_hex("nan")]["value"] == pytest.approx(25.0)
    assert perf[span_hex("nan-good")]["value"] == 60.0

    # Data points whose value is NaN or infinite cannot be stored: rejected, the rest stored.
    metrics = ExportMetricsServiceRequest()
    scope = metrics.resource_metrics.add().scope_metrics.add()
    gauge = scope.metrics.add(name="temperature").gauge
    for value in (21.5, math.nan, math.inf, -math.inf):
        gauge.data_points.add(time_unix_nano=T0, as_double=value)
    reply = client.call(METRICS, metrics)
    assert reply.partial_success.rejected_data_points == 3
    assert "finite" in reply.partial_success.error_message
    stored = [r for r in db.rows("performance_metrics") if r["metric_type"] == "temperature"]
    assert [r["value"] for r in stored] == [21.5]
    assert_still_serving(client, db, "after-nan")


def json_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((json_depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize(
    ("kind", "depth"),
    # 100 levels, and just past the parser's limit of 100 messages where the value sits
    [("kvlist", 100), ("array", 100), ("kvlist", 32), ("array", 48)],
)
def test_values_nested_100_deep(client, db, kind, depth):
    nested = nested_wire(kind, depth)
    deep = with_attribute(span("deep").SerializeToString(), 9, "deep", nested)  # Span.attributes
    request = traces_wire(
        deep, span("deep-good").SerializeToString(), resource={"service.name": "hostile"}
    )
    reply = client.call(TRACES, request)
    assert not reply.HasField("partial_success")
    rows = feature_rows(db)
    assert set(rows) == {span_hex("deep"), span_hex("deep-good")}
    stored = metadata(db, rows[span_hex("deep")])["deep"]
    assert 1 <= json_depth(stored) <= 10
    assert "nested too deep" in json.dumps(stored)
    assert "bottom" not in json.dumps(stored)
    assert_still_serving(client, db, "after-deep")


def test_ten_thousand_attributes_on_one_span(client, db):
    attrs = {f"attr.{i}": i for i in range(10_000)}
    reply = client.call(TRACES, traces(span("wide", attrs), span("wide-good")))
    assert not reply.HasField("partial_success")
    rows = feature_rows(db)
    assert set(rows) == {span_hex("wide"), span_hex("wide-good")}
    meta = metadata(db, rows[span_hex("wide")])
    assert meta["_truncated"] is True
    assert 100 <= len(meta) <= 300
    assert rows[span_hex("wide")]["feature_name"] == "wide"
    assert_still_serving(client, db, "after-wide")


def test_one_megabyte_strings_are_truncated(client, db):
    mb = "m" * (1 << 20)
    server_span = span(
        "huge",
        {"http.request.method": "GET", "http.route": "/" + mb, "feature.name": mb, "blob": mb},
        kind=Span.SPAN_KIND_SERVER,
    )
    reply = client.call(TRACES, traces(server_span, span("huge-good")))
    assert not reply.HasField("partial_success")
    rows = feature_rows(db)
    assert set(rows) == {span_hex("huge"), span_hex("huge-good")}
    row = rows[span_hex("huge")]
    assert row["feature_name"] == "m" * 255
    meta = metadata(db, row)
    assert 0 < len(meta["blob"]) <= 65536 and set(meta["blob"]) == {"m"}
    [endpoint] = db.rows("endpoint_usage")
    assert endpoint["endpoint"] == ("/" + mb)[:512]

    logs = ExportLogsServiceRequest()
    scope = logs.resource_logs.add().scope_logs.add()
    record = scope.log_records.add(time_unix_nano=T0, severity_number=9)
    record.body.string_value = mb
    record.attributes.extend(key_values({"big.attribute": mb}))
    reply = client.call(LOGS, logs)
    assert not reply.HasField("partial_success")
    [log] = db.rows("logs")
    assert 0 < len(log["message"]) <= 65536 and set(log["message"]) == {"m"}
    assert 0 < len(db.json(log["metadata"])["big.attribute"]) <= 65536
    assert_still_serving(client, db, "after-huge")


def test_ids_of_wrong_length_are_rejected(client, db):
    bad = {
        "trace-15": span("trace-15"),
        "trace-17": span("trace-17"),
        "trace-empty": span("trace-empty"),
        "span-7": span("span-7"),
        "span-9": span("span-9"),
        "span-empty": span("span-empty"),
    }
    bad["trace-15"].trace_id = b"\x01" * 15
    bad["trace-17"].trace_id = b"\x01" * 17
    bad["trace-empty"].trace_id = b""
    bad["span-7"].span_id = b"\x02" * 7
    bad["span-9"].span_id = b"\x02" * 9
    bad["span-empty"].span_id = b""
    reply = client.call(TRACES, traces(*bad.values(), span("ids-good")))
    assert reply.partial_success.rejected_spans == 6
    message = reply.partial_success.error_message
    assert "trace_id" in message and "span_id" in message
    assert set(feature_rows(db)) == {span_hex("ids-good")}

    logs = ExportLogsServiceRequest()
    scope = logs.resource_logs.add().scope_logs.add()
    scope.log_records.add(time_unix_nano=T0, trace_id=b"\x01" * 3).body.string_value = "bad"
    scope.log_records.add(time_unix_nano=T0, span_id=b"\x01" * 3).body.string_value = "bad"
    scope.log_records.add(time_unix_nano=T0).body.string_value = "good log"
    reply = client.call(LOGS, logs)
    assert reply.partial_success.rejected_log_records == 2
    assert "trace_id" in reply.partial_success.error_message
    assert [r["message"] for r in db.rows("logs")] == ["good log"]
    assert_still_serving(client, db, "after-ids")


def test_unusable_and_extreme_timestamps(client, db):
    far_future = 2**64 - 1  # the largest fixed64: year 2554
    request = traces(
        span("zero-start", start=0, end=25 * MS),
        span("end-before-start", start=T0, end=T0 - 1),
        span("far-future", start=far_future, end=far_future),
        span("time-good"),
    )
    reply = client.call(TRACES, request)
    assert reply.partial_success.rejected_spans == 2
    message = reply.partial_success.error_message
    assert "start_time_unix_nano" in message and "before" in message
    rows = feature_rows(db)
    assert set(rows) == {span_hex("far-future"), span_hex("time-good")}
    future = rows[span_hex("far-future")]["timestamp"]
    if isinstance(future, str):  # SQLite returns text
        future = datetime.fromisoformat(future)
    assert future.year == 2554
    assert rows[span_hex("time-good")]["timestamp"] is not None

    logs = ExportLogsServiceRequest()
    scope = logs.resource_logs.add().scope_logs.add()
    scope.log_records.add().body.string_value = "no time at all"
    scope.log_records.add(observed_time_unix_nano=T0).body.string_value = "observed only"
    reply = client.call(LOGS, logs)
    assert reply.partial_success.rejected_log_records == 1
    assert "time" in reply.partial_success.error_message
    [log] = db.rows("logs")
    assert log["message"] == "observed only"
    when = log["timestamp"]
    when = datetime.fromisoformat(when) if isinstance(when, str) else when
    assert when.replace(tzinfo=UTC) == datetime.fromtimestamp(T0 / 1e9, UTC)
    assert_still_serving(client, db, "after-time")


def test_unknown_span_kind(client, db):
    odd = span("odd-kind", {"http.request.method": "GET", "url.path": "/x"}, kind=42)
    reply = client.call(TRACES, traces(odd, span("kind-good")))
    assert not reply.HasField("partial_success")
    assert set(feature_rows(db)) == {span_hex("odd-kind"), span_hex("kind-good")}
    assert db.rows("endpoint_usage") == []  # only SERVER spans are endpoint calls
    assert_still_serving(client, db, "after-kind")


def test_invalid_utf8_in_strings_is_replaced(client, db):
    marker = "@@BAD@@"
    request = traces(
        span("utf8", {"feature.name": f"feature{marker}", "note": marker, marker: "v"}),
        span("utf8-good"),
        resource={"service.name": f"svc{marker}"},
    ).SerializeToString()
    raw = request.replace(marker.encode(), b"@\xff\xfe\xc3(@@")  # same length: prefixes hold
    assert len(raw) == len(request)
    reply = client.call(TRACES, raw)
    assert not reply.HasField("partial_success")
    rows = feature_rows(db)
    assert set(rows) == {span_hex("utf8"), span_hex("utf8-good")}
    row = rows[span_hex("utf8")]
    assert row["feature_name"].startswith("feature@\ufffd")
    assert row["service_name"].startswith("svc@\ufffd")
    meta = metadata(db, row)
    assert meta["note"].startswith("@\ufffd")
    assert any(key.startswith("@\ufffd") for key in meta)
    assert_still_serving(client, db, "after-utf8")
