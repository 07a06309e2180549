"""The pipeline: admit → decode → route → write, shared by every receiver."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from processor import telemetry
from processor.errors import InvalidRequest, Overloaded, StorageUnavailable
from processor.privacy import Hasher
from processor.router import RouteContext, route_logs, route_metrics, route_traces
from processor.rows import Batch
from processor.writer import Writer

log = structlog.get_logger("processor.pipeline")


class Signal(StrEnum):
    TRACES = "traces"
    LOGS = "logs"
    METRICS = "metrics"


REQUEST_TYPES: dict[Signal, type[Message]] = {
    Signal.TRACES: ExportTraceServiceRequest,
    Signal.LOGS: ExportLogsServiceRequest,
    Signal.METRICS: ExportMetricsServiceRequest,
}
ROUTERS: dict[Signal, Callable[[Any, RouteContext], Batch]] = {
    Signal.TRACES: route_traces,
    Signal.LOGS: route_logs,
    Signal.METRICS: route_metrics,
}


@dataclass(frozen=True)
class Outcome:
    received: int
    rejected: int
    error_message: str


def decode(signal: Signal, data: bytes) -> Message:
    """Parse an OTLP protobuf request; a payload that does not parse is the client's error.

    Two things the strict parser refuses are repaired instead of costing the whole request
    (the Collector accepts both): strings with invalid UTF-8 (bad bytes become U+FFFD) and
    attribute values nested deeper than the parser allows (cut to a marker string).
    """
    message = REQUEST_TYPES[signal]()
    try:
        message.ParseFromString(data)
        return message
    except (DecodeError, ValueError, RuntimeError) as exc:
        error = exc
    # First only the parts that do not parse alone are walked (cheap). A part that parses
    # alone can still be too deep where it sits, so if that is not enough, parts are skipped
    # only when they are also too short to be too deep.
    for bounded in (False, True):
        try:
            repaired = _repair(memoryview(data), message.DESCRIPTOR, 0, bounded)
            message = REQUEST_TYPES[signal]()
            message.ParseFromString(repaired)
        except _Malformed:
            break
        except (DecodeError, ValueError, RuntimeError, RecursionError):
            continue
        log.warning("request_repaired", signal=str(signal), reason=str(error)[:200])
        return message
    raise InvalidRequest(f"malformed {signal} request: {error}") from error


# --- wire-level repair (only after the strict parse failed) --------------------------------

_ANY_VALUE = AnyValue.DESCRIPTOR.full_name
# AnyValues nested deeper than this many messages are cut (the parser stops at 100).
_MAX_MESSAGE_DEPTH = 64
# Each nested message costs at least two bytes (tag, length), so a sub-message of n bytes
# at depth d nests at most d + n/2 deep; below this it is safe to copy without a walk.
_SAFE_DEPTH = 90
_TOO_DEEP = AnyValue(string_value="[nested too deep]").SerializeToString()


class _Malformed(Exception):
    pass


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("bad varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _parses(descriptor: Descriptor, data: memoryview) -> bool:
    try:
        GetMessageClass(descriptor).FromString(data)
    except (DecodeError, ValueError, RuntimeError):
        return False
    return True


def _repair(data: memoryview, descriptor: Descriptor, depth: int, bounded: bool) -> bytes:
    """Re-encode ``data`` (a ``descriptor`` message) with string fields made valid UTF-8
    and too-deep AnyValues cut; anything else is copied byte for byte. Sub-messages that
    parse on their own (and, when ``bounded``, are too short to nest too deep) are copied
    without being walked."""
    out = bytearray()
    fields = descriptor.fields_by_number
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            body, pos = pos, pos + length
            if pos > end:
                raise _Malformed("truncated")
            field = fields.get(number)
            if field is not None and field.type in (
                FieldDescriptor.TYPE_STRING,
                FieldDescriptor.TYPE_MESSAGE,
            ):
                payload: bytes
                if field.type == FieldDescriptor.TYPE_STRING:
                    payload = bytes(data[body:pos]).decode("utf-8", "replace").encode()
                elif field.message_type.full_name == _ANY_VALUE and depth >= _MAX_MESSAGE_DEPTH:
                    payload = _TOO_DEEP
                elif (not bounded or depth + (pos - body) // 2 < _SAFE_DEPTH) and _parses(
                    field.message_type, data[body:pos]
                ):
                    out += data[start:pos]
                    continue
                else:
                    payload = _repair(data[body:pos], field.message_type, depth + 1, bounded)
                out += _varint(key)
                out += _varint(len(payload))
                out += payload
                continue
        else:
            raise _Malformed(f"wire type {wire}")
        if pos > end:
            raise _Malformed("truncated")
        out += data[start:pos]
    return bytes(out)


class Pipeline:
    def __init__(
        self,
        writer: Writer,
        hasher: Hasher,
        *,
        max_inflight_requests: int = 64,
        max_inflight_bytes: int = 64 << 20,
    ) -> None:
        self.writer = writer
        self.hasher = hasher
        self.max_inflight_requests = max_inflight_requests
        self.max_inflight_bytes = max_inflight_bytes
        self.inflight_requests = 0
        self.inflight_bytes = 0
        self.draining = False

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
        telemetry.INFLIGHT_REQUESTS.set(self.inflight_requests)
        telemetry.INFLIGHT_BYTES.set(self.inflight_bytes)
        try:
            yield
        finally:
            self.inflight_requests -= 1
            self.inflight_bytes -= nbytes
            telemetry.INFLIGHT_REQUESTS.set(self.inflight_requests)
            telemetry.INFLIGHT_BYTES.set(self.inflight_bytes)

    async def export(
        self, signal: Signal, message: Message, *, project_id: int = 1, receiver: str = "grpc"
    ) -> Outcome:
        """Route and commit one OTLP request; returns only after its rows are committed."""
        ctx = RouteContext(hasher=self.hasher, project_id=project_id)
        batch = ROUTERS[signal](message, ctx)
        return await self.commit(signal, batch, receiver=receiver)

    async def commit(self, signal: Signal | str, batch: Batch, *, receiver: str) -> Outcome:
        started = time.perf_counter()
        outcome_label = "ok"
        try:
            result = await self.writer.write(batch)
        except StorageUnavailable:
            outcome_label = "unavailable"
            raise
        finally:
            elapsed = time.perf_counter() - started
            telemetry.REQUESTS.labels(signal, receiver, outcome_label).inc()
            telemetry.EXPORT_SECONDS.labels(signal, receiver).observe(elapsed)
        # The database refuses rows, and one record can make several rows: never report
        # more rejected than received.
        rejected = min(batch.rejected + result.rejected, batch.received)
        message = "; ".join(m for m in (batch.error_message, result.error) if m)
        telemetry.ITEMS_RECEIVED.labels(signal, receiver).inc(batch.received)
        telemetry.ITEMS_ACCEPTED.labels(signal, receiver).inc(max(batch.received - rejected, 0))
        if rejected:
            telemetry.ITEMS_REJECTED.labels(signal, receiver).inc(rejected)
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
