"""Traces: spans and span events to rows (SPEC §6). Pure; no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from processor.mapping.identity import (
    Identity,
    RouteContext,
    has_user_properties,
    identity,
    identity_over,
    scrubbed_attributes,
    user_property_rows,
)
from processor.mapping.privacy import scrub_mapping, scrub_text
from processor.mapping.records import (
    Origin,
    activity_of,
    activity_row,
    device_of,
    feature_row,
    metric_row,
)
from processor.mapping.rows import LENGTHS, Batch, EndpointUsageRow, LogRow
from processor.mapping.values import (
    MAX_TEXT,
    SPAN_ID_BYTES,
    TRACE_ID_BYTES,
    attributes,
    clean,
    dumps,
    long_text,
    lookup,
    normalize_path,
    path_of_url,
    row_id,
    text,
    timestamp,
    to_float,
    to_int,
)

METHOD_KEYS = ("http.request.method", "http.method")


STATUS_KEYS = ("http.response.status_code", "http.status_code")


PATH_KEYS = ("url.path", "http.target")


FULL_URL_KEYS = ("url.full", "http.url")


SPAN_KIND_SERVER = Span.SPAN_KIND_SERVER


# Status.code -> the span_status column (SPEC §10); an unknown code counts as unset.
SPAN_STATUS = {0: "unset", 1: "ok", 2: "error"}


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
    who = identity_over(hasher, attrs, base or identity(hasher, resource))
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
                    status_of(span),
                )
            )

    if attrs.get("feature.name") is not None:
        rows["feature_usage"].append(
            feature_row(ctx, o, attrs, who, duration_ms, meta())._replace(
                span_status=status_of(span)
            )
        )

    activity = activity_of(name, attrs)
    if activity is not None:
        rows["user_activity"].append(activity_row(ctx, o, activity, who, meta()))

    metric = attrs.get("performance.metric")
    if metric is not None:
        value = to_float(attrs.get("performance.value"))
        unit = attrs.get("performance.unit")
        if value is None:
            value, unit = duration_ms, unit or "ms"
        app_version = text(lookup(("service.version",), attrs, resource), "app_version")
        rows["performance_metrics"].append(
            metric_row(ctx, o, metric, value, unit, who, app_version, meta())
        )

    if who.user_id is not None and has_user_properties(attrs):
        rows["user_properties"].extend(
            user_property_rows(attrs, who.user_id, o.when, (trace_id, span_id), ctx)
        )

    for index, event in enumerate(span.events):
        _route_span_event(event, index, span, attrs, resource, who, ctx, batch)


def status_of(span: Span) -> str:
    return SPAN_STATUS.get(span.status.code, "unset")


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
                *device_of(attrs, span_attrs, resource),
                metadata,
                when,
            )
        )

    if attrs.get("feature.name") is not None:
        duration_ms = to_float(attrs.get("feature.duration_ms"))
        rows["feature_usage"].append(
            feature_row(ctx, o, attrs, who, duration_ms, metadata)._replace(
                span_status=status_of(span)  # an event shares its span's outcome
            )
        )

    activity = activity_of(name, attrs)
    if activity is not None:
        rows["user_activity"].append(activity_row(ctx, o, activity, who, metadata))

    metric = attrs.get("performance.metric")
    value = to_float(attrs.get("performance.value"))
    if metric is not None and value is not None:
        app_version = text(lookup(("service.version",), span_attrs, resource), "app_version")
        rows["performance_metrics"].append(
            metric_row(
                ctx, o, metric, value, attrs.get("performance.unit"), who, app_version, metadata
            )
        )

    if who.user_id is not None:
        rows["user_properties"].extend(
            user_property_rows(attrs, who.user_id, when, (trace_id, span_id), ctx)
        )
