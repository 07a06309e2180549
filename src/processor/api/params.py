"""Request parameters: parsed and checked here, so a bad one is a 400 that names it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from processor.api.readers import Period
from processor.errors import FieldError

T = TypeVar("T", bound=str)
DEFAULT_SPAN = timedelta(days=1)
MAX_TEXT = 512


BadParameter = FieldError  # a query parameter or body field, named in the 400


def parse_time(name: str, raw: str, *, end: bool = False) -> datetime:
    """ISO 8601 / RFC 3339, as UTC. A bare date is that day's midnight; as an end, the next one
    (ranges are half-open, so ``endDate=2025-01-31`` includes the whole 31st)."""
    value = raw.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise BadParameter(name, f"must be an ISO 8601 date or time, got {raw[:40]!r}") from None
    if end and len(value) == 10:
        parsed += timedelta(days=1)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def period(
    query: Mapping[str, str],
    start_name: str = "start",
    end_name: str = "end",
    *,
    now: datetime | None = None,
    default_span: timedelta = DEFAULT_SPAN,
) -> Period:
    """The [start, end) range; end defaults to now, start to ``default_span`` before end."""
    raw_end = query.get(end_name)
    raw_start = query.get(start_name)
    stop = parse_time(end_name, raw_end, end=True) if raw_end else (now or datetime.now(UTC))
    begin = parse_time(start_name, raw_start) if raw_start else stop - default_span
    if begin >= stop:
        raise BadParameter(start_name, f"must be before {end_name}")
    return Period(begin, stop)


def integer(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(name, f"must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise BadParameter(name, f"must be between {low} and {high}, got {value}")
    return value


def choice(query: Mapping[str, str], name: str, options: Sequence[T], default: T) -> T:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    for option in options:
        if raw == option:
            return option
    raise BadParameter(name, f"must be one of {', '.join(options)}, got {raw[:40]!r}")


def text(query: Mapping[str, str], name: str) -> str | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_TEXT or "\x00" in raw:
        raise BadParameter(name, f"must be at most {MAX_TEXT} characters, without NUL")
    return raw


def optional_choice(query: Mapping[str, str], name: str, options: Sequence[str]) -> str | None:
    if not query.get(name):
        return None
    return choice(query, name, options, options[0])
