"""Identity within a trace: a SERVER span's endpoint_usage row takes the user, organization and
session its descendants in the same export request carry."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from processor.mapping import RouteContext, route_traces
from processor.mapping.privacy import Hasher
from processor.mapping.rows import Batch
from tests.helpers.otlp import CLIENT, INTERNAL, SERVER, T0, key_values, one, span, traces

OTHER_TRACE = bytes(range(101, 117))
HTTP = {"http.request.method": "GET", "http.route": "/orders/{id}"}


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def server(n: int, attributes: dict[str, Any] | None = None, **kw: Any) -> Span:
    return span(
        f"GET /orders/{n}", {**HTTP, **(attributes or {})}, kind=SERVER, span_id=sid(n), **kw
    )


def child(n: int, parent: int, attributes: dict[str, Any] | None = None, **kw: Any) -> Span:
    return span(
        f"step {n}",
        attributes,
        kind=kw.pop("kind", INTERNAL),
        span_id=sid(n),
        parent=sid(parent),
        **kw,
    )


def route(ctx: RouteContext, *spans: Span, resource: dict[str, Any] | None = None) -> Batch:
    return route_traces(traces(*spans, resource=resource), ctx)


def who(row: Any) -> tuple[str | None, str | None, str | None]:
    return (row.user_id, row.organization_id, row.session_id)


def endpoint_of(batch: Batch, n: int) -> Any:
    (row,) = [r for r in batch.rows["endpoint_usage"] if r.span_id == sid(n).hex()]
    return row


def test_child_span_user_id_reaches_the_server_row(ctx: RouteContext, h: Hasher) -> None:
    batch = route(ctx, server(1), child(2, 1, {"user.id": "u-7"}))
    assert who(one(batch.rows, "endpoint_usage")) == (h("u-7"), None, None)


def test_user_organization_and_session_all_come_from_descendants(
    ctx: RouteContext, h: Hasher
) -> None:
    attributes = {"enduser.id": "u-7", "tenant.id": "t-1", "session.id": "s-3"}
    batch = route(ctx, server(1), child(2, 1, attributes))
    assert who(one(batch.rows, "endpoint_usage")) == (h("u-7"), h("t-1"), h("s-3"))


def test_grandchild_identity_reaches_the_server_row(ctx: RouteContext, h: Hasher) -> None:
    batch = route(
        ctx,
        server(1),
        child(2, 1, {"db.system": "postgresql"}),
        child(3, 2, {"user.id": "u-deep", "session.id": "s-deep"}),
    )
    assert who(one(batch.rows, "endpoint_usage")) == (h("u-deep"), None, h("s-deep"))


def test_children_may_arrive_before_their_server_span_and_in_another_resource(
    ctx: RouteContext, h: Hasher
) -> None:
    spans = (child(3, 2, {"user.id": "u-first"}), child(2, 1), server(1))
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[s])]) for s in spans]
    )
    batch = route_traces(request, ctx)
    assert one(batch.rows, "endpoint_usage").user_id == h("u-first")


def test_a_descendant_in_another_resource_brings_its_resource_identity(
    ctx: RouteContext, h: Hasher
) -> None:
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(scope_spans=[ScopeSpans(spans=[server(1)])]),
            ResourceSpans(
                resource=Resource(attributes=key_values({"user.id": "u-backend"})),
                scope_spans=[ScopeSpans(spans=[child(2, 1)])],
            ),
        ]
    )
    assert one(route_traces(request, ctx).rows, "endpoint_usage").user_id == h("u-backend")


def test_nearest_descendant_wins_and_ties_go_to_the_first_in_the_request(
    ctx: RouteContext, h: Hasher
) -> None:
    batch = route(
        ctx,
        server(1),
        child(2, 1),
        child(3, 2, {"user.id": "u-grandchild", "session.id": "s-grandchild"}),
        child(4, 1, {"user.id": "u-child"}),
        child(5, 1, {"user.id": "u-later-child"}),
    )
    assert who(one(batch.rows, "endpoint_usage")) == (h("u-child"), None, h("s-grandchild"))


def test_a_sibling_trace_is_not_mixed_in(ctx: RouteContext) -> None:
    # Same parent span id, other trace: not a descendant.
    batch = route(ctx, server(1), child(2, 1, {"user.id": "u-x"}, trace_id=OTHER_TRACE))
    assert who(one(batch.rows, "endpoint_usage")) == (None, None, None)


def test_parent_and_sibling_spans_are_not_descendants(ctx: RouteContext) -> None:
    batch = route(
        ctx,
        child(1, 0, {"user.id": "u-parent"}, kind=CLIENT),
        server(2, parent=sid(1)),
        child(3, 1, {"user.id": "u-sibling"}),
    )
    assert who(one(batch.rows, "endpoint_usage")) == (None, None, None)


def test_two_server_spans_in_one_trace_each_get_their_own_subtree(
    ctx: RouteContext, h: Hasher
) -> None:
    # gateway SERVER 1 -> middleware 2 (u-gw) and CLIENT 3 -> backend SERVER 4 -> middleware 5
    batch = route(
        ctx,
        server(1),
        child(2, 1, {"user.id": "u-gw", "session.id": "s-gw"}),
        child(3, 1, kind=CLIENT),
        server(4, parent=sid(3)),
        child(5, 4, {"user.id": "u-backend"}),
    )
    assert who(endpoint_of(batch, 1)) == (h("u-gw"), None, h("s-gw"))
    assert who(endpoint_of(batch, 4)) == (h("u-backend"), None, None)


def test_identity_on_the_server_span_or_its_resource_is_kept(ctx: RouteContext, h: Hasher) -> None:
    descendant = {"user.id": "u-child", "organization.id": "o-child", "session.id": "s-child"}
    batch = route(
        ctx,
        server(1, {"user.id": "u-server"}),
        child(2, 1, descendant),
        resource={"organization.id": "o-resource"},
    )
    # Only the missing session is filled.
    assert who(one(batch.rows, "endpoint_usage")) == (h("u-server"), h("o-resource"), h("s-child"))


def test_only_the_endpoint_row_is_completed(ctx: RouteContext, h: Hasher) -> None:
    batch = route(ctx, server(1, {"feature.name": "checkout"}), child(2, 1, {"user.id": "u-7"}))
    assert one(batch.rows, "endpoint_usage").user_id == h("u-7")
    assert one(batch.rows, "feature_usage").user_id is None


def test_a_rejected_descendant_gives_no_identity(ctx: RouteContext) -> None:
    backwards = child(2, 1, {"user.id": "u-bad"}, start=T0, end=T0 - 1)
    batch = route(ctx, server(1), backwards)
    assert batch.rejected == 1
    assert who(one(batch.rows, "endpoint_usage")) == (None, None, None)


def test_parent_links_in_a_cycle_end(ctx: RouteContext, h: Hasher) -> None:
    batch = route(
        ctx,
        server(1, parent=sid(3)),
        child(2, 1),
        child(3, 2, {"session.id": "s-loop"}),
        child(1, 1),  # a span claiming to be its own child, with the server span's id
    )
    assert one(batch.rows, "endpoint_usage").session_id == h("s-loop")


def test_rows_are_the_same_on_a_retry(ctx: RouteContext) -> None:
    spans = (server(1), child(2, 1, {"user.id": "u-7"}), child(3, 1, {"user.id": "u-8"}))
    assert route(ctx, *spans).rows == route(ctx, *spans).rows


def test_a_deep_chain_of_server_spans_all_take_the_identity_at_its_bottom(
    ctx: RouteContext, h: Hasher
) -> None:
    depth = 3000  # deeper than Python's recursion limit
    chain = [server(1)] + [server(n, parent=sid(n - 1)) for n in range(2, depth + 1)]
    batch = route(ctx, *chain, child(depth + 1, depth, {"user.id": "u-bottom"}))
    assert {row.user_id for row in batch.rows["endpoint_usage"]} == {h("u-bottom")}
    assert len(batch.rows["endpoint_usage"]) == depth


def test_server_spans_sharing_one_span_id_share_their_children(
    ctx: RouteContext, h: Hasher
) -> None:
    batch = route(ctx, server(1), server(1), child(2, 1, {"user.id": "u-7"}))
    assert [row.user_id for row in batch.rows["endpoint_usage"]] == [h("u-7"), h("u-7")]
