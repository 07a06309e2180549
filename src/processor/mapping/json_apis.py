"""The seeds' JSON ingestion formats, mapped to the same rows as OTLP (pure functions).

- ``POST /api/v1/logs``: seed 000's Telling Logger array of log objects.
- ``POST /api/v1/ingest`` and ``/api/v1/batch-ingest``: seed 001's analytics events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processor.mapping.identity import USER_PROPERTY_MAP, RouteContext, user_property_rows
from processor.mapping.privacy import Hasher, scrub_mapping, scrub_text
from processor.mapping.records import ACTIVITY_EVENTS, LOG_TYPES, PERFORMANCE_LOG_ATTRIBUTES
from processor.mapping.rows import (
    Batch,
    FeatureUsageRow,
    LogRow,
    PerformanceMetricRow,
    UserActivityRow,
)
from processor.mapping.values import MAX_TEXT, clean, dumps, row_id, text, to_float

LEVELS = ("trace", "debug", "info", "warning", "error", "fatal")
EVENT_TYPES = ("behavioral", "telemetry", "observability", "error", "performance")
# seed 001 event_type -> logs.type, for events that land in logs.
INGEST_LOG_TYPES = {
    "behavioral": "analytics",
    "telemetry": "event",
    "observability": "event",
    "error": "exception",
}
# Short activity names that seed clients send, besides the OTLP dotted names.
ACTIVITY_NAMES = {
    **ACTIVITY_EVENTS,
    **{v: v for v in ACTIVITY_EVENTS.values()},
    "session_started": "session_start",
    "session_ended": "session_end",
}


class FieldError(ValueError):
    """A request field is missing or wrong; answered with HTTP 400 naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Context(RouteContext):
    max_batch_size: int = 1000


Mapper = Callable[[Any, Context], tuple[Batch, dict[str, Any]]]


def _obj(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldError(name, "must be an object")
    return value


def _str(item: dict[str, Any], key: str, prefix: str, *, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None or value == "":
        if required:
            raise FieldError(f"{prefix}{key}", "is required")
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise FieldError(f"{prefix}{key}", "must be a string")
    return value


def _time(item: dict[str, Any], key: str, prefix: str, default: datetime) -> datetime:
    value = item.get(key)
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value  # epoch milliseconds or seconds
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise FieldError(f"{prefix}{key}", "is out of range") from None
    if not isinstance(value, str):
        raise FieldError(f"{prefix}{key}", "must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FieldError(f"{prefix}{key}", "must be an ISO 8601 timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _hash(hasher: Hasher, value: str | None) -> str | None:
    return hasher(value) if value else None


# --- seed 000: Telling Logger -----------------------------------------------------------------


def telling_logger_logs(document: Any, ctx: Context) -> tuple[Batch, dict[str, Any]]:
    items = document if isinstance(document, list) else [document]
    if len(items) > ctx.max_batch_size:
        raise FieldError("body", f"at most {ctx.max_batch_size} logs per request")
    parsed = [_telling_logger_item(item, i, ctx) for i, item in enumerate(items)]
    batch = Batch()
    for rows in parsed:
        batch.received += 1
        for table, table_rows in rows.items():
            batch.rows[table].extend(table_rows)
    return batch, {"success": True, "received": len(items)}


def _telling_logger_item(item: Any, index: int, ctx: Context) -> dict[str, list[tuple]]:
    prefix = f"[{index}]."
    if not isinstance(item, dict):
        raise FieldError(f"[{index}]", "each log must be an object")
    message = _str(item, "message", prefix, required=True) or ""
    level = (_str(item, "level", prefix) or "info").lower()
    if level not in LEVELS:
        raise FieldError(f"{prefix}level", f"must be one of {', '.join(LEVELS)}")
    log_type = (_str(item, "type", prefix) or "general").lower()
    if log_type not in LOG_TYPES:
        raise FieldError(f"{prefix}type", f"must be one of {', '.join(sorted(LOG_TYPES))}")
    when = _time(item, "timestamp", prefix, ctx.now)
    metadata = _obj(item.get("metadata"), f"{prefix}metadata")
    device = _obj(item.get("device"), f"{prefix}device")
    user = _hash(ctx.hasher, _str(item, "userId", prefix))
    session = _hash(ctx.hasher, _str(item, "sessionId", prefix))
    client_id = _str(item, "id", prefix)
    # Client ids are often epoch milliseconds, unique per device only: scope them by user
    # and session so two devices never share a row, while a retry still maps to the same one.
    key = dumps([client_id, user, session]) if client_id else dumps(item)
    pid = ctx.project_id
    scrubbed = dumps(scrub_mapping(metadata, ctx.hasher))

    def dev(name: str, column: str) -> str | None:
        return text(device.get(name), column)

    rows: dict[str, list[tuple]] = {"logs": [], "performance_metrics": [], "user_properties": []}
    rows["logs"].append(
        LogRow(
            row_id(pid, "logs", "telling-logger", key),
            pid,
            when,
            None,
            None,
            level,
            None,
            log_type,
            clean(scrub_text(message, ctx.hasher), MAX_TEXT),
            clean(scrub_text(str(item["stackTrace"]), ctx.hasher), MAX_TEXT)
            if item.get("stackTrace")
            else None,
            user,
            session,
            text(item.get("serviceName"), "service_name"),
            dev("platform", "device_platform"),
            dev("osVersion", "device_os_version"),
            dev("deviceModel", "device_model"),
            dev("appVersion", "app_version"),
            dev("appBuildNumber", "app_build_number"),
            scrubbed,
            ctx.now,
        )
    )
    if log_type == "performance":
        for attr, (metric_type, unit) in PERFORMANCE_LOG_ATTRIBUTES.items():
            value = to_float(metadata.get(attr))
            if value is not None:
                rows["performance_metrics"].append(
                    PerformanceMetricRow(
                        row_id(pid, "performance_metrics", "telling-logger", key, metric_type),
                        pid,
                        when,
                        None,
                        None,
                        metric_type,
                        value,
                        unit,
                        user,
                        session,
                        None,
                        dev("appVersion", "app_version"),
                        scrubbed,
                    )
                )
    props = metadata.get(USER_PROPERTY_MAP)
    if props is not None:
        _obj(props, f"{prefix}metadata.{USER_PROPERTY_MAP}")
        rows["user_properties"].extend(
            user_property_rows({USER_PROPERTY_MAP: props}, user, when, (None, None), ctx)
        )
    return rows


# --- seed 001: analytics events ---------------------------------------------------------------


def ingest_one(document: Any, ctx: Context) -> tuple[Batch, dict[str, Any]]:
    if not isinstance(document, dict):
        raise FieldError("body", "must be an event object")
    batch = Batch()
    _ingest_event(document, "", ctx, batch)
    return batch, {"success": True, "received": 1, "event_id": document.get("event_id")}


def ingest_batch(document: Any, ctx: Context) -> tuple[Batch, dict[str, Any]]:
    if not isinstance(document, dict) or not isinstance(document.get("logs"), list):
        raise FieldError("logs", "must be an array of events")
    events = document["logs"]
    if not events:
        raise FieldError("logs", "must not be empty")
    if len(events) > ctx.max_batch_size:
        raise FieldError("logs", f"at most {ctx.max_batch_size} events per batch")
    batch = Batch()
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            raise FieldError(f"logs[{i}]", "must be an object")
        _ingest_event(event, f"logs[{i}].", ctx, batch)
    return batch, {"success": True, "received": len(events)}


def _ingest_event(event: dict[str, Any], prefix: str, ctx: Context, batch: Batch) -> None:
    event_type = _str(event, "event_type", prefix, required=True)
    if event_type not in EVENT_TYPES:
        raise FieldError(f"{prefix}event_type", f"must be one of {', '.join(EVENT_TYPES)}")
    name = _str(event, "event_name", prefix, required=True) or ""
    when = _time(event, "timestamp", prefix, ctx.now)
    props = _obj(event.get("properties"), f"{prefix}properties")
    device = _obj(event.get("device_info"), f"{prefix}device_info")
    user = _hash(ctx.hasher, _str(event, "user_id", prefix))
    session = _hash(ctx.hasher, _str(event, "session_id", prefix))
    app_version = text(_str(event, "app_version", prefix), "app_version")
    event_id = _str(event, "event_id", prefix)
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
        raw = props.get("value", props.get("duration_ms"))
        value = to_float(raw)
        if value is None:
            raise FieldError(f"{prefix}properties.value", "a performance event needs a number")
        batch.rows["performance_metrics"].append(
            PerformanceMetricRow(
                row_id(pid, "performance_metrics", "ingest", key),
                pid,
                when,
                None,
                None,
                text(name, "metric_type") or "",
                value,
                text(props.get("unit") or ("ms" if "value" not in props else None), "unit"),
                user,
                session,
                None,
                app_version,
                meta,
            )
        )
        return

    feature = props.get("feature_name") or props.get("feature")
    activity = ACTIVITY_NAMES.get(name)
    if event_type == "behavioral" and feature:
        batch.rows["feature_usage"].append(
            FeatureUsageRow(
                row_id(pid, "feature_usage", "ingest", key),
                pid,
                when,
                None,
                None,
                text(feature, "feature_name") or "",
                text(props.get("action") or name or "used", "action") or "used",
                user,
                None,
                session,
                to_float(props.get("duration_ms")),
                None,
                None,
                meta,
            )
        )
    elif activity is not None:
        batch.rows["user_activity"].append(
            UserActivityRow(
                row_id(pid, "user_activity", "ingest", key),
                pid,
                when,
                None,
                None,
                activity,
                user,
                None,
                session,
                None,
                None,
                meta,
            )
        )
    else:
        message = props.get("message") or name
        stack = props.get("stack_trace")
        batch.rows["logs"].append(
            LogRow(
                row_id(pid, "logs", "ingest", key),
                pid,
                when,
                None,
                None,
                "error" if event_type == "error" else "info",
                None,
                INGEST_LOG_TYPES[event_type],
                clean(scrub_text(str(message), ctx.hasher), MAX_TEXT),
                clean(scrub_text(str(stack), ctx.hasher), MAX_TEXT) if stack else None,
                user,
                session,
                None,
                text(device.get("platform"), "device_platform"),
                text(device.get("os_version"), "device_os_version"),
                text(device.get("model"), "device_model"),
                app_version,
                None,
                meta,
                ctx.now,
            )
        )
