"""What spans, span events and log records share: the feature, activity, metric and
user-property rows any of them can produce (``add_derived_rows``), and the device fields."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from processor.mapping.identity import (
    Identity,
    RouteContext,
    has_user_properties,
    user_property_rows,
)
from processor.mapping.rows import FeatureUsageRow, PerformanceMetricRow, UserActivityRow
from processor.mapping.values import ACTIVITY_EVENTS, lookup, row_id, text, to_float

PLATFORM_KEYS = ("os.name", "os.type")


DEVICE_MODEL_KEYS = ("device.model.name", "device.model.identifier")


@dataclass(frozen=True, slots=True)
class Origin:
    """What every row from one record shares: the key its row ids derive from, and when."""

    key: tuple[object, ...]
    when: datetime
    trace_id: str | None
    span_id: str | None


# A performance metric a record names: (metric type, value, unit, extra row-key parts). A
# candidate whose value is None adds no row.
Metric = tuple[Any, float | None, Any, tuple[object, ...]]
NO_METRICS: tuple[Metric, ...] = ()


def add_derived_rows(
    rows: dict[str, list[tuple]],
    ctx: RouteContext,
    o: Origin,
    attrs: Mapping[str, Any],
    who: Identity,
    metadata: Callable[[], str],
    *,
    activity: str | None,
    duration_ms: float | None,
    metrics: Sequence[Metric],
    version_from: tuple[Mapping[str, Any], ...],
    span_status: str | None = None,
) -> None:
    """Add the feature_usage, user_activity, performance_metrics and user_properties rows of
    one span, span event or log record.

    What differs between the three is decided by the caller: ``activity`` (which names count),
    ``duration_ms`` (a span's own duration, else ``feature.duration_ms``), ``metrics`` (a span
    falls back to its duration, a span event needs ``performance.value``, a log also reads the
    performance-log attributes), ``version_from`` (where ``service.version`` is looked up) and
    ``span_status`` (a feature row's outcome: its span's status; None for log records).
    ``metadata`` is called only when a row needs it, so a span that adds none never builds it.
    """
    if attrs.get("feature.name") is not None:
        rows["feature_usage"].append(
            feature_row(ctx, o, attrs, who, duration_ms, metadata(), span_status)
        )
    if activity is not None:
        rows["user_activity"].append(activity_row(ctx, o, activity, who, metadata()))
    if metrics:
        app_version = text(lookup(("service.version",), *version_from), "app_version")
        for metric, value, unit, key in metrics:
            if value is not None:
                rows["performance_metrics"].append(
                    metric_row(ctx, o, metric, value, unit, who, app_version, metadata(), *key)
                )
    # has_user_properties() only skips records for which user_property_rows() finds nothing.
    if who.user_id is not None and has_user_properties(attrs):
        rows["user_properties"].extend(
            user_property_rows(attrs, who.user_id, o.when, (o.trace_id, o.span_id), ctx)
        )


def feature_duration(attrs: Mapping[str, Any]) -> float | None:
    """``feature.duration_ms`` as a number: the feature duration of a span event or log."""
    value = attrs.get("feature.duration_ms")
    return None if value is None else to_float(value)


def feature_row(
    ctx: RouteContext,
    o: Origin,
    attrs: Mapping[str, Any],
    who: Identity,
    duration_ms: float | None,
    metadata: str,
    span_status: str | None = None,
) -> FeatureUsageRow:
    # Positional on purpose: one feature row per feature span, and keywords measured 0.6 µs
    # slower per row (about 2% of routing a span).
    return FeatureUsageRow(
        row_id(ctx.project_id, "feature_usage", *o.key),
        ctx.project_id,
        o.when,
        o.trace_id,
        o.span_id,
        text(attrs["feature.name"], "feature_name") or "",
        text(attrs.get("feature.action") or "used", "action") or "used",
        who.user_id,
        who.organization_id,
        who.session_id,
        duration_ms,
        who.service_name,
        who.deployment_type,
        metadata,
        span_status,
    )


def activity_row(
    ctx: RouteContext, o: Origin, activity: str, who: Identity, metadata: str
) -> UserActivityRow:
    return UserActivityRow(
        id=row_id(ctx.project_id, "user_activity", *o.key),
        project_id=ctx.project_id,
        timestamp=o.when,
        trace_id=o.trace_id,
        span_id=o.span_id,
        event_type=activity,
        user_id=who.user_id,
        organization_id=who.organization_id,
        session_id=who.session_id,
        service_name=who.service_name,
        deployment_type=who.deployment_type,
        event_metadata=metadata,
    )


def metric_row(
    ctx: RouteContext,
    o: Origin,
    metric: Any,
    value: float,
    unit: Any,
    who: Identity,
    app_version: str | None,
    metadata: str,
    *extra_key: object,
) -> PerformanceMetricRow:
    return PerformanceMetricRow(
        id=row_id(ctx.project_id, "performance_metrics", *o.key, *extra_key),
        project_id=ctx.project_id,
        timestamp=o.when,
        trace_id=o.trace_id,
        span_id=o.span_id,
        metric_type=text(metric, "metric_type") or "",
        value=value,
        unit=text(unit, "unit"),
        user_id=who.user_id,
        session_id=who.session_id,
        service_name=who.service_name,
        app_version=app_version,
        metadata=metadata,
    )


def activity_of(name: str, attrs: Mapping[str, Any]) -> str | None:
    """The user_activity event type named by the record's ``event.name`` or its own name."""
    return ACTIVITY_EVENTS.get(str(attrs.get("event.name"))) or ACTIVITY_EVENTS.get(name)


Device = tuple[str | None, str | None, str | None, str | None, str | None]


def device_of(*sources: Mapping[str, Any]) -> Device:
    return (
        text(lookup(PLATFORM_KEYS, *sources), "device_platform"),
        text(lookup(("os.version",), *sources), "device_os_version"),
        text(lookup(DEVICE_MODEL_KEYS, *sources), "device_model"),
        text(lookup(("service.version",), *sources), "app_version"),
        text(lookup(("app.build_id",), *sources), "app_build_number"),
    )
