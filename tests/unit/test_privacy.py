"""Identifier hashing and PII scrubbing (SPEC §7)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from processor.mapping import RouteContext, route_logs, route_metrics, route_traces
from processor.mapping.privacy import Hasher, make_hasher, scrub_mapping, scrub_text, scrub_value
from processor.mapping.rows import TABLES, Batch
from tests.helpers.otlp import (
    SERVER,
    SPAN_ID,
    event,
    log,
    logs,
    metrics,
    number_point,
    span,
    tables_with_rows,
    traces,
)

KEY = "k" * 32


# --- hashing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["user-42", "alice@example.com", "", "ünïcödé"])
def test_plain_hash_is_sha256_hex_prefix(raw: str) -> None:
    assert make_hasher()(raw) == hashlib.sha256(raw.encode()).hexdigest()[:16]
    assert make_hasher(None)(raw) == make_hasher("")(raw) == make_hasher()(raw)


@pytest.mark.parametrize("raw", ["user-42", "alice@example.com", "", "ünïcödé"])
def test_keyed_hash_is_hmac_sha256_hex_prefix(raw: str) -> None:
    expected = hmac.new(KEY.encode(), raw.encode(), hashlib.sha256).hexdigest()[:16]
    assert make_hasher(KEY)(raw) == expected


def test_keyed_hash_differs_from_plain_hash_and_between_keys() -> None:
    values = {make_hasher()("u1"), make_hasher(KEY)("u1"), make_hasher("j" * 32)("u1")}
    assert len(values) == 3


def test_hash_is_sixteen_lowercase_hex_characters() -> None:
    digest = make_hasher()("x")
    assert len(digest) == 16
    assert set(digest) <= set("0123456789abcdef")


# --- scrub_text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pii"),
    [
        ("contact alice.smith+tag@example.co.uk now", "alice.smith+tag@example.co.uk"),
        ("user bob@example.com.", "bob@example.com"),
        ("from 192.168.1.20, retrying", "192.168.1.20"),
        ("client 10.0.0.1.", "10.0.0.1"),
        ("ip=255.255.255.255", "255.255.255.255"),
        (
            "peer 2001:0db8:85a3:0000:0000:8a2e:0370:7334 left",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        ),
        ("peer 2001:db8::8a2e:370:7334 left", "2001:db8::8a2e:370:7334"),
        ("peer fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a"),
        ("url http://[2001:db8::1]:8080/x", "2001:db8::1"),
        ("loopback ::1 only", "::1"),
        ("prefix 2001:db8:: end", "2001:db8::"),
        ("mapped ::ffff:192.0.2.1 peer", "192.0.2.1"),
        ("<carol@example.net>", "carol@example.net"),
    ],
)
def test_scrub_text_replaces_emails_and_ip_addresses_with_their_hashes(
    h: Hasher, text: str, pii: str
) -> None:
    scrubbed = scrub_text(text, h)
    assert pii not in scrubbed
    assert h(pii) in scrubbed
    assert scrubbed == text.replace(pii, h(pii))


@pytest.mark.parametrize(
    "text",
    [
        "GET /api/v1/users returned 200",
        "version 1.2.3 released",
        "started at 12:30:45 UTC",
        "ratio 3:4, took 0.25s",
        "std::vector<int> overflow",
        "a :: b",
        "Traceback (most recent call last): File 'app.py', line 3",
        "price 1.5.2025",
        "twitter @handle and foo@bar",
        "",
    ],
)
def test_scrub_text_leaves_ordinary_text_alone(h: Hasher, text: str) -> None:
    assert scrub_text(text, h) == text


@pytest.mark.parametrize(
    "hostile",
    ["a." * 32_000 + "@", "1.2.3." * 11_000, "abc:def:" * 8_000, "a@" * 32_000, "x" * 65_536],
)
def test_scrub_text_takes_linear_time_on_long_hostile_text(h: Hasher, hostile: str) -> None:
    started = time.perf_counter()
    scrub_text(hostile, h)
    # Quadratic matching took several seconds on these 64 KB strings.
    assert time.perf_counter() - started < 1.0


# --- scrub_mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "user.id",
        "enduser.id",
        "user.email",
        "user.name",
        "user.full_name",
        "organization.id",
        "tenant.id",
        "session.id",
        "client.address",
        "http.client_ip",
        "net.peer.ip",
        "network.peer.address",
    ],
)
def test_scrub_mapping_hashes_sensitive_keys(h: Hasher, key: str) -> None:
    assert scrub_mapping({key: "Raw Value 7"}, h) == {key: h("Raw Value 7")}


def test_scrub_mapping_hashes_non_string_sensitive_values_as_text(h: Hasher) -> None:
    assert scrub_mapping({"user.id": 42, "session.id": None}, h) == {
        "user.id": h("42"),
        "session.id": None,
    }


def test_scrub_mapping_hashes_every_item_of_a_sensitive_list_or_map(h: Hasher) -> None:
    scrubbed = scrub_mapping(
        {"user.email": ["a@x.io", "b-raw"], "user.id": {"primary": "raw-1", "n": 7}}, h
    )
    assert scrubbed == {
        "user.email": [h("a@x.io"), h("b-raw")],
        "user.id": {"primary": h("raw-1"), "n": h("7")},
    }


def test_scrub_mapping_walks_nested_values(h: Hasher) -> None:
    scrubbed = scrub_mapping(
        {
            "order": {"buyer": {"email": "eve@example.org", "note": "ship to 10.1.2.3"}},
            "recipients": ["x@example.com", "plain", 3],
            "count": 3,
            "flag": True,
            "label": "checkout",
        },
        h,
    )
    assert scrubbed == {
        "order": {"buyer": {"email": h("eve@example.org"), "note": f"ship to {h('10.1.2.3')}"}},
        "recipients": [h("x@example.com"), "plain", 3],
        "count": 3,
        "flag": True,
        "label": "checkout",
    }


def test_scrub_mapping_does_not_modify_its_input(h: Hasher) -> None:
    original = {"user.id": "u", "nested": {"email": "a@b.io"}}
    scrub_mapping(original, h)
    assert original == {"user.id": "u", "nested": {"email": "a@b.io"}}


def test_scrub_value_scrubs_strings_lists_and_maps(h: Hasher) -> None:
    assert scrub_value("mail a@b.io", h) == f"mail {h('a@b.io')}"
    assert scrub_value(["a@b.io"], h) == [h("a@b.io")]
    assert scrub_value({"ip": "1.2.3.4"}, h) == {"ip": h("1.2.3.4")}
    assert scrub_value(1.5, h) == 1.5


# --- no raw identifier anywhere in the rows ---------------------------------------------------

RAW = {
    "user": "raw-user-4711",
    "enduser": "raw-enduser-4712",
    "org": "raw-org-acme-corp",
    "tenant": "raw-tenant-globex",
    "session": "raw-session-9f3c",
    "email": "alice.secret@example.com",
    "email2": "bob.hidden@example.org",
    "name": "Alice Secretname",
    "full_name": "Alice Q. Secretname",
    "ipv4": "203.0.113.77",
    "ipv4b": "198.51.100.23",
    "ipv6": "2001:db8::beef:1",
    "ipv6b": "2001:db8:0:0:0:0:cafe:2",
}


def _identity(user_key: str = "user.id", org_key: str = "organization.id") -> dict[str, Any]:
    return {
        user_key: RAW["user"] if user_key == "user.id" else RAW["enduser"],
        org_key: RAW["org"] if org_key == "organization.id" else RAW["tenant"],
        "session.id": RAW["session"],
        "user.email": RAW["email"],
        "user.name": RAW["name"],
        "user.full_name": RAW["full_name"],
        "client.address": RAW["ipv4"],
        "http.client_ip": RAW["ipv4b"],
        "net.peer.ip": RAW["ipv6"],
        "network.peer.address": RAW["ipv6b"],
    }


def _hostile_requests() -> tuple[Any, Any, Any]:
    nested = {
        "contact": {"email": RAW["email2"], "user.id": RAW["user"], "ip": RAW["ipv4"]},
        "history": [f"login from {RAW['ipv6']}", {"session.id": RAW["session"]}],
        "note": f"forwarded for {RAW['ipv4b']}; reply to {RAW['email']}",
    }
    http = {
        "http.request.method": "GET",
        "url.path": f"/users/{RAW['email']}/orders/{RAW['ipv4']}",
        "url.full": f"https://shop.example/u/{RAW['email2']}?ip={RAW['ipv4b']}",
        "http.target": f"/u?email={RAW['email']}",
        "http.response.status_code": 200,
    }
    request_traces = traces(
        span(
            f"GET /users/{RAW['email']}",
            {
                **http,
                **_identity(),
                "feature.name": "profile",
                "performance.metric": "render",
                "user.properties.email": RAW["email2"],
                "user.properties.last_ip": RAW["ipv4"],
                "_user_properties": {"contact": nested["contact"]},
                "nested": nested,
            },
            kind=SERVER,
            events=[
                event(
                    "exception",
                    {
                        "exception.type": "LookupError",
                        "exception.message": f"no user {RAW['email']} at {RAW['ipv4']}",
                        "exception.stacktrace": f"at lookup({RAW['email2']}, {RAW['ipv6']})",
                        **_identity("enduser.id", "tenant.id"),
                    },
                ),
                event(
                    f"user.login by {RAW['email']}",
                    {"feature.name": "sso", "nested": nested, **_identity()},
                ),
                event("user.login", {"event.name": "user.login", **_identity()}),
            ],
        ),
        span(
            "user.signup",
            {
                "rpc.system": "grpc",
                "rpc.service": "Accounts",
                "rpc.method": f"Create{RAW['email']}",
                **_identity("enduser.id", "tenant.id"),
            },
            kind=SERVER,
            span_id=b"\x02" * 8,
        ),
        resource={**_identity("enduser.id", "tenant.id"), "service.name": "shop"},
    )
    request_logs = logs(
        log(
            f"password reset for {RAW['email']} from {RAW['ipv4']} / {RAW['ipv6']}",
            {**_identity(), "nested": nested, "feature.name": "reset"},
            severity_number=13,
        ),
        log(
            {"user.id": RAW["user"], "email": RAW["email2"], "msg": f"hi {RAW['email']}"},
            {**_identity("enduser.id", "tenant.id"), "exception.stacktrace": RAW["email"]},
            event_name="user.logout",
        ),
        log(
            None,
            {"log.type": "performance", "fps": 30, "user.properties.mail": RAW["email"]},
            event_name=f"session.start {RAW['email2']}",
        ),
        resource=_identity(),
    )
    request_metrics = metrics(
        Metric(
            name="http.server.active_requests",
            gauge=Gauge(data_points=[number_point(3.0, {**_identity(), "nested": nested})]),
        ),
        resource=_identity("enduser.id", "tenant.id"),
    )
    return request_traces, request_logs, request_metrics


@pytest.mark.parametrize("key", [None, KEY])
def test_no_raw_identifier_anywhere_in_the_rows(key: str | None) -> None:
    hasher = make_hasher(key)
    ctx = RouteContext(hasher=hasher)
    request_traces, request_logs, request_metrics = _hostile_requests()
    batches: list[Batch] = [
        route_traces(request_traces, ctx),
        route_logs(request_logs, ctx),
        route_metrics(request_metrics, ctx),
    ]
    every_table = set().union(*(tables_with_rows(b.rows) for b in batches))
    assert every_table == set(TABLES)
    dump = "\n".join(repr(row) for b in batches for rows in b.rows.values() for row in rows)
    # JSON columns may escape characters; decode them so an escaped raw value is still found.
    decoded = "\n".join(
        json.dumps(json.loads(cell), ensure_ascii=False)
        for b in batches
        for rows in b.rows.values()
        for row in rows
        for column, cell in row._asdict().items()
        if column in ("event_metadata", "metadata", "property_value")
    )
    for label, raw in RAW.items():
        assert raw not in dump, f"raw {label} {raw!r} in rows"
        assert raw not in decoded, f"raw {label} {raw!r} in JSON columns"
    # ...and the hashes are there, so the search above looked at the right rows.
    assert hasher(RAW["user"]) in dump
    assert hasher(RAW["email"]) in dump
    assert hasher(RAW["ipv6"]) in dump


def test_identity_columns_hold_the_hash_of_the_raw_value(ctx: RouteContext, h: Hasher) -> None:
    batch = route_traces(
        traces(span("user.login", _identity(), kind=Span.SPAN_KIND_SERVER, span_id=SPAN_ID)), ctx
    )
    row = batch.rows["user_activity"][0]
    assert (row.user_id, row.organization_id, row.session_id) == (
        h(RAW["user"]),
        h(RAW["org"]),
        h(RAW["session"]),
    )
    metadata = json.loads(row.event_metadata)
    assert metadata["user.id"] == h(RAW["user"])
    assert metadata["user.email"] == h(RAW["email"])
    assert metadata["client.address"] == h(RAW["ipv4"])
