"""The Alerts page in a real headless Chromium: rules added and deleted through the page, an
alert fired by the real evaluator over real rows, acknowledged through the page, and a 403
for a read key told as "needs an admin key"."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from processor.alerts import store
from processor.alerts.rules import build_rule
from processor.alerts.runner import AlertEvaluator
from processor.alerts.webhook import Deliverer
from tests.helpers.api_data import get, make_key, project_id
from tests.helpers.browser import watch
from tests.helpers.rollups import Event, batch_of, write
from tests.helpers.webhooks import Receiver

pytestmark = pytest.mark.browser
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"
ENDPOINT = f"/checkout{XSS}"


@pytest.fixture
def alerts_engine(engine: Engine) -> Engine:
    """The shared clean engine, with no rules or alerts left by other tests."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alerts"))
        conn.execute(text("DELETE FROM alert_rules"))
    return engine


@pytest.fixture
def alerts_server(make_server: Any, alerts_engine: Engine) -> Any:
    # No evaluator in the server: the tests run it themselves at a fixed time.
    return make_server(rollup_interval_seconds=0, alert_eval_interval_seconds=0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def fire(engine: Engine, receiver: Receiver, project: int = 1) -> dict[str, Any]:
    """Five requests to an endpoint whose name holds a script, a rule "more than 3 requests in
    5 minutes" on it, and one evaluator round: the alert fires and its webhook is delivered."""
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        Event(9000 + i, now - timedelta(seconds=30), ENDPOINT, 200, 10.0 + i, None, None, None)
        for i in range(5)
    ]
    # write() runs its own event loop; Playwright's sync API holds this thread's.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(write, engine, batch_of(events, project=project)).result()
    spec = build_rule(
        name="checkout traffic",
        source="endpoint.request_count",
        op=">",
        threshold=3,
        window="5m",
        severity="critical",
        endpoint=ENDPOINT,
        webhooks=[receiver.url("/hook")],
    )
    store.create_rule(engine, project, spec)
    deliverer = Deliverer(engine, timeout=10, backoff=(0.01, 0.02))
    try:
        AlertEvaluator(deliverer, repeat=None, clock=lambda: now)(engine)
        assert deliverer.wait_idle(60), "the webhook delivery did not finish"
    finally:
        deliverer.close()
    assert receiver.states("/hook") == ["firing"]
    [alert] = store.list_alerts(engine, project)
    return alert


def test_the_alerts_page_loads_without_console_errors(browser, alerts_server, database_url):
    w = watch(browser, alerts_server.http_url)
    w.open("#/alerts")
    assert w.page.locator("body").get_attribute("data-page") == "alerts"
    assert w.page.locator("#nav a[data-page='alerts']").get_attribute("class") == "active"
    assert w.page.locator("#main h2").first.text_content() == "Alerts"
    assert w.page.get_by_test_id("rule-form").is_visible()
    w.screenshot(f"alerts-{'postgres' if 'postgresql' in database_url else 'sqlite'}")
    w.assert_clean()


def test_a_rule_added_through_the_page_is_listed_by_the_api_and_deleted(browser, alerts_server):
    w = watch(browser, alerts_server.http_url)
    w.open("#/alerts")
    form = w.page.get_by_test_id("rule-form")
    form.locator("input[name='name']").fill("slow checkout")
    form.locator("input[name='source']").fill("endpoint.p95_ms")
    form.locator("select[name='op']").select_option(">=")
    form.locator("input[name='threshold']").fill("250.5")
    form.locator("input[name='window']").fill("10m")
    form.locator("input[name='for']").fill("2m")
    form.locator("select[name='severity']").select_option("error")
    form.locator("input[name='endpoint']").fill("/checkout")
    w.rerender(lambda: form.locator("button[type='submit']").click())
    [rule] = get(alerts_server, "/api/v1/alert-rules").json()["rules"]
    assert {k: rule[k] for k in ("name", "source", "op", "threshold", "window", "for")} == {
        "name": "slow checkout",
        "source": "endpoint.p95_ms",
        "op": ">=",
        "threshold": 250.5,
        "window": "10m",
        "for": "2m",
    }
    assert (rule["severity"], rule["endpoint"], rule["service"]) == ("error", "/checkout", None)
    [row] = w.table("rules-table")
    assert row["name"] == "slow checkout"
    assert row["source"] == "endpoint.p95_ms · endpoint /checkout"
    assert (row["condition"], row["window"], row["severity"]) == (
        ">= 250.5",
        "10m, for 2m",
        "error",
    )

    # A bad value is refused with the API's message naming it; nothing is added.
    w.expected.add((400, "/api/v1/alert-rules"))
    form = w.page.get_by_test_id("rule-form")
    form.locator("input[name='name']").fill("bad window")
    form.locator("input[name='threshold']").fill("1")
    form.locator("input[name='window']").fill("5 minutes")
    form.locator("button[type='submit']").click()
    error = w.page.get_by_test_id("rule-error")
    error.filter(has_text="window").wait_for()
    assert "Could not add the rule" in error.text_content()
    assert len(get(alerts_server, "/api/v1/alert-rules").json()["rules"]) == 1

    w.rerender(lambda: w.page.get_by_test_id("delete-rule").click())
    assert get(alerts_server, "/api/v1/alert-rules").json()["rules"] == []
    assert w.page.locator("table[data-testid='rules-table']").count() == 0
    w.assert_clean()


def test_a_firing_alert_shows_the_api_numbers_and_is_acknowledged_through_the_page(
    browser, alerts_server, alerts_engine, receiver
):
    fire(alerts_engine, receiver)
    [api] = get(alerts_server, "/api/v1/alerts").json()["alerts"]
    assert (api["state"], api["value"], api["threshold"]) == ("firing", 5, 3)
    w = watch(browser, alerts_server.http_url)
    w.open("#/alerts")
    [row] = w.table("alerts-table")
    assert row["rule"] == api["rule"] == "checkout traffic"
    assert (row["state"], row["severity"], row["value"], row["threshold"]) == (
        "firing",
        "critical",
        "5",
        "3",
    )
    started = api["started_at"].replace("T", " ")
    assert (
        row["started_at"] == started and row["resolved_at"] == "\u2013"
    )  # the page's en dash for none
    assert row["notifications"] == "firing: delivered"
    assert [(n["kind"], n["outcome"]) for n in api["notifications"]] == [("firing", "delivered")]
    assert w.page.get_by_test_id("alerts-summary").text_content().startswith("1 firing")

    w.rerender(lambda: w.page.get_by_test_id("ack").click())
    [api] = get(alerts_server, "/api/v1/alerts").json()["alerts"]
    assert api["state"] == "acknowledged" and api["acknowledged_at"]
    [row] = w.table("alerts-table")
    assert row["state"] == "acknowledged"
    assert w.page.get_by_test_id("ack").count() == 0
    w.assert_clean()


def test_a_script_in_an_alert_message_is_shown_as_text(
    browser, alerts_server, alerts_engine, receiver
):
    alert = fire(alerts_engine, receiver)
    assert XSS in alert["message"]
    w = watch(browser, alerts_server.http_url)
    w.open("#/alerts")
    [row] = w.table("alerts-table")
    assert row["message"] == alert["message"]
    assert w.page.locator("#main script, #main img").count() == 0
    w.page.wait_for_timeout(300)  # an onerror handler would have fired by now
    w.screenshot("alerts-xss")
    w.assert_clean()


def test_a_read_key_sees_alerts_but_acknowledging_needs_an_admin_key(
    browser, make_server, database_url, alerts_engine, receiver
):
    read = make_key(database_url, "default", "read")
    server = make_server(rollup_interval_seconds=0, alert_eval_interval_seconds=0)
    fire(alerts_engine, receiver, project=project_id(database_url, "default"))
    w = watch(browser, server.http_url)
    w.expected |= {(401, "/api/v1/"), (403, "/api/v1/")}
    w.page.goto(f"{server.http_url}/#/alerts")
    w.ready("key-needed")
    w.page.fill("#key-input", read)
    w.rerender(lambda: w.page.click("#key-form button"))
    assert [r["state"] for r in w.table("alerts-table")] == ["firing"]
    assert "needs an admin key" in w.page.get_by_test_id("rules-admin").text_content()
    w.page.get_by_test_id("ack").click()
    error = w.page.get_by_test_id("alerts-error")
    error.filter(has_text="needs an admin key").wait_for()
    [api] = get(server, "/api/v1/alerts", read).json()["alerts"]
    assert api["state"] == "firing"
    w.assert_clean()
