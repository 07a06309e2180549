"""Alerts inside `serve`: the REST API with its scopes, and `serve --workers 2` on PostgreSQL
sending exactly one notification (one evaluator at a time across processes)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import psutil
import pytest
import requests
from sqlalchemy import text

from processor.alerts import store
from processor.alerts.rules import build_rule
from processor.settings import Settings
from processor.storage import admin
from processor.storage.writer import create_db_engine
from tests.helpers import free_port, wait_for
from tests.helpers.rollups import Event, batch_of, write
from tests.helpers.webhooks import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def engine(database_url: str) -> Iterator[object]:
    engine = create_db_engine(Settings(database_url=database_url).sqlalchemy_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alerts"))
        conn.execute(text("DELETE FROM alert_rules"))
    yield engine
    engine.dispose()


def test_rest_manages_rules_and_alerts_with_scopes(make_server, engine, receiver):
    admin_key, _ = admin.create_key(engine, "default", "admin")
    read_key, _ = admin.create_key(engine, "default", "read")
    server = make_server(alert_eval_interval_seconds=0)
    base = f"{server.http_url}/api/v1"
    wait_for(lambda: server.app.auth.enabled, "keys to load")
    as_admin = {"x-api-key": admin_key}
    as_reader = {"x-api-key": read_key}
    rule = {
        "name": "slow checkout",
        "source": "endpoint.p95_ms",
        "op": ">",
        "threshold": 500,
        "window": "10m",
        "for": "2m",
        "endpoint": "/checkout",
        "webhooks": [receiver.url("/hook/secret-token")],
    }
    assert (
        requests.post(f"{base}/alert-rules", json=rule, headers=as_reader, timeout=10).status_code
        == 403
    )
    created = requests.post(f"{base}/alert-rules", json=rule, headers=as_admin, timeout=10)
    assert created.status_code == 200, created.text
    body = created.json()
    assert (body["window"], body["for"], body["state"]) == ("10m", "2m", "inactive")
    assert "secret-token" not in created.text
    bad = requests.post(
        f"{base}/alert-rules", json={**rule, "name": "x", "op": "=="}, headers=as_admin, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["parameter"] == "op"
    listed = requests.get(f"{base}/alert-rules", headers=as_admin, timeout=10).json()["rules"]
    assert [r["id"] for r in listed] == [body["id"]]
    assert requests.get(f"{base}/alert-rules", headers=as_reader, timeout=10).status_code == 403

    # An alert to list and acknowledge: fire the rule's alert as the evaluator would.
    spec = build_rule(name="traffic", source="endpoint.request_count", op=">", threshold=0,
                      window="5m")  # fmt: skip
    store.create_rule(engine, 1, spec)
    now = datetime.now(UTC)
    write(engine, batch_of([Event(1, now, "/x", 200, 1.0, None, None, None)]))
    from processor.alerts.runner import evaluate_round

    assert len(evaluate_round(engine, now, None).notices) == 1
    (alert,) = requests.get(f"{base}/alerts", headers=as_reader, timeout=10).json()["alerts"]
    assert (alert["rule"], alert["state"]) == ("traffic", "firing")
    ack = f"{base}/alerts/{alert['id']}/ack"
    assert requests.post(ack, headers=as_reader, timeout=10).status_code == 403
    acked = requests.post(ack, headers=as_admin, timeout=10)
    assert acked.status_code == 200 and acked.json()["state"] == "acknowledged"
    missing = requests.post(f"{base}/alerts/{'0' * 8}-0000-0000-0000-{'0' * 12}/ack",
                            headers=as_admin, timeout=10)  # fmt: skip
    assert missing.status_code == 404

    gone = requests.delete(f"{base}/alert-rules/{body['id']}", headers=as_admin, timeout=10)
    assert gone.status_code == 200
    again = requests.delete(f"{base}/alert-rules/{body['id']}", headers=as_admin, timeout=10)
    assert again.status_code == 404


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor", "serve", "--workers", "2",
         "--port", str(port), "--http-port", str(http_port)],
        env={**os.environ, "LOG_LEVEL": "WARNING", **env},
    )  # fmt: skip

    def ready() -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"http://127.0.0.1:{http_port}/readiness", timeout=2).ok
        return False

    try:
        wait_for(ready, "serve --workers 2 to listen")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                for p in [*psutil.Process(proc.pid).children(), psutil.Process(proc.pid)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.kill()
                proc.wait(10)


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_two_workers_send_exactly_one_notification(database_url, engine, receiver):
    store.create_rule(
        engine,
        1,
        build_rule(name="traffic", source="endpoint.request_count", op=">", threshold=0,
                   window="10m", webhooks=[receiver.url("/hook")]),
    )  # fmt: skip
    write(engine, batch_of([Event(1, datetime.now(UTC), "/x", 200, 1.0, None, None, None)]))
    env = {"ANALYTICS_DATABASE_URL": database_url, "ALERT_EVAL_INTERVAL_SECONDS": "0.1"}
    with serving(env) as proc:
        wait_for(lambda: receiver.states("/hook") == ["firing"], "the notification")
        seen: set[str] = set()

        def rounds_after() -> bool:
            seen.add(store.list_rules(engine)[0]["last_evaluated_at"])
            return len(seen) >= 10

        wait_for(rounds_after, "ten more evaluation rounds")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert receiver.states("/hook") == ["firing"]
    assert receiver.attempts["/hook"] == 1
    (alert,) = store.list_alerts(engine)
    assert [n["outcome"] for n in alert["notifications"]] == ["delivered"]


def test_grpc_manages_rules_and_alerts_with_scopes(make_server, engine):
    import grpc

    from processor.alerts.runner import evaluate_round
    from processor.analytics.v1 import analytics_pb2 as pb
    from processor.analytics.v1 import analytics_pb2_grpc as pb_grpc

    admin_key, _ = admin.create_key(engine, "default", "admin")
    read_key, _ = admin.create_key(engine, "default", "read")
    server = make_server(alert_eval_interval_seconds=0)
    wait_for(lambda: server.app.auth.enabled, "keys to load")
    as_admin = (("x-api-key", admin_key),)
    as_reader = (("x-api-key", read_key),)
    new = pb.CreateAlertRuleRequest(
        name="traffic", source="endpoint.request_count", op=">", threshold=0, window="5m",
        webhooks=["https://hooks.example.com/services/secret"],
    )  # fmt: skip
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        stub = pb_grpc.AnalyticsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as denied:
            stub.CreateAlertRule(new, metadata=as_reader)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        rule = stub.CreateAlertRule(new, metadata=as_admin)
        assert (rule.name, rule.window, rule.state) == ("traffic", "5m", "inactive")
        assert list(rule.channels) == ["https://hooks.example.com/…"]
        with pytest.raises(grpc.RpcError) as bad:
            stub.CreateAlertRule(pb.CreateAlertRuleRequest(name="x", source="cpu", op=">",
                                 window="5m"), metadata=as_admin)  # fmt: skip
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "source" in bad.value.details()
        listed = stub.ListAlertRules(pb.ListAlertRulesRequest(), metadata=as_admin)
        assert [r.id for r in listed.rules] == [rule.id]

        now = datetime.now(UTC)
        write(engine, batch_of([Event(1, now, "/x", 200, 1.0, None, None, None)]))
        evaluate_round(engine, now, None)
        (alert,) = stub.ListAlerts(pb.ListAlertsRequest(), metadata=as_reader).alerts
        assert (alert.rule, alert.state, alert.value) == ("traffic", "firing", 1.0)
        acked = stub.AcknowledgeAlert(pb.AlertRef(id=alert.id), metadata=as_admin)
        assert acked.state == "acknowledged" and acked.HasField("acknowledged_at")
        stub.DeleteAlertRule(pb.AlertRuleRef(id=rule.id), metadata=as_admin)
        with pytest.raises(grpc.RpcError) as missing:
            stub.DeleteAlertRule(pb.AlertRuleRef(id=rule.id), metadata=as_admin)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
