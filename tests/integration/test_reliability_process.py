"""The real ``telemetry-processor serve`` process under load (SPEC §8):

- SIGTERM stops accepting, finishes and commits what is in flight, and exits 0;
- SIGKILL loses nothing acknowledged: after a restart on the same ports the clients resend
  what was not acknowledged, and deterministic row ids keep every span stored exactly once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.helpers import DEADLINE, free_port, wait_for
from tests.helpers.otlp import TRACE_EXPORT, trace_request
from tests.helpers.storage import stored_counts, writes_held

EXECUTABLE = Path(sys.executable).with_name("telemetry-processor")


class Process:
    """``telemetry-processor serve`` as a child process on fixed ports."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.env = {
            **os.environ,
            "ANALYTICS_DATABASE_URL": database_url,
            "PORT": str(self.grpc_port),
            "HTTP_PORT": str(self.http_port),
            "LOG_LEVEL": "WARNING",
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Process:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(EXECUTABLE), "serve"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        end = time.monotonic() + DEADLINE
        while True:
            assert self.proc.poll() is None, f"the server exited early:\n{self.output()}"
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.http_url}/readiness", timeout=2).status_code == 200:
                    return self
            assert time.monotonic() < end, f"the server never became ready:\n{self.output()}"
            time.sleep(0.1)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait(DEADLINE)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def inflight(self) -> float:
        """The server's own gauge of admitted, unanswered export requests."""
        body = requests.get(f"{self.http_url}/metrics", timeout=10).text
        for line in body.splitlines():
            if line.startswith("processor_inflight_requests "):
                return float(line.split()[1])
        raise AssertionError("no processor_inflight_requests in /metrics")


@pytest.fixture
def process(database_url: str, tmp_path: Path) -> Iterator[Process]:
    p = Process(database_url, tmp_path / "server.log")
    yield p
    p.stop()


class Client(threading.Thread):
    """Sends requests in turn. With ``resend`` each is sent until acknowledged (a client with
    retries, e.g. the Collector's queue); without, a failed request is counted and dropped."""

    def __init__(
        self, protocol: str, server: Process, name: str, *, resend: bool, limit: int = 0
    ) -> None:
        super().__init__(daemon=True)
        self.limit = limit  # how many requests to send; 0: until stopped
        self.protocol = protocol
        self.server = server
        self.tag = name
        self.resend = resend
        self.stop = threading.Event()
        self.acked: list[str] = []
        self.failures = 0
        self.sent = 0
        self.error: BaseException | None = None
        self.channel = grpc.insecure_channel(
            server.grpc_endpoint,
            options=[
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 300),
            ],
        )
        self.export = self.channel.unary_unary(
            TRACE_EXPORT, response_deserializer=ExportTraceServiceResponse.FromString
        )

    def send(self, data: bytes) -> bool:
        if self.protocol == "grpc":
            try:
                reply = self.export(data, timeout=DEADLINE)
            except grpc.RpcError:
                return False
            assert not reply.HasField("partial_success")
            return True
        try:
            reply = requests.post(
                f"{self.server.http_url}/v1/traces",
                data=data,
                headers={"Content-Type": "application/x-protobuf"},
                timeout=DEADLINE,
            )
        except requests.RequestException:
            return False
        return reply.status_code == 200

    def run(self) -> None:
        try:
            k = 0
            while not self.stop.is_set() and not (self.limit and k >= self.limit):
                data, ids = trace_request(f"{self.tag}-{k}")
                k += 1
                end = time.monotonic() + DEADLINE
                while True:
                    self.sent += 1
                    if self.send(data):
                        self.acked.extend(ids)
                        break
                    self.failures += 1
                    if not self.resend:
                        break
                    assert time.monotonic() < end, f"{self.tag}: never acknowledged"
                    time.sleep(0.1)
        except BaseException as exc:
            self.error = exc
        finally:
            self.channel.close()


def start_clients(server: Process, *, resend: bool, tag: str) -> list[Client]:
    clients = [
        Client("grpc" if n % 2 == 0 else "http", server, f"{tag}{n}", resend=resend)
        for n in range(4)
    ]
    for c in clients:
        c.start()
    return clients


def stop_clients(clients: list[Client]) -> None:
    for c in clients:
        c.stop.set()
    for c in clients:
        c.join(DEADLINE)
        assert not c.is_alive()
        assert c.error is None, c.error


def acked(clients: list[Client]) -> list[str]:
    return [i for c in clients for i in c.acked]


def test_sigterm_under_load_exits_zero_and_keeps_everything_acknowledged(process, db):
    process.start()
    clients = start_clients(process, resend=False, tag="term")
    wait_for(lambda: len(acked(clients)) >= 300, "load before SIGTERM")
    process.signal(signal.SIGTERM)
    code = process.wait()
    stop_clients(clients)
    assert code == 0, process.output()

    ids = acked(clients)
    assert len(ids) == len(set(ids))
    stored = stored_counts(db)
    assert {i: stored.get(i, 0) for i in ids} == dict.fromkeys(ids, 1)
    assert all(n == 1 for n in stored.values())


def test_sigterm_commits_requests_in_flight(process, db):
    """Requests admitted before SIGTERM are committed and answered before the exit."""
    process.start()
    clients = [Client(p, process, f"inflight-{p}", resend=False, limit=1) for p in ("grpc", "http")]
    with writes_held(db, "SHARE"):
        for c in clients:
            c.start()
        wait_for(lambda: process.inflight() == len(clients), "both requests in flight")
        process.signal(signal.SIGTERM)
        time.sleep(1)  # shutdown is under way while the commits still wait
        assert process.proc is not None and process.proc.poll() is None
        assert not acked(clients)
    code = process.wait()
    for c in clients:
        c.join(DEADLINE)
        assert c.error is None, c.error
    assert code == 0, process.output()
    assert [c.failures for c in clients] == [0, 0]
    ids = acked(clients)
    assert len(ids) == 20
    assert stored_counts(db) == dict.fromkeys(ids, 1)


def test_sigkill_and_restart_loses_nothing_and_duplicates_nothing(process, db):
    process.start()
    clients = start_clients(process, resend=True, tag="kill")
    wait_for(lambda: len(acked(clients)) >= 300, "load before SIGKILL")
    process.signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    failures = sum(c.failures for c in clients)
    wait_for(lambda: sum(c.failures for c in clients) > failures, "clients failing")

    process.start()  # same ports; the clients resend what was not acknowledged
    resumed = len(acked(clients))
    wait_for(lambda: len(acked(clients)) >= resumed + 300, "load after the restart")
    stop_clients(clients)
    process.signal(signal.SIGTERM)
    assert process.wait() == 0, process.output()

    ids = acked(clients)
    assert len(ids) == len(set(ids))
    stored = stored_counts(db)
    # Every span any client produced was eventually acknowledged, and stored exactly once.
    assert set(stored) == set(ids)
    assert all(n == 1 for n in stored.values())
