"""route_metrics: OTLP metric data points to performance_metrics rows."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    Sum,
    Summary,
    SummaryDataPoint,
)

from processor.mapping import RouteContext, route_metrics
from processor.mapping.privacy import Hasher
from tests.helpers.otlp import T0, T0_DATETIME, metrics, number_point, one
from tests.helpers.routing import route

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


def test_gauge_point_gives_performance_metric(ctx: RouteContext, h: Hasher) -> None:
    metric = Metric(
        name="process.memory.usage",
        unit="By",
        description="resident memory",
        gauge=Gauge(data_points=[number_point(1.5e6, {"user.id": "u1", "host": "a"})]),
    )
    batch = route(ctx, metric, resource={"service.name": "api", "service.version": "9.1"})
    row = one(batch.rows, "performance_metrics")
    assert (row.metric_type, row.value, row.unit) == ("process.memory.usage", 1.5e6, "By")
    assert (row.user_id, row.service_name, row.app_version) == (h("u1"), "api", "9.1")
    assert (row.trace_id, row.span_id, row.timestamp) == (None, None, T0_DATETIME)
    metadata = json.loads(row.metadata)
    assert metadata["kind"] == "gauge"
    assert metadata["description"] == "resident memory"
    assert metadata["attributes"] == {"user.id": h("u1"), "host": "a"}


@pytest.mark.parametrize(("point_value", "expected"), [(7, 7.0), (2.25, 2.25), (-3, -3.0)])
def test_sum_point_int_and_double(ctx: RouteContext, point_value: Any, expected: float) -> None:
    metric = Metric(
        name="http.requests",
        sum=Sum(
            data_points=[number_point(point_value, start=T0 - 10**9)],
            aggregation_temporality=CUMULATIVE,
            is_monotonic=True,
        ),
    )
    row = one(route(ctx, metric).rows, "performance_metrics")
    assert row.value == expected
    assert isinstance(row.value, float)
    assert row.unit is None
    metadata = json.loads(row.metadata)
    assert (metadata["kind"], metadata["temporality"], metadata["is_monotonic"]) == (
        "sum",
        CUMULATIVE,
        True,
    )
    assert metadata["start_time_unix_nano"] == T0 - 10**9


def test_histogram_point_stores_mean_and_buckets_in_metadata(ctx: RouteContext) -> None:
    point = HistogramDataPoint(
        time_unix_nano=T0,
        count=4,
        sum=10.0,
        min=1.0,
        max=5.0,
        explicit_bounds=[1.0, 5.0],
        bucket_counts=[1, 2, 1],
    )
    metric = Metric(
        name="http.server.duration",
        unit="ms",
        histogram=Histogram(data_points=[point], aggregation_temporality=DELTA),
    )
    row = one(route(ctx, metric).rows, "performance_metrics")
    assert row.value == 2.5
    metadata = json.loads(row.metadata)
    assert {k: metadata[k] for k in ("kind", "count", "sum", "min", "max")} == {
        "kind": "histogram",
        "count": 4,
        "sum": 10.0,
        "min": 1.0,
        "max": 5.0,
    }
    assert metadata["explicit_bounds"] == [1.0, 5.0]
    assert metadata["bucket_counts"] == [1, 2, 1]
    assert metadata["temporality"] == DELTA


def test_empty_histogram_point_has_value_zero(ctx: RouteContext) -> None:
    metric = Metric(
        name="h", histogram=Histogram(data_points=[HistogramDataPoint(time_unix_nano=T0)])
    )
    row = one(route(ctx, metric).rows, "performance_metrics")
    assert row.value == 0.0
    assert json.loads(row.metadata)["count"] == 0


def test_exponential_histogram_point(ctx: RouteContext) -> None:
    point = ExponentialHistogramDataPoint(
        time_unix_nano=T0,
        count=3,
        sum=9.0,
        min=2.0,
        max=4.0,
        scale=2,
        zero_count=0,
        positive=ExponentialHistogramDataPoint.Buckets(offset=4, bucket_counts=[1, 2]),
    )
    metric = Metric(name="latency", exponential_histogram=ExponentialHistogram(data_points=[point]))
    row = one(route(ctx, metric).rows, "performance_metrics")
    assert row.value == 3.0
    metadata = json.loads(row.metadata)
    assert metadata["kind"] == "exponential_histogram"
    assert (metadata["count"], metadata["sum"], metadata["min"], metadata["max"]) == (3, 9, 2, 4)
    assert (metadata["scale"], metadata["zero_count"]) == (2, 0)
    assert metadata["positive"] == {"offset": 4, "bucket_counts": [1, 2]}


def test_summary_point(ctx: RouteContext) -> None:
    point = SummaryDataPoint(
        time_unix_nano=T0,
        count=2,
        sum=30.0,
        quantile_values=[
            SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=12.0),
            SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=18.0),
        ],
    )
    metric = Metric(name="rpc.latency", summary=Summary(data_points=[point]))
    row = one(route(ctx, metric).rows, "performance_metrics")
    assert row.value == 15.0
    metadata = json.loads(row.metadata)
    assert metadata["kind"] == "summary"
    assert metadata["quantiles"] == [
        {"quantile": 0.5, "value": 12.0},
        {"quantile": 0.99, "value": 18.0},
    ]


def test_every_data_point_gives_a_row(ctx: RouteContext) -> None:
    points = [number_point(float(i), {"i": i}) for i in range(3)]
    batch = route(ctx, Metric(name="g", gauge=Gauge(data_points=points)))
    assert sorted(r.value for r in batch.rows["performance_metrics"]) == [0.0, 1.0, 2.0]
    assert len({r.id for r in batch.rows["performance_metrics"]}) == 3
    assert batch.received == 3


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_gauge_value_is_rejected_and_counted(ctx: RouteContext, bad: float) -> None:
    metric = Metric(name="g", gauge=Gauge(data_points=[number_point(bad), number_point(1.0)]))
    batch = route(ctx, metric)
    assert (batch.received, batch.rejected) == (2, 1)
    assert "finite" in batch.error_message and "'g'" in batch.error_message
    assert one(batch.rows, "performance_metrics").value == 1.0


def test_histogram_with_nan_sum_is_rejected(ctx: RouteContext) -> None:
    point = HistogramDataPoint(time_unix_nano=T0, count=2, sum=math.nan)
    batch = route(ctx, Metric(name="h", histogram=Histogram(data_points=[point])))
    assert (batch.rejected, batch.row_count) == (1, 0)


def test_data_point_without_time_is_rejected(ctx: RouteContext) -> None:
    metric = Metric(
        name="g", gauge=Gauge(data_points=[number_point(1.0, time=0), number_point(2.0)])
    )
    batch = route(ctx, metric)
    assert (batch.received, batch.rejected) == (2, 1)
    assert "time_unix_nano" in batch.error_message
    assert one(batch.rows, "performance_metrics").value == 2.0


def test_data_point_with_only_start_time_uses_it(ctx: RouteContext) -> None:
    metric = Metric(name="g", gauge=Gauge(data_points=[number_point(1.0, time=0, start=T0)]))
    assert one(route(ctx, metric).rows, "performance_metrics").timestamp == T0_DATETIME


def test_data_point_flagged_no_recorded_value_is_skipped(ctx: RouteContext) -> None:
    point = number_point(1.0)
    point.flags = 1
    batch = route(ctx, Metric(name="g", gauge=Gauge(data_points=[point])))
    assert (batch.rejected, batch.row_count) == (0, 0)


def test_metric_without_data_is_ignored(ctx: RouteContext) -> None:
    batch = route(ctx, Metric(name="empty"))
    assert (batch.received, batch.rejected, batch.row_count) == (0, 0, 0)


def test_routing_the_same_metrics_twice_gives_the_same_row_ids(ctx: RouteContext) -> None:
    def request() -> Any:
        return metrics(
            Metric(name="g", gauge=Gauge(data_points=[number_point(1.0), number_point(2.0)])),
            Metric(name="s", sum=Sum(data_points=[number_point(3)])),
        )

    first = [r.id for r in route_metrics(request(), ctx).rows["performance_metrics"]]
    second = [r.id for r in route_metrics(request(), ctx).rows["performance_metrics"]]
    assert first == second and len(set(first)) == 3
    other = RouteContext(hasher=ctx.hasher, project_id=2, now=ctx.now)
    third = [r.id for r in route_metrics(request(), other).rows["performance_metrics"]]
    assert not set(first) & set(third)


def test_histogram_without_sum_is_stored_with_null_value(ctx: RouteContext) -> None:
    point = HistogramDataPoint(
        time_unix_nano=T0, count=4, bucket_counts=[1, 3], explicit_bounds=[10.0]
    )
    metric = Metric(name="latency", histogram=Histogram(data_points=[point]))
    batch = route(ctx, metric)
    row = one(batch.rows, "performance_metrics")
    assert row.value is None
    assert batch.rejected == 0
    metadata = json.loads(row.metadata)
    assert metadata["count"] == 4 and "sum" not in metadata
    assert metadata["bucket_counts"] == [1, 3]


def test_gauge_point_without_a_value_is_stored_with_null_value(ctx: RouteContext) -> None:
    point = number_point(1.0)
    point.ClearField("as_double")
    point.ClearField("as_int")
    batch = route(ctx, Metric(name="queue.depth", gauge=Gauge(data_points=[point])))
    assert one(batch.rows, "performance_metrics").value is None
    assert batch.rejected == 0
