"""Alerts end to end on SQLite and PostgreSQL: rules over the real tables, the evaluator driven
by an injected clock, webhooks delivered to a local receiver."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from processor.alerts import store
from processor.alerts.rules import build_rule
from processor.alerts.runner import AlertEvaluator
from processor.alerts.webhook import Deliverer
from processor.settings import Settings
from processor.storage.writer import create_db_engine
from tests.helpers import free_port, wait_for
from tests.helpers.rollups import Event, batch_of, write
from tests.helpers.webhooks import Receiver

NOW = datetime.now(UTC).replace(microsecond=0)
S = timedelta(seconds=1)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(Settings(database_url=database_url).sqlalchemy_url)
    with engine.begin() as conn:
        for table in ("alerts", "alert_rules", "endpoint_stats", "rollup_invalidations"):
            conn.execute(text(f"DELETE FROM {table}"))
    yield engine
    engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class Rounds:
    """The evaluator at chosen times; deliveries retried after 10 ms and 20 ms."""

    def __init__(self, engine: Engine, repeat: timedelta | None = None, timeout: float = 10):
        self.clock = Clock()
        self.deliverer = Deliverer(engine, timeout=timeout, backoff=(0.01, 0.02))
        self.evaluate = AlertEvaluator(self.deliverer, repeat=repeat, clock=self.clock)
        self.engine = engine

    def at(self, seconds: float) -> Any:
        self.clock.now = NOW + seconds * S
        return self.evaluate(self.engine)

    def settle(self) -> None:
        assert self.deliverer.wait_idle(60), "deliveries did not finish"


def requests_at(
    engine: Engine, when: datetime, status: int, count: int, first: int, endpoint: str = "/checkout"
) -> None:
    events = [
        Event(first + i, when, endpoint, status, 10.0 + i, None, None, None) for i in range(count)
    ]
    write(engine, batch_of(events))


def add_rule(engine: Engine, **values: Any) -> dict[str, Any]:
    values = {"op": ">", "window": "5m", **values}
    return store.create_rule(engine, 1, build_rule(**values))


def test_a_spike_of_500s_fires_once_and_recovery_resolves_once(engine, receiver):
    add_rule(
        engine,
        name="checkout errors",
        source="endpoint.error_rate",
        threshold=0.5,
        endpoint="/checkout",
        for_duration="1m",
        severity="critical",
        webhooks=[receiver.url("/hook")],
    )
    requests_at(engine, NOW - 30 * S, 500, 20, first=1)
    rounds = Rounds(engine)
    for second in (0, 30, 60, 90):  # pending, pending, firing, still firing
        rounds.at(second)
    rounds.settle()
    assert receiver.states("/hook") == ["firing"]
    fired = receiver.received["/hook"][0]
    assert (fired["rule"], fired["severity"], fired["value"], fired["threshold"]) == (
        "checkout errors",
        "critical",
        1.0,
        0.5,
    )
    assert fired["resolved_at"] is None and "\n" not in fired["text"]

    requests_at(engine, NOW + 100 * S, 200, 60, first=1000)  # error rate 20/80
    for second in (120, 150, 180):
        rounds.at(second)
    rounds.settle()
    assert receiver.states("/hook") == ["firing", "resolved"]
    resolved = receiver.received["/hook"][1]
    assert resolved["value"] == pytest.approx(0.25)
    assert resolved["started_at"] == fired["started_at"] and resolved["resolved_at"]
    (alert,) = store.list_alerts(engine)
    assert alert["state"] == "resolved"
    assert [(n["kind"], n["outcome"]) for n in alert["notifications"]] == [
        ("firing", "delivered"),
        ("resolved", "delivered"),
    ]


def test_a_burst_shorter_than_the_for_duration_never_fires(engine, receiver):
    add_rule(
        engine,
        name="burst",
        source="endpoint.error_rate",
        threshold=0.5,
        window="1m",
        for_duration="2m",
        webhooks=[receiver.url("/hook")],
    )
    requests_at(engine, NOW - 10 * S, 503, 10, first=1)
    rounds = Rounds(engine)
    states = []
    for second in (0, 30, 60, 90, 150, 300):
        rounds.at(second)
        states.append(store.list_rules(engine)[0]["state"])
    rounds.settle()
    assert states == ["pending", "pending", "inactive", "inactive", "inactive", "inactive"]
    assert receiver.attempts["/hook"] == 0
    assert store.list_alerts(engine) == []


def test_a_webhook_that_fails_twice_is_retried_and_delivered_once(engine, receiver):
    receiver.fail_first("/flaky", 2)
    add_rule(
        engine,
        name="traffic",
        source="endpoint.request_count",
        threshold=0,
        webhooks=[receiver.url("/flaky")],
    )
    requests_at(engine, NOW - 5 * S, 200, 3, first=1)
    rounds = Rounds(engine)
    rounds.at(0)
    rounds.settle()
    assert receiver.attempts["/flaky"] == 3
    assert receiver.states("/flaky") == ["firing"]
    (alert,) = store.list_alerts(engine)
    (note,) = alert["notifications"]
    assert (note["outcome"], note["attempts"], note["http_status"]) == ("delivered", 3, 200)


def test_a_dead_webhook_does_not_stop_other_rules(engine, receiver):
    receiver.hang("/dead")
    closed = f"http://127.0.0.1:{free_port()}/hook?token=s3cr3t"
    add_rule(engine, name="a hanging", source="endpoint.request_count", threshold=0,
             webhooks=[receiver.url("/dead")])  # fmt: skip
    add_rule(engine, name="b refused", source="endpoint.request_count", threshold=0,
             webhooks=[closed])  # fmt: skip
    add_rule(engine, name="c healthy", source="endpoint.request_count", threshold=0,
             webhooks=[receiver.url("/ok")])  # fmt: skip
    requests_at(engine, NOW - 5 * S, 200, 3, first=1)
    rounds = Rounds(engine, timeout=120)
    result = rounds.at(0)  # the round returns while the first webhook still hangs
    assert (result.rules, result.failed, len(result.notices)) == (3, 0, 3)
    wait_for(lambda: receiver.states("/ok") == ["firing"], "the healthy rule's notification")
    wait_for(lambda: receiver.held == 1, "the hanging webhook to hold its request")
    by_rule = {a["rule"]: a for a in store.list_alerts(engine)}
    wait_for(
        lambda: [n["outcome"] for n in
                 {a["rule"]: a for a in store.list_alerts(engine)}["b refused"]["notifications"]]
        == ["failed"],
        "the refused webhook's outcome",
    )  # fmt: skip
    assert by_rule["a hanging"]["notifications"] == []  # still being delivered
    rounds.at(30)  # the next round runs too, with nothing new to say
    receiver.release()
    rounds.settle()
    by_rule = {a["rule"]: a for a in store.list_alerts(engine)}
    refused = by_rule["b refused"]["notifications"][0]
    assert refused["attempts"] == 3 and "s3cr3t" not in str(refused)
    assert [n["outcome"] for n in by_rule["a hanging"]["notifications"]] == ["delivered"]
    assert receiver.states("/ok") == ["firing"]


def test_acknowledging_stops_repeats_but_not_the_resolution(engine, receiver):
    add_rule(
        engine,
        name="traffic",
        source="endpoint.request_count",
        threshold=0,
        window="45m",
        webhooks=[receiver.url("/hook")],
    )
    requests_at(engine, NOW - 5 * S, 200, 3, first=1)
    rounds = Rounds(engine, repeat=timedelta(minutes=10))
    rounds.at(0)
    rounds.at(600)  # still firing after the repeat interval: a repeat, after the first
    rounds.settle()
    assert receiver.states("/hook") == ["firing", "firing"]
    (alert,) = store.list_alerts(engine)
    assert store.acknowledge(engine, 1, store.parse_id("id", alert["id"]))["state"] == (
        "acknowledged"
    )
    for minutes in (20, 30, 40):
        rounds.at(minutes * 60)
    rounds.settle()
    assert receiver.states("/hook") == ["firing", "firing"]
    rounds.at(50 * 60)  # the rows left the 45-minute window
    rounds.settle()
    assert receiver.states("/hook") == ["firing", "firing", "resolved"]
    (alert,) = store.list_alerts(engine)
    assert alert["state"] == "resolved" and alert["acknowledged_at"] is not None
    assert [n["kind"] for n in alert["notifications"]] == ["firing", "repeat", "resolved"]


def test_a_resolution_waits_for_the_firing_notice_still_in_flight(engine, receiver):
    receiver.hang("/slow")
    add_rule(engine, name="traffic", source="endpoint.request_count", threshold=0, window="1m",
             webhooks=[receiver.url("/slow")])  # fmt: skip
    requests_at(engine, NOW - 5 * S, 200, 3, first=1)
    rounds = Rounds(engine, timeout=120)
    rounds.at(0)
    wait_for(lambda: receiver.held == 1, "the firing notice to be held")
    rounds.at(120)  # the rows left the window: resolved, while the firing notice hangs
    assert receiver.attempts["/slow"] == 1  # the resolution has not overtaken it
    receiver.release()
    rounds.settle()
    assert receiver.states("/slow") == ["firing", "resolved"]
