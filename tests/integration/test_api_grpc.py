"""processor.analytics.v1.AnalyticsService through its generated stubs on a real server."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from processor.analytics.v1 import analytics_pb2 as pb
from processor.analytics.v1 import analytics_pb2_grpc as pb_grpc
from tests.helpers.api_data import (
    Request,
    at,
    hash_id,
    roll_up,
    send_logs,
    send_requests,
    tl_log,
)
from tests.helpers.grpc_api import JANUARY
from tests.helpers.rollups import assert_merged_percentile


@pytest.fixture
def client(server):
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        yield pb_grpc.AnalyticsServiceStub(channel)


def test_reflection_lists_the_analytics_service(server):
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for a in answers for s in a.list_services_response.service}
    assert "processor.analytics.v1.AnalyticsService" in names
    assert "opentelemetry.proto.collector.trace.v1.TraceService" in names


def test_endpoint_stats_time_series_and_performance(server, client):
    send_requests(
        server,
        None,
        [
            Request("/a", 200, 10, at(1)),
            Request("/a", 500, 30, at(2)),
            Request("/b", 200, 5, at(61)),
        ],
    )
    send_logs(
        server, None, [tl_log(1, user="u", type="performance", metadata={"startup_time_ms": 900})]
    )
    roll_up(server)
    stats = client.GetEndpointStats(pb.EndpointStatsRequest(range=JANUARY, sort="error_rate"))
    assert [(e.endpoint, e.requests, e.errors) for e in stats.endpoints] == [
        ("/a", 2, 1),
        ("/b", 1, 0),
    ]
    assert stats.endpoints[0].error_rate == pytest.approx(0.5)
    # from the merged latency sketch: near a raw sample around the median (SPEC §10)
    assert_merged_percentile(stats.endpoints[0].p50, [10.0, 30.0], 0.5)
    series = client.GetTimeSeries(
        pb.TimeSeriesRequest(range=JANUARY, source="endpoints", interval="hour")
    )
    assert [(p.start.ToDatetime().hour, p.count, p.errors) for p in series.points] == [
        (12, 2, 1),
        (13, 1, 0),
    ]
    overview = client.GetPerformanceOverview(pb.PerformanceOverviewRequest(range=JANUARY))
    assert [(m.name, m.samples, m.p95, m.unit) for m in overview.metrics] == [
        ("startup_time", 1, 900.0, "ms")
    ]
    with pytest.raises(grpc.RpcError) as bad:
        client.GetTimeSeries(pb.TimeSeriesRequest(source="tables"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "source" in bad.value.details()


def test_query_logs_pages_with_tokens(server, client):
    send_logs(server, None, [tl_log(i, user=f"user-{i % 2}", when=at(i)) for i in range(25)])
    seen, token = [], ""
    while True:
        page = client.QueryLogs(pb.QueryLogsRequest(range=JANUARY, page_size=10, page_token=token))
        assert page.total == 25
        seen += [entry.id for entry in page.logs]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 25
    mine = client.QueryLogs(pb.QueryLogsRequest(user_id="user-1", page_size=100))
    assert mine.total == 12 and {e.user_id for e in mine.logs} == {hash_id("user-1")}
    with pytest.raises(grpc.RpcError) as bad:
        client.QueryLogs(pb.QueryLogsRequest(page_token="forged"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_user_properties_and_active_users(server, client):
    props = struct_pb2.Struct()
    json_format.ParseDict({"tier": "gold", "mrr": 10.5}, props)
    done = client.SetUserProperties(pb.SetUserPropertiesRequest(user_id="ann", properties=props))
    assert done.success and done.updated == 2
    got = client.GetUserProperties(pb.GetUserPropertiesRequest(user_id="ann"))
    assert got.user_id == "ann" and json_format.MessageToDict(got.properties) == {
        "tier": "gold",
        "mrr": 10.5,
    }
    with pytest.raises(grpc.RpcError) as missing:
        client.GetUserProperties(pb.GetUserPropertiesRequest(user_id="nobody"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    send_logs(server, None, [tl_log(1, user="ann"), tl_log(2, user="bob", when=at(60 * 24))])
    active = client.GetActiveUsers(pb.ActiveUsersRequest(range=JANUARY, interval="day"))
    assert [p.users for p in active.points] == [1, 1] and active.total_users == 2


def test_funnel_conversion_of_an_unknown_funnel_is_not_found(client):
    with pytest.raises(grpc.RpcError) as missing:
        client.GetFunnelConversion(pb.FunnelConversionRequest(funnel_id="1"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
