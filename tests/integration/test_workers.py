"""`serve --workers 2`: two processes on the same ports, and SIGTERM stops both with exit 0."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import psutil
import requests

from tests.helpers import free_port
from tests.helpers.otlp import grpc_export, request_with_span


def test_two_workers_share_the_ports_and_stop_on_sigterm(tmp_path):
    port, http_port = free_port(), free_port()
    url = f"sqlite:///{tmp_path}/workers.db"  # `serve` migrates it first
    env = {**os.environ, "ANALYTICS_DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "processor",
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
            "--http-port",
            str(http_port),
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            children = psutil.Process(proc.pid).children()
            try:
                ready = requests.get(f"http://127.0.0.1:{http_port}/readiness", timeout=1).ok
            except requests.ConnectionError:
                ready = False
            if ready and len(children) == 1 and children[0].net_connections(kind="tcp"):
                break
            time.sleep(0.2)
        (child,) = psutil.Process(proc.pid).children()
        listening = {
            c.laddr.port for c in child.net_connections(kind="tcp") if c.status == "LISTEN"
        }
        assert {port, http_port} <= listening
        for i in range(1, 9):  # new connections each time; the kernel spreads them
            grpc_export(f"127.0.0.1:{port}", request_with_span(span_byte=i))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        with sqlite3.connect(tmp_path / "workers.db") as conn:
            assert conn.execute("SELECT COUNT(*) FROM endpoint_usage").fetchone() == (8,)
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:
            proc.kill()
