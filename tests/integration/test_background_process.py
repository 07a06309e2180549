"""`serve` runs the rollup and alert runners in one child process (BACKGROUND_MODE=process):
rollups come from it, a killed child is started again, and it never outlives serve."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import psutil
import pytest
import requests
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.helpers import free_port, wait_for
from tests.helpers.otlp import grpc_export, request_with_span
from tests.helpers.rollups import stored

BACKGROUND = "processor.background"


def is_background(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return BACKGROUND in process.cmdline()
    return False


def alive(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    return False


@dataclass
class Serving:
    proc: subprocess.Popen[bytes]
    port: int
    http_port: int
    log: IO[str]

    def background(self) -> list[psutil.Process]:
        return [p for p in psutil.Process(self.proc.pid).children() if is_background(p)]

    def the_background(self) -> psutil.Process:
        found: list[psutil.Process] = []

        def one() -> bool:
            found[:] = [p for p in self.background() if alive(p)]
            return len(found) == 1

        wait_for(one, "one background process")
        return found[0]

    def send(self, first: int, count: int) -> None:
        for i in range(first, first + count):
            grpc_export(f"127.0.0.1:{self.port}", request_with_span(user=f"u{i % 3}", span_byte=i))

    def running(self) -> list[dict]:
        return [line for line in self.lines() if line.get("event") == "background_running"]

    def lines(self) -> list[dict]:
        self.log.flush()
        with open(self.log.name) as handle:
            out = []
            for line in handle:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
            return out


@contextlib.contextmanager
def serving(url: str, **env: str) -> Iterator[Serving]:
    port, http_port = free_port(), free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor", "serve", "--port", str(port), "--http-port",
         str(http_port)],
        env={**os.environ, "ANALYTICS_DATABASE_URL": url, "LOG_LEVEL": "DEBUG", **env},
        stderr=log,
    )  # fmt: skip

    def ready() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{http_port}/readiness", timeout=1).ok
        except requests.ConnectionError:
            return False

    try:
        wait_for(ready, "serve to listen")
        yield Serving(proc, port, http_port, log)
    finally:
        if proc.poll() is None:  # the test failed early: stop serve and what it started
            for p in [*psutil.Process(proc.pid).children(), psutil.Process(proc.pid)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            proc.wait(10)
        log.close()


def rolled_up(engine: Engine) -> int:
    with engine.connect() as conn:
        if conn.execute(text("SELECT count(*) FROM rollup_invalidations")).scalar():
            return -1
    return sum(
        r["request_count"] for r in stored(engine, "endpoint_stats") if r["period"] == "hour"
    )


def test_serve_rolls_up_in_its_background_process(database_url, engine):
    with serving(database_url, ROLLUP_INTERVAL_SECONDS="0.2") as serve:
        child = serve.the_background()
        serve.send(1, 12)
        wait_for(lambda: rolled_up(engine) == 12, "the rollups of 12 requests")

        def rounds() -> list[dict]:
            return [line for line in serve.lines() if line.get("event") == "rollup_round"]

        wait_for(rounds, "a round's log line")  # logged once its transaction committed
        # Every round ran in the background process, none in the serving one.
        assert all(line.get("process") == "background" for line in rounds())
        assert serve.running()[0]["runners"] == ["rollup", "alerts"]
        assert [p.pid for p in serve.background()] == [child.pid]
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(30) == 0
    # Stopped with serve: not left running on its own.
    assert not alive(child)


def test_a_killed_background_process_is_started_again(database_url, engine):
    with serving(database_url, ROLLUP_INTERVAL_SECONDS="0.2") as serve:
        first = serve.the_background()
        first.kill()
        wait_for(lambda: not alive(first), "the background process to die")
        second = serve.the_background()
        assert second.pid != first.pid
        serve.send(1, 5)  # rolled up by the new one
        wait_for(lambda: rolled_up(engine) == 5, "the rollups of 5 requests")
        exits = [line for line in serve.lines() if line.get("event") == "background_exited"]
        assert exits[0]["code"] == -signal.SIGKILL
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(30) == 0
    assert not alive(second)


def test_the_background_process_stops_when_serve_is_killed(database_url):
    with serving(database_url) as serve:
        child = serve.the_background()
        serve.proc.kill()  # no chance to stop it: its stdin ends, and it stops by itself
        serve.proc.wait(10)
        wait_for(lambda: not alive(child), "the orphaned background process to stop")
        assert [line for line in serve.lines() if line.get("event") == "background_stopped"]


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_workers_metrics_say_the_database_is_up_with_either_mode(database_url, mode, tmp_path):
    """The background process stays out of the workers' metrics directory: its
    processor_database_up would count in their minimum."""
    with serving(
        database_url, BACKGROUND_MODE=mode, PROMETHEUS_MULTIPROC_DIR=str(tmp_path)
    ) as serve:
        if mode == "process":
            serve.the_background()
            wait_for(lambda: serve.running(), "the background process to run its runners")
        else:
            assert serve.background() == []
        body = requests.get(f"http://127.0.0.1:{serve.http_port}/metrics", timeout=5).text
        assert "processor_database_up 1.0" in body
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(30) == 0
