"""Alert rules: parsing and checking (pure). A bad value raises FieldError naming it."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from processor.errors import FieldError
from processor.mapping.telling_logger import LEVELS

ENDPOINT_SOURCES = (
    "endpoint.error_rate",
    "endpoint.p95_ms",
    "endpoint.p99_ms",
    "endpoint.request_count",
)
METRIC_STATS = ("avg", "min", "max", "p50", "p90", "p95", "p99")
OPS = (">", ">=", "<", "<=")
SEVERITIES = ("info", "warning", "error", "critical")
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW = timedelta(days=90)
MAX_CHANNELS = 10


def parse_duration(name: str, text: str, *, zero: bool = False) -> timedelta:
    """A number and s, m, h or d (SPEC §14): ``30s``, ``5m``, ``1h``, ``2d``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise FieldError(name, f"must be a number and s, m, h or d (e.g. 5m), got {text!r}")
    value = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if not zero and value <= timedelta(0):
        raise FieldError(name, f"must be longer than 0, got {text!r}")
    if value > MAX_WINDOW:
        raise FieldError(name, f"must be at most 90d, got {text!r}")
    return value


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Source:
    """What a rule measures: kind endpoint | metric | logs, and its statistic."""

    kind: str
    stat: str  # error_rate | p95_ms | p99_ms | request_count; avg … p99; count
    metric: str | None = None  # metric:NAME
    level: str | None = None  # logs.count:LEVEL


def parse_source(text: str) -> Source:
    text = text.strip()
    if text in ENDPOINT_SOURCES:
        return Source("endpoint", text.split(".", 1)[1])
    if text.startswith("metric:"):
        name, dot, stat = text[len("metric:") :].rpartition(".")
        if not dot or not name or stat not in METRIC_STATS:
            raise FieldError(
                "source",
                f"metric:NAME.STAT needs STAT one of {', '.join(METRIC_STATS)}, got {text!r}",
            )
        return Source("metric", stat, metric=name)
    if text == "logs.count":
        return Source("logs", "count")
    if text.startswith("logs.count:"):
        level = text[len("logs.count:") :]
        if level not in LEVELS:
            raise FieldError(
                "source", f"log level must be one of {', '.join(LEVELS)}, got {level!r}"
            )
        return Source("logs", "count", level=level)
    raise FieldError(
        "source",
        f"must be one of {', '.join(ENDPOINT_SOURCES)}, metric:NAME.STAT, logs.count[:LEVEL]; "
        f"got {text!r}",
    )


def check_webhook(url: str, allowed_hosts: Sequence[str] = ()) -> str:
    """An http(s) URL with a host, on the allowlist when one is set."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        _ = parts.port  # raises on a bad port
    except ValueError:
        raise FieldError("webhook", f"is not a valid URL: {redact(url)}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise FieldError("webhook", f"must be an http or https URL, got {redact(url)}")
    if allowed_hosts and host.lower() not in {h.lower() for h in allowed_hosts}:
        raise FieldError("webhook", f"host {host!r} is not in ALERT_WEBHOOK_ALLOWED_HOSTS")
    return url.strip()


def redact(url: str) -> str:
    """The URL as logs and answers show it: scheme, host and port only; a path, query or
    user-info (which may hold tokens, as Slack's do) becomes '…'."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    hidden = parts.username or parts.password or parts.path not in ("", "/") or parts.query
    return urlunsplit((parts.scheme, f"{host}{port}", "/…" if hidden else "", "", ""))


@dataclass(frozen=True)
class RuleSpec:
    """A checked rule, as stored in alert_rules."""

    name: str
    source: str
    op: str
    threshold: float
    window: timedelta
    for_duration: timedelta = timedelta(0)
    severity: str = "warning"
    service: str | None = None
    endpoint: str | None = None
    channels: tuple[str, ...] = field(default=())

    @property
    def parsed_source(self) -> Source:
        return parse_source(self.source)


def _threshold(value: object) -> float:
    if isinstance(value, bool):
        raise FieldError("threshold", f"must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FieldError("threshold", f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise FieldError("threshold", f"must be a finite number, got {value!r}")
    return number


def _text(name: str, value: object, limit: int, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise FieldError(name, "is required")
        return None
    if not isinstance(value, str) or len(value) > limit or not value.strip():
        raise FieldError(name, f"must be a non-empty string of at most {limit} characters")
    if "\x00" in value:
        raise FieldError(name, "must not contain NUL characters")
    return value.strip()


def build_rule(
    *,
    name: object,
    source: object,
    op: object,
    threshold: object,
    window: object,
    for_duration: object = None,
    severity: object = None,
    service: object = None,
    endpoint: object = None,
    webhooks: Iterable[object] = (),
    allowed_hosts: Sequence[str] = (),
) -> RuleSpec:
    """Check every field of a new rule (from the CLI or REST); FieldError names the bad one."""
    rule_name = _text("name", name, 255, required=True)
    source_text = _text("source", source, 300, required=True)
    assert rule_name is not None and source_text is not None
    parsed = parse_source(source_text)
    if op not in OPS:
        raise FieldError("op", f"must be one of {', '.join(OPS)}, got {op!r}")
    limit = _threshold(threshold)
    if parsed.stat == "error_rate" and not 0 <= limit <= 1:
        raise FieldError("threshold", f"endpoint.error_rate is a fraction 0-1, got {threshold!r}")
    if not isinstance(window, str):
        raise FieldError("window", "is required: a number and s, m, h or d")
    span = parse_duration("window", window)
    hold = timedelta(0)
    if for_duration is not None:
        if not isinstance(for_duration, str):
            raise FieldError("for", "must be a number and s, m, h or d")
        hold = parse_duration("for", for_duration, zero=True)
    level = "warning" if severity is None else severity
    if level not in SEVERITIES:
        raise FieldError("severity", f"must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    svc = _text("service", service, 255, required=False)
    ep = _text("endpoint", endpoint, 512, required=False)
    if parsed.kind == "logs" and ep is not None:
        raise FieldError("endpoint", "applies to endpoint.* and not to logs.count sources")
    if parsed.kind == "metric" and ep is not None:
        raise FieldError("endpoint", "applies to endpoint.* sources only")
    channels = []
    for url in webhooks:
        if not isinstance(url, str):
            raise FieldError("webhook", "must be a URL string")
        channels.append(check_webhook(url, allowed_hosts))
    if len(channels) > MAX_CHANNELS:
        raise FieldError("webhook", f"at most {MAX_CHANNELS} per rule")
    return RuleSpec(
        name=rule_name,
        source=source_text,
        op=str(op),
        threshold=limit,
        window=span,
        for_duration=hold,
        severity=str(level),
        service=svc,
        endpoint=ep,
        channels=tuple(channels),
    )
