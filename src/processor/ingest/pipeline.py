"""The pipeline: admit → decode → route → write, shared by every receiver."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from google.protobuf.message import Message

from processor.errors import Overloaded, StorageUnavailable
from processor.ingest.decode import REQUEST_TYPES, Signal, decode
from processor.mapping import RouteContext, route_logs, route_metrics, route_traces
from processor.mapping.privacy import Hasher
from processor.mapping.rows import Batch
from processor.ops import self_metrics
from processor.storage.writer import Writer

__all__ = ["REQUEST_TYPES", "Outcome", "Pipeline", "Signal", "decode"]

log = structlog.get_logger(__name__)

ROUTERS: dict[Signal, Callable[[Any, RouteContext], Batch]] = {
    Signal.TRACES: route_traces,
    Signal.LOGS: route_logs,
    Signal.METRICS: route_metrics,
}


def _decode_and_route(signal: Signal, payload: bytes | Message, ctx: RouteContext) -> Batch:
    message = decode(signal, payload) if isinstance(payload, bytes) else payload
    return ROUTERS[signal](message, ctx)


@dataclass(frozen=True)
class Outcome:
    received: int
    rejected: int
    error_message: str


class Pipeline:
    def __init__(
        self,
        writer: Writer,
        hasher: Hasher,
        *,
        max_inflight_requests: int = 16,
        max_inflight_bytes: int = 32 << 20,
    ) -> None:
        self.writer = writer
        self.hasher = hasher
        self.max_inflight_requests = max_inflight_requests
        self.max_inflight_bytes = max_inflight_bytes
        self.inflight_requests = 0
        self.inflight_bytes = 0
        self.draining = False
        # Decoding and routing are CPU work; off the event loop, the loop stays free to admit
        # or refuse new requests at once, so a backlog is refused with RetryInfo instead of
        # queueing unseen, and a hostile payload's repair does not stall the other requests.
        self._routing = ThreadPoolExecutor(1, thread_name_prefix="router")

    @contextlib.contextmanager
    def admit(self, nbytes: int) -> Iterator[None]:
        """Bound the work in flight; beyond the bound the client is told to come back later."""
        if self.draining:
            raise Overloaded("the server is shutting down", retry_after=1.0)
        # A request larger than the whole byte budget is still admitted when nothing else is
        # in flight (the message size limit bounds it); refusing it would make clients retry
        # it forever.
        if self.inflight_requests >= self.max_inflight_requests or (
            self.inflight_requests > 0 and self.inflight_bytes + nbytes > self.max_inflight_bytes
        ):
            raise Overloaded("too much work in flight", retry_after=1.0)
        self.inflight_requests += 1
        self.inflight_bytes += nbytes
        self_metrics.INFLIGHT_REQUESTS.set(self.inflight_requests)
        self_metrics.INFLIGHT_BYTES.set(self.inflight_bytes)
        try:
            yield
        finally:
            self.inflight_requests -= 1
            self.inflight_bytes -= nbytes
            self_metrics.INFLIGHT_REQUESTS.set(self.inflight_requests)
            self_metrics.INFLIGHT_BYTES.set(self.inflight_bytes)

    async def export(
        self,
        signal: Signal,
        payload: bytes | Message,
        *,
        project_id: int = 1,
        receiver: str = "grpc",
    ) -> Outcome:
        """Decode (when given bytes), route and commit one OTLP request.

        Returns only after the request's rows are committed.
        """
        started = time.perf_counter()
        ctx = RouteContext(hasher=self.hasher, project_id=project_id)
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(self._routing, _decode_and_route, signal, payload, ctx)
        return await self.commit(signal, batch, receiver=receiver, started=started)

    def shutdown(self) -> None:
        """Finish routing what was admitted. Safe to call twice."""
        self._routing.shutdown(wait=True)

    async def commit(
        self, signal: Signal | str, batch: Batch, *, receiver: str, started: float | None = None
    ) -> Outcome:
        """Write a routed batch; the latency counted runs from ``started`` (routing included)."""
        started = time.perf_counter() if started is None else started
        outcome_label = "ok"
        try:
            result = await self.writer.write(batch)
        except StorageUnavailable:
            outcome_label = "unavailable"
            raise
        finally:
            elapsed = time.perf_counter() - started
            self_metrics.REQUESTS.labels(signal, receiver, outcome_label).inc()
            self_metrics.EXPORT_SECONDS.labels(signal, receiver).observe(elapsed)
        # The database refuses rows, and one record can make several rows: never report
        # more rejected than received.
        rejected = min(batch.rejected + result.rejected, batch.received)
        message = "; ".join(m for m in (batch.error_message, result.error) if m)
        self_metrics.ITEMS_RECEIVED.labels(signal, receiver).inc(batch.received)
        self_metrics.ITEMS_ACCEPTED.labels(signal, receiver).inc(max(batch.received - rejected, 0))
        if rejected:
            self_metrics.ITEMS_REJECTED.labels(signal, receiver).inc(rejected)
        log.info(
            "export",
            signal=str(signal),
            receiver=receiver,
            received=batch.received,
            rejected=rejected,
            rows=batch.row_count,
            latency_ms=round(elapsed * 1000, 2),
        )
        return Outcome(batch.received, rejected, message)
