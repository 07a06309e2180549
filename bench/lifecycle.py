"""``python -m bench.lifecycle``: the data lifecycle on PostgreSQL (SPEC §13), in one run.

1. ingest: the writer's real path (binary COPY into staging, INSERT … ON CONFLICT on the
   primary key) into day-partitioned tables, into unpartitioned copies with the same keys and
   indexes, and into day-partitioned tables with a BRIN index on timestamp, the order rotated
   round by round; rows/s and the PostgreSQL backend's CPU µs per row.
2. retention: ``--days`` days of ``--rows-per-day`` rows (generate_series inside PostgreSQL,
   indexes built after the load) in endpoint_usage, plus 2 kept days, in both databases;
   BRIN: the time-range reads of the rollup runner and the query API (one project) and a
   cross-project hour, with the btree indexes only and with BRIN added; then the expired
   days go by dropping partitions, against one DELETE on the unpartitioned table: time, WAL,
   table size afterwards.
3. logs levels: a day of logs, 40 % debug: dropping the debug leaf against batched deletes
   (5000 rows per transaction) inside an unsubdivided day: time, WAL, size afterwards.

Databases ``PREFIX_part``, ``PREFIX_plain`` and ``PREFIX_brin`` (``--db-prefix``, default
``bench_lc``) are (re)created. Results: stdout and ``--json``; bench/README.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import psycopg
from sqlalchemy import create_engine

from bench.limit import prebuilt_rows
from bench.workload import Workload
from processor.settings import RETENTION_DEFAULTS, parse_retention
from processor.storage import partitions
from processor.storage.migrate import upgrade
from processor.storage.retention import run_retention
from processor.storage.writer import PostgresBackend

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RAW = partitions.RAW_TABLES


def url_for(admin: str, name: str) -> str:
    return admin.rsplit("/", 1)[0] + "/" + name


def recreate(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = url_for(admin, name)
    upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
    return url


def unpartition(url: str) -> None:
    """The same tables, keys and indexes, without partitions."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in RAW:
            conn.execute(f"ALTER TABLE {table} RENAME TO {table}_part")
            conn.execute(f"ALTER TABLE {table}_part RENAME CONSTRAINT {table}_pkey TO {table}_pk0")
            defs = [
                r[0].replace(" ON ONLY ", " ON ").replace(f"{table}_part", table)
                for r in conn.execute(
                    "SELECT pg_get_indexdef(indexrelid) FROM pg_index"
                    " WHERE indrelid = %s::regclass AND NOT indisprimary",
                    (f"{table}_part",),
                )
            ]
            conn.execute(f"CREATE TABLE {table} (LIKE {table}_part INCLUDING DEFAULTS)")
            conn.execute(f"DROP TABLE {table}_part")
            key = (
                "project_id, timestamp, level, id"
                if table == "logs"
                else "project_id, timestamp, id"
            )
            conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({key})")
            for statement in defs:
                conn.execute(statement)


def backend_cpu(conn: psycopg.Connection[Any]) -> float:
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


# --- 1. ingest -------------------------------------------------------------------------------


def ingest_round(url: str, batches: list[dict[str, list[tuple]]]) -> tuple[float, float, int]:
    """(rows/s, backend CPU µs per row, rows) for inserting ``batches`` through the writer."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1)
    backend = PostgresBackend(direct=False)  # the staged path, as the figures were measured
    rows = sum(len(r) for b in batches for r in b.values())
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cpu0, t0 = backend_cpu(raw), time.perf_counter()
        for batch in batches:
            with conn.begin():
                for table, table_rows in batch.items():
                    backend.insert(conn, table, table_rows)
        elapsed = time.perf_counter() - t0
        cpu = backend_cpu(raw) - cpu0
    engine.dispose()
    return rows / elapsed, cpu / rows * 1e6, rows


def fresh_batches(
    templates: list[dict[str, list[tuple]]], count: int
) -> list[dict[str, list[tuple]]]:
    """``count`` group-commit batches of router rows with fresh ids and today's timestamps."""
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        template = templates[i % len(templates)]
        out.append(
            {
                table: [
                    (str(uuid.uuid4()), row[1], now - timedelta(seconds=n % 3600), *row[3:])
                    for n, row in enumerate(rows)
                ]
                for table, rows in template.items()
            }
        )
    return out


def bench_ingest(variants: dict[str, str], rounds: int, batches: int) -> dict[str, Any]:
    """Each round inserts ``batches`` fresh group commits into every variant, the order rotated
    round by round (A B C, B C A, …) so drift in the machine's load hits all alike."""
    traces, logs = prebuilt_rows(Workload(templates=8))
    templates = [*traces, *traces, *traces, *logs[:2]]  # about 10 % logs, as in make bench
    names = list(variants)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    rows = 0
    for n in range(rounds):
        for name in names[n % len(names) :] + names[: n % len(names)]:
            rate, cpu, rows = ingest_round(variants[name], fresh_batches(templates, batches))
            results[name].append((rate, cpu))
            print(f"  ingest round {n + 1} {name}: {rate:,.0f} rows/s, {cpu:.1f} µs CPU/row")
    summary: dict[str, Any] = {
        name: {
            "rows_per_s": statistics.median(r for r, _ in values),
            "cpu_us_per_row": statistics.median(c for _, c in values),
            "rounds": [{"rows_per_s": r, "cpu_us_per_row": c} for r, c in values],
        }
        for name, values in results.items()
    }
    base = names[0]
    for name in names[1:]:
        pairs = [a[0] / b[0] for a, b in zip(results[name], results[base], strict=True)]
        cpu_pairs = [a[1] / b[1] for a, b in zip(results[name], results[base], strict=True)]
        summary[f"{name}/{base}"] = {
            "ratio_of_medians": summary[name]["rows_per_s"] / summary[base]["rows_per_s"],
            "median_round_ratio": statistics.median(pairs),
            "median_round_cpu_ratio": statistics.median(cpu_pairs),
        }
    summary["rows_per_round"] = rows
    return summary


# --- 2. retention ----------------------------------------------------------------------------

GENERATE = """
INSERT INTO endpoint_usage (id, project_id, timestamp, endpoint, method, user_id, status_code,
                            duration_ms, service_name, event_metadata)
SELECT gen_random_uuid(), 1 + (g %% 3), %(start)s::timestamptz + (g::bigint * %(step)s) * interval '1 microsecond',
       '/api/items/{id}', 'GET', md5((g %% 20000)::text)::varchar(16), 200 + (g %% 5),
       (g %% 1000) / 10.0, 'shop', '{"k": 1}'::jsonb
FROM generate_series(0, %(rows)s - 1) AS g
"""


def size(conn: psycopg.Connection[Any], table: str) -> int:
    """Heap, TOAST and indexes of the table, or of all its partitions."""
    return int(
        conn.execute(
            "SELECT CASE WHEN relkind = 'p' THEN (SELECT sum(pg_total_relation_size(relid))"
            " FROM pg_partition_tree(oid)) ELSE pg_total_relation_size(oid) END"
            " FROM pg_class WHERE oid = %s::regclass",
            (table,),
        ).fetchone()[0]  # type: ignore[index]
    )


def wal(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])  # type: ignore[index]


def without_indexes(conn: psycopg.Connection[Any], table: str, fill: Callable[[], Any]) -> None:
    """Run ``fill`` with the table's primary key and indexes dropped, then build them again
    (one sorted build per index instead of 30 million index insertions: same indexes after)."""
    indexes = [
        r[0].replace(" ON ONLY ", " ON ")
        for r in conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = %s::regclass AND NOT indisprimary",
            (table,),
        )
    ]
    names = [
        r[0]
        for r in conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index"
            " WHERE indrelid = %s::regclass AND NOT indisprimary",
            (table,),
        )
    ]
    key = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'p'",
        (table,),
    ).fetchone()
    assert key is not None
    for name in names:
        conn.execute(f"DROP INDEX {name}")
    conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {key[0]}")
    fill()
    conn.execute("SET maintenance_work_mem = '512MB'")
    conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {key[0]} {key[1]}")
    for statement in indexes:
        conn.execute(statement)


def load_days(url: str, days: int, per_day: int, today: datetime) -> None:
    step = int(86_400_000_000 / per_day)

    def fill() -> None:
        for n in range(days + 2):
            start = today - timedelta(days=days + 1 - n)
            conn.execute(GENERATE, {"start": start, "step": step, "rows": per_day})  # type: ignore[arg-type]

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE endpoint_usage")
        without_indexes(conn, "endpoint_usage", fill)
        conn.execute("VACUUM ANALYZE endpoint_usage")


def measure(url: str, action: Callable[[], Any]) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        before_size, before_wal = size(conn, "endpoint_usage"), wal(conn)
        t0 = time.perf_counter()
        action()
        elapsed = time.perf_counter() - t0
        after_wal = wal(conn)
        conn.execute("VACUUM endpoint_usage")
        after_size = size(conn, "endpoint_usage")
    return {
        "seconds": elapsed,
        "wal_mb": (after_wal - before_wal) / 2**20,
        "size_before_mb": before_size / 2**20,
        "size_after_vacuum_mb": after_size / 2**20,
    }


def bench_retention(
    part: str, plain: str, days: int, per_day: int, brin_repeats: int
) -> dict[str, Any]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    engine = create_engine(part.replace("postgresql://", "postgresql+psycopg://", 1))
    for n in range(days + 2):
        partitions.create_day(
            engine, "endpoint_usage", (today - timedelta(days=days + 1 - n)).date()
        )
    for url in (part, plain):
        t0 = time.perf_counter()
        load_days(url, days, per_day, today)
        print(f"  loaded {(days + 2) * per_day:,} rows in {time.perf_counter() - t0:.0f} s")
    out: dict[str, Any] = {"days": days, "rows_per_day": per_day}
    if brin_repeats:
        out["brin"] = bench_brin(part, today, brin_repeats)
    policy = parse_retention("endpoint_usage=1d")  # keeps yesterday and today
    out["drop_partitions"] = measure(
        part, lambda: run_retention(engine, {**RETENTION_DEFAULTS, **policy})
    )
    engine.dispose()
    cutoff = today - timedelta(days=1)

    def delete() -> None:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute("DELETE FROM endpoint_usage WHERE timestamp < %s", (cutoff,))

    out["delete"] = measure(plain, delete)
    print(f"  retention: {json.dumps({k: out[k] for k in ('drop_partitions', 'delete')})}")
    return out


# --- 3. per-level logs, 4. BRIN ----------------------------------------------------------------

LOGS = """
INSERT INTO logs (id, project_id, timestamp, level, type, message, service_name, metadata)
SELECT gen_random_uuid(), 1, %(start)s::timestamptz + (g * 86400.0 / %(rows)s) * interval '1 second',
       CASE WHEN g %% 10 < 4 THEN 'debug' WHEN g %% 10 < 9 THEN 'info' ELSE 'error' END,
       'general', 'request handled in ' || (g %% 500) || ' ms', 'shop', '{"k": 1}'::jsonb
FROM generate_series(0, %(rows)s - 1) AS g
"""


def bench_levels(part: str, plain: str, rows: int) -> dict[str, Any]:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=8)
    engine = create_engine(part.replace("postgresql://", "postgresql+psycopg://", 1))
    partitions.create_day(engine, "logs", day.date())
    engine.dispose()
    out = {}
    for name, url in (("drop_leaf", part), ("batched_delete", plain)):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE logs")
            conn.execute(LOGS, {"start": day, "rows": rows})  # type: ignore[arg-type]
            conn.execute("VACUUM ANALYZE logs")
            before_size, before_wal, t0 = size(conn, "logs"), wal(conn), time.perf_counter()
            if name == "drop_leaf":
                conn.execute(f"DROP TABLE {partitions.partition_name('logs', day.date())}_debug")
            else:
                while True:
                    done = conn.execute(
                        "DELETE FROM logs WHERE ctid IN (SELECT ctid FROM logs"
                        " WHERE level = 'debug' LIMIT 5000)"
                    ).rowcount
                    if done < 5000:
                        break
            elapsed, after_wal = time.perf_counter() - t0, wal(conn)
            conn.execute("VACUUM logs")
            out[name] = {
                "seconds": elapsed,
                "wal_mb": (after_wal - before_wal) / 2**20,
                "size_before_mb": before_size / 2**20,
                "size_after_vacuum_mb": size(conn, "logs") / 2**20,
            }
    return out


BRIN_INDEXES = {table: f"ix_{table}_timestamp_brin" for table in RAW}


def set_brin(url: str, on: bool) -> None:
    """Give every raw table a BRIN index on timestamp (as migration 0008 does), or none."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table, name in BRIN_INDEXES.items():
            if on:
                conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING brin (timestamp)")
            else:
                conn.execute(f"DROP INDEX IF EXISTS {name}")


# What reads raw rows by time: the rollup runner (one project, one dirty hour, as
# analytics/endpoints.py), the query API's raw reads (one project, a range), and a
# cross-project scan (nothing in the product runs one; an analyst's SQL might).
_TOTALS = """SELECT service_name, endpoint, method, count(*), sum(duration_ms),
    min(duration_ms), max(duration_ms), count(DISTINCT user_id)
    FROM endpoint_usage WHERE {where} GROUP BY 1, 2, 3"""
BRIN_QUERIES = {
    "rollup hour, one project": (1, "project_id = 1"),
    "6 hours, one project": (6, "project_id = 1"),
    "7 days, one project": (7 * 24, "project_id = 1"),
    "one hour, all projects": (1, "TRUE"),
}


def bench_brin(url: str, today: datetime, repeats: int) -> dict[str, Any]:
    """Each query of BRIN_QUERIES with the btree indexes only and with BRIN added, alternated;
    the ranges end at 11:00 eight days back, inside the loaded days."""
    end = today - timedelta(days=8) + timedelta(hours=11)
    out: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for on in (False, True):
            set_brin(url, on)
            conn.execute("ANALYZE endpoint_usage")
            variant = "btree+brin" if on else "btree"
            for name, (hours, scope) in BRIN_QUERIES.items():
                where = f"{scope} AND timestamp >= %(lo)s AND timestamp < %(hi)s"
                query = _TOTALS.format(where=where)
                params = {"lo": end - timedelta(hours=hours), "hi": end}
                timings = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    conn.execute(query, params).fetchall()  # type: ignore[arg-type]
                    timings.append((time.perf_counter() - t0) * 1000)
                plan = conn.execute("EXPLAIN " + query, params).fetchall()  # type: ignore[arg-type]
                nodes = [r[0].strip() for r in plan if "Scan" in r[0]]
                out.setdefault(name, {})[variant] = {
                    "median_ms": statistics.median(timings),
                    "plan": nodes[0][:120] if nodes else "",
                }
                print(f"  {name} [{variant}]: {statistics.median(timings):.1f} ms  {nodes[:1]}")
        out["brin_size_kb"] = (
            conn.execute(
                "SELECT coalesce(sum(pg_relation_size(relid)), 0) FROM"
                " pg_partition_tree(%s::regclass)",
                (BRIN_INDEXES["endpoint_usage"],),
            ).fetchone()[0]  # type: ignore[index]
            / 1024
        )
        out["btree_size_kb"] = (
            conn.execute(
                "SELECT coalesce(sum(pg_relation_size(relid)), 0) FROM"
                " pg_partition_tree('ix_endpoint_usage_project_time'::regclass)"
            ).fetchone()[0]  # type: ignore[index]
            / 1024
        )
    set_brin(url, False)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__)
    p.add_argument("--admin-url", default=ADMIN)
    p.add_argument("--db-prefix", default="bench_lc", help="databases PREFIX_part, _plain, _brin")
    p.add_argument("--rounds", type=int, default=15, help="ingest rounds per variant")
    p.add_argument("--batches", type=int, default=120, help="group commits per ingest round")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--rows-per-day", type=int, default=1_000_000)
    p.add_argument("--log-rows", type=int, default=1_000_000)
    p.add_argument("--brin-repeats", type=int, default=9, help="runs of each BRIN query")
    p.add_argument(
        "--skip", action="append", default=[], choices=["ingest", "retention", "levels", "brin"]
    )
    p.add_argument("--json")
    args = p.parse_args(argv)
    part = recreate(args.admin_url, f"{args.db_prefix}_part")
    plain = recreate(args.admin_url, f"{args.db_prefix}_plain")
    unpartition(plain)
    set_brin(part, False)
    set_brin(plain, False)
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat()}
    if "ingest" not in args.skip:
        print("ingest (writer path; partitioned, unpartitioned, partitioned with BRIN):")
        variants = {"partitioned": part, "unpartitioned": plain}
        if "brin" not in args.skip:
            variants["partitioned+brin"] = recreate(args.admin_url, f"{args.db_prefix}_brin")
            set_brin(variants["partitioned+brin"], True)
        results["ingest"] = bench_ingest(variants, args.rounds, args.batches)
    if "retention" not in args.skip:
        print(f"retention ({args.days} days x {args.rows_per_day:,} rows):")
        repeats = 0 if "brin" in args.skip else args.brin_repeats
        results["retention"] = bench_retention(part, plain, args.days, args.rows_per_day, repeats)
    if "levels" not in args.skip:
        print(f"logs per level ({args.log_rows:,} rows, 40 % debug):")
        results["levels"] = bench_levels(part, plain, args.log_rows)
    print(json.dumps(results, indent=2, default=str))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
