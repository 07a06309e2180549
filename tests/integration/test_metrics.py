"""OTLP metrics from the real Python metrics SDK over gRPC → performance_metrics (SPEC §6)."""

from __future__ import annotations

import math

import grpc
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from processor.mapping.privacy import make_hasher
from tests.helpers.sdk import resource

hash_id = make_hasher()
START = 1_700_000_000_000_000_000


def meter_provider(endpoint: str, *views: View) -> MeterProvider:
    exporter = OTLPMetricExporter(
        endpoint=endpoint, insecure=True, timeout=10, compression=grpc.Compression.Gzip
    )
    # math.inf: no background thread; force_flush() collects and exports exactly once.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    return MeterProvider(
        metric_readers=[reader],
        resource=resource(**{"service.version": "4.2.0"}),
        views=views,
    )


def test_sdk_histogram_and_gauges_land_in_performance_metrics(server, db):
    provider = meter_provider(
        server.grpc_endpoint,
        View(
            instrument_name="app.screen_load",
            aggregation=ExplicitBucketHistogramAggregation(boundaries=(100.0, 250.0, 1000.0)),
        ),
    )
    meter = provider.get_meter("mobile")
    screen_load = meter.create_histogram("app.screen_load", unit="ms", description="Screen load")
    for value in (80.0, 120.0, 240.0, 1800.0):
        screen_load.record(value, {"screen": "home", "user.id": "kim-4"})
    screen_load.record(300.0, {"screen": "settings"})

    meter.create_gauge("app.fps", unit="fps").set(58.5, {"session.id": "sess-kim"})

    def memory(_options: CallbackOptions) -> list[Observation]:
        return [Observation(180.5, {"process": "main"}), Observation(42, {"process": "worker"})]

    meter.create_observable_gauge("app.memory", callbacks=[memory], unit="MB")
    assert provider.force_flush(10_000)
    provider.shutdown()

    rows = db.rows("performance_metrics")
    by_type: dict[str, list[dict]] = {}
    for row in rows:
        by_type.setdefault(row["metric_type"], []).append(row)
    assert sorted((k, len(v)) for k, v in by_type.items()) == [
        ("app.fps", 1),
        ("app.memory", 2),
        ("app.screen_load", 2),
    ]
    for row in rows:
        assert row["service_name"] == "shop"
        assert row["app_version"] == "4.2.0"

    home = next(
        r
        for r in by_type["app.screen_load"]
        if db.json(r["metadata"])["attributes"]["screen"] == "home"
    )
    assert home["unit"] == "ms"
    assert home["value"] == (80.0 + 120.0 + 240.0 + 1800.0) / 4  # the mean
    assert home["user_id"] == hash_id("kim-4")
    meta = db.json(home["metadata"])
    assert meta["kind"] == "histogram"
    assert (meta["count"], meta["sum"], meta["min"], meta["max"]) == (4, 2240.0, 80.0, 1800.0)
    assert meta["explicit_bounds"] == [100.0, 250.0, 1000.0]
    assert meta["bucket_counts"] == [1, 2, 0, 1]
    assert meta["temporality"] == 2  # cumulative
    assert meta["description"] == "Screen load"
    assert meta["attributes"] == {"screen": "home", "user.id": hash_id("kim-4")}

    [fps] = by_type["app.fps"]
    assert (fps["value"], fps["unit"]) == (58.5, "fps")
    assert fps["session_id"] == hash_id("sess-kim")
    assert db.json(fps["metadata"])["kind"] == "gauge"

    memory_rows = {
        db.json(r["metadata"])["attributes"]["process"]: r for r in by_type["app.memory"]
    }
    assert memory_rows["main"]["value"] == 180.5
    assert memory_rows["worker"]["value"] == 42.0
    assert memory_rows["main"]["unit"] == "MB"

    dump = db.dump()
    assert "kim-4" not in dump and "sess-kim" not in dump


def test_metrics_export_is_idempotent_and_reports_rejections(server, db):
    """A retried export adds nothing; a point without a timestamp is a partial success."""
    request = pb.ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    gauge = scope.metrics.add(name="queue.depth", unit="1")
    gauge.gauge.data_points.add(time_unix_nano=START, as_int=7)
    gauge.gauge.data_points.add(as_int=9)  # no time: unusable
    total = scope.metrics.add(name="jobs.done")
    total.sum.is_monotonic = True
    total.sum.aggregation_temporality = 1  # delta
    total.sum.data_points.add(time_unix_nano=START, as_double=2.5)

    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        stub = MetricsServiceStub(channel)
        for _ in range(2):
            response = stub.Export(request, timeout=10)
            assert response.partial_success.rejected_data_points == 1
            assert "time_unix_nano" in response.partial_success.error_message
        empty = stub.Export(pb.ExportMetricsServiceRequest(), timeout=10)
        assert not empty.HasField("partial_success")

    rows = {r["metric_type"]: r for r in db.rows("performance_metrics")}
    assert db.count("performance_metrics") == 2
    assert rows["queue.depth"]["value"] == 7.0
    assert rows["jobs.done"]["value"] == 2.5
    meta = db.json(rows["jobs.done"]["metadata"])
    assert (meta["kind"], meta["temporality"], meta["is_monotonic"]) == ("sum", 1, True)
