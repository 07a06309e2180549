"""The benchmark's workload: pre-serialised OTLP export requests made unique per send.

Each template is one serialised ``ExportTraceServiceRequest`` (or ``ExportLogsServiceRequest``)
of 512 items. Every span id (and every log record's span id) starts with the same 4-byte
marker; ``Template.render(n)`` replaces the marker with ``n``, so every request carries fresh
span ids (hence fresh row ids) for the cost of one ``bytes.join``.

Spans: mostly HTTP SERVER spans in the current semantic conventions (``http.request.method``,
``http.route``, ``url.path``, ``http.response.status_code`` …) with ``user.id``,
``session.id`` and ``organization.id``; a share are INTERNAL feature spans
(``feature.name``). Each span yields exactly one row (endpoint_usage or feature_usage), and
each log record exactly one ``logs`` row, so committed items can be counted in the database.
"""

from __future__ import annotations

import random
import struct
import time
from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

ITEMS_PER_REQUEST = 512
MARKER = b"\xa5\x5a\xc3\x3c"  # the first 4 bytes of every span id in a template
SPAN_TABLES = ("endpoint_usage", "feature_usage")
LOG_TABLES = ("logs",)

ROUTES = (
    ("GET", "/api/v1/projects/{project_id}", "/api/v1/projects/{n}"),
    ("GET", "/api/v1/projects/{project_id}/issues", "/api/v1/projects/{n}/issues"),
    ("POST", "/api/v1/projects/{project_id}/issues", "/api/v1/projects/{n}/issues"),
    ("GET", "/api/v1/users/me", "/api/v1/users/me"),
    ("PATCH", "/api/v1/issues/{issue_id}", "/api/v1/issues/{n}"),
    ("GET", "/api/v1/search", "/api/v1/search"),
    ("DELETE", "/api/v1/comments/{comment_id}", "/api/v1/comments/{n}"),
    ("GET", "/health", "/health"),
)
FEATURES = ("export_csv", "dark_mode", "bulk_edit", "ai_summary", "share_link", "import_jira")
ACTIONS = ("used", "opened", "completed", "failed")
STATUSES = (200, 200, 200, 200, 200, 201, 204, 304, 400, 404, 500)


def kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


@dataclass(frozen=True)
class Template:
    """A serialised request split at its span-id markers."""

    kind: str  # "traces" or "logs"
    pieces: tuple[bytes, ...]
    items: int

    @classmethod
    def of(cls, kind: str, data: bytes, items: int) -> Template:
        pieces = tuple(data.split(MARKER))
        if len(pieces) != items + 1:  # the marker must occur exactly once per item
            raise ValueError(f"marker found {len(pieces) - 1} times, expected {items}")
        return cls(kind, pieces, items)

    def render(self, n: int) -> bytes:
        """The request with every span id prefixed by ``n`` (0 ≤ n < 2**32)."""
        return struct.pack(">I", n).join(self.pieces)


def _identity(rng: random.Random, users: int) -> list[KeyValue]:
    user = rng.randrange(users)
    return [
        kv("user.id", f"user-{user:06d}"),
        kv("session.id", f"sess-{user:06d}-{rng.randrange(8)}"),
        kv("organization.id", f"org-{user % 500:04d}"),
    ]


def _span_id(index: int) -> bytes:
    return MARKER + struct.pack(">I", index)


def _trace_id(rng: random.Random) -> bytes:
    while True:
        trace_id = rng.randbytes(16)
        if MARKER not in trace_id:
            return trace_id


def trace_template(
    seed: int, *, spans: int = ITEMS_PER_REQUEST, feature_share: float = 0.15, users: int = 20000
) -> Template:
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [
            kv("service.name", f"api-{seed % 3}"),
            kv("service.version", "2.14.1"),
            kv("deployment.type", "cloud"),
            kv("deployment.environment.name", "production"),
            kv("host.name", f"api-{seed % 3}-7d9f-{seed % 5}"),
        ]
    )
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "opentelemetry.instrumentation.flask"
    now = time.time_ns() - 60_000_000_000 + seed * 1_000_000
    for i in range(spans):
        span = scope.spans.add()
        span.trace_id = _trace_id(rng)
        span.span_id = _span_id(i)
        span.start_time_unix_nano = now + i * 100_000
        span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(200_000, 90_000_000)
        if rng.random() < feature_share:
            feature = rng.choice(FEATURES)
            span.name = f"feature {feature}"
            span.kind = Span.SPAN_KIND_INTERNAL
            span.attributes.extend(
                [
                    kv("feature.name", feature),
                    kv("feature.action", rng.choice(ACTIONS)),
                    *_identity(rng, users),
                    kv("code.function.name", f"handlers.{feature}.run"),
                    kv("feature.items", rng.randrange(1, 500)),
                    kv("feature.plan", rng.choice(("free", "team", "enterprise"))),
                    kv("feature.beta", rng.random() < 0.2),
                ]
            )
            continue
        method, route, path = rng.choice(ROUTES)
        status = rng.choice(STATUSES)
        span.name = f"{method} {route}"
        span.kind = Span.SPAN_KIND_SERVER
        span.attributes.extend(
            [
                kv("http.request.method", method),
                kv("http.route", route),
                kv("url.path", path.replace("{n}", str(rng.randrange(1, 100000)))),
                kv("url.scheme", "https"),
                kv("http.response.status_code", status),
                kv("server.address", "api.example.com"),
                kv("network.protocol.version", "1.1"),
                kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
                kv("client.address", f"10.{rng.randrange(256)}.{rng.randrange(256)}.7"),
                *_identity(rng, users),
            ]
        )
    return Template.of("traces", request.SerializeToString(), spans)


def logs_template(seed: int, *, records: int = ITEMS_PER_REQUEST, users: int = 20000) -> Template:
    rng = random.Random(seed ^ 0x5EED)
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(
        [
            kv("service.name", f"api-{seed % 3}"),
            kv("service.version", "2.14.1"),
            kv("deployment.type", "cloud"),
        ]
    )
    scope = resource_logs.scope_logs.add()
    scope.scope.name = "app.logger"
    now = time.time_ns() - 60_000_000_000 + seed * 1_000_000
    for i in range(records):
        record = scope.log_records.add()
        record.time_unix_nano = now + i * 100_000
        record.observed_time_unix_nano = record.time_unix_nano + 1_000_000
        record.trace_id = _trace_id(rng)
        record.span_id = _span_id(i)
        warn = rng.random() < 0.1
        record.severity_number = 13 if warn else 9
        record.severity_text = "WARN" if warn else "INFO"
        method, route, _ = rng.choice(ROUTES)
        record.body.string_value = f"{method} {route} handled in {rng.randrange(1, 900)} ms"
        record.attributes.extend(
            [
                kv("log.type", rng.choice(("general", "network", "analytics"))),
                kv("http.route", route),
                kv("code.function.name", "handlers.request"),
                kv("thread.name", f"worker-{rng.randrange(16)}"),
                *_identity(rng, users),
            ]
        )
    return Template.of("logs", request.SerializeToString(), records)


class Workload:
    """Templates plus a counter that makes every rendered request unique."""

    def __init__(
        self,
        *,
        templates: int = 16,
        logs_share: float = 0.1,
        seed: int = 1,
        start: int = 0,
        refresh_seconds: float | None = None,
    ) -> None:
        """``refresh_seconds``: rebuild the templates that often, so event times follow the
        clock as a live service's do (otherwise every row of a run has its start time)."""
        self.seeds = [seed * 1000 + i for i in range(templates)]
        self.refresh_seconds = refresh_seconds
        self._build()
        self.logs_share = logs_share
        self.counter = start
        self._rng = random.Random(seed)

    def _build(self) -> None:
        self.traces = [trace_template(s) for s in self.seeds]
        self.logs = [logs_template(s) for s in self.seeds]
        self._due = time.monotonic() + (self.refresh_seconds or 0.0)

    def next_kind(self) -> str:
        """ "logs" with probability ``logs_share``, else "traces"."""
        if self.logs_share > 0 and self._rng.random() < self.logs_share:
            return "logs"
        return "traces"

    def next(self) -> tuple[str, bytes, int]:
        """(signal, request bytes, items) — the next unique request."""
        if self.refresh_seconds is not None and time.monotonic() >= self._due:
            self._build()
        self.counter = (self.counter + 1) & 0xFFFFFFFF
        pool = self.logs if self.next_kind() == "logs" else self.traces
        template = self._rng.choice(pool)
        return template.kind, template.render(self.counter), template.items
