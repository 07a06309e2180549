"""Key scopes and project isolation of the query API, attacked through REST and gRPC."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from processor import cli
from processor.analytics.v1 import analytics_pb2 as pb
from processor.analytics.v1 import analytics_pb2_grpc as pb_grpc
from tests.helpers.api_data import (
    RANGE,
    Request,
    at,
    get,
    make_key,
    post,
    send_events,
    send_logs,
    send_requests,
    tl_log,
)
from tests.helpers.otlp import request_with_span

READ_PATHS = [
    "/api/v1/users/someone/properties",
    "/api/v1/analytics/performance/overview",
    "/api/v1/logs/filter",
    "/api/v1/logs/recent",
    "/api/v1/status",
    "/api/v1/metrics",
    "/api/v1/analytics/endpoints",
    "/api/v1/analytics/timeseries",
    "/api/v1/analytics/features",
    "/api/v1/analytics/active-users",
    "/api/v1/analytics/sessions",
    "/api/v1/analytics/error-rate?property=tier",
]


@pytest.fixture
def keys(database_url):
    return {scope: make_key(database_url, "alpha", scope) for scope in ("ingest", "read", "admin")}


def stub(server, key):
    channel = grpc.insecure_channel(server.grpc_endpoint)
    return channel, pb_grpc.AnalyticsServiceStub(channel), (("x-api-key", key),)


def test_read_endpoints_refuse_ingest_keys_and_accept_read_and_admin(make_server, keys):
    server = make_server()
    for path in READ_PATHS:
        assert get(server, path, keys["ingest"]).status_code == 403, path
        assert get(server, path).status_code == 401, path
        assert get(server, path, "tpk_unknown").status_code == 401, path
        for scope in ("read", "admin"):
            assert get(server, path, keys[scope]).status_code in (200, 404), (path, scope)
    sql = {"sql": "SELECT 1 AS one"}
    assert post(server, "/api/v1/query", sql, keys["ingest"]).status_code == 403
    assert get(server, "/api/v1/openapi.json").status_code == 200  # public


def test_ingestion_refuses_read_keys(make_server, keys):
    server = make_server()
    denied = post(server, "/api/v1/logs", [tl_log(1, user="u")], keys["read"])
    assert denied.status_code == 403
    assert (
        post(
            server, "/api/v1/ingest", {"event_type": "error", "event_name": "x"}, keys["read"]
        ).status_code
        == 403
    )
    props = {"properties": {"tier": "gold"}}
    assert post(server, "/api/v1/users/u/properties", props, keys["read"]).status_code == 403
    assert post(server, "/api/v1/users/u/properties", props, keys["ingest"]).status_code == 200
    assert post(server, "/api/v1/users/u/properties", props, keys["admin"]).status_code == 200
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        otlp = trace_service_pb2_grpc.TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            otlp.Export(request_with_span(), metadata=(("x-api-key", keys["read"]),), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        otlp.Export(request_with_span(), metadata=(("x-api-key", keys["admin"]),), timeout=10)


def test_grpc_analytics_refuses_ingest_keys(make_server, keys):
    server = make_server()
    channel, client, _ = stub(server, keys["ingest"])
    with channel:
        for call, request in (
            (client.GetEndpointStats, pb.EndpointStatsRequest()),
            (client.QueryLogs, pb.QueryLogsRequest()),
            (client.GetUserProperties, pb.GetUserPropertiesRequest(user_id="u")),
        ):
            with pytest.raises(grpc.RpcError) as denied:
                call(request, metadata=(("x-api-key", keys["ingest"]),), timeout=10)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as denied:
            client.SetUserProperties(
                pb.SetUserPropertiesRequest(user_id="u"), metadata=(("x-api-key", keys["read"]),)
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as missing:
            client.QueryLogs(pb.QueryLogsRequest(), timeout=10)
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_api_keys_from_the_environment_are_ingest_unless_marked(make_server):
    server = make_server(api_keys=("plain-key", "reader-key:read"))
    assert get(server, "/api/v1/logs/recent", "plain-key").status_code == 403
    assert get(server, "/api/v1/logs/recent", "reader-key").status_code == 200
    assert post(server, "/api/v1/logs", [tl_log(1, user="u")], "plain-key").status_code == 200
    assert post(server, "/api/v1/logs", [tl_log(2, user="u")], "reader-key").status_code == 403


def test_cli_creates_scoped_keys_and_lists_the_scope(database_url, capsys):
    assert (
        cli.main(
            [
                "keys",
                "create",
                "--project",
                "beta",
                "--scope",
                "read",
                "--database-url",
                database_url,
            ]
        )
        == 0
    )
    key = capsys.readouterr().out.strip()
    assert cli.main(["keys", "list", "--database-url", database_url]) == 0
    listing = capsys.readouterr().out
    line = next(row for row in listing.splitlines() if "beta" in row)
    assert " read " in line and key not in listing
    with pytest.raises(SystemExit):
        cli.main(["keys", "create", "--scope", "owner", "--database-url", database_url])


def test_existing_keys_become_ingest_keys_on_upgrade(tmp_path):
    from alembic import command
    from sqlalchemy import create_engine, text

    from processor.storage.migrate import alembic_config

    url = f"sqlite:///{tmp_path}/old.db"
    config = alembic_config(url)
    command.upgrade(config, "0002")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO api_keys (project_id, key_hash, prefix) VALUES (1, 'h', 'tpk_x')")
        )
    command.upgrade(config, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT scope FROM api_keys")).scalar_one() == "ingest"
    engine.dispose()


# --- isolation ------------------------------------------------------------------------------


def fill(server, ingest_key, tag):
    """The same kinds of rows for a project, every value marked with ``tag``."""
    user = f"user-{tag}"
    send_logs(
        server,
        ingest_key,
        [
            tl_log(
                1,
                user=user,
                level="error",
                message=f"boom-{tag}",
                metadata={"_user_properties": {"tier": f"tier-{tag}"}},
            ),
            tl_log(
                2,
                user=user,
                type="performance",
                message="App Startup",
                metadata={"startup_time_ms": 100},
            ),
        ],
    )
    send_requests(
        server, ingest_key, [Request(f"/only-{tag}", 500, 5, at(1), user=user, session=f"s-{tag}")]
    )
    send_events(
        server,
        ingest_key,
        [
            {
                "event_id": f"e-{tag}",
                "timestamp": at(2).isoformat(),
                "event_type": "behavioral",
                "event_name": "used",
                "user_id": user,
                "properties": {"feature_name": f"feature-{tag}"},
            }
        ],
    )
    return user


def test_project_a_never_sees_project_b_through_any_endpoint(make_server, database_url):
    a_ingest, a_read = (make_key(database_url, "a", s) for s in ("ingest", "read"))
    b_ingest, b_read = (make_key(database_url, "b", s) for s in ("ingest", "read"))
    server = make_server()
    fill(server, a_ingest, "aaa")
    b_user = fill(server, b_ingest, "bbb")
    b_markers = ("bbb", b_user)
    for path in READ_PATHS[1:]:
        for params in ({}, RANGE, {**RANGE, "source": "logs"}, {**RANGE, "interval": "day"}):
            resp = get(server, path, a_read, **params)
            assert resp.status_code == 200, (path, resp.text)
            assert not any(m in resp.text for m in b_markers), (path, params)
    mine = get(server, "/api/v1/logs/filter", a_read).json()
    assert mine["total"] == 2 and "aaa" in str(mine)
    theirs = get(server, "/api/v1/logs/filter", b_read, page_size=1).json()
    assert theirs["next_cursor"]
    # B's user id, B's cursor, B's property: nothing of B's comes back.
    assert get(server, f"/api/v1/users/{b_user}/properties", a_read).status_code == 404
    assert get(server, "/api/v1/logs/filter", a_read, user_id=b_user).json()["total"] == 0
    forged = get(server, "/api/v1/logs/filter", a_read, cursor=theirs["next_cursor"])
    assert forged.status_code == 400 and forged.json()["parameter"] == "cursor"
    rates = get(server, "/api/v1/analytics/error-rate", a_read, property="tier", **RANGE).json()
    assert [v["value"] for v in rates["values"]] == ["tier-aaa"]
    metrics = get(server, "/api/v1/metrics", a_read).json()
    assert metrics["tables"]["endpoint_usage"]["rows"] == 1

    channel, client, meta = stub(server, a_read)
    with channel:
        stats = client.GetEndpointStats(
            pb.EndpointStatsRequest(range=pb.TimeRange()), metadata=meta
        )
        logs = client.QueryLogs(pb.QueryLogsRequest(page_size=1000), metadata=meta)
        active = client.GetActiveUsers(pb.ActiveUsersRequest(), metadata=meta)
        overview = client.GetPerformanceOverview(pb.PerformanceOverviewRequest(), metadata=meta)
        for answer in (stats, logs, active, overview):
            assert "bbb" not in str(answer)
        assert logs.total == 2
        b_page = client.QueryLogs(
            pb.QueryLogsRequest(page_size=1), metadata=(("x-api-key", b_read),)
        )
        with pytest.raises(grpc.RpcError) as forged_token:
            client.QueryLogs(pb.QueryLogsRequest(page_token=b_page.next_page_token), metadata=meta)
        assert forged_token.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as unknown:
            client.GetUserProperties(pb.GetUserPropertiesRequest(user_id=b_user), metadata=meta)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
