"""What spans, span events and log records share: the feature, activity and metric rows
any of them can produce, and the device fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from processor.mapping.identity import Identity, RouteContext
from processor.mapping.rows import FeatureUsageRow, PerformanceMetricRow, UserActivityRow
from processor.mapping.values import ACTIVITY_EVENTS, lookup, row_id, text

PLATFORM_KEYS = ("os.name", "os.type")


DEVICE_MODEL_KEYS = ("device.model.name", "device.model.identifier")


@dataclass(frozen=True, slots=True)
class Origin:
    """What every row from one record shares: the key its row ids derive from, and when."""

    key: tuple[object, ...]
    when: datetime
    trace_id: str | None
    span_id: str | None


def feature_row(
    ctx: RouteContext,
    o: Origin,
    attrs: Mapping[str, Any],
    who: Identity,
    duration_ms: float | None,
    metadata: str,
) -> FeatureUsageRow:
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
    )


def activity_row(
    ctx: RouteContext, o: Origin, activity: str, who: Identity, metadata: str
) -> UserActivityRow:
    return UserActivityRow(
        row_id(ctx.project_id, "user_activity", *o.key),
        ctx.project_id,
        o.when,
        o.trace_id,
        o.span_id,
        activity,
        who.user_id,
        who.organization_id,
        who.session_id,
        who.service_name,
        who.deployment_type,
        metadata,
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
        row_id(ctx.project_id, "performance_metrics", *o.key, *extra_key),
        ctx.project_id,
        o.when,
        o.trace_id,
        o.span_id,
        text(metric, "metric_type") or "",
        value,
        text(unit, "unit"),
        who.user_id,
        who.session_id,
        who.service_name,
        app_version,
        metadata,
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
