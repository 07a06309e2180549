"""Every Grafana panel's query run for real: the SQL ones (macros expanded as Grafana does)
against the migrated test PostgreSQL as an analyst role from `analysts grant`, after SDK
traffic and a rollup round; every PromQL metric name found in our /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from processor.api import analysts
from tests.helpers.grafana import expand_sql, promql_metrics, targets
from tests.helpers.ui_data import populate, rollup_engine

TS = ["time", "metric", "value"]
# panel title -> the columns its query answers
COLUMNS = {
    "Total events": ["total_events"],
    "Active users": ["active_users"],
    "Sessions (started in range)": ["sessions"],
    "Event type distribution": ["metric", "value"],
    "Volume by table": TS,
    "Top events (features)": ["feature_name", "action", "uses", "users"],
    "App versions": ["app_version", "sessions", "users"],
    "Endpoint RED (hourly rollups)": [
        "method",
        "endpoint",
        "requests",
        "rpm",
        "error_rate",
        "client_errors",
        "avg_ms",
        "worst_hour_p95_ms",
        "worst_hour_p99_ms",
    ],
    "Requests and errors per hour": ["time", "requests", "errors", "client_errors"],
    "p95 latency by endpoint (hourly)": TS,
    "p50 latency by endpoint (hourly)": TS,
    "p99 latency by endpoint (hourly)": TS,
}


@pytest.fixture
def analyst_url(make_server, database_url):
    server = make_server(rollup_interval_seconds=0)
    populate(server)
    engine = rollup_engine(server)
    try:
        granted = analysts.grant(engine, "default")
        yield granted.url.replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        analysts.revoke(engine, granted.role)
        engine.dispose()


# Grafana reads PostgreSQL: the panels run as an analyst role, which SQLite has no notion of.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_every_sql_panel_runs_as_an_analyst_and_answers_its_columns(analyst_url):
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(days=1)
    engine = create_engine(analyst_url)
    answers = {}
    try:
        with engine.connect() as conn:
            for uid, panel, target in targets("grafana-postgresql-datasource"):
                result = conn.execute(text(expand_sql(target["rawSql"], start, end, "1h")))
                assert list(result.keys()) == COLUMNS[panel["title"]], (uid, panel["title"])
                answers[panel["title"]] = result.all()
    finally:
        engine.dispose()
    assert set(answers) == set(COLUMNS)
    # SDK traffic: 18 requests, 9 feature uses, 64 OTLP logs and 8 Telling Logger logs
    assert answers["Total events"][0].total_events == 18 + 9 + 64 + 8
    red = {(r.method, r.endpoint): r for r in answers["Endpoint RED (hourly rollups)"]}
    assert red["POST", "/api/orders"].requests == 7
    assert red["POST", "/api/orders"].error_rate == pytest.approx(2 / 7)
    assert sum(r.requests for r in answers["Requests and errors per hour"]) == 18
    assert {r.feature_name: r.uses for r in answers["Top events (features)"]} == {
        "search": 6,
        "checkout": 3,
    }


def test_every_promql_metric_name_is_in_our_metrics(server):
    populate(server)  # labelled series appear once used
    body = requests.get(f"{server.http_url}/metrics", timeout=10).text
    # A labelled counter shows samples once used (no rejection happened here), but its
    # family is declared from the start: names a family of its type exposes count too.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exposed = {s.name for family in text_string_to_metric_families(body) for s in family.samples}
    for family in text_string_to_metric_families(body):
        exposed |= {family.name + end for end in suffixes.get(family.type, ())}
    used = set()
    for uid, panel, target in targets("prometheus"):
        names = promql_metrics(target["expr"])
        assert names, (uid, panel["title"])
        used |= names
    assert used - exposed == set()
    assert {"processor_database_up", "processor_requests_total"} <= used
