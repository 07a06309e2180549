"""The router's hot-path shortcuts give exactly what the plain definitions give."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from processor.mapping import RouteContext, identity, values
from processor.mapping.privacy import make_hasher, scrub_mapping

KEYS = st.sampled_from(
    [
        "user.id",
        "enduser.id",
        "session.id",
        "client.address",
        "user.email",
        "http.route",
        "url.path",
        "server.address",
        "note",
        "feature.items",
        "x\x00y",
        "k" * 300,
    ]
)
TEXT = st.one_of(
    st.sampled_from(
        ["", "a@b.io", "10.0.0.1", "fe80::1", "ok", "x" * 300, "mail me: a.b@c.de", "1.2.3"]
    ),
    st.text(max_size=30),
)
SCALAR = st.one_of(TEXT, st.integers(-5, 5), st.booleans(), st.floats(allow_nan=False))
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(KEYS, VALUE, max_size=8), min_size=1, max_size=6))
def test_scrubbed_attributes_is_scrub_mapping(batches: list[dict[str, Any]]) -> None:
    hasher = make_hasher()
    for attrs in batches * 2:  # the second pass is served from the memo
        assert identity.scrubbed_attributes(attrs, hasher) == scrub_mapping(attrs, hasher)
        assert list(identity.scrubbed_attributes(attrs, hasher)) == list(
            scrub_mapping(attrs, hasher)
        )


def test_scrubbed_attributes_keeps_true_and_one_apart() -> None:
    hasher = make_hasher()
    assert identity.scrubbed_attributes({"n": 1}, hasher) == {"n": 1}
    out = identity.scrubbed_attributes({"n": True}, hasher)
    assert out == {"n": True} and out["n"] is True


def _slow_attributes(kvs: list[KeyValue]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        if len(out) >= values.MAX_ATTRIBUTES:
            out["_truncated"] = True
            break
        out[values.clean(kv.key, 255)] = values.any_value(kv.value, 0)
    return out


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if value is None:
        return KeyValue(key=key)
    return KeyValue(key=key, value=AnyValue(string_value=value))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(KEYS, st.text(max_size=10)),
            st.one_of(TEXT, st.just("\x00" * 3), st.integers(-(2**63), 2**63 - 1), st.booleans())
            | st.none()
            | st.floats(),
        ),
        max_size=12,
    )
)
def test_attributes_fast_path_is_the_plain_loop(pairs: list[tuple[str, Any]]) -> None:
    kvs = [_kv(k, v) for k, v in pairs]
    fast = values.attributes(kvs)
    slow = _slow_attributes(kvs)
    assert list(fast) == list(slow)
    for key in slow:
        a, b = fast[key], slow[key]
        assert type(a) is type(b) and (a == b or (a != a and b != b))


def test_attributes_over_the_bound_is_truncated() -> None:
    kvs = [_kv(f"k{i}", i) for i in range(values.MAX_ATTRIBUTES + 5)]
    assert values.attributes(kvs) == _slow_attributes(kvs)
    assert values.attributes(iter(kvs)) == _slow_attributes(kvs)


PROPERTY_KEYS = st.one_of(
    KEYS,
    st.sampled_from(["user.properties.", "user.properties.plan", "_user_properties", "x.user.p"]),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(PROPERTY_KEYS, VALUE, max_size=6))
def test_has_user_properties_is_false_only_when_there_are_none(attrs: dict[str, Any]) -> None:
    ctx = RouteContext(hasher=make_hasher())
    rows = identity.user_property_rows(attrs, "u", ctx.now, (None, None), ctx)
    assert identity.has_user_properties(attrs) or rows == []
