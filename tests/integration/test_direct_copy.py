"""Retries store exactly once with PostgreSQL's direct COPY (issue 15).

Rows COPY straight into their table inside a savepoint and take the staging table + ON
CONFLICT path only when they collide (or the database refuses them). Every test that can runs
on SQLite too (which has neither path and must be unaffected) and with the direct path on (the
default) and off (``WRITER_DIRECT_COPY=false``). On PostgreSQL the fallback counter shows which
path each write took, so a test cannot pass by never taking the direct path.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import text

from processor.ingest.decode import Signal, decode
from processor.mapping import RouteContext, route_traces
from processor.mapping.privacy import make_hasher
from processor.mapping.rows import Batch
from processor.storage import partitions
from processor.storage.writer import WriteResult
from tests.helpers import wait_for
from tests.helpers.otlp import (
    MS,
    SPAN_START,
    grpc_export,
    grpc_export_logs,
    ids,
    log,
    logs,
    span,
    trace_request,
    traces,
)
from tests.helpers.rollups import as_utc
from tests.helpers.storage import metric, stored_counts, write_together, writes_held

modes = pytest.mark.parametrize("direct", [True, False], ids=["direct", "staged"])
FALLBACKS = "processor_direct_copy_fallbacks_total"
COMMITS = "processor_db_commit_seconds_count"


def conflicts(table: str = "feature_usage") -> float:
    return metric(FALLBACKS, table=table, reason="conflict")


def export(server: Any, data: bytes) -> None:
    """Export serialised spans; the reply must report nothing rejected."""
    reply = grpc_export(server.grpc_endpoint, ExportTraceServiceRequest.FromString(data))
    assert not reply.HasField("partial_success"), reply.partial_success.error_message


def routed(request: ExportTraceServiceRequest | bytes) -> Batch:
    """The router's rows for ``request``, as the pipeline hands them to the writer."""
    data = request if isinstance(request, bytes) else request.SerializeToString()
    return route_traces(decode(Signal.TRACES, data), RouteContext(hasher=make_hasher()))


def feature_span(tag: str, i: int, feature: str | None = None, start: int = SPAN_START) -> Any:
    trace_id = ids(tag)[0]
    return span(
        f"{tag}-{i}",
        {"feature.name": feature or tag},
        trace_id=trace_id,
        span_id=ids(f"{tag}/{i}")[1],
        start=start + i,
        end=start + i + MS,
    )


def expected_conflicts(db: Any, direct: bool, n: int) -> int:
    """Fallbacks for a collision: one per colliding write on PostgreSQL's direct path only."""
    return n if db.is_postgres and direct else 0


@modes
def test_the_same_request_twice_stores_one_row(make_server, db, direct):
    server = make_server(writer_direct_copy=direct)
    data, span_ids = trace_request("twice", 20, start=SPAN_START)
    record = log("disk full", severity_number=17, time=SPAN_START, observed=SPAN_START + MS)
    before = conflicts(), conflicts("logs")
    export(server, data)
    assert not grpc_export_logs(server.grpc_endpoint, logs(record)).HasField("partial_success")
    after_first = conflicts() - before[0], conflicts("logs") - before[1]
    export(server, data)
    assert not grpc_export_logs(server.grpc_endpoint, logs(record)).HasField("partial_success")
    after_retry = conflicts() - before[0], conflicts("logs") - before[1]

    assert stored_counts(db) == dict.fromkeys(span_ids, 1)
    assert db.count("logs") == 1
    assert after_first == (0, 0)  # new rows went straight in
    retried = expected_conflicts(db, direct, 1)
    assert after_retry == (retried, retried)
    # The rollup markers came with the rows, in their transaction: on PostgreSQL naming the
    # event minute and the transaction (the rows' ingest_txid), on SQLite the hour.
    minute = datetime.fromtimestamp(SPAN_START / 1e9, UTC).replace(second=0, microsecond=0)
    markers = db.rows("rollup_invalidations")
    assert {"feature_usage", "logs"} <= {r["kind"] for r in markers}
    starts = {as_utc(r["bucket_start"]) for r in markers}
    assert (minute if db.is_postgres else minute.replace(minute=0)) in starts
    if db.is_postgres:
        txids = {r["ingest_txid"] for r in db.rows("feature_usage")}
        assert None not in txids and txids <= {r["txid"] for r in markers}


@modes
def test_a_partly_colliding_request_stores_new_rows_once_and_old_rows_once(make_server, db, direct):
    server = make_server(writer_direct_copy=direct)
    first, first_ids = trace_request("partly", 10, start=SPAN_START)
    second, second_ids = trace_request("partly", 10, first=5, start=SPAN_START)  # 5 repeat
    assert len(set(first_ids) & set(second_ids)) == 5
    before = conflicts()
    export(server, first)
    export(server, second)
    assert stored_counts(db) == dict.fromkeys(first_ids + second_ids, 1)
    assert conflicts() - before == expected_conflicts(db, direct, 1)
    # The repeated rows are the first request's rows, unchanged.
    assert {r["feature_name"] for r in db.rows("feature_usage")} == {"partly"}


@modes
def test_the_same_span_twice_in_one_request_stores_one_row(make_server, db, direct):
    server = make_server(writer_direct_copy=direct)
    twice = traces(*(feature_span("dup", i) for i in (0, 1, 1, 2, 0)))
    before = conflicts()
    export(server, twice.SerializeToString())
    assert stored_counts(db) == {ids(f"dup/{i}")[1].hex(): 1 for i in range(3)}
    assert conflicts() - before == expected_conflicts(db, direct, 1)


@modes
def test_duplicates_across_requests_of_one_group_commit_store_once(database_url, db, direct):
    request = traces(*(feature_span("group", i) for i in range(8)))
    newer = traces(*(feature_span("group", i) for i in range(6, 12)))  # 6, 7 repeat
    commits, before = metric(COMMITS), conflicts()
    results = write_together(
        database_url, [routed(request), routed(request), routed(newer)], direct_copy=direct
    )
    assert results == [WriteResult(), WriteResult(), WriteResult()]
    assert metric(COMMITS) - commits == 1  # one transaction took all three
    assert stored_counts(db) == {ids(f"group/{i}")[1].hex(): 1 for i in range(12)}
    assert conflicts() - before == expected_conflicts(db, direct, 1)


@modes
def test_rows_outside_every_day_partition_store_once(database_url, db, direct):
    """Rows of days without a partition go to the DEFAULT one (PostgreSQL); a retry stores
    nothing more, there and after their day's partition is made and they move into it."""
    old_day = date(2001, 2, 3)
    old = int(datetime(2001, 2, 3, 12, tzinfo=UTC).timestamp() * 1e9)
    future = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1e9)
    request = traces(feature_span("far", 0, start=old), feature_span("far", 1, start=future))
    span_ids = {ids(f"far/{i}")[1].hex(): 1 for i in (0, 1)}
    before = conflicts()
    assert write_together(database_url, [routed(request)], direct_copy=direct) == [WriteResult()]
    assert write_together(database_url, [routed(request)], direct_copy=direct) == [WriteResult()]
    assert stored_counts(db) == span_ids
    assert conflicts() - before == expected_conflicts(db, direct, 1)
    if not db.is_postgres:
        return
    assert where_stored(db) == {"feature_usage_default"}
    try:
        assert partitions.create_day(db.engine, "feature_usage", old_day) == 1
        assert write_together(database_url, [routed(request)], direct_copy=direct) == [
            WriteResult()
        ]
        assert stored_counts(db) == span_ids
        assert where_stored(db) == {"feature_usage_default", "feature_usage_p20010203"}
        assert conflicts() - before == expected_conflicts(db, direct, 2)
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS feature_usage_p20010203"))


def where_stored(db: Any) -> set[str]:
    with db.engine.connect() as conn:
        query = text("SELECT DISTINCT tableoid::regclass::text FROM feature_usage")
        return set(conn.execute(query).scalars())


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@modes
def test_a_row_the_database_refuses_is_rejected_alone(database_url, db, direct):
    """The database refuses one row (a CHECK constraint): its request stores its other rows
    and reports one rejection with the database's message, and the requests committed with
    it (a retry that collides, a new one) are stored once — the same in both modes."""
    earlier = traces(*(feature_span("refuse", i) for i in range(4)))
    bad = traces(*(feature_span("refuse", i, "refused" if i == 5 else None) for i in range(4, 8)))
    retry = earlier
    new = traces(*(feature_span("refuse", i) for i in range(8, 10)))
    assert write_together(database_url, [routed(earlier)], direct_copy=direct) == [WriteResult()]
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "ALTER TABLE feature_usage ADD CONSTRAINT test_refused_feature"
                " CHECK (feature_name <> 'refused')"
            )
        )
    try:
        results = write_together(
            database_url, [routed(bad), routed(retry), routed(new)], direct_copy=direct
        )
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE feature_usage DROP CONSTRAINT test_refused_feature"))
    refused, *others = results
    assert others == [WriteResult(), WriteResult()]
    assert refused.rejected == 1
    day = datetime.fromtimestamp(SPAN_START / 1e9, UTC).strftime("%Y%m%d")
    assert refused.error.startswith(
        f'feature_usage: new row for relation "feature_usage_p{day}" violates check constraint'
        ' "test_refused_feature"'
    ), refused.error
    assert stored_counts(db) == {ids(f"refuse/{i}")[1].hex(): 1 for i in range(10) if i != 5}


def waiting_statements(db: Any) -> list[str]:
    """What the processor's connections are running while they wait for a lock."""
    with db.engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'telemetry-processor' AND wait_event_type = 'Lock'"
                )
            ).scalars()
        )


def try_export(server: Any, data: bytes) -> grpc.RpcError | None:
    try:
        export(server, data)
    except grpc.RpcError as exc:
        return exc
    return None


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("held", "statement"),
    [
        ("feature_usage", "COPY feature_usage "),  # the outage comes in the middle of the COPY
        ("rollup_invalidations", "INSERT INTO rollup_invalidations "),  # after it, uncommitted
    ],
    ids=["mid-copy", "before-commit"],
)
def test_an_outage_mid_write_then_retries_store_exactly_once(
    make_server, db, pg_proxy, held, statement
):
    proxy, proxied_url = pg_proxy
    server = make_server(database_url=proxied_url)  # the direct path: the default
    first, first_ids = trace_request("outage", 10, start=SPAN_START)
    second, second_ids = trace_request("outage", 10, first=5, start=SPAN_START)  # 5 repeat
    export(server, first)

    outcome: list[grpc.RpcError | None] = []
    with writes_held(db, "SHARE", table=held):
        sender = threading.Thread(target=lambda: outcome.append(try_export(server, second)))
        sender.start()
        wait_for(
            lambda: any(q.startswith(statement) for q in waiting_statements(db)),
            f"the writer to wait in {statement.strip()}",
        )
        proxy.cut()
        sender.join(60)
    proxy.restore()
    [failure] = outcome
    assert failure is not None and failure.code() == grpc.StatusCode.UNAVAILABLE

    before = conflicts()
    wait_for(lambda: try_export(server, second) is None, "the retry to be acknowledged")
    export(server, first)  # a retry of a request that was stored before the outage
    assert stored_counts(db) == dict.fromkeys(first_ids + second_ids, 1)
    # The retry of the second request collided with the first's rows (5 of its 10), the
    # resent first request with everything: both took the fallback.
    assert conflicts() - before == 2
