"""decode's wire-level repair, without network: what the strict protobuf parser refuses but the
Collector accepts is repaired in place, and the rest of the request survives unchanged."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric

from processor.errors import InvalidRequest
from processor.ingest.decode import Signal, decode
from tests.helpers.otlp import (
    SERVER,
    event,
    ids,
    ld,
    log,
    logs,
    malformed,
    metrics,
    nested_wire,
    number_point,
    span,
    traces,
    traces_wire,
    with_attribute_wire,
)

# A marker of valid UTF-8, swapped in the serialised bytes for invalid UTF-8 of the same
# length, so every length prefix around it still holds.
MARKER = "@@BAD@@"
BAD = b"@\xff\xfe\xc3(@@"
REPAIRED = BAD.decode("utf-8", "replace")  # each bad byte becomes U+FFFD
CUT = "[nested too deep]"


def with_bad_utf8(data: bytes) -> bytes:
    assert MARKER.encode() in data
    return data.replace(MARKER.encode(), BAD)


def trace_request(text: str, blob: bytes) -> Message:
    """``text`` at several depths (resource, span name, attribute key and value, a string
    inside a list inside a map, span event); ``blob`` in a bytes value."""
    return traces(
        span(
            f"GET {text}",
            {
                "http.request.method": "GET",
                f"key{text}": "v",
                "note": text,
                "nested": {"list": [1, {"deep": text}]},
                "blob": blob,
            },
            kind=SERVER,
            events=[event(f"event{text}", {"why": text})],
        ),
        span("good", {"feature.name": "kept"}, span_id=ids("good")[1]),
        resource={"service.name": f"svc{text}"},
    )


def log_request(text: str, blob: bytes) -> Message:
    return logs(
        log(f"body{text}", {"note": text, "blob": blob}, severity_text=f"WARN{text}"),
        log("good", {"kept": True}),
        resource={"service.name": text},
    )


def metric_request(text: str, blob: bytes) -> Message:
    gauge = Gauge(data_points=[number_point(1.5, {"note": text, "blob": blob})])
    return metrics(
        Metric(name=f"temp{text}", unit=text, gauge=gauge),
        Metric(name="good", gauge=Gauge(data_points=[number_point(7)])),
    )


BUILDERS = {Signal.TRACES: trace_request, Signal.LOGS: log_request, Signal.METRICS: metric_request}


@pytest.mark.parametrize("signal", list(Signal))
def test_a_valid_payload_is_returned_unchanged(signal):
    request = BUILDERS[signal]("fine", b"\x00\xff bytes are not text")
    data = request.SerializeToString()
    decoded = decode(signal, data)
    assert decoded == request
    assert decoded.SerializeToString() == data


@pytest.mark.parametrize("signal", list(Signal))
def test_invalid_utf8_becomes_replacement_characters_and_the_rest_survives(signal):
    build = BUILDERS[signal]
    raw = with_bad_utf8(build(MARKER, MARKER.encode()).SerializeToString())
    with pytest.raises(DecodeError):  # the strict parser refuses it: the repair is what runs
        type(build("", b"")).FromString(raw)
    # Every string that held the marker holds U+FFFD instead; bytes values are not text and
    # keep their bytes; everything else (ids, times, the other records) is as sent.
    assert decode(signal, raw) == build(REPAIRED, BAD)


def leaf(value: AnyValue) -> tuple[AnyValue, int]:
    """The innermost AnyValue along the first entry at each level, and how deep it is."""
    depth = 0
    while True:
        if value.HasField("kvlist_value") and value.kvlist_value.values:
            value = value.kvlist_value.values[0].value
        elif value.HasField("array_value") and value.array_value.values:
            value = value.array_value.values[0]
        else:
            return value, depth
        depth += 1


@pytest.mark.parametrize("kind", ["kvlist", "array"])
@pytest.mark.parametrize("depth", [100, 300])
def test_attribute_nested_deeper_than_the_parser_allows_is_cut_to_the_marker(kind, depth):
    deep = span("deep", {"before": "kept"}, span_id=ids("deep")[1])
    good = span("good", {"feature.name": "kept"}, span_id=ids("good")[1])
    deep_wire = with_attribute_wire(deep.SerializeToString(), 9, "deep", nested_wire(kind, depth))
    raw = traces_wire(deep_wire, good.SerializeToString(), resource={"service.name": "svc"})
    with pytest.raises(DecodeError):
        type(traces()).FromString(raw)

    decoded = decode(Signal.TRACES, raw)
    kept_deep, kept_good = decoded.resource_spans[0].scope_spans[0].spans
    assert kept_good == good
    [expected_resource] = traces(resource={"service.name": "svc"}).resource_spans
    assert decoded.resource_spans[0].resource == expected_resource.resource
    assert [a.key for a in kept_deep.attributes] == ["before", "deep"]
    assert kept_deep.attributes[0] == deep.attributes[0]
    value, levels = leaf(kept_deep.attributes[1].value)
    assert value == AnyValue(string_value=CUT)
    assert 1 <= levels < depth
    assert b"bottom" not in decoded.SerializeToString()
    kept_deep.ClearField("attributes")
    deep.ClearField("attributes")
    assert kept_deep == deep  # ids, name, times: as sent


def test_log_body_nested_too_deep_is_cut_and_the_other_records_survive():
    record = log(None, {"kept": "yes"})
    good = log("good")
    record_wire = record.SerializeToString() + ld(5, nested_wire("array", 150))  # .body
    # request.resource_logs = 1; ResourceLogs.scope_logs = 2; ScopeLogs.log_records = 2
    raw = ld(1, ld(2, ld(2, record_wire) + ld(2, good.SerializeToString())))
    with pytest.raises(DecodeError):
        type(logs()).FromString(raw)

    decoded = decode(Signal.LOGS, raw)
    kept, kept_good = decoded.resource_logs[0].scope_logs[0].log_records
    assert kept_good == good
    assert leaf(kept.body)[0] == AnyValue(string_value=CUT)
    kept.ClearField("body")
    assert kept == record


MALFORMED = {
    **malformed(traces(span("good"), span("good-2", span_id=ids("good-2")[1])).SerializeToString()),
    "bad-utf8-and-truncated": with_bad_utf8(trace_request(MARKER, b"").SerializeToString())[:-5],
    "too-deep-and-truncated": traces_wire(
        with_attribute_wire(span("x").SerializeToString(), 9, "d", nested_wire("kvlist", 80))
    )[:-2],
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_truncated_or_garbage_payload_is_invalid(payload):
    with pytest.raises(InvalidRequest, match="malformed traces request"):
        decode(Signal.TRACES, payload)


@pytest.mark.parametrize("signal", list(Signal))
@pytest.mark.parametrize(
    "payload", [b"\x0a\x05abc", b"\x08", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"]
)
def test_garbage_is_invalid_for_every_signal(signal, payload):
    with pytest.raises(InvalidRequest):
        decode(signal, payload)
