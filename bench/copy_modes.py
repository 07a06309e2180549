"""``python -m bench.copy_modes``: the PostgreSQL writer's two paths, in one run.

- **staged**: ``WRITER_DIRECT_COPY=false`` — binary COPY into a per-connection temporary table,
  then ``INSERT … SELECT … ON CONFLICT DO NOTHING`` into the day-partitioned table;
- **direct**: the default — binary COPY straight into the table inside a savepoint, falling
  back to the staged path for a table whose rows collide.

Both at retry rates of 0 %, 1 % and 10 % (``--rates``): that share of the requests is a resend
of a request committed earlier in the phase (same rows, same ids), as a client resends after a
lost acknowledgement. Each transaction is one group commit of ``--requests`` router-made
requests of 512 items (the bench workload, ~10 % logs), written through the real
``SqlWriter`` (one flusher, one connection). Per phase: offered rows per second, CPU µs per
offered row of the writer connection's PostgreSQL backend, of the whole PostgreSQL cluster
(every process under the postmaster: other databases' work too when the machine is shared),
and of this process (the client: building the COPY data). Phases are interleaved round by
round; the tables show medians over ``--rounds``, and the direct/staged ratio is the median of
the per-round ratios at the same retry rate. Every phase checks that each distinct row is
stored exactly once (``LOST`` / ``DUPLICATED`` otherwise, exit status 1).

The database (``--database``, default ``directcopy_bench``) is dropped and re-created.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil
import psycopg
from prometheus_client import REGISTRY

from bench.limit import prebuilt_rows
from bench.run import cpu_seconds, postmaster_pid, tree
from bench.workload import Workload
from processor.mapping.rows import TABLES, Batch
from processor.storage.migrate import upgrade
from processor.storage.writer import SqlWriter, create_db_engine

Rows = dict[str, list[tuple]]
RAW_TABLES = tuple(t for t in TABLES if t != "user_properties")  # upserted: not counted


@dataclass
class Phase:
    mode: str
    retry_pct: float
    rows: int  # offered (retries included)
    seconds: float
    backend_us: float  # per offered row
    cluster_us: float
    client_us: float
    fallbacks: float  # per transaction
    stored_ok: bool

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def recreate(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
    return url


def empty(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)}, rollup_invalidations")
        conn.execute(f"VACUUM ANALYZE {', '.join(TABLES)}")
        conn.execute("CHECKPOINT")  # no checkpoint of the previous phase's WAL inside this one


class Requests:
    """Router-made requests with fresh ids (a counter in the id's first 8 hex digits)."""

    def __init__(self, workload: Workload) -> None:
        self.traces, self.logs = prebuilt_rows(workload)
        self.workload = workload
        self.counter = 0

    def fresh(self) -> Rows:
        self.counter += 1
        prefix = f"{self.counter:08x}"
        pool = self.logs if self.workload.next_kind() == "logs" else self.traces
        template = pool[self.counter % len(pool)]
        return {t: [(prefix + r[0][8:], *r[1:]) for r in rows] for t, rows in template.items()}


def plan_groups(
    requests: Requests, groups: int, per_group: int, retry: float, rng: random.Random
) -> tuple[list[list[Rows]], int]:
    """The transactions' requests, and how many distinct raw-table rows they hold. A retry
    resends a request of an earlier transaction (never of its own: within a group that is a
    duplicate, tested separately)."""
    out: list[list[Rows]] = []
    committed: list[Rows] = []
    distinct = 0
    for _ in range(groups):
        group = []
        for _ in range(per_group):
            if committed and rng.random() < retry:
                group.append(rng.choice(committed))
            else:
                rows = requests.fresh()
                distinct += sum(len(rows.get(t, ())) for t in RAW_TABLES)
                group.append(rows)
        committed.extend(group)
        out.append(group)
    return out, distinct


def backend_pids(url: str, name: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                " AND application_name = 'telemetry-processor'",
                (name,),
            )
        ]


def fallback_count() -> float:
    total = 0.0
    for family in REGISTRY.collect():
        if family.name == "processor_direct_copy_fallbacks":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        return sum(
            int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in RAW_TABLES
        )


def run_phase(
    url: str,
    mode: str,
    retry_pct: float,
    requests: Requests,
    args: Any,
    *,
    seed: int,
    postmaster: int | None,
) -> Phase:
    empty(url)
    groups, distinct = plan_groups(
        requests, args.groups + 1, args.requests, retry_pct / 100, random.Random(seed)
    )
    warm, timed = groups[0], groups[1:]
    offered = sum(len(rows) for group in timed for req in group for rows in req.values())
    engine = create_db_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1)
    writer = SqlWriter(engine, flushers=1, direct_copy=mode == "direct")

    async def commit(group: list[Rows]) -> None:
        results = await asyncio.gather(*(writer.write(Batch(rows=dict(r))) for r in group))
        assert all(r.rejected == 0 for r in results), results

    async def go() -> tuple[float, float, float, float, float]:
        await writer.start()
        await commit(warm)  # connection, catalog look-ups, staging tables: not timed
        pids = [psutil.Process(p) for p in backend_pids(url, args.database)]
        cluster = tree(postmaster) if postmaster else []
        fallbacks0 = fallback_count()
        be0, cl0 = cpu_seconds(pids), cpu_seconds(cluster)
        me0, t0 = time.process_time(), time.perf_counter()
        for group in timed:
            await commit(group)
        seconds = time.perf_counter() - t0
        me1, be1, cl1 = time.process_time(), cpu_seconds(pids), cpu_seconds(cluster)
        await writer.shutdown()

        def delta(a: dict[int, float], b: dict[int, float]) -> float:
            return sum(v - a.get(pid, 0.0) for pid, v in b.items())

        return seconds, delta(be0, be1), delta(cl0, cl1), me1 - me0, fallback_count() - fallbacks0

    seconds, backend, cluster_cpu, client, fallbacks = asyncio.run(go())
    ok = stored(url) == distinct
    return Phase(
        mode=mode,
        retry_pct=retry_pct,
        rows=offered,
        seconds=seconds,
        backend_us=backend / offered * 1e6,
        cluster_us=cluster_cpu / offered * 1e6,
        client_us=client / offered * 1e6,
        fallbacks=fallbacks / len(timed),
        stored_ok=ok,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.copy_modes", description=__doc__)
    p.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--database", default="directcopy_bench")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--groups", type=int, default=30, help="timed transactions per phase")
    p.add_argument("--requests", type=int, default=8, help="requests (512 items) per transaction")
    p.add_argument("--rates", default="0,1,10", help="retry rates in %%, comma-separated")
    p.add_argument("--json")
    args = p.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    url = recreate(args.admin_url, args.database)
    requests = Requests(Workload(templates=8))
    postmaster = postmaster_pid(url)  # once: a busy cluster may refuse a connection later
    if postmaster is None:
        print("the PostgreSQL cluster's processes are not visible: cluster CPU will read 0")
    phases = [(mode, rate) for rate in rates for mode in ("staged", "direct")]
    results: list[Phase] = []
    for rnd in range(args.rounds):
        order = phases[rnd % len(phases) :] + phases[: rnd % len(phases)]
        for mode, rate in order if rnd % 2 == 0 else order[::-1]:
            phase = run_phase(url, mode, rate, requests, args, seed=rnd, postmaster=postmaster)
            results.append(phase)
            flag = "" if phase.stored_ok else "  LOST or DUPLICATED"
            print(
                f"round {rnd + 1} {mode:6} retry {rate:4.0f} %: {phase.rows_per_s:8,.0f} rows/s,"
                f" PostgreSQL backend {phase.backend_us:5.1f} / cluster {phase.cluster_us:5.1f}"
                f" µs/row, client {phase.client_us:5.1f} µs/row,"
                f" {phase.fallbacks:.2f} fallbacks/transaction{flag}",
                flush=True,
            )
    print_summary(results, rates, args.rounds)
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(r) | {"rows_per_s": r.rows_per_s} for r in results], out, indent=2)
    return 0 if all(r.stored_ok for r in results) else 1


def median_of(phases: list[Phase], field: str) -> float:
    return statistics.median(getattr(p, field) for p in phases)


def print_summary(results: list[Phase], rates: list[float], rounds: int) -> None:
    print(f"\nmedians of {rounds} rounds (ratio: median of per-round direct/staged)")
    print(
        "| retry | mode | rows/s | PG backend µs/row | PG cluster µs/row | client µs/row"
        " | fallbacks/txn | backend CPU direct/staged | rows/s direct/staged |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for rate in rates:
        staged = [r for r in results if r.mode == "staged" and r.retry_pct == rate]
        direct = [r for r in results if r.mode == "direct" and r.retry_pct == rate]
        pairs = list(zip(direct, staged, strict=True))
        cpu_ratio = statistics.median(d.backend_us / s.backend_us for d, s in pairs)
        rate_ratio = statistics.median(d.rows_per_s / s.rows_per_s for d, s in pairs)
        for mode, phases in (("staged", staged), ("direct", direct)):
            ratios = f"{cpu_ratio:.2f} | {rate_ratio:.2f}" if mode == "direct" else "- | -"
            print(
                f"| {rate:.0f} % | {mode} | {median_of(phases, 'rows_per_s'):,.0f}"
                f" | {median_of(phases, 'backend_us'):.1f} | {median_of(phases, 'cluster_us'):.1f}"
                f" | {median_of(phases, 'client_us'):.1f} | {median_of(phases, 'fallbacks'):.2f}"
                f" | {ratios} |"
            )
    lost = [r for r in results if not r.stored_ok]
    print("every phase stored each distinct row once" if not lost else f"LOST/DUPLICATED: {lost}")


if __name__ == "__main__":
    sys.exit(main())
