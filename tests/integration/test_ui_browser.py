"""The web UI in a real headless Chromium, after real SDK traffic and a rollup round: every
page renders the API's numbers, without console errors, under the Content-Security-Policy."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.helpers.api_data import get, make_key
from tests.helpers.browser import watch
from tests.helpers.ui_data import LOG_COUNT, XSS, empty_rollups, populate

pytestmark = pytest.mark.browser
PAGES = ["overview", "endpoints", "users", "logs", "performance", "funnels", "alerts"]


@pytest.fixture
def ui_server(make_server):
    return make_server(rollup_interval_seconds=0)


@pytest.fixture
def filled(ui_server):
    populate(ui_server)
    return ui_server


def last_request(watched, path):
    """The query the page sent to ``path`` most recently, to ask the API the same."""
    for url in reversed(watched.requests):
        parsed = urlparse(url)
        if parsed.path == path:
            return {k: v[0] for k, v in parse_qs(parsed.query).items()}
    raise AssertionError(f"the page never requested {path}")


def test_every_page_loads_without_console_errors(browser, filled, database_url):
    w = watch(browser, filled.http_url)
    for page in PAGES:
        w.open(f"#/{page}")
        assert w.page.locator("body").get_attribute("data-page") == page
        assert w.page.locator("#main h2").first.is_visible()
        w.screenshot(f"{page}-{'postgres' if 'postgresql' in database_url else 'sqlite'}")
    w.assert_clean()


def test_overview_tiles_charts_and_tables_match_the_api(browser, filled):
    w = watch(browser, filled.http_url)
    w.open("#/overview")
    tiles = {
        r["metric_key"]: r for r in get(filled, "/api/v1/analytics/dashboard").json()["metrics"]
    }
    assert tiles["requests"]["value"] == 18
    shown = w.page.locator("[data-metric='requests'] .value").text_content()
    assert shown == "18"
    q = last_request(w, "/api/v1/analytics/timeseries")
    points = get(filled, "/api/v1/analytics/timeseries", **q).json()["points"]
    assert sum(p["count"] for p in points) == 18
    requests_chart = w.chart("chart-requests")
    assert requests_chart["datasets"][0]["data"] == [p["count"] for p in points]
    latency = w.chart("chart-latency")
    for dataset in latency["datasets"]:
        assert dataset["data"] == [p[dataset["label"]] for p in points]
    assert w.chart("chart-errors")["datasets"][0]["data"] == [p["error_rate"] for p in points]
    q = last_request(w, "/api/v1/analytics/endpoints")
    api = get(filled, "/api/v1/analytics/endpoints", **q).json()["endpoints"]
    rows = w.table("top-endpoints")
    assert [(r["method"], r["endpoint"], r["requests"]) for r in rows] == [
        (e["method"], e["endpoint"], str(e["requests"])) for e in api
    ]
    features = w.chart("chart-features")
    assert dict(zip(features["labels"], features["datasets"][0]["data"], strict=True)) == {
        "search": 6,
        "checkout": 3,
    }
    w.assert_clean()


def test_range_change_asks_for_the_new_range_and_draws_its_answer(browser, filled):
    w = watch(browser, filled.http_url)
    w.open("#/overview")
    first = last_request(w, "/api/v1/analytics/timeseries")
    w.rerender(lambda: w.page.select_option("#range", "30d"))
    q = last_request(w, "/api/v1/analytics/timeseries")
    assert q["interval"] == "day" and first["interval"] == "hour"
    assert q["start"] < first["start"]
    points = get(filled, "/api/v1/analytics/timeseries", **q).json()["points"]
    assert w.chart("chart-requests")["datasets"][0]["data"] == [p["count"] for p in points]
    w.rerender(lambda: w.page.select_option("#range", "1h"))
    assert last_request(w, "/api/v1/analytics/timeseries")["interval"] == "hour"
    # A custom range, read as UTC, far in the past: nothing in it.
    w.page.select_option("#range", "custom")
    w.page.fill("#custom-start", "2020-01-01T00:00")
    w.page.fill("#custom-end", "2020-01-02T00:00")
    w.rerender(lambda: w.page.click("#custom-apply"))
    q = last_request(w, "/api/v1/analytics/timeseries")
    assert (q["start"], q["end"]) == ("2020-01-01T00:00:00.000Z", "2020-01-02T00:00:00.000Z")
    assert w.table("top-endpoints") == []
    w.assert_clean()


def test_endpoints_table_sorts_and_drills_down_to_one_endpoint(browser, filled):
    w = watch(browser, filled.http_url)
    w.open("#/endpoints")
    rows = w.table("endpoints-table")
    assert [int(r["requests"]) for r in rows] == [8, 7, 3]  # POST /api/orders: 5 + 2
    w.page.click("table[data-testid='endpoints-table'] th[data-key='error_rate']")
    rows = w.table("endpoints-table")
    assert rows[0]["endpoint"] == "/api/orders" and rows[0]["errors"] == "2"
    w.page.click("table[data-testid='endpoints-table'] th[data-key='endpoint']")
    w.page.click("table[data-testid='endpoints-table'] th[data-key='endpoint']")
    assert [r["endpoint"] for r in w.table("endpoints-table")] == sorted(
        r["endpoint"] for r in rows
    )
    cell = w.page.locator("table[data-testid='endpoints-table'] td[data-key='endpoint']")
    w.rerender(lambda: cell.filter(has_text="/api/users/{id}").click())
    assert "endpoint=%2Fapi%2Fusers%2F%7Bid%7D" in w.page.url
    q = last_request(w, "/api/v1/analytics/timeseries")
    assert q["endpoint"] == "/api/users/{id}"
    points = get(filled, "/api/v1/analytics/timeseries", **q).json()["points"]
    assert sum(p["count"] for p in points) == 3
    chart = w.chart("chart-endpoint-requests")
    assert chart["datasets"][0]["data"] == [p["count"] for p in points]
    assert len(w.table("endpoint-buckets")) == len(points)
    w.assert_clean()


def test_users_page_shows_active_users_and_sessions_from_the_api(browser, filled):
    w = watch(browser, filled.http_url)
    w.open("#/users")
    q = last_request(w, "/api/v1/analytics/sessions")
    sessions = get(filled, "/api/v1/analytics/sessions", **q).json()
    shown = w.page.locator("[data-metric='sessions'] .value").text_content()
    assert shown == str(sessions["sessions"]) and sessions["sessions"] > 0
    day = get(filled, "/api/v1/analytics/active-users", interval="day", **q).json()
    assert w.chart("chart-dau")["datasets"][0]["data"] == [p["users"] for p in day["points"]]
    assert w.page.locator("[data-metric='total_users'] .value").text_content() == str(
        day["total_users"]
    )
    w.assert_clean()


def test_logs_filter_by_level_type_and_user_and_page(browser, filled):
    w = watch(browser, filled.http_url)
    w.open("#/logs")
    assert w.page.get_by_test_id("page-info").text_content().endswith(f"{LOG_COUNT + 8} logs")
    assert len(w.table("logs-table")) == 50
    w.rerender(lambda: w.page.click("[data-testid='next-page']"))
    assert len(w.table("logs-table")) == LOG_COUNT + 8 - 50
    assert last_request(w, "/api/v1/logs/filter")["page"] == "2"
    w.rerender(lambda: w.page.select_option("[data-testid='filter-level']", "warning"))
    q = last_request(w, "/api/v1/logs/filter")
    assert q["page"] == "1" and q["level"] == "warning"
    api = get(filled, "/api/v1/logs/filter", **q).json()
    assert {r["level"] for r in w.table("logs-table")} == {"warning"}
    assert len(w.table("logs-table")) == api["total"] == 9
    w.rerender(lambda: w.page.select_option("[data-testid='filter-type']", "network"))
    assert last_request(w, "/api/v1/logs/filter")["type"] == "network"
    w.page.fill("[data-testid='filter-user']", "alice")
    w.rerender(lambda: w.page.press("[data-testid='filter-user']", "Enter"))
    q = last_request(w, "/api/v1/logs/filter")
    assert q["user_id"] == "alice"
    api = get(filled, "/api/v1/logs/filter", **q).json()
    assert len(w.table("logs-table")) == api["total"] > 0
    assert "alice" not in w.page.locator("table[data-testid='logs-table']").text_content()
    w.assert_clean()


def test_a_script_in_a_log_message_is_shown_as_text(browser, filled):
    w = watch(browser, filled.http_url)
    w.open("#/logs")
    w.page.select_option("[data-testid='filter-type']", "security")
    w.ready()
    messages = [r["message"] for r in w.table("logs-table")]
    assert XSS in messages
    assert w.page.locator("#main script, #main img").count() == 0
    w.page.wait_for_timeout(300)  # an onerror handler would have fired by now
    w.screenshot("logs-xss")
    w.assert_clean()


def test_inline_script_is_refused_by_the_content_security_policy(browser, filled):
    w = watch(browser, filled.http_url)
    w.open()
    ran = w.page.evaluate(
        """() => new Promise((resolve) => {
            document.addEventListener("securitypolicyviolation", () => resolve("blocked"));
            const s = document.createElement("script");
            s.textContent = "window.inlineRan = true";
            document.body.append(s);
            setTimeout(() => resolve(window.inlineRan ? "ran" : "blocked"), 500);
        })"""
    )
    assert ran == "blocked"
    assert (
        "script-src 'self'"
        in requests.get(filled.http_url, timeout=10).headers["Content-Security-Policy"]
    )


def test_performance_page_draws_metric_percentiles(browser, filled):
    w = watch(browser, filled.http_url)
    w.open("#/performance")
    [row] = w.table("metrics-table")
    assert row["name"] == "startup_time" and row["samples"] == "8"
    q = last_request(w, "/api/v1/analytics/timeseries")
    assert q["source"] == "metrics" and q["metric"] == "startup_time"
    points = get(filled, "/api/v1/analytics/timeseries", **q).json()["points"]
    chart = w.chart("chart-metric")
    for dataset in chart["datasets"]:
        assert dataset["data"] == [p[dataset["label"]] for p in points]
    w.assert_clean()


def test_funnels_page_defines_a_funnel_and_draws_its_conversion(browser, filled):
    w = watch(browser, filled.http_url)
    w.open("#/funnels")
    w.page.fill("input[name='name']", "order flow")
    values = w.page.locator("input[name='step-value']")
    w.page.locator("select[name='step-type']").nth(0).select_option("endpoint")
    values.nth(0).fill("GET /api/items")
    w.page.locator("select[name='step-type']").nth(1).select_option("endpoint")
    values.nth(1).fill("POST /api/orders")
    w.rerender(lambda: w.page.click("text=Create funnel"))
    listed = get(filled, "/api/v1/funnels").json()
    listed = listed["funnels"] if isinstance(listed, dict) else listed  # either shape
    [funnel] = [f for f in listed if f["name"] == "order flow"]
    q = last_request(w, f"/api/v1/funnels/{funnel['id']}/conversion")
    steps = get(filled, f"/api/v1/funnels/{funnel['id']}/conversion", **q).json()["steps"]
    assert w.chart("chart-funnel")["datasets"][0]["data"] == [s["users"] for s in steps]
    w.assert_clean()


def test_key_prompt_refuses_an_ingest_key_and_keeps_a_read_key_out_of_urls(
    browser, make_server, database_url
):
    ingest = make_key(database_url, "default", "ingest")
    read = make_key(database_url, "default", "read")
    server = make_server(rollup_interval_seconds=0)
    populate(server, ingest)
    w = watch(browser, server.http_url)
    w.expected |= {(401, "/api/v1/"), (403, "/api/v1/")}
    w.page.goto(server.http_url)
    w.ready("key-needed")
    assert w.page.locator("#key-prompt").is_visible()
    w.page.fill("#key-input", ingest)
    w.rerender(lambda: w.page.click("#key-form button"), state="key-refused")
    assert "not allowed to read" in w.page.locator("#key-error").text_content()
    assert w.page.evaluate("Object.keys(sessionStorage).length") == 0
    w.page.fill("#key-input", read)
    w.rerender(lambda: w.page.click("#key-form button"))
    assert w.page.locator("#key-prompt").is_hidden()
    assert w.page.locator("[data-metric='requests'] .value").text_content() == "18"
    assert read in w.page.evaluate("Object.values(sessionStorage)")
    assert not [u for u in w.requests if read in u or ingest in u]
    w.page.reload()
    w.ready()  # the key survives a reload of the tab
    w.assert_clean()


def test_an_empty_database_shows_how_to_send_data(browser, ui_server):
    empty_rollups(ui_server)
    w = watch(browser, ui_server.http_url)
    w.open("#/overview")
    guide = w.page.get_by_test_id("empty-state").text_content()
    assert "otlphttp" in guide and f"127.0.0.1:{ui_server.app.http_port}" in guide
    w.screenshot("empty-state")
    w.assert_clean()


def test_auto_refresh_reloads_the_page_data(browser, filled):
    w = watch(browser, filled.http_url)
    w.page.clock.install()
    w.open("#/overview")
    w.page.select_option("#refresh", "60")
    before = sum(1 for u in w.requests if "/api/v1/analytics/timeseries" in u)
    w.rerender(lambda: w.page.clock.run_for("01:01"))
    after = sum(1 for u in w.requests if "/api/v1/analytics/timeseries" in u)
    assert after == before + 1
    w.assert_clean()
