"""The web UI's shell and assets over HTTP (public, with a strict CSP), and the KPI endpoint
the Overview reads (the caller's project's dashboard_metrics rows)."""

from __future__ import annotations

import pytest
import requests

from tests.helpers.api_data import get, make_key
from tests.helpers.ui_data import populate


def fetch(server, path):
    return requests.get(f"{server.http_url}{path}", timeout=10)


@pytest.mark.parametrize(
    ("path", "media"),
    [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/pages/logs.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/vendor/chart.umd.min.js", "text/javascript"),
    ],
)
def test_page_and_assets_are_public_and_carry_the_csp(server, path, media):
    make_key(server.settings.database_url, "default", "read")  # keys on: assets stay public
    resp = fetch(server, path)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith(media)
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/ui/nothing.js", "/ui/../__init__.py", "/ui/%2e%2e/__init__.py"])
def test_only_listed_assets_are_served(server, path):
    assert fetch(server, path).status_code == 404


def test_the_page_loads_no_script_from_another_host_and_no_inline_script(server):
    html = fetch(server, "/").text
    assert "http://" not in html and "https://" not in html
    assert "<script>" not in html  # every script has a src on this server


def test_dashboard_answers_the_callers_tiles_only(make_server, database_url, db):
    ingest = make_key(database_url, "default", "ingest")
    read = make_key(database_url, "default", "read")
    other = make_key(database_url, "other", "read")
    server = make_server(rollup_interval_seconds=0)
    populate(server, ingest)
    answer = get(server, "/api/v1/analytics/dashboard", read).json()
    stored = {r["metric_key"]: r for r in db.rows("dashboard_metrics", "project_id = 1")}
    assert {m["metric_key"] for m in answer["metrics"]} == set(stored) >= {"requests", "dau"}
    for tile in answer["metrics"]:
        row = stored[tile["metric_key"]]
        assert tile["value"] == row["value"]
        assert tile["previous_value"] == row["previous_value"]
        assert tile["change_percent"] == row["change_percent"]
    theirs = get(server, "/api/v1/analytics/dashboard", other).json()
    assert theirs["project_id"] != 1
    assert all(t["value"] == 0 for t in theirs["metrics"])  # the round wrote their empty tiles
    assert get(server, "/api/v1/analytics/dashboard", ingest).status_code == 403
    assert get(server, "/api/v1/analytics/dashboard").status_code == 401
