"""The pipeline: admit → decode → route → write, shared by every receiver.

Its one entry point, ``export(fmt, body)``, takes the request's bytes and wire format; the
receivers only authenticate, read the body and map the outcome to their protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from processor.errors import Overloaded, StorageUnavailable
from processor.ingest.decode import Signal, decode
from processor.ingest.formats import WireFormat
from processor.mapping import RouteContext
from processor.mapping.privacy import Hasher
from processor.mapping.rows import Batch
from processor.ops import self_metrics
from processor.storage.writer import Writer

__all__ = ["Outcome", "Pipeline", "Signal", "decode"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    received: int
    rejected: int
    error_message: str
    # What a JSON API answers on success; None for OTLP.
    reply: dict[str, Any] | None = None


class Pipeline:
    def __init__(
        self,
        writer: Writer,
        hasher: Hasher,
        *,
        max_inflight_requests: int = 16,
        max_inflight_bytes: int = 32 << 20,
        max_batch_size: int = 1000,
    ) -> None:
        self.writer = writer
        self.hasher = hasher
        self.max_inflight_requests = max_inflight_requests
        self.max_inflight_bytes = max_inflight_bytes
        self.inflight_requests = 0
        self.inflight_bytes = 0
        self.max_batch_size = max_batch_size
        self._draining = False
        # Decoding and routing are CPU work; off the event loop, the loop stays free to admit
        # or refuse new requests at once, so a backlog is refused with RetryInfo instead of
        # queueing unseen, and a hostile payload's repair does not stall the other requests.
        self._routing = ThreadPoolExecutor(1, thread_name_prefix="router")

    @contextlib.contextmanager
    def admit(self, nbytes: int) -> Iterator[None]:
        """Bound the work in flight; beyond the bound the client is told to come back later."""
        if self._draining:
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

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self) -> None:
        """Refuse new work (clients are told to retry); what was admitted still finishes."""
        self._draining = True

    async def start(self) -> None:
        """Nothing to acquire: the routing thread starts with the first request."""

    async def shutdown(self, grace: float = 10.0) -> None:
        """Drain, then wait for routing to finish what was admitted, without blocking the
        event loop. Safe to call twice, and before ``start()``."""
        self.drain()
        await asyncio.to_thread(self._routing.shutdown, wait=True)

    async def export(
        self, fmt: WireFormat, body: bytes, *, project_id: int = 1, receiver: str = "grpc"
    ) -> Outcome:
        """Decode, route and commit one request of any wire format.

        Decoding and routing run in the routing thread. Returns only after the request's rows
        are committed.
        """
        started = time.perf_counter()
        ctx = RouteContext(hasher=self.hasher, project_id=project_id)
        loop = asyncio.get_running_loop()
        batch, reply = await loop.run_in_executor(
            self._routing, fmt.process, body, ctx, self.max_batch_size
        )
        outcome = await self._commit(fmt.label, batch, receiver=receiver, started=started)
        return outcome if reply is None else dataclasses.replace(outcome, reply=reply)

    async def _commit(self, signal: str, batch: Batch, *, receiver: str, started: float) -> Outcome:
        """Write a routed batch; the latency counted runs from ``started`` (routing included)."""
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
