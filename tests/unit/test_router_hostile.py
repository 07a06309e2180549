"""Hostile input: the router never raises, and every value fits its column."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric

from processor.mapping import RouteContext, route_logs, route_traces
from processor.mapping import route_metrics as route_metrics_
from processor.mapping.rows import JSON_COLUMNS, LENGTHS, Batch
from processor.mapping.values import MAX_ATTRIBUTES, MAX_TEXT
from tests.helpers.otlp import (
    SERVER,
    event,
    log,
    logs,
    metrics,
    number_point,
    one,
    span,
    traces,
)

MEGABYTE = "é" * 1_000_000


def assert_rows_fit_their_columns(batch: Batch) -> None:
    """Every bounded column is within rows.LENGTHS, no text has NUL, JSON columns parse."""
    for rows in batch.rows.values():
        for row in rows:
            for column, cell in row._asdict().items():
                if isinstance(cell, str):
                    assert "\x00" not in cell, column
                    if column in LENGTHS:
                        assert len(cell) <= LENGTHS[column], column
                    elif column in ("message", "stack_trace"):
                        assert len(cell) <= MAX_TEXT, column
                if column in JSON_COLUMNS:
                    json.loads(cell)


def fill_nested(target: AnyValue, depth: int, kind: str) -> None:
    """Make ``target`` a kvlist or array value ``depth`` levels deep, in place.

    Protobuf copies (constructors, CopyFrom) re-parse, and upb refuses to parse more than
    100 levels, so deep values are built inside the request that is routed.
    """
    current = target
    for level in range(depth):
        if kind == "kvlist":
            current = current.kvlist_value.values.add(key=f"k{level}").value
        else:
            current = current.array_value.values.add()
    current.string_value = "bottom"


def test_nul_characters_are_stripped(ctx: RouteContext) -> None:
    attributes = {
        "http.request.method": "GE\x00T",
        "url.path": "/a\x00b",
        "feature.name": "sea\x00rch",
        "service.name": "api\x00",
        "user.id": "u\x001",
        "nested": {"k\x00": ["v\x00"]},
    }
    ev = event("exception", {"exception.type": "E\x00", "exception.stacktrace": "at\x00x"})
    batch = route_traces(traces(span("op\x00", attributes, kind=SERVER, events=[ev])), ctx)
    batch_logs = route_logs(logs(log("bo\x00dy", {"k": "v\x00"}, severity_text="W\x00")), ctx)
    assert one(batch.rows, "endpoint_usage").endpoint == "/ab"
    assert one(batch.rows, "feature_usage").feature_name == "search"
    assert one(batch_logs.rows, "logs").message == "body"
    for b in (batch, batch_logs):
        assert_rows_fit_their_columns(b)
        assert "\\u0000" not in repr(b.rows)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_attribute_values_do_not_raise(ctx: RouteContext, number: float) -> None:
    attributes = {
        "feature.name": number,
        "feature.duration_ms": number,
        "performance.metric": "m",
        "performance.value": number,
        "http.request.method": "GET",
        "http.response.status_code": number,
        "user.properties.score": number,
        "user.id": number,
        "list": [number, {"x": number}],
    }
    ev = event("e", {"feature.name": "f", "feature.duration_ms": number})
    batch = route_traces(
        traces(span("op", attributes, kind=SERVER, duration_ms=5, events=[ev])), ctx
    )
    assert_rows_fit_their_columns(batch)
    assert one(batch.rows, "endpoint_usage").status_code is None
    assert one(batch.rows, "performance_metrics").value == 5.0
    assert {r.duration_ms for r in batch.rows["feature_usage"]} == {5.0, None}
    batch_logs = route_logs(logs(log(number, attributes)), ctx)
    assert_rows_fit_their_columns(batch_logs)


@pytest.mark.parametrize("kind", ["kvlist", "array"])
def test_values_nested_100_deep_are_bounded(ctx: RouteContext, kind: str) -> None:
    log_request = logs(log(None, {"feature.name": "f"}))
    record = log_request.resource_logs[0].scope_logs[0].log_records[0]
    fill_nested(record.body, 100, kind)
    fill_nested(record.attributes.add(key="deep").value, 100, kind)
    trace_request = traces(span("op", {"feature.name": "f"}))
    sp = trace_request.resource_spans[0].scope_spans[0].spans[0]
    fill_nested(sp.attributes.add(key="deep").value, 100, kind)

    batch = route_logs(log_request, ctx)
    batch_traces = route_traces(trace_request, ctx)
    for b in (batch, batch_traces):
        assert_rows_fit_their_columns(b)
    row = one(batch.rows, "logs")
    metadata = json.loads(row.metadata)
    assert "nested too deep" in json.dumps(metadata["deep"])
    assert "bottom" not in json.dumps(metadata["deep"])
    assert "nested too deep" in row.message
    assert "nested too deep" in one(batch_traces.rows, "feature_usage").event_metadata


def test_ten_thousand_attributes_are_bounded(ctx: RouteContext) -> None:
    attributes: dict[str, Any] = {"feature.name": "f"}
    attributes.update({f"attr.{i}": i for i in range(10_000)})
    batch = route_traces(traces(span("op", attributes)), ctx)
    batch_logs = route_logs(logs(log("x", attributes)), ctx)
    for b in (batch, batch_logs):
        assert_rows_fit_their_columns(b)
    metadata = json.loads(one(batch.rows, "feature_usage").event_metadata)
    assert metadata["_truncated"] is True
    assert len(metadata) <= MAX_ATTRIBUTES + 2


def test_megabyte_strings_are_truncated_to_column_lengths(ctx: RouteContext) -> None:
    attributes = {
        "http.request.method": MEGABYTE,
        "url.path": "/" + MEGABYTE,
        "feature.name": MEGABYTE,
        "feature.action": MEGABYTE,
        "service.name": MEGABYTE,
        "deployment.type": MEGABYTE,
        "performance.metric": MEGABYTE,
        "performance.unit": MEGABYTE,
        "service.version": MEGABYTE,
        "user.id": MEGABYTE,
        "user.properties." + MEGABYTE: MEGABYTE,
        "os.name": MEGABYTE,
        "device.model.name": MEGABYTE,
    }
    ev = event("exception", {"exception.type": MEGABYTE, "exception.stacktrace": MEGABYTE})
    batch = route_traces(traces(span(MEGABYTE, attributes, kind=SERVER, events=[ev])), ctx)
    assert_rows_fit_their_columns(batch)
    row = one(batch.rows, "feature_usage")
    assert len(row.feature_name) == LENGTHS["feature_name"]
    assert len(row.service_name) == LENGTHS["service_name"]
    assert len(one(batch.rows, "endpoint_usage").method) == LENGTHS["method"]
    assert len(one(batch.rows, "logs").stack_trace) == MAX_TEXT

    record = log(MEGABYTE, {**attributes, "exception.stacktrace": MEGABYTE})
    batch_logs = route_logs(logs(record, resource={"app.build_id": MEGABYTE}), ctx)
    assert_rows_fit_their_columns(batch_logs)
    log_row = one(batch_logs.rows, "logs")
    assert len(log_row.message) == MAX_TEXT
    assert len(log_row.device_model) == LENGTHS["device_model"]
    assert len(log_row.app_build_number) == LENGTHS["app_build_number"]

    metric = Metric(name=MEGABYTE, unit=MEGABYTE, gauge=Gauge(data_points=[number_point(1.0)]))
    batch_metrics = route_metrics_(metrics(metric), ctx)
    assert_rows_fit_their_columns(batch_metrics)
    assert len(one(batch_metrics.rows, "performance_metrics").unit) == LENGTHS["unit"]


@pytest.mark.parametrize("kind", [6, 99, 2**31 - 1])
def test_unknown_span_kind_is_routed_as_non_server(ctx: RouteContext, kind: int) -> None:
    attributes = {"http.request.method": "GET", "url.path": "/x", "feature.name": "f"}
    batch = route_traces(traces(span("op", attributes, kind=kind)), ctx)
    assert batch.rows["endpoint_usage"] == []
    assert one(batch.rows, "feature_usage").feature_name == "f"


@pytest.mark.parametrize(
    "hostile",
    [["user.login"], {"a": "user.login"}, 42, True, b"user.login", 1.5],
)
def test_non_string_event_name_and_feature_values_do_not_raise(
    ctx: RouteContext, hostile: Any
) -> None:
    attributes = {
        "event.name": hostile,
        "feature.name": hostile,
        "feature.action": hostile,
        "log.type": hostile,
        "performance.metric": hostile,
        "performance.unit": hostile,
        "rpc.system": hostile,
        "rpc.service": hostile,
        "_user_properties": hostile,
        "user.id": hostile,
        "exception.type": hostile,
        "exception.stacktrace": hostile,
    }
    ev = event("e", attributes)
    batch = route_traces(traces(span("op", attributes, kind=SERVER, events=[ev])), ctx)
    batch_logs = route_logs(logs(log(hostile, attributes)), ctx)
    for b in (batch, batch_logs):
        assert_rows_fit_their_columns(b)
        assert b.rejected == 0
    assert batch.rows["user_activity"] == []


def test_extreme_timestamps_do_not_raise(ctx: RouteContext) -> None:
    far = 2**64 - 1
    batch = route_traces(traces(span("op", {"feature.name": "f"}, start=far - 1, end=far)), ctx)
    batch_logs = route_logs(logs(log("x", time=far, observed=far)), ctx)
    assert one(batch.rows, "feature_usage").timestamp.year > 2500
    assert one(batch_logs.rows, "logs").timestamp.year > 2500
