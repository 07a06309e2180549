"""`serve --workers 2`: two processes on the same ports sharing one rate limit, and SIGTERM
stops both with exit 0."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import free_port, wait_for
from tests.helpers.otlp import grpc_export, request_with_span


@dataclass
class Workers:
    proc: subprocess.Popen[bytes]
    port: int
    http_port: int
    database: Path

    @property
    def child(self) -> psutil.Process:
        (child,) = serving_children(self.proc.pid)
        return child


def is_background(process: psutil.Process) -> bool:
    """The child running the rollup and alert runners (processor.background), no worker."""
    with contextlib.suppress(psutil.Error):
        return "processor.background" in process.cmdline()
    return False


def serving_children(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children() if not is_background(p)]


def background_of(workers: Workers) -> list[psutil.Process]:
    return [
        p
        for w in [psutil.Process(workers.proc.pid), workers.child]
        for p in w.children()
        if is_background(p)
    ]


def both_listen(proc: subprocess.Popen[bytes], ports: set[int]) -> bool:
    """Worker 0 and the worker it started both listen on ``ports``."""
    workers = [psutil.Process(proc.pid), *serving_children(proc.pid)]
    return len(workers) == 2 and all(ports <= listening_ports(w) for w in workers)


def listening_ports(process: psutil.Process) -> set[int]:
    try:
        return {c.laddr.port for c in process.net_connections(kind="tcp") if c.status == "LISTEN"}
    except psutil.NoSuchProcess:
        return set()


def spans_received(http_port: int) -> float:
    """processor_items_received for gRPC spans, as one scrape of /metrics reports it."""
    # No keep-alive: each scrape is a new connection, so either worker may answer it.
    text = requests.get(
        f"http://127.0.0.1:{http_port}/metrics", headers={"Connection": "close"}, timeout=5
    ).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "processor_items_received_total" and sample.labels == {
                "signal": "traces",
                "receiver": "grpc",
            }:
                return sample.value
    return 0.0


@contextlib.contextmanager
def two_workers(tmp_path: Path, **env: str) -> Iterator[Workers]:
    """`serve --workers 2` as a real subprocess, once both workers listen."""
    port, http_port = free_port(), free_port()
    database = tmp_path / "workers.db"  # `serve` migrates it first
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "processor", "serve", "--workers", "2"),
            *("--port", str(port), "--http-port", str(http_port)),
        ],
        env={
            **os.environ,
            "ANALYTICS_DATABASE_URL": f"sqlite:///{database}",
            "LOG_LEVEL": "WARNING",
            **env,
        },
    )
    try:
        deadline = time.monotonic() + 60
        while not both_listen(proc, {port, http_port}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert requests.get(f"http://127.0.0.1:{http_port}/readiness", timeout=5).ok
        yield Workers(proc, port, http_port, database)
    finally:
        if proc.poll() is None:  # the test failed early: stop worker 0 and what it started
            for process in [*psutil.Process(proc.pid).children(), psutil.Process(proc.pid)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            proc.wait(10)


def test_two_workers_share_the_ports_and_stop_on_sigterm(tmp_path):
    with two_workers(tmp_path) as workers:
        child = workers.child
        # One background process (the runners), started by worker 0 only.
        wait_for(lambda: len(background_of(workers)) == 1, "the background process")
        (background,) = background_of(workers)
        assert {workers.port, workers.http_port} <= listening_ports(child)
        for i in range(1, 9):  # new connections each time; the kernel spreads them
            grpc_export(f"127.0.0.1:{workers.port}", request_with_span(span_byte=i))
        # Whichever worker answers the scrape, it counts the spans both received.
        for _ in range(4):
            assert spans_received(workers.http_port) == 8
        workers.proc.send_signal(signal.SIGTERM)
        assert workers.proc.wait(30) == 0
        with sqlite3.connect(workers.database) as conn:
            assert conn.execute("SELECT COUNT(*) FROM endpoint_usage").fetchone() == (8,)
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
        assert not background.is_running() or background.status() == psutil.STATUS_ZOMBIE


def test_rate_limit_holds_across_workers(tmp_path):
    burst = 5
    with two_workers(
        tmp_path,
        API_KEYS="k",
        RATE_LIMIT_REQUESTS_PER_MINUTE="1",  # refills one token a minute: none in the test
        RATE_LIMIT_BURST=str(burst),
    ) as workers:
        statuses = []
        # A new connection per request (no session): the kernel spreads 40 connections over
        # both workers; with a bucket per worker up to twice the burst would be accepted.
        for i in range(40):
            response = requests.post(
                f"http://127.0.0.1:{workers.http_port}/v1/traces",
                data=request_with_span(span_byte=i + 1).SerializeToString(),
                headers={"Content-Type": "application/x-protobuf", "x-api-key": "k"},
                timeout=10,
            )
            statuses.append(response.status_code)
        workers.proc.send_signal(signal.SIGTERM)
        assert workers.proc.wait(30) == 0
    assert statuses.count(200) == burst
    assert statuses.count(429) == 40 - burst
    with sqlite3.connect(workers.database) as conn:
        assert conn.execute("SELECT COUNT(*) FROM endpoint_usage").fetchone() == (burst,)
