"""Overload (SPEC §8): beyond the admission bound the answer is UNAVAILABLE with RetryInfo
(HTTP 503 with Retry-After), the server keeps answering, and everything acknowledged is stored.

The database is locked while the first requests are admitted, so they stay in flight and
the bound is reached deterministically; then the lock is released and clients retry.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import requests
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.helpers import DEADLINE, wait_for
from tests.helpers.otlp import TRACE_EXPORT, trace_request
from tests.helpers.storage import stored_counts, writes_held


@dataclass
class Attempt:
    ok: bool
    status: str  # "OK", a gRPC status name, or an HTTP status code
    retry_after: float | None = None
    # gRPC: the delay in the ``google.rpc.retryinfo-bin`` trailer the Python SDK reads
    trailer_delay: float | None = None


class GrpcClient:
    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        self.export = self.channel.unary_unary(
            TRACE_EXPORT, response_deserializer=ExportTraceServiceResponse.FromString
        )

    def send(self, data: bytes) -> Attempt:
        try:
            reply = self.export(data, timeout=DEADLINE)
        except grpc.RpcError as exc:
            retry_after = None
            status = rpc_status.from_call(exc)  # type: ignore[arg-type]
            for detail in status.details if status is not None else ():
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    retry_after = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            trailers = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
            trailer_delay = None
            if "google.rpc.retryinfo-bin" in trailers:
                info = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
                trailer_delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            return Attempt(False, exc.code().name, retry_after, trailer_delay)  # type: ignore[attr-defined]
        assert reply.partial_success.rejected_spans == 0
        return Attempt(True, "OK")

    def close(self) -> None:
        self.channel.close()


class HttpClient:
    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/v1/traces"
        self.session = requests.Session()

    def send(self, data: bytes) -> Attempt:
        reply = self.session.post(
            self.url,
            data=data,
            headers={"Content-Type": "application/x-protobuf"},
            timeout=DEADLINE,
        )
        if reply.status_code == 200:
            return Attempt(True, "OK")
        retry_after = reply.headers.get("Retry-After")
        return Attempt(False, str(reply.status_code), float(retry_after) if retry_after else None)

    def close(self) -> None:
        self.session.close()


def make_client(protocol: str, server: Any) -> GrpcClient | HttpClient:
    return GrpcClient(server.grpc_endpoint) if protocol == "grpc" else HttpClient(server.http_url)


OVERLOADED = {"grpc": "UNAVAILABLE", "http": "503"}


@dataclass(eq=False)
class Sender(threading.Thread):
    """Sends its requests in turn, each until acknowledged, honouring the retry delay."""

    client: GrpcClient | HttpClient
    requests_: list[tuple[bytes, list[str]]]
    max_delay: float = 1.0
    attempts: list[Attempt] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        try:
            for data, ids in self.requests_:
                end = time.monotonic() + DEADLINE
                while True:
                    attempt = self.client.send(data)
                    self.attempts.append(attempt)
                    if attempt.ok:
                        self.acked.extend(ids)
                        break
                    if attempt.retry_after is None or time.monotonic() > end:
                        raise AssertionError(f"not retryable or never acknowledged: {attempt}")
                    time.sleep(min(attempt.retry_after, self.max_delay))
        except BaseException as exc:
            self.error = exc
        finally:
            self.client.close()

    def overloads(self, protocol: str) -> list[Attempt]:
        return [a for a in self.attempts if a.status == OVERLOADED[protocol]]


def assert_still_answering(server: Any) -> None:
    """Health, liveness and readiness answer while exports are being refused."""
    with grpc.insecure_channel(server.grpc_endpoint) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert requests.get(f"{server.http_url}/liveness", timeout=10).status_code == 200
    assert requests.get(f"{server.http_url}/readiness", timeout=10).status_code == 200


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_beyond_the_inflight_bound_clients_are_told_to_retry(make_server, db, protocol):
    server = make_server(max_inflight_requests=2)
    senders = [
        Sender(make_client(protocol, server), [trace_request(f"{protocol}-locked-{n}", 3)])
        for n in range(8)
    ]
    with writes_held(db, "ACCESS EXCLUSIVE"):
        for s in senders:
            s.start()
        # Two requests are admitted and wait for the lock; the other six are refused.
        wait_for(
            lambda: sum(1 for s in senders if s.overloads(protocol)) >= 6,
            "six clients refused",
        )
        assert sum(1 for s in senders if s.overloads(protocol)) == 6
        assert not any(s.acked for s in senders)
        assert_still_answering(server)
    for s in senders:
        s.join(DEADLINE)
        assert not s.is_alive()
        assert s.error is None, s.error

    refused = [a for s in senders for a in s.attempts if not a.ok]
    assert refused
    for attempt in refused:
        assert attempt.status == OVERLOADED[protocol]
        assert attempt.retry_after is not None and attempt.retry_after >= 1
        if protocol == "grpc":
            assert attempt.trailer_delay == attempt.retry_after
    acked = [i for s in senders for i in s.acked]
    assert len(acked) == 8 * 3
    stored = stored_counts(db)
    assert {i: stored.get(i, 0) for i in acked} == dict.fromkeys(acked, 1)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_many_concurrent_clients_everything_acknowledged_is_stored(make_server, db, protocol):
    server = make_server(max_inflight_requests=2)
    senders = [
        Sender(
            make_client(protocol, server),
            [trace_request(f"{protocol}-load-{n}-{k}", 5) for k in range(8)],
            max_delay=0.05,
        )
        for n in range(12)
    ]
    for s in senders:
        s.start()
    for s in senders:
        s.join(DEADLINE)
        assert not s.is_alive()
        assert s.error is None, s.error
    for attempt in (a for s in senders for a in s.attempts if not a.ok):
        assert attempt.status == OVERLOADED[protocol]
        assert attempt.retry_after is not None
    assert_still_answering(server)
    acked = [i for s in senders for i in s.acked]
    assert len(acked) == 12 * 8 * 5
    stored = stored_counts(db)
    assert {i: stored.get(i, 0) for i in acked} == dict.fromkeys(acked, 1)


def test_inflight_bytes_bound(make_server, db):
    """``max_inflight_mib`` bounds bytes in flight; one request larger than it still goes
    through when nothing else is in flight, instead of being refused forever."""
    server = make_server(max_inflight_mib=1)
    client = GrpcClient(server.grpc_endpoint)
    big, big_ids = trace_request("bytes-big", 2, pad=700_000)  # ~1.4 MiB
    assert len(big) > 1 << 20
    assert client.send(big).ok

    first, first_ids = trace_request("bytes-first", 1, pad=600_000)
    second, second_ids = trace_request("bytes-second", 1, pad=600_000)
    with writes_held(db, "ACCESS EXCLUSIVE"):
        blocked = Sender(GrpcClient(server.grpc_endpoint), [(first, first_ids)])
        blocked.start()
        # The first is admitted and waits for the lock; the second would exceed the bound.
        wait_for(lambda: server.app.pipeline.inflight_bytes >= len(first), "first in flight")
        attempt = client.send(second)
        assert not attempt.ok
        assert attempt.status == "UNAVAILABLE"
        assert attempt.retry_after is not None
    blocked.join(DEADLINE)
    assert blocked.error is None, blocked.error
    assert client.send(second).ok
    client.close()
    stored = stored_counts(db)
    assert {i: stored.get(i) for i in [*big_ids, *first_ids, *second_ids]} == dict.fromkeys(
        [*big_ids, *first_ids, *second_ids], 1
    )
