"""Real OpenTelemetry SDK traffic → the running server → its rollup runner → rollups; and
`serve --workers 2` on PostgreSQL: nothing counted twice (one background process runs the
rounds for both workers; with BACKGROUND_MODE=thread both workers do, under the lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import text
from sqlalchemy.engine import Engine

from processor.analytics.query import endpoint_percentiles, endpoint_stats
from processor.analytics.rollup import run_round
from processor.mapping.privacy import make_hasher
from tests.helpers import free_port
from tests.helpers.otlp import grpc_export, request_with_span
from tests.helpers.rollups import as_utc, check_rollups, stored
from tests.helpers.sdk import grpc_tracer_provider


def wait_for(predicate, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def requests_rolled_up(engine: Engine) -> int:
    return sum(
        r["request_count"] for r in stored(engine, "endpoint_stats") if r["period"] == "hour"
    )


def settled(engine: Engine, count: int) -> bool:
    with engine.connect() as conn:
        dirty = conn.execute(text("SELECT count(*) FROM rollup_invalidations")).scalar()
    return dirty == 0 and requests_rolled_up(engine) == count


def test_sdk_spans_reach_the_rollups_through_the_serving_runner(engine, make_server):
    server = make_server(rollup_interval_seconds=0.3)
    provider = grpc_tracer_provider(server.grpc_endpoint)
    tracer = provider.get_tracer("shop")
    for i in range(30):
        with tracer.start_as_current_span(
            "GET /orders/{id}",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "http.route": "/orders/{id}",
                "http.response.status_code": 500 if i % 10 == 0 else 200,
                "user.id": f"user-{i % 4}",
                "session.id": f"session-{i % 2}",
                "feature.name": "orders",
            },
        ) as span:
            if i % 6 == 0:
                span.set_status(Status(StatusCode.ERROR))
            time.sleep(0.001)
    provider.shutdown()
    wait_for(lambda: settled(engine, 30), "the runner to roll up 30 requests")
    check_rollups(engine, exact_hours=False)
    hours = [r for r in stored(engine, "endpoint_stats") if r["period"] == "hour"]
    # On PostgreSQL the open hour grew by its added rows: sketch percentiles, flagged.
    assert [bool(r["percentiles_exact"]) for r in hours] == [engine.dialect.name == "sqlite"]
    run_round(engine)  # as `telemetry-processor rollup`: every hour final and exact
    check_rollups(engine)

    (row,) = [r for r in stored(engine, "endpoint_stats") if r["period"] == "day"]
    assert (row["request_count"], row["unique_users"]) == (30, 4)
    # i % 10 == 0 is a 500, i % 6 == 0 a span error: i in {0, 6, 10, 12, 18, 20, 24}
    assert row["error_count"] == 7
    (feature,) = stored(engine, "feature_usage_daily")
    assert feature["success_rate"] == pytest.approx(25 / 30)
    # Identifiers in rollups are the stored hashes, never raw ids.
    users = {r["user_id"] for r in stored(engine, "user_activity_daily")}
    assert users == {make_hasher()(f"user-{i}") for i in range(4)}

    start = as_utc(row["bucket_start"])
    with engine.connect() as conn:
        (stats,) = endpoint_stats(conn, 1, start, start + timedelta(days=1))
        merged = endpoint_percentiles(conn, 1, "/orders/{id}", start, start + timedelta(days=1))
    assert stats["requests"] == 30
    assert stats["error_rate"] == pytest.approx(7 / 30)
    assert merged["count"] == 30
    assert merged["p95"] == pytest.approx(row["p95_ms"])


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["process", "thread"])
def test_two_workers_roll_up_without_double_counting(postgres_url, tmp_path, mode):
    from processor.settings import Settings
    from processor.storage.writer import create_db_engine
    from tests.helpers.rollups import clean

    engine = create_db_engine(Settings(database_url=postgres_url).sqlalchemy_url)
    clean(engine)
    port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "ANALYTICS_DATABASE_URL": postgres_url,
        "LOG_LEVEL": "WARNING",
        "ROLLUP_INTERVAL_SECONDS": "0.2",
        "BACKGROUND_MODE": mode,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor", "serve", "--workers", "2",
         "--port", str(port), "--http-port", str(http_port)],
        env=env,
    )  # fmt: skip
    try:

        def ready() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{http_port}/readiness", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_for(ready, "the workers to listen")
        for i in range(1, 41):  # new connections each time; the kernel spreads them
            grpc_export(f"127.0.0.1:{port}", request_with_span(user=f"u{i % 3}", span_byte=i))
            if i % 10 == 0:
                time.sleep(0.3)  # let rounds run between bursts
        wait_for(lambda: settled(engine, 40), "the runners to roll up 40 requests")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        check_rollups(engine, exact_hours=False)
        day = [r for r in stored(engine, "endpoint_stats") if r["period"] == "day"]
        assert sum(r["request_count"] for r in day) == 40
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()
