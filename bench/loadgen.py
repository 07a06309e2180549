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
from dataclasses import dataclass, field

import grpc
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


async def open_loop(
    client: Client, workload: Workload, duration: float, *, rate: float, max_outstanding: int = 512
) -> LoadResult:
    """Start ``rate`` requests per second on a fixed schedule for ``duration`` seconds."""
    result = LoadResult()
    result.started = time.perf_counter()
    interval = 1.0 / rate
    outstanding: set[asyncio.Task[None]] = set()

    async def one(index: int, scheduled: float) -> None:
        signal, data, items = workload.next()
        if await _export(client, index, signal, data, items, result):
            result.latencies.append(time.perf_counter() - scheduled)

    index = 0
    while True:
        scheduled = result.started + index * interval
        if scheduled >= result.started + duration:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(outstanding) >= max_outstanding:
            result.dropped += 1
        else:
            task = asyncio.create_task(one(index, scheduled))
            outstanding.add(task)
            task.add_done_callback(outstanding.discard)
        index += 1
    if outstanding:
        await asyncio.gather(*outstanding)
    result.finished = time.perf_counter()
    return result
