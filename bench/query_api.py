"""``python -m bench.query_api``: how fast the query API answers on PostgreSQL.

1. Generates, inside PostgreSQL (generate_series) in a dedicated database, ``--rows`` raw
   ``endpoint_usage`` rows (default 10 million) over the last ``--days`` (30), a tenth as many
   ``performance_metrics`` rows, and ``--logs`` log records; then one
   ``telemetry-processor rollup --rebuild``.
2. Times, over the whole range, the performance overview and the endpoint stats through
   ``RollupReader`` (what the server answers with) and the same computed by ``RawReader``
   from the raw rows (the reference; fewer calls, it is slow); and the log filter's page
   1,000 (page_size 50) reached by its keyset cursor.

Results are printed as Markdown for bench/README.md. ``--skip-generate`` reuses the data.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.rollups import rebuild
from bench.run import ensure_database, libpq, migrate
from processor.api import logs
from processor.api.raw_reader import RawReader
from processor.api.readers import Period
from processor.api.rollup_reader import RollupReader
from processor.settings import Settings
from processor.storage import partitions
from processor.storage.writer import create_db_engine

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/tp_bench_query_api"
PAGE, PAGE_SIZE = 1000, 50

# Traffic in visits of VISIT_EVENTS requests by one of USERS users within VISIT (30 minutes),
# at a pseudo-random instant of the range (hashint8 of the visit number, so a visit's rows
# agree across statements). A visit is a client session, except every LONG_EVERY-th visit,
# which reuses its user's one long-lived session id (an app that keeps its session for days):
# those ids span the whole range, as real clients' can.
USERS, VISIT_EVENTS, VISIT, LONG_EVERY = 5000, 20, 1800, 50
ENDPOINT_ROWS = f"""
INSERT INTO endpoint_usage (id, project_id, timestamp, endpoint, method, user_id, session_id,
    status_code, duration_ms, service_name, event_metadata, span_status)
SELECT gen_random_uuid(), 1, v.start + random() * interval '1800 seconds',
    '/e' || (i %% 20), 'GET', substr(md5(v.u::text), 1, 16),
    CASE WHEN v.n %% {LONG_EVERY} = 0 THEN substr(md5('long' || v.u), 1, 16)
        ELSE substr(md5('visit' || v.n), 1, 16) END,
    CASE WHEN i %% 50 = 0 THEN 503 WHEN i %% 20 = 0 THEN 404 ELSE 200 END,
    round((exp(random() * 7))::numeric, 3), 'shop', '{{}}',
    CASE WHEN i %% 70 = 0 THEN 'error' ELSE 'unset' END
FROM generate_series(%(first)s::bigint, %(last)s::bigint) i,
LATERAL (SELECT i / {VISIT_EVENTS} AS n) n,
LATERAL (SELECT n.n, (hashint8(n.n + 1000000000) & 2147483647) %% {USERS} AS u,
    %(end)s - interval '{VISIT} seconds' - (hashint8(n.n) & 2147483647) / 2147483648.0
        * (%(days)s * 86400 - {VISIT}) * interval '1 second' AS start) v
"""
METRIC_ROWS = """
INSERT INTO performance_metrics (id, project_id, timestamp, metric_type, value, unit, user_id,
    service_name, metadata)
SELECT gen_random_uuid(), 1, %(end)s - random() * %(days)s * interval '1 day',
    CASE WHEN i %% 3 = 0 THEN 'fps' ELSE 'startup_time' END,
    exp(random() * 8), 'ms', substr(md5((i %% 5000)::text), 1, 16), 'shop', '{}'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) i
"""
LOG_ROWS = """
INSERT INTO logs (id, project_id, timestamp, level, type, message, service_name, metadata)
SELECT gen_random_uuid(), 1, %(end)s - random() * %(days)s * interval '1 day',
    CASE WHEN i %% 10 < 4 THEN 'debug' WHEN i %% 10 < 9 THEN 'info' ELSE 'error' END,
    'general', 'request handled in ' || (i %% 500) || ' ms', 'shop', '{"k": 1}'::jsonb
FROM generate_series(%(first)s::bigint, %(last)s::bigint) i
"""
GENERATED = ("endpoint_usage", "performance_metrics", "logs")


def _secondary_indexes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(name, definition) of the generated tables' non-unique indexes, on the parents."""
    found = conn.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_index x"
        " ON x.indexrelid = to_regclass(i.schemaname || '.' || i.indexname)"
        " WHERE i.tablename = ANY(%s) AND NOT x.indisunique",
        (list(GENERATED),),
    ).fetchall()
    return [(name, definition.replace(" ON ONLY ", " ON ")) for name, definition in found]


def _insert(url: str, statement: str, params: dict[str, Any], first: int, last: int) -> None:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(statement, {**params, "first": first, "last": last})


def generate(url: str, rows: int, log_rows: int, days: int, end: datetime, jobs: int) -> float:
    """Fill the tables; seconds taken. The days' partitions are made first (rows routed
    straight to their day, none through DEFAULT), the secondary indexes are dropped during
    the INSERTs and rebuilt after, and each table's rows come from ``jobs`` parallel INSERTs."""
    started = time.perf_counter()
    engine = create_db_engine(Settings(database_url=url).sqlalchemy_url)
    first_day = (end - timedelta(days=days)).date()
    for offset in range((end.date() - first_day).days + 1):
        for table in GENERATED:
            partitions.create_day(engine, table, first_day + timedelta(days=offset))
    engine.dispose()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(
            "TRUNCATE endpoint_usage, feature_usage, user_activity, performance_metrics, logs,"
            " rollup_invalidations, endpoint_stats, endpoint_day_users, metric_aggregates,"
            " feature_usage_daily, user_activity_daily, dashboard_metrics, sessions"
            + (", session_hours" if _has(conn, "session_hours") else "")
        )
        indexes = _secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
    try:
        params = {"end": end, "days": days}
        with ThreadPoolExecutor(jobs) as pool:
            waits = []
            for statement, count in (
                (ENDPOINT_ROWS, rows),
                (METRIC_ROWS, rows // 10),
                (LOG_ROWS, log_rows),
            ):
                # Slices of whole visits, so a visit's rows come from one statement.
                share = -(-count // jobs // VISIT_EVENTS) * VISIT_EVENTS
                for lo in range(0, count, share):
                    hi = min(count, lo + share) - 1
                    waits.append(pool.submit(_insert, url, statement, params, lo, hi))
            for wait in waits:
                wait.result()
    finally:  # the indexes come back even when an INSERT fails
        loaded = time.perf_counter() - started
        with ThreadPoolExecutor(jobs) as pool:
            for wait in [pool.submit(_create_index, url, d) for _, d in indexes]:
                wait.result()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE endpoint_usage, performance_metrics, logs")
    took = time.perf_counter() - started
    print(f"rows inserted in {loaded:.0f} s, indexes and VACUUM ANALYZE {took - loaded:.0f} s")
    return took


def _has(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() != (None,)


def _create_index(url: str, definition: str) -> None:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(definition)


def timed(fn: Callable[[], Any], calls: int) -> dict[str, float]:
    fn()  # warm the caches and the connection pool
    took = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    p95 = took[min(len(took) - 1, round(0.95 * (len(took) - 1)))]
    return {"calls": calls, "median": statistics.median(took), "p95": p95}


def page_cursor(url: str, page: int, size: int) -> logs.Cursor:
    """The cursor a client holds after reading pages 1 … page-1, newest first (with the
    total page 1 counted, as every next_cursor carries it)."""
    with psycopg.connect(libpq(url)) as conn:
        total = conn.execute("SELECT count(*) FROM logs WHERE project_id = 1").fetchone()
        found = conn.execute(
            "SELECT timestamp, id FROM logs WHERE project_id = 1"
            " ORDER BY timestamp DESC, id DESC OFFSET %s LIMIT 1",
            ((page - 1) * size - 1,),
        ).fetchone()
    assert found is not None and total is not None, "not enough logs for that page"
    return logs.Cursor(found[0].astimezone(UTC), found[1], total[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--logs", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--raw-calls", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="parallel INSERTs per table")
    parser.add_argument("--skip-rebuild", action="store_true", help="generate only")
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument(
        "--rebuild", action="store_true", help="with --skip-generate: migrate and rebuild first"
    )
    args = parser.parse_args()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    if not args.skip_generate:
        ensure_database(args.url)
        migrate(args.url)
        print(
            f"generated in {generate(args.url, args.rows, args.logs, args.days, end, args.jobs):.0f} s"
        )
    if args.skip_rebuild:
        return
    if not args.skip_generate or args.rebuild:
        migrate(args.url)
        print(f"rollup --rebuild in {rebuild(args.url):.0f} s", flush=True)
    engine = create_db_engine(Settings(database_url=args.url).sqlalchemy_url)
    with engine.connect() as conn:
        (raw_rows,) = conn.exec_driver_sql("SELECT count(*) FROM endpoint_usage").one()
        (first, last) = conn.exec_driver_sql(
            "SELECT min(timestamp), max(timestamp) FROM endpoint_usage"
        ).one()
    # The whole data set, in whole hours (the rollups' buckets), so both readers agree.
    period = Period(
        first.astimezone(UTC).replace(minute=0, second=0, microsecond=0),
        last.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1),
    )
    rollup, raw = RollupReader(engine), RawReader(engine)
    cursor = page_cursor(args.url, PAGE, PAGE_SIZE)
    newest = logs.LogFilter(project_id=1)
    rows = [
        ("overview", "RollupReader", timed(lambda: rollup.performance_overview(1, period, None), args.calls)),
        ("endpoint stats", "RollupReader", timed(lambda: rollup.endpoint_stats(1, period, None, "requests", 100), args.calls)),
        ("exact distinct users per endpoint from raw rows (the answer's former path)", "RollupReader", timed(
            lambda: rollup._distinct_endpoint_users(1, period), args.raw_calls)),
        ("overview", "RawReader (reference)", timed(lambda: raw.performance_overview(1, period, None), args.raw_calls)),
        ("endpoint stats", "RawReader (reference)", timed(lambda: raw.endpoint_stats(1, period, None, "requests", 100), args.raw_calls)),
        (f"logs filter, page {PAGE:,} via cursor", "raw logs, keyset", timed(
            lambda: logs.fetch_page(engine, newest, page=PAGE, page_size=PAGE_SIZE,
                                    sort_by="timestamp", sort_order="desc", cursor=cursor),
            args.calls)),
    ]  # fmt: skip
    engine.dispose()
    days = (period.end - period.start).total_seconds() / 86400
    print(
        f"\n{raw_rows:,} endpoint_usage rows over {days:.1f} days, {args.rows // 10:,}"
        f" performance_metrics rows, {args.logs:,} logs\n"
    )
    print("| query | reader | calls | median ms | p95 ms |")
    print("|---|---|---|---|---|")
    for name, reader, t in rows:
        print(f"| {name} | {reader} | {t['calls']:.0f} | {t['median']:.1f} | {t['p95']:.1f} |")


if __name__ == "__main__":
    main()
