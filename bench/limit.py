"""LIMIT — raw psycopg ``COPY`` of pre-built rows straight into the analytics tables.

The rows are the ones the processor's router makes from the same workload, built before the
clock starts. Each copied batch gets fresh ids (a counter in the first 8 hex digits of the
id), so nothing conflicts. No gRPC, no decoding, no routing, no staging table, no
``ON CONFLICT``: what PostgreSQL on this machine can ingest through a client.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil
import psycopg

from bench.workload import Workload
from processor.ingest.pipeline import Signal, decode
from processor.mapping import RouteContext, route_logs, route_traces
from processor.mapping.privacy import make_hasher
from processor.storage.writer import COLUMNS

Rows = dict[str, list[tuple]]


def prebuilt_rows(workload: Workload) -> tuple[list[Rows], list[Rows]]:
    """The router's rows for every template of the workload (trace and log templates)."""
    ctx = RouteContext(hasher=make_hasher())
    traces = [route_traces(decode(Signal.TRACES, t.render(0)), ctx).rows for t in workload.traces]
    logs = [route_logs(decode(Signal.LOGS, t.render(0)), ctx).rows for t in workload.logs]
    strip = lambda rows: {k: v for k, v in rows.items() if v}  # noqa: E731
    return [strip(r) for r in traces], [strip(r) for r in logs]


@dataclass
class LimitResult:
    elapsed: float
    transactions: int
    backend_cpu: float  # CPU seconds of the COPY connections' PostgreSQL backends


def copy_limit(
    conninfo: str,
    workload: Workload,
    duration: float,
    *,
    connections: int = 2,
    requests_per_transaction: int = 8,
) -> LimitResult:
    """COPY batches from ``connections`` threads for ``duration`` seconds, one commit each."""
    traces, logs = prebuilt_rows(workload)
    lock = threading.Lock()
    counter = [0]
    transactions = [0]
    statements = {
        table: "COPY {} ({}) FROM STDIN".format(table, ", ".join(f'"{c}"' for c in cols))
        for table, cols in COLUMNS.items()
    }

    def next_batch() -> Rows:
        batch: Rows = {}
        with lock:
            for _ in range(requests_per_transaction):
                counter[0] += 1
                n = counter[0]
                pool = logs if workload.next_kind() == "logs" else traces
                for table, rows in pool[n % len(pool)].items():
                    prefix = f"{n:08x}"
                    batch.setdefault(table, []).extend(
                        (prefix + row[0][8:], *row[1:]) for row in rows
                    )
        return batch

    deadline = time.perf_counter() + duration
    errors: list[BaseException] = []

    backend_cpu: list[float] = []

    def worker() -> None:
        try:
            with psycopg.connect(conninfo) as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
                backend = psutil.Process(row[0]) if row else None
                before = sum(backend.cpu_times()[:2]) if backend else 0.0
                while time.perf_counter() < deadline:
                    batch = next_batch()
                    with conn.transaction(), conn.cursor() as cur:
                        for table, rows in batch.items():
                            with cur.copy(statements[table]) as copy:
                                for row in rows:
                                    copy.write_row(row)
                    with lock:
                        transactions[0] += 1
                if backend:
                    backend_cpu.append(sum(backend.cpu_times()[:2]) - before)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return LimitResult(time.perf_counter() - started, transactions[0], sum(backend_cpu))
