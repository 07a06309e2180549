"""The Telling Logger API (``POST /api/v1/logs``): an array of log objects, mapped to the same
rows as OTLP logs. Pure; no I/O."""

from __future__ import annotations

from typing import Any

from processor.errors import FieldError
from processor.mapping.identity import USER_PROPERTY_MAP, RouteContext, user_property_rows
from processor.mapping.privacy import scrub_mapping, scrub_text
from processor.mapping.rows import Batch, LogRow, PerformanceMetricRow
from processor.mapping.values import (
    LOG_TYPES,
    MAX_TEXT,
    PERFORMANCE_LOG_ATTRIBUTES,
    clean,
    dumps,
    json_object,
    json_string,
    json_time,
    row_id,
    text,
    to_float,
)

LEVELS = ("trace", "debug", "info", "warning", "error", "fatal")
# Part of every row id, so these rows never share an id with an OTLP record's.
SOURCE = "telling-logger"


def route_logs(
    document: Any, ctx: RouteContext, *, max_batch_size: int
) -> tuple[Batch, dict[str, Any]]:
    """Rows for one request (a log object or an array of them) and the API's reply.

    The whole request is refused with a ``FieldError`` when any log is invalid, as the API
    promises; nothing of it is stored.
    """
    items = document if isinstance(document, list) else [document]
    if len(items) > max_batch_size:
        raise FieldError("body", f"at most {max_batch_size} logs per request")
    parsed = [_log_rows(item, i, ctx) for i, item in enumerate(items)]
    batch = Batch()
    for rows in parsed:
        batch.received += 1
        for table, table_rows in rows.items():
            batch.rows[table].extend(table_rows)
    return batch, {"success": True, "received": len(items)}


def _log_rows(item: Any, index: int, ctx: RouteContext) -> dict[str, list[tuple]]:
    prefix = f"[{index}]."
    if not isinstance(item, dict):
        raise FieldError(f"[{index}]", "each log must be an object")
    message = json_string(item, "message", prefix, required=True) or ""
    level = (json_string(item, "level", prefix) or "info").lower()
    if level not in LEVELS:
        raise FieldError(f"{prefix}level", f"must be one of {', '.join(LEVELS)}")
    log_type = (json_string(item, "type", prefix) or "general").lower()
    if log_type not in LOG_TYPES:
        raise FieldError(f"{prefix}type", f"must be one of {', '.join(sorted(LOG_TYPES))}")
    when = json_time(item, "timestamp", prefix, ctx.now)
    metadata = json_object(item.get("metadata"), f"{prefix}metadata")
    device = json_object(item.get("device"), f"{prefix}device")
    raw_user = json_string(item, "userId", prefix)
    raw_session = json_string(item, "sessionId", prefix)
    user = ctx.hasher(raw_user) if raw_user else None
    session = ctx.hasher(raw_session) if raw_session else None
    client_id = json_string(item, "id", prefix)
    # Client ids are often epoch milliseconds, unique per device only: scope them by user
    # and session so two devices never share a row, while a retry still maps to the same one.
    key = dumps([client_id, user, session]) if client_id else dumps(item)
    pid = ctx.project_id
    scrubbed = dumps(scrub_mapping(metadata, ctx.hasher))
    app_version = text(device.get("appVersion"), "app_version")

    rows: dict[str, list[tuple]] = {"logs": [], "performance_metrics": [], "user_properties": []}
    stack = item.get("stackTrace")
    rows["logs"].append(
        LogRow(
            id=row_id(pid, "logs", SOURCE, key),
            project_id=pid,
            timestamp=when,
            trace_id=None,
            span_id=None,
            level=level,
            severity_number=None,
            type=log_type,
            message=clean(scrub_text(message, ctx.hasher), MAX_TEXT),
            stack_trace=clean(scrub_text(str(stack), ctx.hasher), MAX_TEXT) if stack else None,
            user_id=user,
            session_id=session,
            service_name=text(item.get("serviceName"), "service_name"),
            device_platform=text(device.get("platform"), "device_platform"),
            device_os_version=text(device.get("osVersion"), "device_os_version"),
            device_model=text(device.get("deviceModel"), "device_model"),
            app_version=app_version,
            app_build_number=text(device.get("appBuildNumber"), "app_build_number"),
            metadata=scrubbed,
            observed_timestamp=ctx.now,
        )
    )
    if log_type == "performance":
        for attr, (metric_type, unit) in PERFORMANCE_LOG_ATTRIBUTES.items():
            value = to_float(metadata.get(attr))
            if value is not None:
                rows["performance_metrics"].append(
                    PerformanceMetricRow(
                        id=row_id(pid, "performance_metrics", SOURCE, key, metric_type),
                        project_id=pid,
                        timestamp=when,
                        trace_id=None,
                        span_id=None,
                        metric_type=metric_type,
                        value=value,
                        unit=unit,
                        user_id=user,
                        session_id=session,
                        service_name=None,
                        app_version=app_version,
                        metadata=scrubbed,
                    )
                )
    props = metadata.get(USER_PROPERTY_MAP)
    if props is not None:
        json_object(props, f"{prefix}metadata.{USER_PROPERTY_MAP}")
        rows["user_properties"].extend(
            user_property_rows({USER_PROPERTY_MAP: props}, user, when, (None, None), ctx)
        )
    return rows


MAX_USER_ID = 512


def route_user_properties(
    document: Any, ctx: RouteContext, *, max_batch_size: int
) -> tuple[Batch, dict[str, Any]]:
    """``POST /users/{userId}/properties``: ``{"userId", "properties": {...}}`` (the receiver
    puts the path's userId into the document). Stored the way ingestion stores them: the user
    hashed, values scrubbed, the newest write wins."""
    if not isinstance(document, dict):
        raise FieldError("body", "must be a JSON object")
    raw_user = document.get("userId")
    if not isinstance(raw_user, str) or not raw_user or len(raw_user) > MAX_USER_ID:
        raise FieldError("userId", f"must be 1 to {MAX_USER_ID} characters")
    if "\x00" in raw_user:
        raise FieldError("userId", "must not contain NUL")
    properties = document.get("properties")
    if not isinstance(properties, dict):
        raise FieldError("properties", 'must be a JSON object: {"properties": {...}}')
    if len(properties) > max_batch_size:
        raise FieldError("properties", f"at most {max_batch_size} properties per request")
    if any(not key or "\x00" in key for key in properties):
        raise FieldError("properties", "keys must be non-empty, without NUL")
    batch = Batch()
    batch.received = len(properties)
    rows = user_property_rows(
        {USER_PROPERTY_MAP: properties}, ctx.hasher(raw_user), ctx.now, (None, None), ctx
    )
    batch.rows["user_properties"].extend(rows)
    return batch, {"success": True, "updated": len(rows)}
