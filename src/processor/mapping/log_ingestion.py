"""The Log Ingestion API (``POST /api/v1/ingest``, ``/api/v1/batch-ingest``): analytics
events, mapped to the same rows as OTLP. Pure; no I/O."""

from __future__ import annotations

from typing import Any

from processor.errors import FieldError
from processor.mapping.identity import RouteContext
from processor.mapping.privacy import scrub_mapping, scrub_text
from processor.mapping.rows import (
    Batch,
    FeatureUsageRow,
    LogRow,
    PerformanceMetricRow,
    UserActivityRow,
)
from processor.mapping.values import (
    ACTIVITY_EVENTS,
    MAX_TEXT,
    clean,
    dumps,
    json_object,
    json_string,
    json_time,
    row_id,
    text,
    to_float,
)

EVENT_TYPES = ("behavioral", "telemetry", "observability", "error", "performance")
# event_type -> logs.type, for events that land in logs.
LOG_TYPES = {
    "behavioral": "analytics",
    "telemetry": "event",
    "observability": "event",
    "error": "exception",
}
# Short activity names that clients of this API send, besides the OTLP dotted names.
ACTIVITY_NAMES = {
    **ACTIVITY_EVENTS,
    **{v: v for v in ACTIVITY_EVENTS.values()},
    "session_started": "session_start",
    "session_ended": "session_end",
}
# Part of every row id, so these rows never share an id with an OTLP record's.
SOURCE = "ingest"


def route_event(
    document: Any, ctx: RouteContext, *, max_batch_size: int
) -> tuple[Batch, dict[str, Any]]:
    """``/api/v1/ingest``: one event object."""
    if not isinstance(document, dict):
        raise FieldError("body", "must be an event object")
    batch = Batch()
    _event_rows(document, "", ctx, batch)
    return batch, {"success": True, "received": 1, "event_id": document.get("event_id")}


def route_batch(
    document: Any, ctx: RouteContext, *, max_batch_size: int
) -> tuple[Batch, dict[str, Any]]:
    """``/api/v1/batch-ingest``: ``{"logs": [event, …]}``; one invalid event refuses all."""
    if not isinstance(document, dict) or not isinstance(document.get("logs"), list):
        raise FieldError("logs", "must be an array of events")
    events = document["logs"]
    if not events:
        raise FieldError("logs", "must not be empty")
    if len(events) > max_batch_size:
        raise FieldError("logs", f"at most {max_batch_size} events per batch")
    batch = Batch()
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            raise FieldError(f"logs[{i}]", "must be an object")
        _event_rows(event, f"logs[{i}].", ctx, batch)
    return batch, {"success": True, "received": len(events)}


def _event_rows(event: dict[str, Any], prefix: str, ctx: RouteContext, batch: Batch) -> None:
    event_type = json_string(event, "event_type", prefix, required=True)
    if event_type not in EVENT_TYPES:
        raise FieldError(f"{prefix}event_type", f"must be one of {', '.join(EVENT_TYPES)}")
    name = json_string(event, "event_name", prefix, required=True) or ""
    when = json_time(event, "timestamp", prefix, ctx.now)
    props = json_object(event.get("properties"), f"{prefix}properties")
    device = json_object(event.get("device_info"), f"{prefix}device_info")
    raw_user = json_string(event, "user_id", prefix)
    raw_session = json_string(event, "session_id", prefix)
    user = ctx.hasher(raw_user) if raw_user else None
    session = ctx.hasher(raw_session) if raw_session else None
    app_version = text(json_string(event, "app_version", prefix), "app_version")
    event_id = json_string(event, "event_id", prefix)
    key = dumps([event_id, user, session]) if event_id else dumps(event)
    pid = ctx.project_id
    metadata = scrub_mapping(props, ctx.hasher)
    metadata["event_name"] = clean(name, 255)
    for extra in ("sequence_number", "priority"):
        if event.get(extra) is not None:
            metadata[extra] = event[extra]
    if device:
        metadata["device_info"] = scrub_mapping(device, ctx.hasher)
    meta = dumps(metadata)
    batch.received += 1

    if event_type == "performance":
        value = to_float(props.get("value", props.get("duration_ms")))
        if value is None:
            raise FieldError(f"{prefix}properties.value", "a performance event needs a number")
        batch.rows["performance_metrics"].append(
            PerformanceMetricRow(
                id=row_id(pid, "performance_metrics", SOURCE, key),
                project_id=pid,
                timestamp=when,
                trace_id=None,
                span_id=None,
                metric_type=text(name, "metric_type") or "",
                value=value,
                unit=text(props.get("unit") or ("ms" if "value" not in props else None), "unit"),
                user_id=user,
                session_id=session,
                service_name=None,
                app_version=app_version,
                metadata=meta,
            )
        )
        return

    feature = props.get("feature_name") or props.get("feature")
    activity = ACTIVITY_NAMES.get(name)
    if event_type == "behavioral" and feature:
        batch.rows["feature_usage"].append(
            FeatureUsageRow(
                id=row_id(pid, "feature_usage", SOURCE, key),
                project_id=pid,
                timestamp=when,
                trace_id=None,
                span_id=None,
                feature_name=text(feature, "feature_name") or "",
                action=text(props.get("action") or name or "used", "action") or "used",
                user_id=user,
                organization_id=None,
                session_id=session,
                duration_ms=to_float(props.get("duration_ms")),
                service_name=None,
                deployment_type=None,
                event_metadata=meta,
            )
        )
    elif activity is not None:
        batch.rows["user_activity"].append(
            UserActivityRow(
                id=row_id(pid, "user_activity", SOURCE, key),
                project_id=pid,
                timestamp=when,
                trace_id=None,
                span_id=None,
                event_type=activity,
                user_id=user,
                organization_id=None,
                session_id=session,
                service_name=None,
                deployment_type=None,
                event_metadata=meta,
            )
        )
    else:
        message = props.get("message") or name
        stack = props.get("stack_trace")
        batch.rows["logs"].append(
            LogRow(
                id=row_id(pid, "logs", SOURCE, key),
                project_id=pid,
                timestamp=when,
                trace_id=None,
                span_id=None,
                level="error" if event_type == "error" else "info",
                severity_number=None,
                type=LOG_TYPES[event_type],
                message=clean(scrub_text(str(message), ctx.hasher), MAX_TEXT),
                stack_trace=clean(scrub_text(str(stack), ctx.hasher), MAX_TEXT) if stack else None,
                user_id=user,
                session_id=session,
                service_name=None,
                device_platform=text(device.get("platform"), "device_platform"),
                device_os_version=text(device.get("os_version"), "device_os_version"),
                device_model=text(device.get("model"), "device_model"),
                app_version=app_version,
                app_build_number=None,
                metadata=meta,
                observed_timestamp=ctx.now,
            )
        )
