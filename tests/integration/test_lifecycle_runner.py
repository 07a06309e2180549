"""The serving process enforces retention in the background, one runner at a time, and
idempotent inserts still hold on the partitioned tables."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.logs.v1 import logs_pb2

from processor.ops.scheduler import PeriodicJob, job_lock
from processor.storage import partitions
from processor.storage.housekeeping import RETENTION_LOCK, Housekeeping
from processor.storage.writer import create_db_engine
from tests.helpers import wait_for
from tests.helpers.lifecycle_rows import add_rows, count, days_ago
from tests.helpers.otlp import grpc_export, request_with_span


def log_request() -> logs_service_pb2.ExportLogsServiceRequest:
    request = logs_service_pb2.ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.time_unix_nano = time.time_ns()
    record.severity_number = logs_pb2.SEVERITY_NUMBER_ERROR
    record.body.string_value = "disk full"
    return request


def test_the_same_request_twice_stores_one_row(server, db):
    request = request_with_span("twice")
    grpc_export(server.grpc_endpoint, request)
    grpc_export(server.grpc_endpoint, request)
    logs = log_request()
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        stub.Export(logs, timeout=10)
        stub.Export(logs, timeout=10)
    assert db.count("endpoint_usage") == 1
    assert db.count("logs") == 1
    if db.is_postgres:  # stored in today's partition, not the DEFAULT one
        with db.engine.connect() as conn:
            from sqlalchemy import text

            where = conn.execute(text("SELECT tableoid::regclass::text FROM logs")).scalar()
        assert where.startswith("logs_p") and where.endswith("_error")


def test_one_runner_at_a_time(database_url):
    from processor.settings import Settings

    engines = [create_db_engine(Settings(database_url=database_url).sqlalchemy_url) for _ in "ab"]
    first, second = engines
    try:
        with job_lock(first, RETENTION_LOCK, wait=False) as got:
            assert got
            with job_lock(second, RETENTION_LOCK, wait=False) as other:
                assert not other
        with job_lock(second, RETENTION_LOCK, wait=False) as got:
            assert got
    finally:
        for engine in engines:
            engine.dispose()


def test_a_round_is_skipped_while_another_process_holds_the_lock(database_url):
    from processor.settings import Settings

    engine = create_db_engine(Settings(database_url=database_url).sqlalchemy_url)
    other = create_db_engine(Settings(database_url=database_url).sqlalchemy_url)
    ran: list[object] = []
    runner = PeriodicJob("t", engine, ran.append, interval=60, lock_key=RETENTION_LOCK)
    try:
        with job_lock(other, RETENTION_LOCK, wait=False) as got:
            assert got
            assert runner.run_once() is None and ran == [] and runner.skipped == 1
        runner.run_once()
        assert ran == [engine] and runner.rounds == 1
    finally:
        other.dispose()
        engine.dispose()


def test_the_server_removes_expired_rows_by_itself(make_server, db):
    add_rows(db.engine, "user_activity", [days_ago(400)] * 3 + [days_ago(1)])
    add_rows(db.engine, "logs", [days_ago(8)], level="debug")
    server = make_server(retention_interval_seconds=1)
    wait_for(lambda: count(db.engine, "user_activity") == 1 and db.count("logs") == 0, 30)
    assert server.app is not None
    wait_for(lambda: server.app.housekeeping.runner.rounds >= 1, 10)


def test_housekeeping_shutdown_is_safe_twice_and_before_start(database_url):
    from processor.settings import Settings

    settings = Settings(database_url=database_url)

    async def scenario() -> None:
        never_started = Housekeeping(settings, create_db_engine(settings.sqlalchemy_url))
        await never_started.shutdown(1)
        await never_started.shutdown(1)
        housekeeping = Housekeeping(settings, create_db_engine(settings.sqlalchemy_url))
        await housekeeping.start()
        await housekeeping.start()
        await housekeeping.shutdown(5)
        await housekeeping.shutdown(5)

    asyncio.run(scenario())


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite: no partitions
def test_partitions_are_made_at_start(make_server, db):
    import datetime as dt

    from sqlalchemy import text

    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=7)
    name = partitions.partition_name("performance_metrics", day)
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    make_server()
    with db.engine.connect() as conn:
        wait_for(lambda: day in partitions.day_partitions(conn, "performance_metrics"), 30)


def test_a_job_runs_its_start_job_then_its_first_round_after_the_first_delay():
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    ran: list[str] = []
    job = PeriodicJob(
        "t",
        engine,
        lambda _e: ran.append("round"),
        interval=3600,
        lock_key=RETENTION_LOCK,
        first_delay=0.05,
        on_start=lambda _e: ran.append("start"),
    )

    async def scenario() -> None:
        await job.start()
        deadline = time.monotonic() + 10
        while ran != ["start", "round"] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await job.shutdown(5)

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
    assert ran == ["start", "round"]  # the next round is an interval (an hour) away
    assert job.stop.is_set()
