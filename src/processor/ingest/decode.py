"""Decoding, for every wire format: OTLP protobuf (repairing what the parser refuses),
OTLP/JSON (hex ids) and the JSON APIs' documents. Runs in the routing thread, never on the
event loop.

The Collector accepts strings with invalid UTF-8 and attribute values nested deeper than the
protobuf parser allows; so do we, by re-encoding just those parts, so one such attribute does
not cost the whole request. Anything else that does not parse is the client's error.
"""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import Any

import orjson
import structlog
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from processor.errors import InvalidRequest

log = structlog.get_logger(__name__)


class Signal(StrEnum):
    TRACES = "traces"
    LOGS = "logs"
    METRICS = "metrics"


REQUEST_TYPES: dict[Signal, type[Message]] = {
    Signal.TRACES: ExportTraceServiceRequest,
    Signal.LOGS: ExportLogsServiceRequest,
    Signal.METRICS: ExportMetricsServiceRequest,
}


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


# OTLP/JSON encodes these bytes fields as hex; protobuf's JSON mapping expects base64.
HEX_ID_FIELDS = frozenset(
    {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
)


def json_document(data: bytes) -> Any:
    """A JSON request body; a body that does not parse is the client's error."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}") from exc


def decode_json(signal: Signal, data: bytes) -> Message:
    """Parse an OTLP/JSON request (hex ids, lowerCamelCase names, unknown fields ignored)."""
    document = json_document(data)
    if not isinstance(document, dict):
        raise InvalidRequest("an OTLP/JSON request must be a JSON object")
    hex_ids_to_base64(document)
    message = REQUEST_TYPES[signal]()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise InvalidRequest(f"malformed OTLP/JSON {signal} request: {exc}") from exc
    return message


def hex_ids_to_base64(node: Any) -> None:
    """Rewrite OTLP/JSON hex ids in place so ``json_format`` can parse the message."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in HEX_ID_FIELDS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raw = b"\x00"  # wrong length: the router rejects just this record
                node[key] = base64.b64encode(raw).decode()
            elif isinstance(value, (dict, list)):
                hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            hex_ids_to_base64(item)


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
