"""The load generator: unique pre-serialised OTLP requests over gRPC, closed or open loop.

Closed loop (``rate=None``): ``concurrency`` senders each keep one export in flight, as fast as
the server acknowledges. Open loop (``rate`` requests/s): sends start on a fixed schedule
whatever the answers, and latency is measured from the scheduled start, so a slow server
cannot hide its queueing (no coordinated omission).

Every sender has its own channel (its own TCP connection), so with ``serve --workers N``
the kernel's SO_REUSEPORT hashing can spread the connections over the worker processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from bench.workload import Workload

METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


@dataclass
class LoadResult:
    started: float = 0.0
    finished: float = 0.0
    requests: int = 0
    acked_items: dict[str, int] = field(default_factory=lambda: {"traces": 0, "logs": 0})
    rejected_items: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    latencies: list[float] = field(default_factory=list)
    dropped: int = 0  # open loop: sends skipped because too many were outstanding

    @property
    def elapsed(self) -> float:
        return self.finished - self.started

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index]


class Client:
    """``concurrency`` channels to one target, each with its own connection."""

    def __init__(self, target: str, concurrency: int) -> None:
        self.channels = [
            grpc.aio.insecure_channel(
                target,
                options=[
                    ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per channel
                    ("grpc.max_send_message_length", 64 << 20),
                    ("grpc.max_receive_message_length", 64 << 20),
                ],
            )
            for _ in range(concurrency)
        ]
        self.calls = [
            {signal: ch.unary_unary(method) for signal, method in METHODS.items()}
            for ch in self.channels
        ]

    async def ready(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(
            asyncio.gather(*(ch.channel_ready() for ch in self.channels)), timeout
        )

    async def close(self) -> None:
        await asyncio.gather(*(ch.close() for ch in self.channels))


async def _export(
    client: Client, index: int, signal: str, data: bytes, items: int, result: LoadResult
) -> bool:
    """One export, retried while the server says to come back; True once acknowledged."""
    call = client.calls[index % len(client.calls)][signal]
    for attempt in range(50):
        try:
            answer: bytes = await call(data, timeout=60)
        except grpc.aio.AioRpcError as exc:
            name = exc.code().name
            result.errors[name] = result.errors.get(name, 0) + 1
            if exc.code() in RETRYABLE:
                result.retries += 1
                await asyncio.sleep(min(0.05 * (attempt + 1), 1.0))
                continue
            return False
        if answer:  # a non-empty response carries partial_success
            response = (
                ExportTraceServiceResponse() if signal == "traces" else ExportLogsServiceResponse()
            )
            response.ParseFromString(answer)
            partial = response.partial_success
            rejected = getattr(partial, "rejected_spans", 0) or getattr(
                partial, "rejected_log_records", 0
            )
            result.rejected_items += rejected
        result.requests += 1
        result.acked_items[signal] += items
        return True
    return False


async def closed_loop(
    client: Client, workload: Workload, duration: float, *, concurrency: int
) -> LoadResult:
    result = LoadResult()
    result.started = time.perf_counter()
    deadline = result.started + duration

    async def sender(index: int) -> None:
        while time.perf_counter() < deadline:
            signal, data, items = workload.next()
            began = time.perf_counter()
            if await _export(client, index, signal, data, items, result):
                result.latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(sender(i) for i in range(concurrency)))
    result.finished = time.perf_counter()
    return result


async def on_schedule(
    one: Callable[[int, float], Coroutine[Any, Any, None]],
    started: float,
    rate: float,
    duration: float,
    max_outstanding: int,
) -> int:
    """Start ``one(index, scheduled)`` ``rate`` times a second from ``started`` for
    ``duration`` seconds, whatever the answers; wait for all. Returns the slots skipped
    because ``max_outstanding`` were still unanswered."""
    interval = 1.0 / rate
    outstanding: set[asyncio.Task[None]] = set()
    skipped = 0
    index = 0
    while True:
        scheduled = started + index * interval
        if scheduled >= started + duration:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(outstanding) >= max_outstanding:
            skipped += 1
        else:
            task = asyncio.create_task(one(index, scheduled))
            outstanding.add(task)
            task.add_done_callback(outstanding.discard)
        index += 1
    if outstanding:
        await asyncio.gather(*outstanding)
    return skipped


async def open_loop(
    client: Client, workload: Workload, duration: float, *, rate: float, max_outstanding: int = 512
) -> LoadResult:
    """Start ``rate`` requests per second on a fixed schedule for ``duration`` seconds."""
    result = LoadResult()
    result.started = time.perf_counter()

    async def one(index: int, scheduled: float) -> None:
        signal, data, items = workload.next()
        if await _export(client, index, signal, data, items, result):
            result.latencies.append(time.perf_counter() - scheduled)

    result.dropped = await on_schedule(one, result.started, rate, duration, max_outstanding)
    result.finished = time.perf_counter()
    return result


# --- overload: every request sent once, every answer kept -------------------------------------

# No verdict from the server: the client's deadline passed (gRPC reports DEADLINE_EXCEEDED, or
# CANCELLED when the server-side cancellation wins the race). Such a request may be stored.
NO_ANSWER = ("DEADLINE_EXCEEDED", "CANCELLED")


@dataclass
class Answer:
    """What happened to one request sent once (no retry)."""

    signal: str
    items: int
    scheduled: float  # perf_counter of its slot in the open-loop schedule
    sent: float  # when the call actually started (lag = sent - scheduled)
    answered: float  # when the answer (or the client-side timeout) came
    code: str  # "OK" or the gRPC status code's name
    rejected: int = 0  # items the server refused in partial_success (OK answers only)
    retry_info: bool = False  # a refusal carrying google.rpc.RetryInfo

    @property
    def wait(self) -> float:
        """Seconds from the scheduled send to the answer (queueing in the client counts)."""
        return self.answered - self.scheduled


def has_retry_info(trailers: Any) -> bool:
    """Whether a refusal's trailers carry a ``google.rpc.RetryInfo`` (in the rich status or
    in its own ``google.rpc.retryinfo-bin`` trailer)."""
    for key, value in trailers:
        if key == "google.rpc.retryinfo-bin":
            return True
        if key == "grpc-status-details-bin":
            status = status_pb2.Status()
            status.ParseFromString(value)
            if any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details):
                return True
    return False


@dataclass
class OverloadResult:
    started: float = 0.0
    finished: float = 0.0  # the last answer
    answers: list[Answer] = field(default_factory=list)
    not_sent: int = 0  # schedule slots skipped because max_outstanding were unanswered


async def overload_loop(
    client: Client,
    workload: Workload,
    duration: float,
    *,
    rate: float,
    timeout: float = 30.0,
    max_outstanding: int = 4096,
) -> OverloadResult:
    """Open loop at ``rate`` requests/s; each request is sent once and its outcome recorded.

    Nothing is retried: an ``UNAVAILABLE`` / ``RESOURCE_EXHAUSTED`` refusal is an outcome, so
    the figures show the server's admission control and not a client's back-off. Requests go
    round-robin over the client's channels (HTTP/2 streams multiplexed on each connection), so
    as many can be outstanding as the server lets in.
    """
    result = OverloadResult()
    result.started = time.perf_counter()

    async def one(index: int, scheduled: float) -> None:
        signal, data, items = workload.next()
        call = client.calls[index % len(client.calls)][signal]
        sent = time.perf_counter()
        code, rejected, retry_info = "OK", 0, False
        try:
            answer: bytes = await call(data, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            retry_info = has_retry_info(exc.trailing_metadata() or ())
        else:
            if answer:  # a non-empty response carries partial_success
                response = (
                    ExportTraceServiceResponse()
                    if signal == "traces"
                    else ExportLogsServiceResponse()
                )
                response.ParseFromString(answer)
                partial = response.partial_success
                rejected = getattr(partial, "rejected_spans", 0) or getattr(
                    partial, "rejected_log_records", 0
                )
        result.answers.append(
            Answer(signal, items, scheduled, sent, time.perf_counter(), code, rejected, retry_info)
        )

    result.not_sent = await on_schedule(one, result.started, rate, duration, max_outstanding)
    result.finished = max((a.answered for a in result.answers), default=time.perf_counter())
    return result
