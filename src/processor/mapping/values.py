"""Values: bounded, NUL-free text and JSON from OTLP values; ids, paths and severities.

Pure functions and the look-up tables they use; nothing here knows about tables or users.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from processor.errors import FieldError
from processor.mapping.rows import LENGTHS

# (lowest severity_number, level), searched from the top.
SEVERITY_LEVELS = (
    (21, "fatal"),
    (17, "error"),
    (13, "warning"),
    (9, "info"),
    (5, "debug"),
    (1, "trace"),
)


SEVERITY_TEXT = {
    "trace": "trace",
    "debug": "debug",
    "info": "info",
    "information": "info",
    "notice": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "err": "error",
    "critical": "fatal",
    "crit": "fatal",
    "fatal": "fatal",
    "panic": "fatal",
    "emergency": "fatal",
    "alert": "fatal",
}


TRACE_ID_BYTES = 16


SPAN_ID_BYTES = 8


# Bounds that keep one hostile record from costing memory or a failed insert.
MAX_DEPTH = 8


MAX_ATTRIBUTES = 256


MAX_ITEMS = 256


MAX_STRING = 4096


MAX_TEXT = 65536


# Look-up tables shared by the OTLP mappers and the JSON API mappers.
ACTIVITY_EVENTS = {
    "user.login": "login",
    "user.logout": "logout",
    "user.signup": "signup",
    "session.start": "session_start",
    "session.end": "session_end",
}


LOG_TYPES = frozenset(
    {
        "general",
        "analytics",
        "event",
        "performance",
        "network",
        "security",
        "exception",
        "crash",
        "custom",
    }
)


# log attribute -> (metric_type, unit) for performance logs (OTLP and the Telling Logger API).
PERFORMANCE_LOG_ATTRIBUTES = {
    "startup_time_ms": ("startup_time", "ms"),
    "fps": ("fps", "fps"),
    "memory_mb": ("memory", "MB"),
    "screen_load_ms": ("screen_load", "ms"),
}


_ID_SEGMENT = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|[^/@]+@[^/@]+)$"
)


def clean(text: str, limit: int = MAX_STRING) -> str:
    """Text PostgreSQL accepts: no NUL characters, bounded length."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if len(text) > limit:
        text = text[:limit]
    return text


def any_value(value: AnyValue, depth: int = 0, limit: int = MAX_STRING) -> Any:
    """An OTLP AnyValue as a JSON-ready Python value, bounded in size and depth."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return clean(value.string_value, limit)
    if kind == "int_value" or kind == "bool_value":
        return getattr(value, kind)
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)
    if kind == "array_value":
        if depth >= MAX_DEPTH:
            return "[nested too deep]"
        return [any_value(v, depth + 1) for v in value.array_value.values[:MAX_ITEMS]]
    if kind == "kvlist_value":
        if depth >= MAX_DEPTH:
            return "{nested too deep}"
        return attributes(value.kvlist_value.values, depth + 1)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value[:MAX_STRING]).decode()
    return None


def attributes(kvs: Iterable[KeyValue], depth: int = 0) -> dict[str, Any]:
    try:
        bounded = len(kvs) <= MAX_ATTRIBUTES  # type: ignore[arg-type]
    except TypeError:
        bounded = False
    out: dict[str, Any] = {}
    if bounded:
        # The hot path (every span and record): no bound to check, and the common kinds of
        # value read inline. Same result as the loop below.
        for kv in kvs:
            key = kv.key
            if len(key) > 255 or "\x00" in key:
                key = clean(key, 255)
            value = kv.value
            string = value.string_value
            if string:  # non-empty, so the oneof holds a string
                out[key] = clean(string) if len(string) > MAX_STRING or "\x00" in string else string
                continue
            kind = value.WhichOneof("value")
            if kind == "string_value":
                out[key] = string
            elif kind == "int_value":
                out[key] = value.int_value
            elif kind == "bool_value":
                out[key] = value.bool_value
            else:
                out[key] = any_value(value, depth)
        return out
    for kv in kvs:
        if len(out) >= MAX_ATTRIBUTES:
            out["_truncated"] = True
            break
        out[clean(kv.key, 255)] = any_value(kv.value, depth)
    return out


def full_string(kvs: Iterable[KeyValue], key: str) -> str | None:
    """The first string KeyValue named ``key``, clipped at MAX_TEXT; None when there is none."""
    for kv in kvs:
        if kv.key == key and kv.value.WhichOneof("value") == "string_value":
            return clean(kv.value.string_value, MAX_TEXT)
    return None


def long_text(kvs: Iterable[KeyValue], key: str, short: Any) -> Any:
    """A string attribute clipped at MAX_TEXT rather than MAX_STRING (stack traces)."""
    if not isinstance(short, str) or len(short) < MAX_STRING:
        return short
    found = full_string(kvs, key)
    return short if found is None else found


def lookup(keys: Iterable[str], *sources: Mapping[str, Any]) -> Any:
    """The first present value: each key in each source, record attributes before resource."""
    for source in sources:
        for key in keys:
            value = source.get(key)
            if value is not None and value != "":
                return value
    return None


def text(value: Any, column: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)
    return clean(value, LENGTHS[column])


def to_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if -(2**31) <= number < 2**31 else None


def to_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def timestamp(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC)


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def row_id(*parts: object) -> str:
    """A deterministic row id (UUID hex), so a retried request maps to the same rows."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def normalize_path(path: str) -> str:
    """The path without query, with id-like segments replaced by ``{id}``."""
    path = path.split("?", 1)[0].split("#", 1)[0] or "/"
    # Fast path: no segment can be id-like. A long hex id may be digit-free ("deadbeef…"),
    # so only short paths skip the per-segment match.
    if len(path) < 16 and not any(c.isdigit() or c == "@" for c in path):
        return path
    return "/".join("{id}" if _ID_SEGMENT.match(s) else s for s in path.split("/"))


def path_of_url(url: str) -> str:
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


def level_of(severity_number: int, severity_text: str) -> str:
    if severity_number > 0:
        for least, level in SEVERITY_LEVELS:
            if severity_number >= least:
                return level
    return SEVERITY_TEXT.get(severity_text.strip().lower(), "info")


# --- fields of the JSON API documents: a missing or wrong one is a FieldError naming it ------


def json_object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldError(name, "must be an object")
    return value


def json_string(
    item: Mapping[str, Any], key: str, prefix: str, *, required: bool = False
) -> str | None:
    value = item.get(key)
    if value is None or value == "":
        if required:
            raise FieldError(f"{prefix}{key}", "is required")
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise FieldError(f"{prefix}{key}", "must be a string")
    return value


def json_time(item: Mapping[str, Any], key: str, prefix: str, default: datetime) -> datetime:
    value = item.get(key)
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value  # epoch milliseconds or seconds
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise FieldError(f"{prefix}{key}", "is out of range") from None
    if not isinstance(value, str):
        raise FieldError(f"{prefix}{key}", "must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FieldError(f"{prefix}{key}", "must be an ISO 8601 timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
