"""The span router: pure functions from OTLP messages to analytics rows (SPEC §6, §7).

Nothing here does I/O. Every look-up that decides where a record goes is a table below.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from processor.privacy import Hasher, scrub_mapping, scrub_text, scrub_value
from processor.rows import (
    LENGTHS,
    Batch,
    EndpointUsageRow,
    FeatureUsageRow,
    LogRow,
    PerformanceMetricRow,
    UserActivityRow,
    UserPropertyRow,
)

# --- look-up tables -------------------------------------------------------------------------

USER_KEYS = ("user.id", "enduser.id")
ORG_KEYS = ("organization.id", "tenant.id")
SESSION_KEYS = ("session.id",)
METHOD_KEYS = ("http.request.method", "http.method")
STATUS_KEYS = ("http.response.status_code", "http.status_code")
PATH_KEYS = ("url.path", "http.target")
FULL_URL_KEYS = ("url.full", "http.url")
PLATFORM_KEYS = ("os.name", "os.type")
DEVICE_MODEL_KEYS = ("device.model.name", "device.model.identifier")

ACTIVITY_EVENTS = {
    "user.login": "login",
    "user.logout": "logout",
    "user.signup": "signup",
    "session.start": "session_start",
    "session.end": "session_end",
}

# (lowest severity_number, level), searched from the top.
SEVERITY_LEVELS = (
    (21, "fatal"),
    (17, "error"),
    (13, "warning"),
    (9, "info"),
    (5, "debug"),
    (1, "trace"),
)
SEVERITY_TEXT = {
    "trace": "trace",
    "debug": "debug",
    "info": "info",
    "information": "info",
    "notice": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "err": "error",
    "critical": "fatal",
    "crit": "fatal",
    "fatal": "fatal",
    "panic": "fatal",
    "emergency": "fatal",
    "alert": "fatal",
}
LOG_TYPES = frozenset(
    {
        "general",
        "analytics",
        "event",
        "performance",
        "network",
        "security",
        "exception",
        "crash",
        "custom",
    }
)
# log attribute -> (metric_type, unit) for seed 000 performance logs.
PERFORMANCE_LOG_ATTRIBUTES = {
    "startup_time_ms": ("startup_time", "ms"),
    "fps": ("fps", "fps"),
    "memory_mb": ("memory", "MB"),
    "screen_load_ms": ("screen_load", "ms"),
}
USER_PROPERTY_PREFIX = "user.properties."
USER_PROPERTY_MAP = "_user_properties"

SPAN_KIND_SERVER = Span.SPAN_KIND_SERVER
TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8

# Bounds that keep one hostile record from costing memory or a failed insert.
MAX_DEPTH = 8
MAX_ATTRIBUTES = 256
MAX_ITEMS = 256
MAX_STRING = 4096
MAX_TEXT = 65536

_ID_SEGMENT = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|[^/@]+@[^/@]+)$"
)


@dataclass(frozen=True)
class RouteContext:
    """What the router needs besides the message: who sent it, and how to hash."""

    hasher: Hasher
    project_id: int = 1
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


# --- values ---------------------------------------------------------------------------------


def clean(text: str, limit: int = MAX_STRING) -> str:
    """Text PostgreSQL accepts: no NUL characters, bounded length."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if len(text) > limit:
        text = text[:limit]
    return text


def any_value(value: AnyValue, depth: int = 0, limit: int = MAX_STRING) -> Any:
    """An OTLP AnyValue as a JSON-ready Python value, bounded in size and depth."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return clean(value.string_value, limit)
    if kind == "int_value" or kind == "bool_value":
        return getattr(value, kind)
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)
    if kind == "array_value":
        if depth >= MAX_DEPTH:
            return "[nested too deep]"
        return [any_value(v, depth + 1) for v in value.array_value.values[:MAX_ITEMS]]
    if kind == "kvlist_value":
        if depth >= MAX_DEPTH:
            return "{nested too deep}"
        return attributes(value.kvlist_value.values, depth + 1)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value[:MAX_STRING]).decode()
    return None


def attributes(kvs: Iterable[KeyValue], depth: int = 0) -> dict[str, Any]:
    try:
        bounded = len(kvs) <= MAX_ATTRIBUTES  # type: ignore[arg-type]
    except TypeError:
        bounded = False
    out: dict[str, Any] = {}
    if bounded:
        # The hot path (every span and record): no bound to check, and the common kinds of
        # value read inline. Same result as the loop below.
        for kv in kvs:
            key = kv.key
            if len(key) > 255 or "\x00" in key:
                key = clean(key, 255)
            value = kv.value
            string = value.string_value
            if string:  # non-empty, so the oneof holds a string
                out[key] = clean(string) if len(string) > MAX_STRING or "\x00" in string else string
                continue
            kind = value.WhichOneof("value")
            if kind == "string_value":
                out[key] = string
            elif kind == "int_value":
                out[key] = value.int_value
            elif kind == "bool_value":
                out[key] = value.bool_value
            else:
                out[key] = any_value(value, depth)
        return out
    for kv in kvs:
        if len(out) >= MAX_ATTRIBUTES:
            out["_truncated"] = True
            break
        out[clean(kv.key, 255)] = any_value(kv.value, depth)
    return out


def long_text(kvs: Iterable[KeyValue], key: str, short: Any) -> Any:
    """A string attribute clipped at MAX_TEXT rather than MAX_STRING (stack traces)."""
    if not isinstance(short, str) or len(short) < MAX_STRING:
        return short
    for kv in kvs:
        if kv.key == key and kv.value.WhichOneof("value") == "string_value":
            return clean(kv.value.string_value, MAX_TEXT)
    return short


def lookup(keys: Iterable[str], *sources: Mapping[str, Any]) -> Any:
    """The first present value: each key in each source, record attributes before resource."""
    for source in sources:
        for key in keys:
            value = source.get(key)
            if value is not None and value != "":
                return value
    return None


def text(value: Any, column: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)
    return clean(value, LENGTHS[column])


def to_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if -(2**31) <= number < 2**31 else None


def to_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def timestamp(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC)


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def row_id(*parts: object) -> str:
    """A deterministic row id (UUID hex), so a retried request maps to the same rows."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def normalize_path(path: str) -> str:
    """The path without query, with id-like segments replaced by ``{id}``."""
    path = path.split("?", 1)[0].split("#", 1)[0] or "/"
    # Fast path: no segment can be id-like. A long hex id may be digit-free ("deadbeef…"),
    # so only short paths skip the per-segment match.
    if len(path) < 16 and not any(c.isdigit() or c == "@" for c in path):
        return path
    return "/".join("{id}" if _ID_SEGMENT.match(s) else s for s in path.split("/"))


def path_of_url(url: str) -> str:
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


def level_of(severity_number: int, severity_text: str) -> str:
    if severity_number > 0:
        for least, level in SEVERITY_LEVELS:
            if severity_number >= least:
                return level
    return SEVERITY_TEXT.get(severity_text.strip().lower(), "info")


# --- identity -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str | None
    organization_id: str | None
    session_id: str | None
    service_name: str | None
    deployment_type: str | None


def identity(hasher: Hasher, *sources: Mapping[str, Any]) -> Identity:
    user = lookup(USER_KEYS, *sources)
    org = lookup(ORG_KEYS, *sources)
    session = lookup(SESSION_KEYS, *sources)
    return Identity(
        user_id=hasher(str(user)) if user is not None else None,
        organization_id=hasher(str(org)) if org is not None else None,
        session_id=hasher(str(session)) if session is not None else None,
        service_name=text(lookup(("service.name",), *sources), "service_name"),
        deployment_type=text(lookup(("deployment.type",), *sources), "deployment_type"),
    )


def _pick(keys: tuple[str, ...], attrs: Mapping[str, Any]) -> Any:
    """``lookup(keys, attrs)`` for one source."""
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


# scrub_mapping() treats every entry on its own, so the result for a short scalar entry (the
# same key and value) can be remembered: most attribute values repeat across spans.
_MEMO_LENGTH = 200  # longer strings are scrubbed every time


@lru_cache(maxsize=32768)
def _scrub_entry(hasher: Hasher, key: str, is_bool: bool, value: Any) -> Any:
    # ``is_bool`` is part of the cache key: True == 1, yet they dump differently.
    return scrub_mapping({key: value}, hasher)[key]


def scrubbed_attributes(attrs: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    """Exactly ``scrub_mapping(attrs, hasher)``, remembering the result of common entries."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        kind = type(value)
        if (kind is str and len(value) <= _MEMO_LENGTH) or kind is int or kind is bool:
            out[key] = _scrub_entry(hasher, key, kind is bool, value)
        else:
            out[key] = scrub_mapping({key: value}, hasher)[key]
    return out


def _identity_over(hasher: Hasher, attrs: Mapping[str, Any], base: Identity) -> Identity:
    """``identity(hasher, attrs, resource)`` given ``base = identity(hasher, resource)``."""
    user = _pick(USER_KEYS, attrs)
    org = _pick(ORG_KEYS, attrs)
    session = _pick(SESSION_KEYS, attrs)
    service = attrs.get("service.name")
    deployment = attrs.get("deployment.type")
    return Identity(
        hasher(str(user)) if user is not None else base.user_id,
        hasher(str(org)) if org is not None else base.organization_id,
        hasher(str(session)) if session is not None else base.session_id,
        base.service_name if service is None or service == "" else text(service, "service_name"),
        base.deployment_type
        if deployment is None or deployment == ""
        else text(deployment, "deployment_type"),
    )


def _has_user_properties(attrs: Mapping[str, Any]) -> bool:
    """False when ``user_property_rows`` would find nothing (a cheap over-approximation)."""
    return USER_PROPERTY_MAP in attrs or USER_PROPERTY_PREFIX in "\n".join(attrs)


def user_property_rows(
    attrs: Mapping[str, Any],
    user_id: str | None,
    when: datetime,
    ids: tuple[str | None, str | None],
    ctx: RouteContext,
) -> list[UserPropertyRow]:
    if user_id is None:
        return []
    props: dict[str, Any] = {}
    nested = attrs.get(USER_PROPERTY_MAP)
    if isinstance(nested, dict):
        props.update(nested)
    for key, value in attrs.items():
        if key.startswith(USER_PROPERTY_PREFIX) and len(key) > len(USER_PROPERTY_PREFIX):
            props[key[len(USER_PROPERTY_PREFIX) :]] = value
    rows = []
    for key, value in props.items():
        key = clean(str(key), LENGTHS["property_key"])
        rows.append(
            UserPropertyRow(
                id=row_id(ctx.project_id, "user_properties", user_id, key),
                project_id=ctx.project_id,
                timestamp=when,
                trace_id=ids[0],
                span_id=ids[1],
                user_id=user_id,
                property_key=key,
                property_value=dumps(scrub_value(value, ctx.hasher)),
                updated_at=ctx.now,
            )
        )
    return rows


# --- traces ---------------------------------------------------------------------------------


def route_traces(request: ExportTraceServiceRequest, ctx: RouteContext) -> Batch:
    batch = Batch()
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        base = identity(ctx.hasher, resource)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                batch.received += 1
                problem = _span_problem(span)
                if problem:
                    batch.reject(problem)
                    continue
                _route_span(span, resource, ctx, batch, base)
    return batch


def _span_problem(span: Span) -> str | None:
    if len(span.trace_id) != TRACE_ID_BYTES:
        return f"span {span.name[:64]!r}: trace_id must be {TRACE_ID_BYTES} bytes"
    if len(span.span_id) != SPAN_ID_BYTES:
        return f"span {span.name[:64]!r}: span_id must be {SPAN_ID_BYTES} bytes"
    if span.start_time_unix_nano == 0:
        return f"span {span.name[:64]!r}: start_time_unix_nano is missing"
    if span.end_time_unix_nano < span.start_time_unix_nano:
        return f"span {span.name[:64]!r}: end_time_unix_nano is before start_time_unix_nano"
    return None


@dataclass(frozen=True, slots=True)
class Origin:
    """What every row from one record shares: the key its row ids derive from, and when."""

    key: tuple[object, ...]
    when: datetime
    trace_id: str | None
    span_id: str | None


def _feature_row(
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


def _activity_row(
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


def _metric_row(
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


def _activity(name: str, attrs: Mapping[str, Any]) -> str | None:
    """The user_activity event type named by the record's ``event.name`` or its own name."""
    return ACTIVITY_EVENTS.get(str(attrs.get("event.name"))) or ACTIVITY_EVENTS.get(name)


def _route_span(
    span: Span,
    resource: dict[str, Any],
    ctx: RouteContext,
    batch: Batch,
    base: Identity | None = None,
) -> None:
    """``base`` is ``identity(ctx.hasher, resource)``, computed once per resource."""
    rows = batch.rows
    hasher = ctx.hasher
    attrs = attributes(span.attributes)
    who = _identity_over(hasher, attrs, base or identity(hasher, resource))
    trace_id = span.trace_id.hex()
    span_id = span.span_id.hex()
    o = Origin((trace_id, span_id), timestamp(span.start_time_unix_nano), trace_id, span_id)
    duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    name = clean(span.name, 255)
    metadata: str | None = None

    def meta() -> str:
        nonlocal metadata
        if metadata is None:
            scrubbed = scrubbed_attributes(attrs, hasher)
            scrubbed["span.name"] = scrub_text(name, hasher)
            metadata = dumps(scrubbed)
        return metadata

    if span.kind == SPAN_KIND_SERVER:
        endpoint = _endpoint(attrs)
        if endpoint is not None:
            path, method, status = endpoint
            rows["endpoint_usage"].append(
                EndpointUsageRow(
                    row_id(ctx.project_id, "endpoint_usage", *o.key),
                    ctx.project_id,
                    o.when,
                    trace_id,
                    span_id,
                    clean(scrub_text(path, hasher), LENGTHS["endpoint"]),
                    method,
                    who.user_id,
                    who.organization_id,
                    who.session_id,
                    status,
                    duration_ms,
                    who.service_name,
                    who.deployment_type,
                    meta(),
                )
            )

    if attrs.get("feature.name") is not None:
        rows["feature_usage"].append(_feature_row(ctx, o, attrs, who, duration_ms, meta()))

    activity = _activity(name, attrs)
    if activity is not None:
        rows["user_activity"].append(_activity_row(ctx, o, activity, who, meta()))

    metric = attrs.get("performance.metric")
    if metric is not None:
        value = to_float(attrs.get("performance.value"))
        unit = attrs.get("performance.unit")
        if value is None:
            value, unit = duration_ms, unit or "ms"
        app_version = text(lookup(("service.version",), attrs, resource), "app_version")
        rows["performance_metrics"].append(
            _metric_row(ctx, o, metric, value, unit, who, app_version, meta())
        )

    if who.user_id is not None and _has_user_properties(attrs):
        rows["user_properties"].extend(
            user_property_rows(attrs, who.user_id, o.when, (trace_id, span_id), ctx)
        )

    for index, event in enumerate(span.events):
        _route_span_event(event, index, span, attrs, resource, who, ctx, batch)


def _endpoint(attrs: Mapping[str, Any]) -> tuple[str, str, int | None] | None:
    method = lookup(METHOD_KEYS, attrs)
    if method is not None:
        route = attrs.get("http.route")
        if route:
            path = clean(str(route), LENGTHS["endpoint"])
        else:
            raw = lookup(PATH_KEYS, attrs)
            if raw is None:
                full = lookup(FULL_URL_KEYS, attrs)
                raw = path_of_url(str(full)) if full is not None else "/"
            path = normalize_path(str(raw))
        return (
            path,
            clean(str(method).upper(), LENGTHS["method"]),
            to_int(lookup(STATUS_KEYS, attrs)),
        )
    system = attrs.get("rpc.system")
    if system is not None:
        path = f"/{attrs.get('rpc.service', '')}/{attrs.get('rpc.method', '')}"
        method = clean(str(system).upper(), LENGTHS["method"]) or "RPC"
        return path, method, to_int(attrs.get("rpc.grpc.status_code"))
    return None


def _route_span_event(
    event: Span.Event,
    index: int,
    span: Span,
    span_attrs: dict[str, Any],
    resource: dict[str, Any],
    span_who: Identity,
    ctx: RouteContext,
    batch: Batch,
) -> None:
    rows = batch.rows
    attrs = attributes(event.attributes)
    name = clean(event.name, 255)
    trace_id = span.trace_id.hex()
    span_id = span.span_id.hex()
    when = timestamp(event.time_unix_nano or span.start_time_unix_nano)
    o = Origin((trace_id, span_id, index, event.time_unix_nano, name), when, trace_id, span_id)
    who = identity(ctx.hasher, attrs, span_attrs, resource) if attrs else span_who
    metadata = dumps(
        {**scrub_mapping(attrs, ctx.hasher), "event.name": scrub_text(name, ctx.hasher)}
    )

    if name == "exception":
        kind = attrs.get("exception.type")
        message = attrs.get("exception.message")
        summary = ": ".join(str(p) for p in (kind, message) if p is not None) or "exception"
        stack = long_text(
            event.attributes, "exception.stacktrace", attrs.get("exception.stacktrace")
        )
        rows["logs"].append(
            LogRow(
                row_id(ctx.project_id, "logs", *o.key),
                ctx.project_id,
                when,
                trace_id,
                span_id,
                "error",
                17,
                "exception",
                clean(scrub_text(summary, ctx.hasher), MAX_TEXT),
                clean(scrub_text(str(stack), ctx.hasher), MAX_TEXT) if stack is not None else None,
                who.user_id,
                who.session_id,
                who.service_name,
                *_device(attrs, span_attrs, resource),
                metadata,
                when,
            )
        )

    if attrs.get("feature.name") is not None:
        duration_ms = to_float(attrs.get("feature.duration_ms"))
        rows["feature_usage"].append(_feature_row(ctx, o, attrs, who, duration_ms, metadata))

    activity = _activity(name, attrs)
    if activity is not None:
        rows["user_activity"].append(_activity_row(ctx, o, activity, who, metadata))

    metric = attrs.get("performance.metric")
    value = to_float(attrs.get("performance.value"))
    if metric is not None and value is not None:
        app_version = text(lookup(("service.version",), span_attrs, resource), "app_version")
        rows["performance_metrics"].append(
            _metric_row(
                ctx, o, metric, value, attrs.get("performance.unit"), who, app_version, metadata
            )
        )

    if who.user_id is not None:
        rows["user_properties"].extend(
            user_property_rows(attrs, who.user_id, when, (trace_id, span_id), ctx)
        )


Device = tuple[str | None, str | None, str | None, str | None, str | None]


def _device(*sources: Mapping[str, Any]) -> Device:
    return (
        text(lookup(PLATFORM_KEYS, *sources), "device_platform"),
        text(lookup(("os.version",), *sources), "device_os_version"),
        text(lookup(DEVICE_MODEL_KEYS, *sources), "device_model"),
        text(lookup(("service.version",), *sources), "app_version"),
        text(lookup(("app.build_id",), *sources), "app_build_number"),
    )


# --- logs -----------------------------------------------------------------------------------


def route_logs(request: ExportLogsServiceRequest, ctx: RouteContext) -> Batch:
    batch = Batch()
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        resource_key = hashlib.blake2b(
            resource_logs.resource.SerializeToString(deterministic=True), digest_size=16
        ).hexdigest()
        base = identity(ctx.hasher, resource)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                batch.received += 1
                problem = _log_problem(record)
                if problem:
                    batch.reject(problem)
                    continue
                _route_log(record, resource, resource_key, ctx, batch, base)
    return batch


def _log_problem(record: Any) -> str | None:
    if len(record.trace_id) not in (0, TRACE_ID_BYTES):
        return f"log record: trace_id must be empty or {TRACE_ID_BYTES} bytes"
    if len(record.span_id) not in (0, SPAN_ID_BYTES):
        return f"log record: span_id must be empty or {SPAN_ID_BYTES} bytes"
    if record.time_unix_nano == 0 and record.observed_time_unix_nano == 0:
        return "log record: neither time_unix_nano nor observed_time_unix_nano is set"
    return None


def _route_log(
    record: Any,
    resource: dict[str, Any],
    resource_key: str,
    ctx: RouteContext,
    batch: Batch,
    base: Identity | None = None,
) -> None:
    """``base`` is ``identity(ctx.hasher, resource)``, computed once per resource."""
    rows = batch.rows
    pid = ctx.project_id
    attrs = attributes(record.attributes)
    if base is None:
        base = identity(ctx.hasher, resource)
    who = _identity_over(ctx.hasher, attrs, base)
    trace_id = record.trace_id.hex() or None
    span_id = record.span_id.hex() or None
    when = timestamp(record.time_unix_nano or record.observed_time_unix_nano)
    observed = timestamp(record.observed_time_unix_nano) if record.observed_time_unix_nano else None
    key = hashlib.blake2b(record.SerializeToString(deterministic=True), digest_size=16).hexdigest()
    event_name = clean(record.event_name or str(attrs.get("event.name") or ""), 255)

    body = any_value(record.body, limit=MAX_TEXT) if record.HasField("body") else None
    if not isinstance(body, str):  # a structured body may hold identity keys (user.id, …)
        body = "" if body is None else dumps(scrub_value(body, ctx.hasher))
    shown_name = scrub_text(event_name, ctx.hasher)
    message = clean(scrub_text(body, ctx.hasher), MAX_TEXT) or shown_name
    log_type = str(attrs.get("log.type") or "").lower()
    if log_type not in LOG_TYPES:
        log_type = (
            ("custom" if log_type else "")
            or ("exception" if "exception.type" in attrs else "")
            or ("event" if event_name else "general")
        )
    stack = long_text(record.attributes, "exception.stacktrace", attrs.get("exception.stacktrace"))
    scrubbed = scrubbed_attributes(attrs, ctx.hasher)
    if event_name:
        scrubbed["event.name"] = shown_name
    if record.severity_text:
        scrubbed["severity_text"] = clean(record.severity_text, 64)
    metadata = dumps(scrubbed)
    device = _device(attrs, resource)

    rows["logs"].append(
        LogRow(
            row_id(pid, "logs", resource_key, key),
            pid,
            when,
            trace_id,
            span_id,
            level_of(record.severity_number, record.severity_text),
            record.severity_number or None,
            log_type,
            message,
            clean(scrub_text(str(stack), ctx.hasher), MAX_TEXT) if stack is not None else None,
            who.user_id,
            who.session_id,
            who.service_name,
            *device,
            metadata,
            observed,
        )
    )

    o = Origin((resource_key, key), when, trace_id, span_id)
    if attrs.get("feature.name") is not None:
        duration_ms = to_float(attrs.get("feature.duration_ms"))
        rows["feature_usage"].append(_feature_row(ctx, o, attrs, who, duration_ms, metadata))

    activity = ACTIVITY_EVENTS.get(event_name)
    if activity is not None:
        rows["user_activity"].append(_activity_row(ctx, o, activity, who, metadata))

    metrics: list[tuple[str, float | None, Any]] = []
    named = attrs.get("performance.metric")
    if named is not None:
        metrics.append(
            (str(named), to_float(attrs.get("performance.value")), attrs.get("performance.unit"))
        )
    if log_type == "performance":
        for attr, (metric_type, unit) in PERFORMANCE_LOG_ATTRIBUTES.items():
            if attr in attrs:
                metrics.append((metric_type, to_float(attrs[attr]), unit))
    for metric_type, value, unit in metrics:
        if value is not None:
            rows["performance_metrics"].append(
                _metric_row(ctx, o, metric_type, value, unit, who, device[3], metadata, metric_type)
            )

    if who.user_id is not None and _has_user_properties(attrs):
        rows["user_properties"].extend(
            user_property_rows(attrs, who.user_id, when, (trace_id, span_id), ctx)
        )


# --- metrics --------------------------------------------------------------------------------

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
            row_id(ctx.project_id, "performance_metrics", resource_key, name, kind, key),
            ctx.project_id,
            timestamp(nanos),
            None,
            None,
            name,
            value,
            text(metric.unit or None, "unit"),
            who.user_id,
            who.session_id,
            who.service_name,
            text(lookup(("service.version",), attrs, resource), "app_version"),
            dumps(metadata),
        )
    )
