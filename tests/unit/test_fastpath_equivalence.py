"""The compiled fast path (mapping/_wire.c) gives exactly the reference's views, rows and
rejections on generated, hostile, corrupted and random requests, or declines them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import structlog.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from processor.ingest import formats
from processor.ingest.decode import Signal
from processor.mapping import RouteContext, fast
from processor.mapping.identity import scrubbed_attributes
from processor.mapping.privacy import (
    SENSITIVE_KEYS,
    make_hasher,
    scrub_candidates,
    scrub_mapping,
)
from processor.settings import Settings, SettingsError
from tests.helpers.fastpath import compare, require_extension, strict
from tests.helpers.otlp_strategies import (
    BAD_UTF8,
    field,
    hostile_requests,
    log_requests,
    mutated,
    nested_kvlist,
    trace_requests,
)

EQUIVALENCE = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CTX = RouteContext(hasher=make_hasher(), project_id=1, now=datetime(2024, 1, 1, tzinfo=UTC))
KEYED = RouteContext(
    hasher=make_hasher("k" * 32), project_id=3, now=datetime(2024, 1, 1, tzinfo=UTC)
)


@EQUIVALENCE
@given(request=trace_requests())
def test_generated_traces_take_the_fast_path_with_the_same_rows(request):
    assert compare(Signal.TRACES, request.SerializeToString(), CTX) == "fast"


@EQUIVALENCE
@given(request=log_requests())
def test_generated_logs_take_the_fast_path_with_the_same_rows(request):
    assert compare(Signal.LOGS, request.SerializeToString(), KEYED) == "fast"


@EQUIVALENCE
@given(case=hostile_requests())
def test_hostile_requests_give_the_same_rows_or_are_declined(case):
    compare(*case, CTX)


@EQUIVALENCE
@given(case=mutated())
def test_corrupted_requests_give_the_same_rows_or_rejection(case):
    compare(*case, CTX)


@EQUIVALENCE
@given(signal=st.sampled_from([Signal.TRACES, Signal.LOGS]), data=st.binary(max_size=512))
def test_random_bytes_give_the_same_rows_or_rejection(signal, data):
    compare(signal, data, CTX)


def span_request(*span_fields: bytes) -> bytes:
    span = field(1, 2, b"t" * 16) + field(2, 2, b"s" * 8) + field(7, 1, b"\x01" * 8)
    return field(1, 2, field(2, 2, field(2, 2, span + b"".join(span_fields))))


def test_unknown_fields_in_a_span_are_skipped_on_the_fast_path():
    data = span_request(field(900, 0, 5), field(901, 2, b"\xff\xff"), field(5, 2, b"op"))
    assert compare(Signal.TRACES, data, CTX) == "fast"


@pytest.mark.parametrize("bad", BAD_UTF8)
def test_invalid_utf8_is_left_to_the_reference_repair(bad):
    data = span_request(field(9, 2, field(1, 2, b"key") + field(2, 2, field(1, 2, bad))))
    assert compare(Signal.TRACES, data, CTX) == "declined"


def test_nesting_deeper_than_the_walker_goes_is_left_to_the_reference():
    deep = field(9, 2, field(1, 2, b"deep") + field(2, 2, nested_kvlist(70, b"x")))
    assert compare(Signal.TRACES, span_request(deep), CTX) == "declined"


def test_a_log_record_upb_would_reserialize_differently_is_left_to_the_reference():
    record = field(12, 2, b"evt") + field(1, 1, b"\x01" * 8)  # out of field order
    data = field(1, 2, field(2, 2, field(2, 2, record)))
    assert compare(Signal.LOGS, data, CTX) == "declined"


def test_truncated_request_is_refused_with_the_reference_error():
    data = span_request(field(5, 2, b"op"))[:-1]
    assert compare(Signal.TRACES, data, CTX) == "invalid"


def test_formats_use_the_fast_path_unless_it_is_off(monkeypatch):
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"t" * 16, span_id=b"s" * 8, name="op", start_time_unix_nano=1
    )
    calls: list[bytes] = []
    walk = fast.walk_traces
    monkeypatch.setattr(fast, "walk_traces", lambda data: calls.append(data) or walk(data))
    data = request.SerializeToString()
    fast_batch, _ = formats.OTLP_PROTOBUF[Signal.TRACES].process(data, CTX, 1000)
    assert calls == [data]
    fast.configure("off")
    try:
        assert fast.walk_traces is not walk and walk(data) is None
        reference, _ = formats.OTLP_PROTOBUF[Signal.TRACES].process(data, CTX, 1000)
    finally:
        fast.configure("auto")
    assert fast_batch == reference and fast_batch.received == 1


def test_logs_format_routes_fast_views():
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=5)
    batch, _ = formats.OTLP_PROTOBUF[Signal.LOGS].process(request.SerializeToString(), CTX, 10)
    assert len(batch.rows["logs"]) == 1


def test_unknown_fields_inside_values_are_skipped_like_upb():
    """Found by the fuzzer: an unknown field inside an ArrayValue is not an item."""
    item = field(1, 2, b"a")
    array = field(5, 2, field(1, 2, item) + field(9, 2, b"\x0a\x05") + field(1, 2, item))
    kvlist = field(6, 2, field(1, 2, field(1, 2, b"k") + field(2, 2, item)) + field(7, 0, 1))
    any_value = field(30, 0, 3) + field(3, 0, 42)
    data = span_request(
        *(
            field(9, 2, field(1, 2, key) + field(2, 2, value) + field(3, 5, b"\0\0\0\0"))
            for key, value in ((b"array", array), (b"kvlist", kvlist), (b"int", any_value))
        )
    )
    assert compare(Signal.TRACES, data, CTX) == "fast"


@EQUIVALENCE
@given(
    attrs=st.dictionaries(
        st.one_of(st.sampled_from(sorted(SENSITIVE_KEYS)), st.text(max_size=12)),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=True),
            st.text(max_size=20),
            st.sampled_from(["a@b", "1.2", "::1", "plain", "é:"]),
            st.lists(st.text(max_size=3), max_size=2),
            st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
        ),
        max_size=8,
    )
)
def test_compiled_scrub_pass_keeps_what_the_python_pass_keeps(attrs):
    wire = require_extension()
    compiled = wire.scrub_candidates(attrs, SENSITIVE_KEYS)
    assert strict(compiled) == strict(scrub_candidates(attrs, SENSITIVE_KEYS))
    hasher = make_hasher()
    fast.configure("off")
    try:
        reference = scrubbed_attributes(attrs, hasher)
    finally:
        fast.configure("auto")
    assert strict(scrubbed_attributes(attrs, hasher)) == strict(reference)
    assert strict(reference) == strict(scrub_mapping(attrs, hasher))


def test_without_the_extension_the_reference_routes_and_start_warns(monkeypatch):
    monkeypatch.setattr(fast, "_WIRE", None)
    monkeypatch.setattr(fast, "UNAVAILABLE_REASON", "No module named '_wire'")
    with structlog.testing.capture_logs() as logs:
        fast.configure("auto")
    try:
        assert [e["event"] for e in logs] == ["fast_path_unavailable"]
        assert logs[0]["log_level"] == "warning" and "_wire" in logs[0]["reason"]
        assert not fast.enabled() and fast.scrub_candidates is scrub_candidates
        request = ExportLogsServiceRequest()
        request.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=5)
        batch, _ = formats.OTLP_PROTOBUF[Signal.LOGS].process(request.SerializeToString(), CTX, 9)
        assert len(batch.rows["logs"]) == 1
    finally:
        monkeypatch.undo()
        fast.configure("auto")
    assert fast.enabled()


def test_fast_path_setting_is_auto_or_off():
    assert Settings.from_env({}).fast_path == "auto"
    assert Settings.from_env({"FAST_PATH": "OFF"}).fast_path == "off"
    with pytest.raises(SettingsError, match="FAST_PATH"):
        Settings.from_env({"FAST_PATH": "fast"})
