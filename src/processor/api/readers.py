"""What the analytics endpoints answer, and the interface that computes it.

``AnalyticsReader`` is the stage interface: ``RawReader`` computes every answer from the raw
tables (the reference); a reader backed by the rollups of SPEC §10 answers the same Protocol.
Identifier fields in answers hold hashes, never raw ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Source = Literal["endpoints", "features", "metrics", "logs"]
Interval = Literal["hour", "day", "week", "month"]
SOURCES: tuple[Source, ...] = ("endpoints", "features", "metrics", "logs")
ENDPOINT_SORTS = ("requests", "errors", "error_rate", "rpm", "p50", "p90", "p95", "p99", "endpoint")


@dataclass(frozen=True)
class Period:
    """A half-open time range [start, end), both UTC."""

    start: datetime
    end: datetime

    @property
    def minutes(self) -> float:
        return max((self.end - self.start).total_seconds() / 60.0, 1e-9)


@dataclass
class Percentiles:
    samples: int = 0
    avg: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass
class MetricSummary:
    name: str
    unit: str | None
    stats: Percentiles


@dataclass
class EndpointStat:
    service_name: str | None
    endpoint: str
    method: str
    requests: int
    errors: int  # 5xx or span status error
    client_errors: int  # 4xx
    error_rate: float  # errors / requests, 0-1
    rpm: float
    unique_users: int
    latency: Percentiles
    # True: unique_users is a HyperLogLog estimate over several rollup rows (±3.3 %, 95 %).
    unique_users_estimated: bool = False


@dataclass(frozen=True)
class SeriesFilters:
    endpoint: str | None = None
    service: str | None = None
    feature: str | None = None
    metric: str | None = None
    level: str | None = None


@dataclass
class TimePoint:
    start: datetime
    count: int
    errors: int | None = None  # endpoints: 5xx or span error; logs: error and fatal
    unique_users: int | None = None
    values: Percentiles | None = None  # endpoints: duration_ms; metrics: value


@dataclass
class FeatureStat:
    feature_name: str
    usage_count: int
    unique_users: int
    avg_duration_ms: float | None
    # Share of rows whose span status is not error; None where the data has no span status.
    success_rate: float | None


@dataclass
class ActiveUsers:
    interval: Interval
    points: list[tuple[datetime, int]]
    total_users: int


@dataclass
class SessionSummary:
    sessions: int
    with_errors: int
    avg_duration_ms: float | None
    p50_duration_ms: float | None
    p95_duration_ms: float | None
    avg_events: float | None
    per_day: list[tuple[datetime, int]] = field(default_factory=list)


@dataclass
class PropertyErrorRate:
    value: Any  # the property's JSON value
    total: int
    errors: int
    error_rate: float


class AnalyticsReader(Protocol):
    """One method per analytics answer; every method is scoped to ``project``. Blocking."""

    def performance_overview(
        self, project: int, period: Period, metric: str | None
    ) -> list[MetricSummary]: ...

    def endpoint_stats(
        self, project: int, period: Period, service: str | None, sort: str, limit: int
    ) -> list[EndpointStat]: ...

    def time_series(
        self,
        project: int,
        source: Source,
        interval: Interval,
        period: Period,
        filters: SeriesFilters,
    ) -> list[TimePoint]: ...

    def features(self, project: int, period: Period, limit: int) -> list[FeatureStat]: ...

    def active_users(self, project: int, interval: Interval, period: Period) -> ActiveUsers: ...

    def sessions(self, project: int, period: Period) -> SessionSummary: ...

    def error_rate_by_property(
        self, project: int, key: str, period: Period
    ) -> list[PropertyErrorRate]: ...
