"""``make bench``: the processor against its baseline and the COPY limit, in one run.

Phases (each on freshly truncated tables, committed rows counted in the database):

1. processor, max: ``telemetry-processor serve --workers N`` on PostgreSQL, closed loop.
2. processor, half: the same server, open loop at half the measured maximum; p99 latency.
3. baseline: the ORM processor in the style of the original design (``bench/baseline.py``), closed loop.
4. limit: raw psycopg COPY of pre-built rows (``bench/limit.py``).
5. SQLite: the processor on a SQLite file, closed loop.
6. overload (``--overload``): a fresh server, open loop at 3x the sustainable rate, every
   request sent once; acknowledged vs refused, latency, peak RSS, health, acked vs stored.

``--repeat N`` runs everything N times and reports medians. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import limit, loadgen
from bench.workload import ITEMS_PER_REQUEST, LOG_TABLES, SPAN_TABLES, Workload
from processor.mapping.rows import TABLES

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"  # profiles (--profile)
LOGS = Path(tempfile.gettempdir()) / "telemetry-processor-bench"  # server logs


# --- helpers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def libpq(url: str) -> str:
    """A libpq URL from a SQLAlchemy-or-libpq PostgreSQL URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def ensure_database(url: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(libpq(url))
    name = str(info.get("dbname") or "")
    admin = psycopg.conninfo.make_conninfo(libpq(url), dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        conn.execute(f'CREATE DATABASE "{name}"')


def migrate(url: str) -> None:
    env = {**os.environ, "ANALYTICS_DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "-m", "processor", "migrate"], env=env, check=True)


def truncate(url: str) -> None:
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1], timeout=60)) as conn:
            for table in TABLES:
                conn.execute(f"DELETE FROM {table}")
            conn.commit()
        return
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        conn.execute(f"VACUUM ANALYZE {', '.join(TABLES)}")


def count_rows(url: str) -> dict[str, int]:
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1], timeout=60)) as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    with psycopg.connect(libpq(url)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # type: ignore[index]


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL cluster's postmaster (its children are the backends), for CPU accounting."""
    if url.startswith("sqlite"):
        return None
    try:
        with psycopg.connect(libpq(url)) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
        parent = psutil.Process(row[0]).parent() if row else None
        return parent.pid if parent else None
    except (psycopg.Error, psutil.Error):
        return None


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
    return out


class Monitor:
    """Samples the server's process tree: peak RSS (sum over processes) and CPU seconds."""

    def __init__(self, pid: int, database_url: str) -> None:
        self.pid = pid
        self.peak_rss = 0  # the sum over the process tree (shared pages counted per process)
        self.peak_pss = 0  # the same with shared pages divided among their sharers
        self.peak_rss_by_pid: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._postmaster = postmaster_pid(database_url)
        self._marks: dict[str, tuple[float, dict[int, float], dict[int, float], float, Any]] = {}

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            rss = pss = 0
            for proc in tree(self.pid):
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
                    self.peak_rss_by_pid[proc.pid] = max(
                        self.peak_rss_by_pid.get(proc.pid, 0), proc.memory_info().rss
                    )
                    if tick % 5 == 0:  # PSS reads smaps: slower, so once a second
                        pss += proc.memory_full_info().pss
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            tick += 1
            self._stop.wait(0.2)

    def mark(self, name: str) -> None:
        me = psutil.Process().cpu_times()
        self._marks[name] = (
            time.perf_counter(),
            cpu_seconds(tree(self.pid)),
            cpu_seconds(tree(self._postmaster) if self._postmaster else []),
            me.user + me.system,
            psutil.cpu_times(),
        )

    def cpu_between(self, a: str, b: str) -> dict[str, float]:
        """Cores used on average between two marks, by party."""
        t0, srv0, pg0, me0, sys0 = self._marks[a]
        t1, srv1, pg1, me1, sys1 = self._marks[b]
        wall = t1 - t0

        def delta(before: dict[int, float], after: dict[int, float]) -> float:
            return sum(v - before.get(pid, 0.0) for pid, v in after.items())

        busy0 = sum(sys0) - sys0.idle - getattr(sys0, "iowait", 0.0)
        busy1 = sum(sys1) - sys1.idle - getattr(sys1, "iowait", 0.0)
        return {
            "server": delta(srv0, srv1) / wall,
            "postgres": delta(pg0, pg1) / wall,
            "loadgen": (me1 - me0) / wall,
            "machine": (busy1 - busy0) / wall,
        }


@contextlib.contextmanager
def server_process(
    command: list[str], env: dict[str, str], port: int, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_serving(port, proc)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc} (log: {log_path})") from exc
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_serving(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # the baseline has no health
                    return
            time.sleep(0.2)
    raise TimeoutError(f"nothing serving on port {port} after {timeout}s")


@dataclass
class HealthStats:
    polls: int = 0
    answered: int = 0  # HTTP 200 / SERVING within the timeout
    failed: Counter[str] = field(default_factory=Counter)  # "timeout", "503", "NOT_SERVING", …
    latencies: list[float] = field(default_factory=list)  # of the answered polls

    def summary(self) -> dict[str, Any]:
        slowest = max(self.latencies, default=float("nan"))
        return {
            "polls": self.polls,
            "answered": self.answered,
            "failed": dict(self.failed),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 1),
            "slowest_ms": round(slowest * 1000, 1),
        }


class HealthPoller:
    """Polls HTTP ``/health`` and gRPC ``grpc.health.v1`` every ``interval`` s, each in its own
    thread. Every poll opens a fresh connection (as a Kubernetes probe does), so with
    ``--workers N`` the kernel hands the polls to every worker in turn."""

    def __init__(
        self, grpc_port: int, http_port: int, *, interval: float = 0.5, timeout: float = 1.0
    ) -> None:
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        self.http_url = f"http://127.0.0.1:{http_port}/health"
        self.interval = interval
        self.timeout = timeout
        self.stats = {"http": HealthStats(), "grpc": HealthStats()}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(name, probe), daemon=True)
            for name, probe in (("http", self._http), ("grpc", self._grpc))
        ]

    def __enter__(self) -> HealthPoller:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _loop(self, name: str, probe: Any) -> None:
        stats = self.stats[name]
        start = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            began = time.monotonic()
            outcome = probe()
            took = time.monotonic() - began
            stats.polls += 1
            if outcome is None:
                stats.answered += 1
                stats.latencies.append(took)
            else:
                stats.failed[outcome] += 1
            # The next tick of the fixed schedule that is still ahead (a slow poll skips ticks).
            tick = max(tick + 1, int((time.monotonic() - start) / self.interval) + 1)
            self._stop.wait(max(0.0, start + tick * self.interval - time.monotonic()))

    def _http(self) -> str | None:
        """None when answered 200 within the timeout, else why not."""
        try:
            with urllib.request.urlopen(self.http_url, timeout=self.timeout) as response:
                response.read()
                return None if response.status == 200 else str(response.status)
        except urllib.error.HTTPError as exc:  # 503: the database is down
            return str(exc.code)
        except urllib.error.URLError as exc:
            return "timeout" if isinstance(exc.reason, TimeoutError) else "error"
        except TimeoutError:
            return "timeout"
        except OSError:
            return "error"

    def _grpc(self) -> str | None:
        options = [("grpc.use_local_subchannel_pool", 1)]  # a new connection for every poll
        with grpc.insecure_channel(self.grpc_target, options=options) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=self.timeout)
            except grpc.RpcError as exc:
                code = exc.code()
                return "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else code.name
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        return None


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# --- phases ---------------------------------------------------------------------------------


@dataclass
class Figures:
    spans_per_s: float = 0.0
    items_per_s: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    rss_mb: float = float("nan")
    cpu: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def figures_from(result: loadgen.LoadResult, counts: dict[str, int]) -> Figures:
    spans = sum(counts[t] for t in SPAN_TABLES)
    logs = sum(counts[t] for t in LOG_TABLES)
    acked_spans = result.acked_items["traces"]
    acked_logs = result.acked_items["logs"]
    extra: dict[str, Any] = {
        "seconds": round(result.elapsed, 2),
        "requests": result.requests,
        "spans_in_db": spans,
        "logs_in_db": logs,
        "spans_acked": acked_spans,
        "logs_acked": acked_logs,
        "errors": dict(result.errors),
        "retries": result.retries,
    }
    if spans < acked_spans or logs < acked_logs:
        extra["LOST"] = (acked_spans - spans, acked_logs - logs)
    return Figures(
        spans_per_s=spans / result.elapsed,
        items_per_s=(spans + logs) / result.elapsed,
        p50_ms=result.percentile(50) * 1000,
        p99_ms=result.percentile(99) * 1000,
        extra=extra,
    )


async def drive(
    target: str,
    workload: Workload,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    url: str,
    rate: float | None = None,
    monitor: Monitor | None = None,
) -> tuple[loadgen.LoadResult, dict[str, int], dict[str, float]]:
    client = loadgen.Client(target, concurrency)
    try:
        await client.ready()
        if warmup > 0:
            await loadgen.closed_loop(client, workload, warmup, concurrency=concurrency)
        truncate(url)
        if monitor:
            monitor.mark("start")
        if rate is None:
            result = await loadgen.closed_loop(client, workload, duration, concurrency=concurrency)
        else:
            result = await loadgen.open_loop(client, workload, duration, rate=rate)
        if monitor:
            monitor.mark("end")
    finally:
        await client.close()
    cpu = monitor.cpu_between("start", "end") if monitor else {}
    return result, count_rows(url), cpu


def processor_env(url: str, port: int, http_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANALYTICS_", "API_KEYS"))}
    env.update(
        ANALYTICS_DATABASE_URL=url,
        PORT=str(port),
        HTTP_PORT=str(http_port),
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "INFO"),
    )
    return env


def profile_start(pid: int, duration: float, out: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy on every Python process of the server (workers when --workers > 1)."""
    spy = Path(sys.executable).with_name("py-spy")
    procs = []
    for i, proc in enumerate(p for p in tree(pid) if "python" in p.name().lower()):
        with contextlib.suppress(psutil.Error):
            if any("resource_tracker" in part for part in proc.cmdline()):
                continue
        target = out.with_suffix(f".{i}.txt")
        procs.append(
            subprocess.Popen(
                [
                    *(str(spy), "record", "-p", str(proc.pid), "-d", str(int(duration))),
                    *("-r", "50", "--nonblocking", "-f", "raw", "-o", str(target)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


def profile_summary(out: Path, top: int = 25) -> list[tuple[str, float]]:
    """Share of samples by innermost function, over all py-spy outputs of one run."""
    leaves: Counter[str] = Counter()
    total = 0
    for path in sorted(out.parent.glob(out.stem + ".*.txt")):
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not stack or not n.isdigit():
                continue
            leaf = re.sub(r":\d+\)$", ")", stack.rsplit(";", 1)[-1])  # by function
            leaves[leaf] += int(n)
            total += int(n)
    return [(leaf, n / total) for leaf, n in leaves.most_common(top)] if total else []


def measure(
    port: int,
    workload: Workload,
    url: str,
    monitor: Monitor,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    rate: float | None = None,
) -> tuple[Figures, Any]:
    """Drive the server on ``port`` and turn what happened into Figures (CPU and RSS too)."""
    result, counts, cpu = asyncio.run(
        drive(
            f"127.0.0.1:{port}",
            workload,
            concurrency=concurrency,
            duration=duration,
            warmup=warmup,
            url=url,
            rate=rate,
            monitor=monitor,
        )
    )
    figures = figures_from(result, counts)
    figures.cpu = cpu
    figures.rss_mb = monitor.peak_rss / 2**20
    return figures, result


def run_processor(args: argparse.Namespace, workload: Workload, rnd: int) -> dict[str, Figures]:
    port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "processor", "serve", "--no-migrate"]
    command += ["--workers", str(args.workers)]
    env = processor_env(args.database_url, port, http_port)
    out: dict[str, Figures] = {}
    log_path = LOGS / f"processor-{rnd}.log"
    with (
        server_process(command, env, port, log_path) as proc,
        Monitor(proc.pid, args.database_url) as monitor,
    ):
        spies: list[subprocess.Popen[bytes]] = []
        if args.profile:
            spies = profile_start(proc.pid, args.duration + args.warmup, RESULTS / f"profile-{rnd}")
        best, _ = measure(
            port,
            workload,
            args.database_url,
            monitor,
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
        )
        for spy in spies:
            spy.wait()
        out["processor"] = best
        best.extra["peak_pss_mb"] = round(monitor.peak_pss / 2**20, 1)
        best.extra["peak_rss_mb_by_process"] = [
            round(v / 2**20, 1) for v in monitor.peak_rss_by_pid.values()
        ]
        report_phase("processor (max)", best)
        if args.half_duration > 0:
            items_per_request = ITEMS_PER_REQUEST
            rate = best.items_per_s / 2 / items_per_request
            half, result = measure(
                port,
                workload,
                args.database_url,
                monitor,
                concurrency=args.concurrency,
                duration=args.half_duration,
                warmup=0,
                rate=rate,
            )
            half.extra["dropped"] = result.dropped
            half.extra["offered_requests_per_s"] = round(rate, 2)
            out["half"] = half
            report_phase("processor (half rate)", half)
        out["processor"].rss_mb = monitor.peak_rss / 2**20
    if args.profile:
        out["processor"].extra["profile"] = profile_summary(RESULTS / f"profile-{rnd}")
    return out


def run_baseline(args: argparse.Namespace, workload: Workload, rnd: int) -> Figures:
    port = free_port()
    url = args.database_url
    sa_url = url if "+psycopg" in url else url.replace("postgresql://", "postgresql+psycopg://", 1)
    command = [
        sys.executable,
        "-m",
        "bench.baseline",
        "--port",
        str(port),
        "--database-url",
        sa_url,
    ]
    log_path = LOGS / f"baseline-{rnd}.log"
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    with server_process(command, env, port, log_path) as proc, Monitor(proc.pid, url) as monitor:
        figures, _ = measure(
            port,
            workload,
            url,
            monitor,
            concurrency=args.concurrency,
            duration=args.baseline_duration,
            warmup=min(args.warmup, 2.0),
        )
    report_phase("BASELINE (original-design ORM)", figures)
    return figures


def run_limit(args: argparse.Namespace, workload: Workload) -> Figures:
    truncate(args.database_url)
    me0, t0 = psutil.Process().cpu_times(), time.perf_counter()
    outcome = limit.copy_limit(
        libpq(args.database_url),
        workload,
        args.limit_duration,
        connections=args.limit_connections,
    )
    me1, wall = psutil.Process().cpu_times(), time.perf_counter() - t0
    counts = count_rows(args.database_url)
    spans = sum(counts[t] for t in SPAN_TABLES)
    logs = sum(counts[t] for t in LOG_TABLES)
    figures = Figures(
        spans_per_s=spans / outcome.elapsed,
        items_per_s=(spans + logs) / outcome.elapsed,
        cpu={
            "postgres": outcome.backend_cpu / wall,  # the COPY backends only
            "loadgen": (me1.user + me1.system - me0.user - me0.system) / wall,
        },
        extra={"seconds": round(outcome.elapsed, 2), "transactions": outcome.transactions},
    )
    report_phase("LIMIT (raw COPY)", figures)
    return figures


def run_sqlite(args: argparse.Namespace, workload: Workload, rnd: int) -> Figures:
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        url = f"sqlite:///{tmp}/analytics.db"
        port, http_port = free_port(), free_port()
        command = [sys.executable, "-m", "processor", "serve"]  # migrates the new file first
        command += ["--workers", str(args.sqlite_workers)]
        env = processor_env(url, port, http_port)
        with (
            server_process(command, env, port, LOGS / f"sqlite-{rnd}.log") as proc,
            Monitor(proc.pid, url) as monitor,
        ):
            figures, _ = measure(
                port,
                workload,
                url,
                monitor,
                concurrency=args.concurrency,
                duration=args.sqlite_duration,
                warmup=min(args.warmup, 2.0),
            )
    report_phase("processor on SQLite", figures)
    return figures


def settled_counts(url: str, patience: float = 30.0) -> dict[str, int]:
    """Row counts once two readings a second apart agree (requests whose answer timed out
    client-side may still be committing)."""
    counts = count_rows(url)
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        time.sleep(1.0)
        again = count_rows(url)
        if again == counts:
            break
        counts = again
    return counts


async def drive_overload(
    target: str,
    workload: Workload,
    args: argparse.Namespace,
    *,
    rate: float,
    monitor: Monitor,
    poller: HealthPoller,
) -> loadgen.OverloadResult:
    client = loadgen.Client(target, args.overload_connections)
    try:
        await client.ready()
        if args.warmup > 0:
            await loadgen.closed_loop(client, workload, args.warmup, concurrency=args.concurrency)
        truncate(args.database_url)
        monitor.mark("start")
        with poller:
            result = await loadgen.overload_loop(
                client,
                workload,
                args.overload_duration,
                rate=rate,
                timeout=args.overload_timeout,
            )
        monitor.mark("end")
    finally:
        await client.close()
    return result


def run_overload(
    args: argparse.Namespace, workload: Workload, rnd: int, sustainable: tuple[float, float]
) -> dict[str, Any]:
    """A fresh ``serve`` (same set-up as the processor phase) driven open loop at
    ``--overload-factor`` times the sustainable rate (items/s, spans/s); every request sent
    once, no retries."""
    rate = args.overload_factor * sustainable[0] / ITEMS_PER_REQUEST  # requests/s
    port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "processor", "serve", "--no-migrate"]
    command += ["--workers", str(args.workers)]
    env = processor_env(args.database_url, port, http_port)
    with (
        server_process(command, env, port, LOGS / f"overload-{rnd}.log") as proc,
        Monitor(proc.pid, args.database_url) as monitor,
    ):
        poller = HealthPoller(port, http_port, interval=0.5, timeout=args.health_timeout)
        result = asyncio.run(
            drive_overload(
                f"127.0.0.1:{port}", workload, args, rate=rate, monitor=monitor, poller=poller
            )
        )
        counts = settled_counts(args.database_url)  # before SIGTERM, which commits leftovers
        cpu = monitor.cpu_between("start", "end")
    out = overload_figures(result, counts, args, rate, sustainable[1])
    out["peak_rss_mb"] = round(monitor.peak_rss / 2**20, 1)
    out["peak_pss_mb"] = round(monitor.peak_pss / 2**20, 1)
    out["peak_rss_mb_by_process"] = [round(v / 2**20, 1) for v in monitor.peak_rss_by_pid.values()]
    out["health"] = {name: stats.summary() for name, stats in poller.stats.items()}
    out["health_ok"] = all(s.polls > 0 and s.answered == s.polls for s in poller.stats.values())
    out["cpu"] = {k: round(v, 2) for k, v in cpu.items()}
    print(
        f"  {'overload (x' + format(args.overload_factor, 'g') + ')':32s} "
        f"offered spans/s={out['offered_spans_per_s']:9,.0f} "
        f"acked spans/s={out['acked_spans_per_s']:9,.0f} refused={out['refused']} "
        f"rss={out['peak_rss_mb']:6.1f}MB health={'ok' if out['health_ok'] else 'FAILED'} "
        f"{'acked ⊆ stored' if out['acked_stored_ok'] else 'LOST'}",
        flush=True,
    )
    return out


def overload_figures(
    result: loadgen.OverloadResult,
    counts: dict[str, int],
    args: argparse.Namespace,
    rate: float,
    sustainable_spans_per_s: float,
) -> dict[str, Any]:
    answers = result.answers
    ok = [a for a in answers if a.code == "OK"]
    timed_out = [a for a in answers if a.code in loadgen.NO_ANSWER]
    refused = [a for a in answers if a.code != "OK" and a.code not in loadgen.NO_ANSWER]

    def items(group: list[loadgen.Answer], signal: str, *, net: bool = False) -> int:
        return sum(a.items - (a.rejected if net else 0) for a in group if a.signal == signal)

    stored = {
        "traces": sum(counts[t] for t in SPAN_TABLES),
        "logs": sum(counts[t] for t in LOG_TABLES),
    }
    acked = {s: items(ok, s, net=True) for s in stored}  # what must be in the database
    unanswered = {s: items(timed_out, s) for s in stored}  # what may be, too
    lost = {s: acked[s] - stored[s] for s in stored if stored[s] < acked[s]}
    # Rows beyond acked + timed-out could only come from refused requests: a contract breach.
    unexplained = {
        s: stored[s] - acked[s] - unanswered[s]
        for s in stored
        if stored[s] > acked[s] + unanswered[s]
    }
    ack_times = sorted(a.answered for a in ok)
    gaps = [b - a for a, b in zip([result.started, *ack_times], ack_times, strict=False)]
    elapsed = result.finished - result.started
    return {
        "factor": args.overload_factor,
        "sustainable_spans_per_s": round(sustainable_spans_per_s),
        "sustainable_source": "--overload-rate" if args.overload_rate else "max run",
        "offered_requests_per_s_target": round(rate, 2),
        "offered_spans_per_s": items(answers, "traces") / args.overload_duration,
        "requests_sent": len(answers),
        "not_sent": result.not_sent,
        "seconds": round(elapsed, 2),
        "acked_requests": len(ok),
        "acked_spans_per_s": acked["traces"] / elapsed if elapsed else 0.0,
        "refused": dict(Counter(a.code for a in refused)),
        "refused_with_retry_info": sum(a.retry_info for a in refused),
        "timed_out": len(timed_out),
        "timed_out_codes": dict(Counter(a.code for a in timed_out)),
        "timeout_s": args.overload_timeout,
        "p50_acked_ms": percentile([a.wait for a in ok], 50) * 1000,
        "p99_acked_ms": percentile([a.wait for a in ok], 99) * 1000,
        "p50_refused_ms": percentile([a.wait for a in refused], 50) * 1000,
        "p99_refused_ms": percentile([a.wait for a in refused], 99) * 1000,
        "longest_wait_ms": max((a.wait for a in answers), default=float("nan")) * 1000,
        "longest_gap_between_acks_ms": max(gaps, default=float("nan")) * 1000,
        "max_send_lag_ms": max((a.sent - a.scheduled for a in answers), default=0.0) * 1000,
        "spans_acked": acked["traces"],
        "spans_stored": stored["traces"],
        "logs_acked": acked["logs"],
        "logs_stored": stored["logs"],
        "spans_timed_out": unanswered["traces"],
        "logs_timed_out": unanswered["logs"],
        "LOST": lost,
        "unexplained_rows": unexplained,
        "acked_stored_ok": not lost and not unexplained,
    }


# --- reporting ------------------------------------------------------------------------------


def cpu_per_item(f: Figures) -> dict[str, float]:
    """CPU microseconds per committed item, by party (noise-resistant, unlike rates)."""
    if not f.items_per_s:
        return {}
    return {k: v / f.items_per_s * 1e6 for k, v in f.cpu.items() if k != "machine"}


def report_phase(name: str, f: Figures) -> None:
    cpu = " ".join(f"{k}={v:.2f}" for k, v in f.cpu.items())
    per_item = " ".join(f"{k}={v:.0f}" for k, v in cpu_per_item(f).items())
    cpu = f"{cpu}  cpu us/item: {per_item}"
    print(
        f"  {name:32s} spans/s={f.spans_per_s:9,.0f} items/s={f.items_per_s:9,.0f} "
        f"p50={f.p50_ms:7.1f}ms p99={f.p99_ms:7.1f}ms rss={f.rss_mb:6.1f}MB  cores: {cpu}",
        flush=True,
    )
    if "peak_pss_mb" in f.extra:
        print(
            f"     memory: peak PSS {f.extra['peak_pss_mb']} MB; peak RSS by process (MB):"
            f" {f.extra['peak_rss_mb_by_process']}",
            flush=True,
        )
    if f.extra.get("LOST"):
        print(f"  !! acknowledged but not in the database: {f.extra['LOST']}", flush=True)
    if f.extra.get("errors"):
        print(f"     errors: {f.extra['errors']}", flush=True)


def median(values: list[float]) -> float:
    clean = [v for v in values if v == v]  # drop NaN
    return statistics.median(clean) if clean else float("nan")


def summarise(rounds: list[dict[str, Figures]]) -> dict[str, dict[str, float]]:
    keys = ("spans_per_s", "items_per_s", "p50_ms", "p99_ms", "rss_mb")
    names = sorted({n for r in rounds for n in r})
    out = {
        name: {k: median([getattr(r[name], k) for r in rounds if name in r]) for k in keys}
        for name in names
    }
    for name in names:
        for party in ("server", "postgres", "loadgen"):
            out[name][f"cpu_{party}"] = median(
                [cpu_per_item(r[name]).get(party, float("nan")) for r in rounds if name in r]
            )
    return out


def print_table(
    summary: dict[str, dict[str, float]],
    rounds: list[dict[str, Figures]],
    args: argparse.Namespace,
) -> list[str]:
    columns = [
        ("processor", f"processor PG x{args.workers}"),
        ("baseline", "BASELINE ORM"),
        ("limit", "LIMIT raw COPY"),
        ("sqlite", "processor SQLite"),
    ]
    present = [(k, label) for k, label in columns if k in summary]
    lines = [f"{'':22s}" + "".join(f"{label:>19s}" for _, label in present)]

    def row(title: str, key: str, fmt: str) -> None:
        cells = []
        for k, _ in present:
            value = summary[k][key]
            cells.append(f"{format(value, fmt):>19s}" if value == value else f"{'-':>19s}")
        lines.append(f"{title:22s}" + "".join(cells))

    row("spans/s committed", "spans_per_s", ",.0f")
    row("items/s (spans+logs)", "items_per_s", ",.0f")
    row("p50 export ms", "p50_ms", ".1f")
    row("p99 export ms", "p99_ms", ".1f")
    row("peak RSS MB", "rss_mb", ".0f")
    row("CPU us/item: server", "cpu_server", ".0f")
    row("CPU us/item: postgres", "cpu_postgres", ".0f")
    row("CPU us/item: client", "cpu_loadgen", ".0f")
    proc = summary.get("processor", {}).get("spans_per_s", float("nan"))
    ratios = []
    for k, _ in present:
        other = summary[k]["spans_per_s"]
        ratios.append(f"{proc / other:>18.2f}x" if other else f"{'-':>19s}")
    lines.append(f"{'processor / this':22s}" + "".join(ratios))
    half = summary.get("half")
    if half:
        lines.append(
            f"half-rate run: {half['spans_per_s']:,.0f} spans/s, p50 {half['p50_ms']:.1f} ms, "
            f"p99 {half['p99_ms']:.1f} ms"
        )
    lines.append("")
    lines.append("targets:")
    checks = [
        ("≥ 40,000 spans/s committed (PostgreSQL)", proc >= 40000, f"{proc:,.0f}"),
    ]
    for ref, title, need, fmt in (
        ("baseline", "≥ 4x baseline", 4.0, "{:.2f}x"),
        ("limit", "≥ 50 % of the COPY limit", 0.5, "{:.0%}"),
    ):
        if ref not in summary:
            continue
        # Each round's ratio compares phases run minutes apart; the median of those.
        per_round = [
            r["processor"].spans_per_s / r[ref].spans_per_s
            for r in rounds
            if ref in r and r[ref].spans_per_s
        ]
        ratio = median(per_round)
        shown = ", ".join(fmt.format(x) for x in per_round)
        checks.append((title, ratio >= need, f"{fmt.format(ratio)} (rounds: {shown})"))
    if half:
        checks.append(
            ("p99 < 250 ms at half rate", half["p99_ms"] < 250, f"{half['p99_ms']:.0f} ms")
        )
    rss = summary.get("processor", {}).get("rss_mb", float("nan"))
    checks.append(("processor RSS < 300 MB", rss < 300, f"{rss:.0f} MB"))
    for title, ok, value in checks:
        lines.append(f"  [{'met' if ok else 'NOT MET':>7s}] {title}: {value}")
    return lines


def overload_table(overloads: list[dict[str, Any]]) -> list[str]:
    """One column per round."""

    def ms(value: float) -> str:
        return f"{value:,.0f}" if value == value else "-"

    def health(h: dict[str, Any]) -> str:
        failed = sum(h["failed"].values())
        why = ", ".join(f"{k} {v}" for k, v in sorted(h["failed"].items()))
        slowest = f", slowest {ms(h['slowest_ms'])} ms"
        return f"{failed} of {h['polls']} failed{' (' + why + ')' if why else ''}{slowest}"

    def stored(o: dict[str, Any]) -> str:
        name = {"traces": "spans"}
        if o["LOST"]:
            return "LOST " + ", ".join(f"{n:,} {name.get(s, s)}" for s, n in o["LOST"].items())
        if o["unexplained_rows"]:
            extra = ", ".join(f"{n:,} {name.get(s, s)}" for s, n in o["unexplained_rows"].items())
            return f"yes, but {extra} rows not explained by timeouts"
        extra = o["spans_stored"] - o["spans_acked"] + o["logs_stored"] - o["logs_acked"]
        return f"yes (+{extra:,} rows of timed-out requests)" if extra else "yes"

    rows: list[tuple[str, Any]] = [
        (
            "sustainable spans/s",
            lambda o: f"{o['sustainable_spans_per_s']:,} ({o['sustainable_source']})",
        ),
        ("offered spans/s", lambda o: f"{o['offered_spans_per_s']:,.0f} (x{o['factor']:g})"),
        (
            "requests sent",
            lambda o: (
                f"{o['requests_sent']:,}"
                + (f" ({o['not_sent']:,} not sent)" if o["not_sent"] else "")
            ),
        ),
        (
            "acked spans/s",
            lambda o: f"{o['acked_spans_per_s']:,.0f} ({o['acked_requests']:,} requests)",
        ),
        (
            "refused requests",
            lambda o: ", ".join(f"{k} {v:,}" for k, v in sorted(o["refused"].items())) or "0",
        ),
        ("refused with RetryInfo", lambda o: f"{o['refused_with_retry_info']:,}"),
        (
            "timed out (no answer)",
            lambda o: (
                f"{o['timed_out']:,} (deadline {o['timeout_s']:g} s"
                + "".join(f"; {k} {v:,}" for k, v in sorted(o["timed_out_codes"].items()))
                + ")"
            ),
        ),
        ("p50 / p99 ms, acked", lambda o: f"{ms(o['p50_acked_ms'])} / {ms(o['p99_acked_ms'])}"),
        (
            "p50 / p99 ms, refused",
            lambda o: f"{ms(o['p50_refused_ms'])} / {ms(o['p99_refused_ms'])}",
        ),
        ("longest wait ms", lambda o: ms(o["longest_wait_ms"])),
        ("longest gap in acks ms", lambda o: ms(o["longest_gap_between_acks_ms"])),
        ("load gen send lag ms", lambda o: ms(o["max_send_lag_ms"])),
        ("peak RSS MB (PSS)", lambda o: f"{o['peak_rss_mb']:.0f} ({o['peak_pss_mb']:.0f})"),
        ("health HTTP /health", lambda o: health(o["health"]["http"])),
        ("health gRPC", lambda o: health(o["health"]["grpc"])),
        ("spans acked / stored", lambda o: f"{o['spans_acked']:,} / {o['spans_stored']:,}"),
        ("logs acked / stored", lambda o: f"{o['logs_acked']:,} / {o['logs_stored']:,}"),
        ("acked ⊆ stored", stored),
        (
            "cores srv/pg/loadgen",
            lambda o: " / ".join(
                f"{o['cpu'].get(k, float('nan')):.2f}" for k in ("server", "postgres", "loadgen")
            ),
        ),
    ]
    cells = [[fmt(o) for o in overloads] for _, fmt in rows]
    width = max(19, *(len(c) + 2 for row in cells for c in row))
    heads = [f"round {i}" for i in range(1, len(overloads) + 1)]
    lines = [f"{'':24s}" + "".join(f"{h:>{width}s}" for h in heads)]
    lines += [
        f"{title:24s}" + "".join(f"{c:>{width}s}" for c in row)
        for (title, _), row in zip(rows, cells, strict=True)
    ]
    rss = max(o["peak_rss_mb"] for o in overloads)
    checks = [
        ("server RSS < 300 MB under overload", rss < 300, f"{rss:.0f} MB"),
        (
            "health (HTTP and gRPC) answered every poll",
            all(o["health_ok"] for o in overloads),
            ", ".join(
                f"{sum(sum(h['failed'].values()) for h in o['health'].values())} failed"
                for o in overloads
            ),
        ),
        (
            "everything acknowledged is stored",
            all(not o["LOST"] for o in overloads),
            ", ".join(stored(o) for o in overloads),
        ),
        (
            "nothing refused was stored",
            all(not o["unexplained_rows"] for o in overloads),
            ", ".join(f"{sum(o['unexplained_rows'].values()):,} extra rows" for o in overloads),
        ),
        (
            # 5 s: the OpenTelemetry Collector exporter's default timeout
            "acknowledgements kept coming (no gap >= 5 s)",
            all(o["longest_gap_between_acks_ms"] < 5000 for o in overloads),
            ", ".join(f"longest gap {ms(o['longest_gap_between_acks_ms'])} ms" for o in overloads),
        ),
    ]
    lines.append("")
    for title, ok, value in checks:
        lines.append(f"  [{'met' if ok else 'NOT MET':>7s}] {title}: {value}")
    return lines


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} CPUs, {model}, {ram:.1f} GiB RAM, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench_tp"
        ),
        help="PostgreSQL database to create (if missing), migrate and fill (env BENCH_DATABASE_URL)",
    )
    p.add_argument("--duration", type=float, default=30.0, help="seconds of the max-rate run")
    p.add_argument(
        "--half-duration", type=float, default=20.0, help="seconds at half rate (0 = skip)"
    )
    p.add_argument("--baseline-duration", type=float, default=10.0)
    p.add_argument("--limit-duration", type=float, default=10.0)
    p.add_argument("--sqlite-duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument(
        "--concurrency", type=int, default=16, help="exports in flight (one connection each)"
    )
    p.add_argument("--workers", type=int, default=2, help="serve --workers N")
    p.add_argument("--logs-share", type=float, default=0.1, help="share of requests that are logs")
    p.add_argument("--limit-connections", type=int, default=4)
    p.add_argument("--sqlite-workers", type=int, default=1, help="serve --workers N on SQLite")
    p.add_argument("--repeat", type=int, default=1, help="rounds; the table shows medians")
    p.add_argument("--skip", action="append", default=[], choices=["baseline", "limit", "sqlite"])
    p.add_argument("--profile", action="store_true", help="py-spy the server in the max run")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument(
        "--overload",
        action="store_true",
        help="also run the overload phase: open loop at --overload-factor x the sustainable rate",
    )
    p.add_argument(
        "--overload-rate",
        type=float,
        help="sustainable rate in spans/s (default: the max run's committed spans/s)",
    )
    p.add_argument("--overload-factor", type=float, default=3.0, help="offered / sustainable")
    p.add_argument("--overload-duration", type=float, default=20.0, help="seconds of overload")
    p.add_argument(
        "--overload-connections",
        type=int,
        default=64,
        help="gRPC connections of the overload phase (requests are multiplexed over them)",
    )
    p.add_argument(
        "--overload-timeout", type=float, default=30.0, help="client deadline per request, s"
    )
    p.add_argument(
        "--health-timeout", type=float, default=1.0, help="a health poll slower than this fails"
    )
    args = p.parse_args(argv)

    print(f"machine: {machine()}")
    print(
        f"workload: {ITEMS_PER_REQUEST} items/request, {args.logs_share:.0%} logs requests, "
        f"concurrency {args.concurrency}, serve --workers {args.workers}",
        flush=True,
    )
    ensure_database(args.database_url)
    migrate(args.database_url)
    if args.profile:
        RESULTS.mkdir(exist_ok=True)
    rounds: list[dict[str, Figures]] = []
    overloads: list[dict[str, Any]] = []
    for rnd in range(1, args.repeat + 1):
        print(f"round {rnd}/{args.repeat}", flush=True)
        workload = Workload(logs_share=args.logs_share, seed=rnd, start=rnd << 24)
        figures = run_processor(args, workload, rnd)
        if args.overload:
            max_run = figures["processor"]
            sustainable = (  # (items/s, spans/s)
                (args.overload_rate / (1 - args.logs_share), args.overload_rate)
                if args.overload_rate
                else (max_run.items_per_s, max_run.spans_per_s)
            )
            overloads.append(run_overload(args, workload, rnd, sustainable))
        if "baseline" not in args.skip:
            figures["baseline"] = run_baseline(args, workload, rnd)
        if "limit" not in args.skip:
            figures["limit"] = run_limit(args, workload)
        if "sqlite" not in args.skip:
            figures["sqlite"] = run_sqlite(args, workload, rnd)
        rounds.append(figures)
        profile = figures["processor"].extra.get("profile")
        if profile:
            print("  profile (share of py-spy samples by innermost function):")
            for leaf, share in profile[:15]:
                print(f"    {share:6.1%}  {leaf}")
    summary = summarise(rounds)
    print()
    print(f"medians over {len(rounds)} round(s):")
    for line in print_table(summary, rounds, args):
        print(line)
    if overloads:
        print()
        print(
            f"overload: x{args.overload_factor:g} the sustainable rate for "
            f"{args.overload_duration:g} s, open loop, {args.overload_connections} connections, "
            f"every request sent once (no retries); health polled every 0.5 s "
            f"(timeout {args.health_timeout:g} s):"
        )
        for line in overload_table(overloads):
            print(line)
    if args.json:
        payload = {
            "machine": machine(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "summary": summary,
            "rounds": [{name: f.__dict__ for name, f in r.items()} for r in rounds],
            "overload": overloads,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
