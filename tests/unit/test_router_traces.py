"""route_traces: spans and span events to endpoint, feature, activity, log, metric rows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from processor.mapping import RouteContext, route_traces
from processor.mapping.privacy import Hasher
from processor.mapping.rows import TABLES, Batch
from tests.helpers.otlp import (
    CLIENT,
    INTERNAL,
    MS,
    SERVER,
    SPAN_ID,
    T0,
    T0_DATETIME,
    TRACE_ID,
    event,
    one,
    span,
    tables_with_rows,
    traces,
)
from tests.helpers.routing import route
from tests.helpers.spec import ACTIVITIES

# --- endpoint_usage: HTTP ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "endpoint", "method", "status"),
    [
        pytest.param(
            {
                "http.request.method": "GET",
                "url.path": "/api/orders",
                "http.response.status_code": 200,
            },
            "/api/orders",
            "GET",
            200,
            id="current-semconv",
        ),
        pytest.param(
            {"http.method": "POST", "http.target": "/api/orders", "http.status_code": 201},
            "/api/orders",
            "POST",
            201,
            id="old-semconv-target",
        ),
        pytest.param(
            {"http.method": "GET", "http.url": "https://shop.example:8443/api/cart?x=1"},
            "/api/cart",
            "GET",
            None,
            id="old-semconv-url",
        ),
        pytest.param(
            {"http.request.method": "GET", "url.full": "http://shop.example/api/cart#top"},
            "/api/cart",
            "GET",
            None,
            id="current-semconv-full-url",
        ),
        pytest.param(
            {"http.request.method": "delete", "http.response.status_code": "404"},
            "HTTP",
            "DELETE",
            404,
            id="no-path-is-the-span-name-lowercase-method-string-status",
        ),
    ],
)
def test_http_server_span_gives_endpoint_usage_in_both_semconv_generations(
    ctx: RouteContext, attributes: dict[str, Any], endpoint: str, method: str, status: int | None
) -> None:
    batch = route(ctx, span("HTTP", attributes, kind=SERVER, duration_ms=42.5))
    row = one(batch.rows, "endpoint_usage")
    assert (row.endpoint, row.method, row.status_code) == (endpoint, method, status)
    assert row.duration_ms == pytest.approx(42.5)
    assert row.timestamp == T0_DATETIME
    assert (row.trace_id, row.span_id) == (TRACE_ID.hex(), SPAN_ID.hex())
    assert row.project_id == 1


def test_http_route_is_preferred_over_the_path(ctx: RouteContext) -> None:
    attributes = {
        "http.request.method": "GET",
        "http.route": "/users/{user_id}/orders",
        "url.path": "/users/42/orders",
        "http.target": "/users/43/orders?page=2",
    }
    row = one(route(ctx, span("GET", attributes, kind=SERVER)).rows, "endpoint_usage")
    assert row.endpoint == "/users/{user_id}/orders"


def test_current_semconv_wins_when_both_generations_are_present(ctx: RouteContext) -> None:
    attributes = {
        "http.request.method": "PUT",
        "http.method": "GET",
        "url.path": "/new",
        "http.target": "/old",
        "http.response.status_code": 204,
        "http.status_code": 500,
    }
    row = one(route(ctx, span("PUT", attributes, kind=SERVER)).rows, "endpoint_usage")
    assert (row.endpoint, row.method, row.status_code) == ("/new", "PUT", 204)


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/search?q=shoes&page=2", "/search"),
        ("/users/42", "/users/{id}"),
        ("/users/42/orders/7", "/users/{id}/orders/{id}"),
        ("/orders/550e8400-e29b-41d4-a716-446655440000", "/orders/{id}"),
        ("/orders/550E8400E29B41D4A716446655440000/items", "/orders/{id}/items"),
        ("/blobs/9f86d081884c7d659a2feaa0c55ad015", "/blobs/{id}"),
        ("/blobs/deadbeefcafebabedeadbeef", "/blobs/{id}"),
        ("/users/alice@example.com/profile", "/users/{id}/profile"),
        ("/users/42?token=abc", "/users/{id}"),
        ("/api/v1/users", "/api/v1/users"),
        ("/static/app.3f2a.js", "/static/app.3f2a.js"),
        ("/hex/abc123", "/hex/abc123"),
    ],
)
def test_path_query_is_stripped_and_id_like_segments_become_placeholders(
    ctx: RouteContext, path: str, endpoint: str
) -> None:
    attributes = {"http.request.method": "GET", "url.path": path}
    row = one(route(ctx, span("GET", attributes, kind=SERVER)).rows, "endpoint_usage")
    assert row.endpoint == endpoint


@pytest.mark.parametrize(
    ("name", "endpoint"),
    [
        ("GET", "GET"),
        ("HTTP POST", "HTTP POST"),
        ("a\x00b", "ab"),
        ("", ""),
    ],
)
def test_http_server_span_without_route_path_or_url_is_named_by_its_span_name(
    ctx: RouteContext, name: str, endpoint: str
) -> None:
    attributes = {"http.request.method": "GET"}
    row = one(route(ctx, span(name, attributes, kind=SERVER)).rows, "endpoint_usage")
    assert row.endpoint == endpoint


def test_span_name_as_endpoint_is_scrubbed(ctx: RouteContext, h: Hasher) -> None:
    attributes = {"http.request.method": "POST"}
    batch = route(ctx, span("login alice@example.com", attributes, kind=SERVER))
    assert one(batch.rows, "endpoint_usage").endpoint == f"login {h('alice@example.com')}"


@pytest.mark.parametrize(
    "kind",
    [
        Span.SPAN_KIND_UNSPECIFIED,
        INTERNAL,
        CLIENT,
        Span.SPAN_KIND_PRODUCER,
        Span.SPAN_KIND_CONSUMER,
    ],
)
def test_only_server_spans_give_endpoint_usage(ctx: RouteContext, kind: int) -> None:
    attributes = {"http.request.method": "GET", "url.path": "/x", "rpc.system": "grpc"}
    assert route(ctx, span("GET", attributes, kind=kind)).rows["endpoint_usage"] == []


def test_server_span_without_http_or_rpc_attributes_gives_no_endpoint(
    ctx: RouteContext,
) -> None:
    assert route(ctx, span("work", {"a": 1}, kind=SERVER)).rows["endpoint_usage"] == []


# --- endpoint_usage: RPC ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "method"),
    [("grpc", "GRPC"), ("connect_rpc", "CONNECT_RPC"), ("", "RPC")],
)
def test_rpc_server_span_gives_service_method_endpoint(
    ctx: RouteContext, system: str, method: str
) -> None:
    attributes = {
        "rpc.system": system,
        "rpc.service": "helloworld.Greeter",
        "rpc.method": "SayHello",
        "rpc.grpc.status_code": 5,
    }
    batch = route(ctx, span("helloworld.Greeter/SayHello", attributes, kind=SERVER))
    row = one(batch.rows, "endpoint_usage")
    assert (row.endpoint, row.method, row.status_code) == (
        "/helloworld.Greeter/SayHello",
        method,
        5,
    )


# --- identity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "span_attrs", "resource", "expected"),
    [
        ("user_id", {"user.id": "u-span"}, {"user.id": "u-res"}, "u-span"),
        ("user_id", {}, {"user.id": "u-res"}, "u-res"),
        ("user_id", {"enduser.id": "eu-span"}, {}, "eu-span"),
        ("user_id", {"enduser.id": "eu-span"}, {"user.id": "u-res"}, "eu-span"),
        ("user_id", {"user.id": "u-span", "enduser.id": "eu-span"}, {}, "u-span"),
        ("user_id", {"user.id": 42}, {}, "42"),
        ("organization_id", {"organization.id": "o-span"}, {"organization.id": "o-r"}, "o-span"),
        ("organization_id", {"tenant.id": "t-span"}, {}, "t-span"),
        ("organization_id", {}, {"tenant.id": "t-res"}, "t-res"),
        ("organization_id", {"organization.id": "o", "tenant.id": "t"}, {}, "o"),
        ("session_id", {"session.id": "s-span"}, {"session.id": "s-res"}, "s-span"),
        ("session_id", {}, {"session.id": "s-res"}, "s-res"),
    ],
)
def test_identity_takes_span_attribute_before_resource_attribute_and_is_hashed(
    ctx: RouteContext,
    h: Hasher,
    column: str,
    span_attrs: dict[str, Any],
    resource: dict[str, Any],
    expected: str,
) -> None:
    attributes = {"feature.name": "search", **span_attrs}
    row = one(route(ctx, span("op", attributes), resource=resource).rows, "feature_usage")
    assert getattr(row, column) == h(expected)


@pytest.mark.parametrize(
    ("column", "key"),
    [("service_name", "service.name"), ("deployment_type", "deployment.type")],
)
@pytest.mark.parametrize(
    ("span_value", "resource_value", "expected"),
    [
        ("on-span", "on-resource", "on-span"),
        (None, "on-resource", "on-resource"),
        (None, None, None),
    ],
)
def test_service_and_deployment_take_span_attribute_before_resource_attribute(
    ctx: RouteContext,
    column: str,
    key: str,
    span_value: str | None,
    resource_value: str | None,
    expected: str | None,
) -> None:
    attributes = {"feature.name": "search"}
    if span_value is not None:
        attributes[key] = span_value
    resource = {key: resource_value} if resource_value is not None else {}
    row = one(route(ctx, span("op", attributes), resource=resource).rows, "feature_usage")
    assert getattr(row, column) == expected


def test_identity_is_none_when_absent(ctx: RouteContext) -> None:
    row = one(route(ctx, span("op", {"feature.name": "x"})).rows, "feature_usage")
    assert (row.user_id, row.organization_id, row.session_id) == (None, None, None)


def test_span_event_identity_falls_back_to_span_then_resource(ctx: RouteContext, h: Hasher) -> None:
    ev = event("click", {"feature.name": "export", "session.id": "s-event"})
    batch = route(
        ctx,
        span("op", {"user.id": "u-span"}, events=[ev]),
        resource={"user.id": "u-res", "tenant.id": "t-res", "session.id": "s-res"},
    )
    row = one(batch.rows, "feature_usage")
    assert (row.user_id, row.organization_id, row.session_id) == (
        h("u-span"),
        h("t-res"),
        h("s-event"),
    )


# --- feature_usage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "action"),
    [
        ({"feature.name": "export_csv", "feature.action": "clicked"}, "clicked"),
        ({"feature.name": "export_csv"}, "used"),
        ({"feature.name": "export_csv", "feature.action": ""}, "used"),
    ],
)
def test_feature_name_on_span_gives_feature_usage(
    ctx: RouteContext, attributes: dict[str, Any], action: str
) -> None:
    batch = route(ctx, span("op", attributes, duration_ms=12))
    row = one(batch.rows, "feature_usage")
    assert (row.feature_name, row.action) == ("export_csv", action)
    assert row.duration_ms == pytest.approx(12)
    assert json.loads(row.event_metadata)["span.name"] == "op"


def test_feature_name_on_span_event_gives_feature_usage(ctx: RouteContext) -> None:
    ev = event("ui", {"feature.name": "dark_mode", "feature.duration_ms": 3.5}, time=T0 + 7 * MS)
    batch = route(ctx, span("op", events=[ev]))
    row = one(batch.rows, "feature_usage")
    assert (row.feature_name, row.action, row.duration_ms) == ("dark_mode", "used", 3.5)
    assert row.timestamp.timestamp() == pytest.approx((T0 + 7 * MS) / 1e9)
    assert json.loads(row.event_metadata)["event.name"] == "ui"


def test_feature_span_duration_is_the_span_duration_not_the_attribute(ctx: RouteContext) -> None:
    attributes = {"feature.name": "export_csv", "feature.duration_ms": 3.5}
    row = one(route(ctx, span("op", attributes, duration_ms=12)).rows, "feature_usage")
    assert row.duration_ms == pytest.approx(12)


def test_feature_span_event_without_duration_attribute_has_no_duration(ctx: RouteContext) -> None:
    batch = route(ctx, span("op", events=[event("ui", {"feature.name": "dark_mode"})]))
    assert one(batch.rows, "feature_usage").duration_ms is None


def test_span_without_feature_name_gives_no_feature_usage(ctx: RouteContext) -> None:
    batch = route(ctx, span("op", {"feature.action": "clicked"}))
    assert tables_with_rows(batch.rows) == set()


# --- user_activity ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "event_type"), ACTIVITIES)
def test_user_activity_from_span_name(ctx: RouteContext, name: str, event_type: str) -> None:
    batch = route(ctx, span(name, {"user.id": "u1"}))
    assert one(batch.rows, "user_activity").event_type == event_type


def test_activity_span_name_counts_when_event_name_is_something_else(ctx: RouteContext) -> None:
    batch = route(ctx, span("user.login", {"event.name": "click"}))
    assert one(batch.rows, "user_activity").event_type == "login"


@pytest.mark.parametrize(("name", "event_type"), ACTIVITIES)
def test_user_activity_from_span_event_name_attribute(
    ctx: RouteContext, name: str, event_type: str
) -> None:
    batch = route(ctx, span("POST /login", {"event.name": name}))
    assert one(batch.rows, "user_activity").event_type == event_type


@pytest.mark.parametrize(("name", "event_type"), ACTIVITIES)
def test_user_activity_from_span_event_name(
    ctx: RouteContext, h: Hasher, name: str, event_type: str
) -> None:
    batch = route(ctx, span("POST /auth", {"user.id": "u1"}, events=[event(name)]))
    row = one(batch.rows, "user_activity")
    assert (row.event_type, row.user_id) == (event_type, h("u1"))


@pytest.mark.parametrize(("name", "event_type"), ACTIVITIES)
def test_user_activity_from_span_event_event_name_attribute(
    ctx: RouteContext, name: str, event_type: str
) -> None:
    batch = route(ctx, span("op", events=[event("auth", {"event.name": name})]))
    assert one(batch.rows, "user_activity").event_type == event_type


@pytest.mark.parametrize("name", ["user.loggedin", "login", "USER.LOGIN", "session"])
def test_other_names_give_no_user_activity(ctx: RouteContext, name: str) -> None:
    batch = route(ctx, span(name, {"event.name": name}, events=[event(name)]))
    assert batch.rows["user_activity"] == []


# --- exception events -------------------------------------------------------------------------


def test_exception_span_event_gives_error_log(ctx: RouteContext, h: Hasher) -> None:
    ev = event(
        "exception",
        {
            "exception.type": "ValueError",
            "exception.message": "bad quantity",
            "exception.stacktrace": 'Traceback:\n  File "app.py", line 3',
        },
        time=T0 + 9 * MS,
    )
    batch = route(ctx, span("op", {"user.id": "u1"}, events=[ev]), resource={"service.name": "s"})
    row = one(batch.rows, "logs")
    assert (row.level, row.severity_number, row.type) == ("error", 17, "exception")
    assert row.message == "ValueError: bad quantity"
    assert row.stack_trace == 'Traceback:\n  File "app.py", line 3'
    assert (row.trace_id, row.span_id) == (TRACE_ID.hex(), SPAN_ID.hex())
    assert (row.user_id, row.service_name) == (h("u1"), "s")
    assert row.timestamp.timestamp() == pytest.approx((T0 + 9 * MS) / 1e9)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"exception.type": "KeyError"}, "KeyError"),
        ({"exception.message": "boom"}, "boom"),
        ({}, "exception"),
    ],
)
def test_exception_message_uses_what_is_present(
    ctx: RouteContext, attributes: dict[str, Any], message: str
) -> None:
    row = one(route(ctx, span("op", events=[event("exception", attributes)])).rows, "logs")
    assert (row.message, row.stack_trace) == (message, None)


def test_non_exception_span_events_give_no_log(ctx: RouteContext) -> None:
    batch = route(ctx, span("op", events=[event("cache.miss", {"exception.type": "X"})]))
    assert batch.rows["logs"] == []


# --- performance_metrics ----------------------------------------------------------------------


def test_performance_metric_span_uses_performance_value(ctx: RouteContext) -> None:
    attributes = {
        "performance.metric": "checkout_render",
        "performance.value": 12.5,
        "performance.unit": "ms",
        "service.version": "2.3.1",
    }
    row = one(route(ctx, span("op", attributes, duration_ms=99)).rows, "performance_metrics")
    assert (row.metric_type, row.value, row.unit, row.app_version) == (
        "checkout_render",
        12.5,
        "ms",
        "2.3.1",
    )


def test_performance_metric_span_without_value_uses_duration_in_ms(ctx: RouteContext) -> None:
    attributes = {"performance.metric": "db_query"}
    row = one(route(ctx, span("op", attributes, duration_ms=99.5)).rows, "performance_metrics")
    assert (row.metric_type, row.unit) == ("db_query", "ms")
    assert row.value == pytest.approx(99.5)


@pytest.mark.parametrize("bad", ["fast", float("nan"), float("inf")])
def test_performance_metric_span_with_unusable_value_uses_duration(
    ctx: RouteContext, bad: Any
) -> None:
    attributes = {"performance.metric": "db_query", "performance.value": bad}
    row = one(route(ctx, span("op", attributes, duration_ms=8)).rows, "performance_metrics")
    assert row.value == pytest.approx(8)


def test_performance_metric_span_event_needs_a_value(ctx: RouteContext) -> None:
    with_value = event("m1", {"performance.metric": "fps", "performance.value": 59})
    without = event("m2", {"performance.metric": "fps"})
    batch = route(ctx, span("op", events=[with_value, without]))
    row = one(batch.rows, "performance_metrics")
    assert (row.metric_type, row.value) == ("fps", 59.0)


def test_performance_metric_span_event_takes_app_version_from_span_then_resource(
    ctx: RouteContext,
) -> None:
    ev = event("m", {"performance.metric": "fps", "performance.value": 59, "service.version": "9"})
    on_span = route(ctx, span("op", {"service.version": "2.0"}, events=[ev]))
    on_resource = route(ctx, span("op", events=[ev]), resource={"service.version": "1.0"})
    assert one(on_span.rows, "performance_metrics").app_version == "2.0"
    assert one(on_resource.rows, "performance_metrics").app_version == "1.0"


# --- user_properties --------------------------------------------------------------------------


def test_user_properties_from_prefixed_attributes_and_map(ctx: RouteContext, h: Hasher) -> None:
    attributes = {
        "user.id": "u1",
        "user.properties.plan": "pro",
        "user.properties.seats": 5,
        "_user_properties": {"theme": "dark", "beta": True},
    }
    batch = route(ctx, span("op", attributes))
    found = {r.property_key: json.loads(r.property_value) for r in batch.rows["user_properties"]}
    assert found == {"plan": "pro", "seats": 5, "theme": "dark", "beta": True}
    assert {r.user_id for r in batch.rows["user_properties"]} == {h("u1")}
    assert {r.timestamp for r in batch.rows["user_properties"]} == {T0_DATETIME}


def test_user_properties_need_a_user(ctx: RouteContext) -> None:
    attributes = {"user.properties.plan": "pro", "_user_properties": {"theme": "dark"}}
    assert route(ctx, span("op", attributes)).rows["user_properties"] == []


def test_user_properties_prefix_alone_is_not_a_property(ctx: RouteContext) -> None:
    attributes = {"user.id": "u1", "user.properties.": "x", "_user_properties": "not-a-map"}
    assert route(ctx, span("op", attributes)).rows["user_properties"] == []


def test_user_properties_on_span_event(ctx: RouteContext, h: Hasher) -> None:
    ev = event("profile", {"user.properties.locale": "de-DE"})
    row = one(route(ctx, span("op", {"user.id": "u1"}, events=[ev])).rows, "user_properties")
    assert (row.user_id, row.property_key, json.loads(row.property_value)) == (
        h("u1"),
        "locale",
        "de-DE",
    )


# --- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (span("short-trace", trace_id=b"\x01" * 15, span_id=b"\x09" * 8), "trace_id"),
        (span("long-trace", trace_id=b"\x01" * 17, span_id=b"\x09" * 8), "trace_id"),
        (span("no-trace", trace_id=b"", span_id=b"\x09" * 8), "trace_id"),
        (span("short-span", span_id=b"\x09" * 4), "span_id"),
        (span("no-start", span_id=b"\x09" * 8, start=0, end=T0), "start_time_unix_nano"),
        (span("backwards", span_id=b"\x09" * 8, start=T0, end=T0 - 1), "before"),
    ],
)
def test_unusable_span_is_rejected_and_the_rest_is_routed(
    ctx: RouteContext, bad: Span, reason: str
) -> None:
    good = span("good", {"feature.name": "ok"})
    batch = route(ctx, bad, good)
    assert (batch.received, batch.rejected) == (2, 1)
    assert reason in batch.error_message
    assert bad.name in batch.error_message
    assert one(batch.rows, "feature_usage").feature_name == "ok"


def test_zero_duration_span_is_accepted(ctx: RouteContext) -> None:
    batch = route(ctx, span("op", {"feature.name": "x"}, end=T0))
    assert batch.rejected == 0
    assert one(batch.rows, "feature_usage").duration_ms == 0


def test_empty_request_gives_empty_batch(ctx: RouteContext) -> None:
    batch = route_traces(traces(), ctx)
    assert (batch.received, batch.rejected, batch.row_count) == (0, 0, 0)


# --- determinism ------------------------------------------------------------------------------


def _all_ids(batch: Batch) -> dict[str, list[str]]:
    return {table: [r.id for r in rows] for table, rows in batch.rows.items()}


def _rich_request() -> Any:
    return traces(
        span(
            "user.login",
            {
                "http.request.method": "POST",
                "url.path": "/login",
                "user.id": "u1",
                "feature.name": "login_form",
                "performance.metric": "login_time",
                "user.properties.plan": "pro",
            },
            kind=SERVER,
            events=[
                event("exception", {"exception.type": "E"}),
                event("session.start", {"feature.name": "f"}),
            ],
        ),
        span("other", {"feature.name": "x"}, span_id=b"\x07" * 8),
    )


def test_routing_the_same_request_twice_gives_the_same_row_ids(ctx: RouteContext) -> None:
    first, second = route_traces(_rich_request(), ctx), route_traces(_rich_request(), ctx)
    assert tables_with_rows(first.rows) == set(TABLES)
    assert _all_ids(first) == _all_ids(second)
    ids = [i for table_ids in _all_ids(first).values() for i in table_ids]
    assert len(ids) == len(set(ids))


def test_different_project_gives_different_row_ids(ctx: RouteContext) -> None:
    other = RouteContext(hasher=ctx.hasher, project_id=2, now=ctx.now)
    first, second = route_traces(_rich_request(), ctx), route_traces(_rich_request(), other)
    assert {r.project_id for rows in second.rows.values() for r in rows} == {2}
    first_ids = {i for ids in _all_ids(first).values() for i in ids}
    second_ids = {i for ids in _all_ids(second).values() for i in ids}
    assert first_ids and not first_ids & second_ids


def test_row_ids_are_uuid_hex(ctx: RouteContext) -> None:
    import uuid

    batch = route_traces(_rich_request(), ctx)
    for rows in batch.rows.values():
        for row in rows:
            assert uuid.UUID(row.id).hex == row.id


# --- span_status (SPEC §10) ---------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), [(0, "unset"), (1, "ok"), (2, "error")])
def test_endpoint_and_feature_rows_carry_the_span_status(ctx, code, expected):
    s = span(
        "GET /x",
        {"http.request.method": "GET", "http.route": "/x", "feature.name": "export"},
        kind=SERVER,
        events=[event("click", {"feature.name": "button"})],
    )
    s.status.code = code
    rows = route(ctx, s).rows
    assert one(rows, "endpoint_usage").span_status == expected
    assert [r.span_status for r in rows["feature_usage"]] == [expected, expected]
