"""``RollupReader``: the analytics answers from the rollup tables of SPEC §10.

The rules, where a rollup cannot say exactly what ``RawReader`` (the reference) says:

- Ranges are widened to whole UTC hours, the rollups' finest bucket: [start, end) reads the
  hour buckets from the hour of ``start`` to the hour that contains ``end`` (exclusive end
  rounded up). Whole days inside come from day rows, the hours at either end from hour rows
  (``analytics.query.select_pieces``), so no event is counted twice. On hour-aligned ranges
  the answers equal ``RawReader``'s; rpm is requests over the minutes of the range asked for.
- Counts, errors, sums, min and max add up exactly. Percentiles come from merging the
  buckets' latency sketches (within the sketch's 1 % relative error), never from averaging.
- Distinct users are not additive: a bucket's ``unique_users`` answers only a group made of
  one rollup row, exactly. In the endpoint stats a group spanning several rows (several hours,
  days, services or methods) is the union of its rows' HyperLogLog sketches, an estimate
  within ±3.3 % (95 %) flagged ``unique_users_estimated`` (analytics.distinct); only rows
  written before those sketches existed send it back to one exact COUNT(DISTINCT user_id)
  over the raw rows of the range. Time series points and features still count raw rows.
- Feature usage is per day: ranges not aligned to whole UTC days are answered by the raw
  reader. Averages over several days weight each day by its usage count.
- From raw rows, by the raw reader: logs and features time series (no rollup holds their
  percentiles), active users (they include log-only users; the daily user rollup does not),
  sessions (the ``sessions`` table is filled by the sessions runner; until every range is
  covered by it, a missing row cannot be told from an idle range), and error rate by user
  property (a join of logs and user properties).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, distinct, func, select
from sqlalchemy.engine import Connection, Engine

from processor.analytics import query, sketch
from processor.analytics.buckets import DAY, HOUR, month_of, week_of
from processor.analytics.distinct import Union as UserUnion
from processor.analytics.invalidations import hour_of
from processor.analytics.schema import EndpointStat as EndpointRow
from processor.analytics.schema import FeatureUsageDaily, MetricAggregate
from processor.api.raw_reader import ENDPOINTS, FEATURES, METRICS, RawReader, sort_endpoints
from processor.api.readers import (
    ActiveUsers,
    EndpointStat,
    FeatureStat,
    Interval,
    MetricSummary,
    Percentiles,
    Period,
    PropertyErrorRate,
    SeriesFilters,
    SessionSummary,
    Source,
    TimePoint,
)
from processor.api.sqlbits import as_utc, bucket, in_period

Key = tuple[Any, ...]

# The columns every endpoint answer reads from an endpoint_stats row, in _Group.add's order.
TOTALS = (
    EndpointRow.request_count,
    EndpointRow.error_count,
    EndpointRow.client_error_count,
    EndpointRow.unique_users,
    EndpointRow.duration_sum_ms,
    EndpointRow.duration_min_ms,
    EndpointRow.duration_max_ms,
    EndpointRow.latency_sketch,
)


@dataclass
class _Group:
    """Rollup rows of one answer group, added up."""

    rows: int = 0
    count: int = 0
    errors: int = 0
    client_errors: int = 0
    users: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None
    blobs: list[bytes] = field(default_factory=list)

    def add(
        self,
        count: int,
        errors: int,
        client_errors: int,
        users: int,
        total: float | None,
        low: float | None,
        high: float | None,
        blob: bytes | None,
    ) -> None:
        self.rows += 1
        self.count += int(count)
        self.errors += int(errors)
        self.client_errors += int(client_errors)
        self.users = int(users)  # only read when the group is this one row
        self.total += total or 0.0
        if low is not None:
            self.low = low if self.low is None else min(self.low, low)
        if high is not None:
            self.high = high if self.high is None else max(self.high, high)
        if blob:
            self.blobs.append(blob)

    def percentiles(self) -> Percentiles:
        bins = sketch.merge(self.blobs)  # all at once: array adds, not a Python step per bin
        timed = int(bins.count)
        if not timed:
            return Percentiles()
        # Every percentile lies within [min, max], which the rollups keep exactly: clamping
        # only removes sketch error (one sample, or all samples equal, come out exact).
        p50, p90, p95, p99 = (self._clamp(v) for v in bins.quantiles())
        return Percentiles(timed, self.total / timed, self.low, self.high, p50, p90, p95, p99)

    def _clamp(self, value: float | None) -> float | None:
        if value is None:
            return None
        if self.low is not None:
            value = max(value, self.low)
        if self.high is not None:
            value = min(value, self.high)
        return value


def _service(name: str) -> str | None:
    return name or None  # the rollups store a missing service name as ''


def _whole(when: datetime, step: timedelta) -> bool:
    floor = hour_of(when) if step == HOUR else hour_of(when).replace(hour=0)
    return floor == as_utc(when)


def _widened(period: Period) -> Period | None:
    """``period`` widened to whole hours; None when it holds no hour."""
    found = query.pieces(period.start, period.end)
    return Period(hour_of(period.start), max(p[2] for p in found)) if found else None


def _day_aligned(period: Period) -> bool:
    return _whole(period.start, DAY) and _whole(period.end, DAY)


PLACES: dict[str, Callable[[datetime], datetime]] = {
    "hour": lambda t: t,
    "day": lambda t: t.replace(hour=0),
    "week": lambda t: week_of(t.replace(hour=0)),
    "month": lambda t: month_of(t.replace(hour=0)),
}


class RollupReader:
    """Answers from the rollup tables. Blocking: call it from a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.raw = RawReader(engine)

    # --- distinct users, from raw rows when no single rollup row answers ------------------

    def _distinct(
        self,
        conn: Connection,
        table: Table,
        keys: Sequence[Any],
        project: int,
        period: Period,
        where: Iterable[Any] = (),
    ) -> dict[Key, int]:
        widened = _widened(period)
        if widened is None:
            return {}
        found = conn.execute(
            select(*keys, func.count(distinct(table.c.user_id)))
            .where(table.c.project_id == project, in_period(table.c.timestamp, widened), *where)
            .group_by(*keys)
        )
        return {tuple(r[:-1]): int(r[-1]) for r in found}

    # --- answers ---------------------------------------------------------------------------

    def performance_overview(
        self, project: int, period: Period, metric: str | None
    ) -> list[MetricSummary]:
        m = MetricAggregate
        where = [m.name == metric] if metric else []
        columns = [m.name, m.unit, m.count, m.sum, m.min, m.max, m.sketch]
        groups: dict[Key, _Group] = {}
        with self.engine.connect() as conn:
            rows = query.select_pieces(
                conn, query.METRICS, project, period.start, period.end, columns, where
            )
        for name, unit, count, total, low, high, blob in rows:
            groups.setdefault((name, unit), _Group()).add(count, 0, 0, 0, total, low, high, blob)
        # One entry per metric name: a metric recorded with several units keeps the most used.
        best: dict[str, MetricSummary] = {}
        for (name, unit), g in sorted(groups.items(), key=lambda kv: -kv[1].count):
            stats = g.percentiles()
            stats.samples = g.count
            stats.avg = g.total / g.count if g.count else None
            best.setdefault(name, MetricSummary(name, unit or None, stats))
        return [best[name] for name in sorted(best)]

    def endpoint_stats(
        self, project: int, period: Period, service: str | None, sort: str, limit: int
    ) -> list[EndpointStat]:
        m = EndpointRow
        where = [m.service_name == service] if service else []
        columns = [m.service_name, m.endpoint, m.method, *TOTALS, m.users_sketch]
        groups: dict[Key, _Group] = {}
        unions: dict[Key, UserUnion] = {}
        with self.engine.connect() as conn:
            for r in query.select_pieces(
                conn, query.ENDPOINTS, project, period.start, period.end, columns, where
            ):
                key = (_service(r[0]), r[1], r[2])
                groups.setdefault(key, _Group()).add(*r[3:-1])
                unions.setdefault(key, UserUnion()).add(r[-1])
            several = {k for k, g in groups.items() if g.rows > 1}
            fallback = any(unions[k].missing for k in several)
            exact = self._users_of(conn, groups, project, period, service) if fallback else {}
        stats = []
        for key, g in groups.items():
            estimated = key in several and not fallback
            if key not in several:
                users = g.users
            else:
                users = unions[key].estimate() if estimated else exact.get(key, 0)
            stats.append(
                EndpointStat(
                    *key,
                    g.count,
                    g.errors,
                    g.client_errors,
                    g.errors / g.count if g.count else 0.0,
                    g.count / period.minutes,
                    users,
                    g.percentiles(),
                    unique_users_estimated=estimated,
                )
            )
        return sort_endpoints(stats, sort)[:limit]

    def _distinct_endpoint_users(self, project: int, period: Period) -> dict[Key, int]:
        """The raw part of ``endpoint_stats`` over several buckets, alone (for bench/)."""
        with self.engine.connect() as conn:
            return self._users_of(conn, {(): _Group(rows=2)}, project, period, None)

    def _users_of(
        self,
        conn: Connection,
        groups: dict[Key, _Group],
        project: int,
        period: Period,
        service: str | None,
    ) -> dict[Key, int]:
        if all(g.rows == 1 for g in groups.values()):
            return {}
        t = ENDPOINTS
        where = [t.c.service_name == service] if service else []
        keys = [t.c.service_name, t.c.endpoint, t.c.method]
        return self._distinct(conn, t, keys, project, period, where)

    def time_series(
        self,
        project: int,
        source: Source,
        interval: Interval,
        period: Period,
        filters: SeriesFilters,
    ) -> list[TimePoint]:
        if source not in ("endpoints", "metrics") or interval not in PLACES:
            return self.raw.time_series(project, source, interval, period, filters)
        endpoints = source == "endpoints"
        src = query.ENDPOINTS if endpoints else query.METRICS
        m = src.model
        where: list[Any] = []
        if filters.service is not None:
            where.append(m.service_name == filters.service)
        if endpoints:
            if filters.endpoint is not None:
                where.append(m.endpoint == filters.endpoint)
            columns = [m.bucket_start, *TOTALS]
        else:
            if filters.metric is not None:
                where.append(m.name == filters.metric)
            columns = [m.period_start, m.count, m.sum, m.min, m.max, m.sketch]
        place = PLACES[interval]
        points: dict[datetime, _Group] = {}
        with self.engine.connect() as conn:
            if interval == "hour":
                rows = self._hours(conn, src, project, period, columns, where)
            else:
                rows = query.select_pieces(
                    conn, src, project, period.start, period.end, columns, where
                )
            for r in rows:
                g = points.setdefault(place(as_utc(r[0])), _Group())
                if endpoints:
                    g.add(*r[1:])
                else:
                    g.add(r[1], 0, 0, 0, r[2], r[3], r[4], r[5])
            users = self._series_users(conn, source, interval, project, period, filters)
        out = []
        for at in sorted(points):
            g = points[at]
            values = g.percentiles()
            if not endpoints:  # a metric point's numbers are its values'
                values.samples, values.avg = g.count, g.total / g.count if g.count else None
            out.append(
                TimePoint(at, g.count, g.errors if endpoints else None, users.get(at, 0), values)
            )
        return out

    def _hours(
        self,
        conn: Connection,
        src: Any,
        project: int,
        period: Period,
        columns: Sequence[Any],
        where: Sequence[Any],
    ) -> list[Any]:
        m = src.model
        widened = _widened(period)
        if widened is None:
            return []
        lo, hi = widened.start, widened.end
        return list(
            conn.execute(
                select(*columns).where(
                    m.project_id == project,
                    src.period == src.hour,
                    src.start >= lo,
                    src.start < hi,
                    *where,
                )
            )
        )

    def _series_users(
        self,
        conn: Connection,
        source: Source,
        interval: Interval,
        project: int,
        period: Period,
        filters: SeriesFilters,
    ) -> dict[datetime, int]:
        """Distinct users per point: no rollup row holds them across endpoints or metrics."""
        table = ENDPOINTS if source == "endpoints" else METRICS
        where = []
        if filters.service is not None:
            where.append(table.c.service_name == filters.service)
        if source == "endpoints" and filters.endpoint is not None:
            where.append(table.c.endpoint == filters.endpoint)
        if source == "metrics" and filters.metric is not None:
            where.append(table.c.metric_type == filters.metric)
        start = bucket(table.c.timestamp, interval, self.dialect)
        found = self._distinct(conn, table, [start], project, period, where)
        return {as_utc(k[0]): n for k, n in found.items()}

    def features(self, project: int, period: Period, limit: int) -> list[FeatureStat]:
        if not _day_aligned(period):
            return self.raw.features(project, period, limit)
        m = FeatureUsageDaily
        found = select(
            m.feature_name, m.usage_count, m.unique_users, m.avg_duration_ms, m.success_rate
        ).where(
            m.project_id == project,
            m.date >= as_utc(period.start).date(),
            m.date < as_utc(period.end).date(),
        )
        totals: dict[str, list[Any]] = {}
        with self.engine.connect() as conn:
            for name, count, users, avg, success in conn.execute(found):
                t = totals.setdefault(name, [0, 0, users, 0.0, 0, 0.0, 0])
                t[0] += 1  # rows
                t[1] += count
                if avg is not None:
                    t[3] += avg * count
                    t[4] += count
                if success is not None:
                    t[5] += success * count
                    t[6] += count
            if any(t[0] > 1 for t in totals.values()):
                table = FEATURES
                users_of = self._distinct(conn, table, [table.c.feature_name], project, period)
                for name, t in totals.items():
                    t[2] = users_of.get((name,), 0)
        stats = [
            FeatureStat(
                name,
                int(t[1]),
                int(t[2]),
                t[3] / t[4] if t[4] else None,
                t[5] / t[6] if t[6] else None,
            )
            for name, t in totals.items()
        ]
        stats.sort(key=lambda s: (-s.usage_count, s.feature_name))
        return stats[:limit]

    def active_users(self, project: int, interval: Interval, period: Period) -> ActiveUsers:
        return self.raw.active_users(project, interval, period)

    def sessions(self, project: int, period: Period) -> SessionSummary:
        return self.raw.sessions(project, period)

    def error_rate_by_property(
        self, project: int, key: str, period: Period
    ) -> list[PropertyErrorRate]:
        return self.raw.error_rate_by_property(project, key, period)
