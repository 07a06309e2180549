"""Metrics: OTLP data points to performance_metrics rows (SPEC §6). Pure; no I/O."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from processor.mapping.identity import RouteContext, identity
from processor.mapping.privacy import scrub_mapping
from processor.mapping.rows import LENGTHS, Batch, PerformanceMetricRow
from processor.mapping.values import attributes, clean, dumps, lookup, row_id, text, timestamp

_NO_RECORDED_VALUE = 1


def route_metrics(request: ExportMetricsServiceRequest, ctx: RouteContext) -> Batch:
    batch = Batch()
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        resource_key = hashlib.blake2b(
            resource_metrics.resource.SerializeToString(deterministic=True), digest_size=16
        ).hexdigest()
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(metric, kind)
                for point in data.data_points:
                    batch.received += 1
                    _route_point(metric, kind, data, point, resource, resource_key, ctx, batch)
    return batch


def _point_value(kind: str, point: Any) -> tuple[float | None, dict[str, Any]]:
    """The row's value and the kind-specific metadata of one data point."""
    if kind in ("gauge", "sum"):
        which = point.WhichOneof("value")
        if which is None:
            return None, {}
        return (float(point.as_int) if which == "as_int" else point.as_double), {}
    count = point.count
    extra: dict[str, Any] = {"count": count}
    if kind != "summary" and not point.HasField("sum"):
        total = None
    else:
        total = point.sum
        extra["sum"] = _finite(total)
    if kind in ("histogram", "exponential_histogram"):
        if point.HasField("min"):
            extra["min"] = _finite(point.min)
        if point.HasField("max"):
            extra["max"] = _finite(point.max)
    if kind == "histogram":
        extra["bucket_counts"] = list(point.bucket_counts)
        extra["explicit_bounds"] = [_finite(b) for b in point.explicit_bounds]
    elif kind == "exponential_histogram":
        extra["scale"] = point.scale
        extra["zero_count"] = point.zero_count
        extra["positive"] = {
            "offset": point.positive.offset,
            "bucket_counts": list(point.positive.bucket_counts),
        }
        extra["negative"] = {
            "offset": point.negative.offset,
            "bucket_counts": list(point.negative.bucket_counts),
        }
    elif kind == "summary":
        extra["quantiles"] = [
            {"quantile": _finite(q.quantile), "value": _finite(q.value)}
            for q in point.quantile_values
        ]
    # The row's value is the mean, so AVG(value) over points stays meaningful.
    value = total / count if total is not None and count else (0.0 if count == 0 else None)
    return value, extra


def _finite(number: float) -> float | str:
    return number if math.isfinite(number) else str(number)


def _route_point(
    metric: Any,
    kind: str,
    data: Any,
    point: Any,
    resource: dict[str, Any],
    resource_key: str,
    ctx: RouteContext,
    batch: Batch,
) -> None:
    if point.flags & _NO_RECORDED_VALUE:
        return
    nanos = point.time_unix_nano or point.start_time_unix_nano
    name = clean(metric.name, LENGTHS["metric_type"])
    if nanos == 0:
        batch.reject(f"metric {name!r}: data point has no time_unix_nano")
        return
    value, extra = _point_value(kind, point)
    # No value (a histogram without sum, an empty gauge) is stored as NULL; NaN/Inf are refused.
    if value is not None and not math.isfinite(value):
        batch.reject(f"metric {name!r}: data point value is not a finite number")
        return
    attrs = attributes(point.attributes)
    who = identity(ctx.hasher, attrs, resource)
    metadata = {"kind": kind, "attributes": scrub_mapping(attrs, ctx.hasher), **extra}
    if metric.description:
        metadata["description"] = clean(metric.description, 1024)
    if kind in ("sum", "histogram", "exponential_histogram"):
        metadata["temporality"] = data.aggregation_temporality
    if kind == "sum":
        metadata["is_monotonic"] = data.is_monotonic
    if point.start_time_unix_nano:
        metadata["start_time_unix_nano"] = point.start_time_unix_nano
    key = hashlib.blake2b(point.SerializeToString(deterministic=True), digest_size=16).hexdigest()
    batch.rows["performance_metrics"].append(
        PerformanceMetricRow(
            id=row_id(ctx.project_id, "performance_metrics", resource_key, name, kind, key),
            project_id=ctx.project_id,
            timestamp=timestamp(nanos),
            trace_id=None,
            span_id=None,
            metric_type=name,
            value=value,
            unit=text(metric.unit or None, "unit"),
            user_id=who.user_id,
            session_id=who.session_id,
            service_name=who.service_name,
            app_version=text(lookup(("service.version",), attrs, resource), "app_version"),
            metadata=dumps(metadata),
        )
    )
