"""``python -m bench.rollups``: what the rollup runner costs and how fast its answers are.

1. Ingest throughput on PostgreSQL with the runner off and on, alternating in one run
   (closed loop, the same load generator as ``make bench``); the runner gets a short
   interval so it works throughout the measured window. Rollup lag (age of the oldest
   unclaimed invalidation marker) is sampled every second while it runs.
2. ``telemetry-processor rollup --rebuild`` over 10 million raw rows spread over 90 days,
   generated inside PostgreSQL (generate_series), not through the server.
3. "percentiles of one endpoint over 90 days" (``analytics.query.endpoint_percentiles``)
   against those rollups: median and p95 over repeated calls.

The machine is shared, so every figure is a median of ``--repeat`` runs. Results are printed
as Markdown for bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.run import (
    drive,
    ensure_database,
    free_port,
    libpq,
    migrate,
    processor_env,
    server_process,
)
from bench.workload import Workload

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/tp_bench_rollups"
# Event times follow the clock (templates rebuilt every 10 s), as a live service's do: a
# round then finds its new rows in the last minute or two, not all in one.
REFRESH = 10.0


ROLLUP_TABLES = (
    "rollup_invalidations", "endpoint_stats", "endpoint_day_users", "endpoint_hour_users",
    "metric_aggregates", "feature_usage_daily", "feature_hour_parts", "feature_day_users",
    "user_activity_daily", "user_hour_parts", "user_day_sessions", "dashboard_metrics",
    "sessions", "session_hours",
)  # fmt: skip


def truncate_rollups(url: str) -> None:
    """Empty the rollup tables there are (an older revision, measured for a before/after
    comparison, lacks the newer ones)."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        there = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        conn.execute(f"TRUNCATE {', '.join(t for t in ROLLUP_TABLES if t in there)}")


class LagSampler(threading.Thread):
    """Seconds since the oldest marker still waiting for a round, once a second."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(libpq(self.url), autocommit=True) as conn:
            while not self.stop.wait(1.0):
                age = conn.execute(
                    "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)"
                    " FROM rollup_invalidations"
                ).fetchone()
                self.samples.append(float(age[0]) if age else 0.0)


def throughput(url: str, *, runner: bool, interval: float, duration: float) -> tuple[float, float]:
    """Committed items per second, and the largest rollup lag seen (0 without a runner)."""
    port, http_port = free_port(), free_port()
    env = processor_env(url, port, http_port)
    env["LOG_LEVEL"] = "WARNING"
    env["ROLLUP_INTERVAL_SECONDS"] = str(interval if runner else 0)
    truncate_rollups(url)
    command = [sys.executable, "-m", "processor", "serve", "--no-migrate"]
    log = Path(tempfile.gettempdir()) / f"bench-rollups-{'on' if runner else 'off'}.log"
    with server_process(command, env, port, log):
        sampler = LagSampler(url)
        if runner:
            sampler.start()
        result, counts, _ = asyncio.run(
            drive(f"127.0.0.1:{port}", Workload(refresh_seconds=REFRESH), concurrency=16,
                  duration=duration, warmup=3, url=url)
        )  # fmt: skip
        sampler.stop.set()
    del result
    return sum(counts.values()) / duration, max(sampler.samples, default=0.0)


GENERATE = """
INSERT INTO endpoint_usage (id, project_id, timestamp, endpoint, method, user_id, session_id,
    status_code, duration_ms, service_name, event_metadata, span_status)
SELECT gen_random_uuid(), 1, %(end)s - random() * interval '90 days', '/e' || (i %% 20), 'GET',
    substr(md5((i %% 5000)::text), 1, 16), substr(md5((i %% 20000)::text), 1, 16),
    CASE WHEN i %% 50 = 0 THEN 503 WHEN i %% 20 = 0 THEN 404 ELSE 200 END,
    round((exp(random() * 7))::numeric, 3), 'shop', '{}', 'unset'
FROM generate_series(1, %(endpoint)s) i;
INSERT INTO feature_usage (id, project_id, timestamp, feature_name, action, user_id, session_id,
    duration_ms, service_name, event_metadata, span_status)
SELECT gen_random_uuid(), 1, %(end)s - random() * interval '90 days', 'f' || (i %% 10), 'used',
    substr(md5((i %% 5000)::text), 1, 16), substr(md5((i %% 20000)::text), 1, 16),
    random() * 100, 'shop', '{}', CASE WHEN i %% 30 = 0 THEN 'error' ELSE 'ok' END
FROM generate_series(1, %(feature)s) i;
INSERT INTO performance_metrics (id, project_id, timestamp, metric_type, value, unit, user_id,
    service_name, metadata)
SELECT gen_random_uuid(), 1, %(end)s - random() * interval '90 days', 'startup_time',
    exp(random() * 8), 'ms', substr(md5((i %% 5000)::text), 1, 16), 'shop', '{}'
FROM generate_series(1, %(metric)s) i;
"""


def generate(url: str, rows: int, end: datetime) -> float:
    started = time.perf_counter()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(
            "TRUNCATE endpoint_usage, feature_usage, user_activity, performance_metrics, logs"
        )
        truncate_rollups(url)
        for statement in GENERATE.split(";")[:-1]:
            conn.execute(
                statement,
            {"end": end, "endpoint": rows * 7 // 10, "feature": rows * 15 // 100,
                 "metric": rows * 15 // 100},
            )  # fmt: skip
        conn.execute("VACUUM ANALYZE endpoint_usage, feature_usage, performance_metrics")
    return time.perf_counter() - started


def rebuild(url: str) -> float:
    env = {**os.environ, "ANALYTICS_DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "processor", "rollup", "--rebuild"], env=env, check=True)
    return time.perf_counter() - started


def query_latency(url: str, end: datetime, calls: int) -> tuple[float, float]:
    from processor.analytics.query import endpoint_percentiles
    from processor.settings import Settings
    from processor.storage.writer import create_db_engine

    engine = create_db_engine(Settings(database_url=url).sqlalchemy_url)
    timings = []
    with engine.connect() as conn:
        for i in range(calls):
            # A fresh range each call (whole days inside, hours at both ends).
            stop = end - timedelta(minutes=7 * i)
            started = time.perf_counter()
            answer = endpoint_percentiles(conn, 1, f"/e{i % 20}", stop - timedelta(days=90), stop)
            timings.append(time.perf_counter() - started)
            assert answer["count"] > 0
    engine.dispose()
    timings.sort()
    return statistics.median(timings) * 1000, timings[int(0.95 * (len(timings) - 1))] * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default=os.environ.get("BENCH_ROLLUP_URL", DEFAULT_URL))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--interval", type=float, default=5.0, help="runner interval while measured")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--rebuilds", type=int, default=2, help="rebuilds timed (each takes minutes)")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--ingest-only", action="store_true", help="only the runner-on/off phases")
    args = p.parse_args()
    ensure_database(args.url)
    migrate(args.url)

    off, on, lag = [], [], []
    for _ in range(args.repeat):
        off.append(
            throughput(args.url, runner=False, interval=args.interval, duration=args.duration)[0]
        )
        rate, worst = throughput(
            args.url, runner=True, interval=args.interval, duration=args.duration
        )
        on.append(rate)
        lag.append(worst)
    if not args.ingest_only:
        end = datetime.now(UTC)
        made = generate(args.url, args.rows, end)
        rebuilds = [rebuild(args.url) for _ in range(args.rebuilds)]
        queries = [query_latency(args.url, end, args.calls) for _ in range(args.repeat)]

    med = statistics.median
    print(f"| figure | median of {args.repeat} | target |")
    print("|---|---|---|")
    print(f"| ingest, runner off (items/s) | {med(off):,.0f} | |")
    print(f"| ingest, runner on every {args.interval:g} s (items/s) | {med(on):,.0f} | |")
    print(f"| on / off | {med(on) / med(off):.1%} | ≥ 90 % |")
    print(
        f"| worst rollup lag while ingesting at max rate (s) | {med(lag):.1f} | < {2 * args.interval:g} (two intervals) |"
    )
    if args.ingest_only:
        return
    print(f"| generating {args.rows:,} raw rows in PostgreSQL (s) | {made:.0f} | |")
    print(
        f"| `rollup --rebuild` over them (s; median of {args.rebuilds}) | {med(rebuilds):.1f} | |"
    )
    print(
        f"| one endpoint's percentiles over 90 days, median (ms) | {med(q[0] for q in queries):.1f} | |"
    )
    print(
        f"| one endpoint's percentiles over 90 days, p95 (ms) | {med(q[1] for q in queries):.1f} | < 50 |"
    )


if __name__ == "__main__":
    main()
