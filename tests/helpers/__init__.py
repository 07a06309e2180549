"""Helpers shared by the tests, in one place (fixtures live in the conftest.py files).

- this module: waiting for a condition, free ports;
- otlp: OTLP protobuf requests, built or at the wire level, and a gRPC export;
- sdk: the real OpenTelemetry SDK pointed at a running server;
- storage: what the database holds, and holding its writes;
- tcp_proxy: a TCP proxy a test can cut, for database outages.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

DEADLINE = 90.0  # seconds any one wait may take before the test fails


def wait_for(
    predicate: Callable[[], Any],
    what: str = "the condition",
    timeout: float = DEADLINE,
    interval: float = 0.05,
) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for processes that must be told their port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
