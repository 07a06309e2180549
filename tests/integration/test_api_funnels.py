"""Funnels through the real REST and gRPC clients: definitions, conversion, scopes and
project isolation (SPEC §10, §11)."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import text

from processor.analytics.v1 import analytics_pb2 as pb
from processor.analytics.v1 import analytics_pb2_grpc as pb_grpc
from processor.settings import Settings
from processor.storage.writer import create_db_engine
from tests.helpers.api_data import (
    RANGE,
    Request,
    at,
    get,
    make_key,
    post,
    send_logs,
    send_requests,
    tl_log,
)
from tests.helpers.grpc_api import JANUARY

STEPS = [
    {"type": "endpoint", "value": "GET /home"},
    {"type": "endpoint", "value": "POST /cart"},
    {"type": "log", "value": "checkout done"},
]
CHECKOUT = {"name": "checkout", "steps": STEPS, "window_seconds": 600}


@pytest.fixture
def keys(database_url):
    """Keys of projects alpha and beta, on a database without funnels."""
    engine = create_db_engine(Settings(database_url=database_url).sqlalchemy_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM funnels"))
    engine.dispose()
    out = {scope: make_key(database_url, "alpha", scope) for scope in ("ingest", "read", "admin")}
    out["beta-admin"] = make_key(database_url, "beta", "admin")
    return out


def stub(server, key):
    channel = grpc.insecure_channel(server.grpc_endpoint)
    return channel, pb_grpc.AnalyticsServiceStub(channel), (("x-api-key", key),)


def traffic(server, key):
    """ann: all three steps; bob: two; cat: step 1 only; dan: step 2 before step 1 (only 1);
    eve: step 3 after the 10-minute window (two)."""
    send_requests(
        server,
        key,
        [
            Request("/home", 200, 5, at(0), user="ann"),
            Request("/cart", 200, 5, at(1), user="ann", method="POST"),
            Request("/home", 200, 5, at(0), user="bob"),
            Request("/cart", 200, 5, at(3), user="bob", method="POST"),
            Request("/home", 200, 5, at(2), user="cat"),
            Request("/cart", 200, 5, at(0), user="dan", method="POST"),
            Request("/home", 200, 5, at(1), user="dan"),
            Request("/home", 200, 5, at(0), user="eve"),
            Request("/cart", 200, 5, at(5), user="eve", method="POST"),
        ],
    )
    send_logs(
        server,
        key,
        [
            tl_log(1, user="ann", when=at(4), message="checkout done"),
            tl_log(2, user="eve", when=at(11), message="checkout done"),
            tl_log(3, user="cat", when=at(3), message="something else"),
        ],
    )


def test_rest_create_list_and_convert(make_server, keys):
    server = make_server()
    traffic(server, keys["ingest"])
    created = post(server, "/api/v1/funnels", {**CHECKOUT, "description": "d"}, keys["admin"])
    assert created.status_code == 201, created.text
    funnel = created.json()
    assert funnel["steps"] == STEPS and funnel["window_seconds"] == 600
    listed = get(server, "/api/v1/funnels", keys["read"]).json()["funnels"]
    assert [f["id"] for f in listed] == [funnel["id"]]
    answer = get(server, f"/api/v1/funnels/{funnel['id']}/conversion", keys["read"], **RANGE)
    assert answer.status_code == 200, answer.text
    steps = answer.json()["steps"]
    assert [s["users"] for s in steps] == [5, 3, 1]
    assert [s["conversion_rate"] for s in steps] == [1.0, 0.6, 0.2]
    assert [s["median_seconds_from_previous"] for s in steps] == [None, 180.0, 180.0]
    # Outside the range, nobody.
    empty = get(
        server,
        f"/api/v1/funnels/{funnel['id']}/conversion",
        keys["read"],
        start="2024-01-01T00:00:00Z",
        end="2024-01-02T00:00:00Z",
    ).json()["steps"]
    assert [s["users"] for s in empty] == [0, 0, 0]

    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        client = pb_grpc.AnalyticsServiceStub(channel)
        meta = (("x-api-key", keys["read"]),)
        reply = client.GetFunnelConversion(
            pb.FunnelConversionRequest(funnel_id=funnel["id"], range=JANUARY), metadata=meta
        )
        assert [s.users for s in reply.steps] == [5, 3, 1]
        assert [round(s.conversion_rate, 9) for s in reply.steps] == [1.0, 0.6, 0.2]
        assert not reply.steps[0].HasField("median_seconds_from_previous")
        assert [s.median_seconds_from_previous for s in reply.steps[1:]] == [180.0, 180.0]
        assert [
            f.name for f in client.ListFunnels(pb.ListFunnelsRequest(), metadata=meta).funnels
        ] == ["checkout"]


def test_bad_definitions_get_400_naming_the_field_and_duplicates_409(make_server, keys):
    server = make_server()
    admin = keys["admin"]
    for body, field in (
        ({**CHECKOUT, "window_seconds": 0}, "window_seconds"),
        ({**CHECKOUT, "window_seconds": "60"}, "window_seconds"),
        ({**CHECKOUT, "steps": []}, "steps"),
        ({**CHECKOUT, "steps": [{"type": "click", "value": "x"}]}, "steps"),
        ({**CHECKOUT, "steps": [{"type": "endpoint", "value": "/home"}]}, "steps"),
        ({**CHECKOUT, "name": ""}, "name"),
        ({"steps": STEPS, "window_seconds": 60}, "name"),
    ):
        answer = post(server, "/api/v1/funnels", body, admin)
        assert answer.status_code == 400, body
        assert answer.json()["parameter"] == field
    assert post(server, "/api/v1/funnels", CHECKOUT, admin).status_code == 201
    again = post(server, "/api/v1/funnels", CHECKOUT, admin)
    assert again.status_code == 409 and "checkout" in again.json()["error"]
    # The same name in another project is fine.
    assert post(server, "/api/v1/funnels", CHECKOUT, keys["beta-admin"]).status_code == 201


def test_only_admin_keys_create_funnels(make_server, keys):
    server = make_server()
    for scope in ("read", "ingest"):
        assert post(server, "/api/v1/funnels", CHECKOUT, keys[scope]).status_code == 403
    assert get(server, "/api/v1/funnels", keys["ingest"]).status_code == 403
    assert post(server, "/api/v1/funnels", CHECKOUT).status_code == 401
    request = pb.CreateFunnelRequest(
        name="checkout",
        steps=[pb.FunnelStepDefinition(**s) for s in STEPS],
        window_seconds=600,
    )
    channel, client, meta = stub(server, keys["read"])
    with channel, pytest.raises(grpc.RpcError) as denied:
        client.CreateFunnel(request, metadata=meta)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    channel, client, meta = stub(server, keys["admin"])
    with channel:
        made = client.CreateFunnel(request, metadata=meta)
        assert made.name == "checkout" and len(made.steps) == 3
        with pytest.raises(grpc.RpcError) as duplicate:
            client.CreateFunnel(request, metadata=meta)
        assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS
        bad = pb.CreateFunnelRequest(name="x", steps=request.steps, window_seconds=0)
        with pytest.raises(grpc.RpcError) as invalid:
            client.CreateFunnel(bad, metadata=meta)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "window_seconds" in (invalid.value.details() or "")


def test_another_projects_funnel_is_not_found(make_server, keys):
    server = make_server()
    theirs = post(server, "/api/v1/funnels", CHECKOUT, keys["beta-admin"]).json()
    path = f"/api/v1/funnels/{theirs['id']}/conversion"
    assert get(server, path, keys["read"], **RANGE).status_code == 404
    assert get(server, path, keys["beta-admin"], **RANGE).status_code == 200
    assert get(server, "/api/v1/funnels", keys["read"]).json() == {"funnels": []}
    assert get(server, "/api/v1/funnels/not-a-uuid/conversion", keys["read"]).status_code == 404
    channel, client, meta = stub(server, keys["admin"])
    with channel, pytest.raises(grpc.RpcError) as missing:
        client.GetFunnelConversion(
            pb.FunnelConversionRequest(funnel_id=theirs["id"], range=JANUARY), metadata=meta
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
