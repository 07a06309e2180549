"""``RawReader``: every analytics answer computed from the raw tables (PostgreSQL and SQLite).

The reference implementation: benchmarks compare the rollup-backed reader with it, and tests
check answers against it. An endpoint error is a 5xx status or span status error (SPEC §10), a
client error a 4xx.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, case, distinct, func, literal, or_, select, union_all
from sqlalchemy.engine import Engine

from processor.api.readers import (
    ENDPOINT_SORTS,
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
from processor.api.sqlbits import as_utc, bucket, in_period, percentiles_of, summarize
from processor.storage.schema import (
    EndpointUsage,
    FeatureUsage,
    Log,
    PerformanceMetric,
    UserActivity,
    UserProperty,
)

ENDPOINTS: Table = EndpointUsage.__table__  # type: ignore[assignment]
FEATURES: Table = FeatureUsage.__table__  # type: ignore[assignment]
ACTIVITY: Table = UserActivity.__table__  # type: ignore[assignment]
LOGS: Table = Log.__table__  # type: ignore[assignment]
METRICS: Table = PerformanceMetric.__table__  # type: ignore[assignment]
PROPERTIES: Table = UserProperty.__table__  # type: ignore[assignment]
ERROR_LEVELS = ("error", "fatal")
SESSION_GAP = timedelta(minutes=30)


def _server_error(table: Table) -> Any:
    failed = table.c.status_code >= 500
    if "span_status" in table.c:
        failed = or_(failed, table.c.span_status == "error")
    return case((failed, 1), else_=0)


class RawReader:
    """Answers from raw rows. Blocking: call it from a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def _scope(self, table: Table, project: int, period: Period) -> list[Any]:
        return [table.c.project_id == project, in_period(table.c.timestamp, period)]

    def performance_overview(
        self, project: int, period: Period, metric: str | None
    ) -> list[MetricSummary]:
        where = self._scope(METRICS, project, period)
        if metric:
            where.append(METRICS.c.metric_type == metric)
        keys = [METRICS.c.metric_type, METRICS.c.unit]
        with self.engine.connect() as conn:
            stats = summarize(conn, self.dialect, METRICS.c.value, keys, where, METRICS)
        # One entry per metric name: a metric recorded with several units keeps the most used.
        best: dict[str, MetricSummary] = {}
        for (name, unit), values in sorted(stats.items(), key=lambda kv: -kv[1].samples):
            best.setdefault(name, MetricSummary(name, unit, values))
        return [best[name] for name in sorted(best)]

    def endpoint_stats(
        self, project: int, period: Period, service: str | None, sort: str, limit: int
    ) -> list[EndpointStat]:
        t = ENDPOINTS
        where = self._scope(t, project, period)
        if service:
            where.append(t.c.service_name == service)
        keys = [t.c.service_name, t.c.endpoint, t.c.method]
        counts = (
            select(
                *keys,
                func.count(),
                func.sum(_server_error(t)),
                func.sum(case((and_(t.c.status_code >= 400, t.c.status_code < 500), 1), else_=0)),
                func.count(distinct(t.c.user_id)),
            )
            .where(*where)
            .group_by(*keys)
        )
        with self.engine.connect() as conn:
            latency = summarize(conn, self.dialect, t.c.duration_ms, keys, where, t)
            rows = conn.execute(counts).all()
        stats = []
        for row in rows:
            svc, endpoint, method, requests, errors, client_errors, users = tuple(row)
            errors, client_errors = int(errors or 0), int(client_errors or 0)
            stats.append(
                EndpointStat(
                    svc,
                    endpoint,
                    method,
                    int(requests),
                    errors,
                    client_errors,
                    errors / requests if requests else 0.0,
                    requests / period.minutes,
                    int(users),
                    latency.get((svc, endpoint, method), Percentiles()),
                )
            )
        return sort_endpoints(stats, sort)[:limit]

    def time_series(
        self,
        project: int,
        source: Source,
        interval: Interval,
        period: Period,
        filters: SeriesFilters,
    ) -> list[TimePoint]:
        table, value, errors, conditions = {
            "endpoints": (ENDPOINTS, ENDPOINTS.c.duration_ms, _server_error(ENDPOINTS), []),
            "features": (FEATURES, FEATURES.c.duration_ms, None, []),
            "metrics": (METRICS, METRICS.c.value, None, []),
            "logs": (LOGS, None, case((LOGS.c.level.in_(ERROR_LEVELS), 1), else_=0), []),
        }[source]
        columns = table.c
        for name, column in (
            ("endpoint", "endpoint"),
            ("service", "service_name"),
            ("feature", "feature_name"),
            ("metric", "metric_type"),
            ("level", "level"),
        ):
            wanted = getattr(filters, name)
            if wanted is not None and column in columns:
                conditions.append(columns[column] == wanted)
        where = [*self._scope(table, project, period), *conditions]
        start = bucket(columns.timestamp, interval, self.dialect).label("bucket")
        aggregates: list[Any] = [func.count(), func.count(distinct(columns.user_id))]
        if errors is not None:
            aggregates.append(func.sum(errors))
        query = select(start, *aggregates).where(*where).group_by(start).order_by(start)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            values = (
                summarize(conn, self.dialect, value, [start], where, table)
                if value is not None
                else {}
            )
        return [
            TimePoint(
                as_utc(row[0]),
                int(row[1]),
                int(row[3] or 0) if errors is not None else None,
                int(row[2]),
                values.get((row[0],)) if value is not None else None,
            )
            for row in rows
        ]

    def features(self, project: int, period: Period, limit: int) -> list[FeatureStat]:
        t = FEATURES
        query = (
            select(
                t.c.feature_name,
                func.count(),
                func.count(distinct(t.c.user_id)),
                func.avg(t.c.duration_ms),
                func.avg(case((t.c.span_status == "error", 0.0), else_=1.0)),
            )
            .where(*self._scope(t, project, period))
            .group_by(t.c.feature_name)
            .order_by(func.count().desc(), t.c.feature_name)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            FeatureStat(
                name,
                int(n),
                int(users),
                None if avg is None else float(avg),
                None if success is None else float(success),
            )
            for name, n, users, avg, success in rows
        ]

    def _activity(self, project: int, period: Period, tables: tuple[Table, ...]) -> Any:
        """(user_id, session_id, timestamp, error) of the event rows of ``tables``."""
        parts = []
        for table in tables:
            if table is ENDPOINTS:
                error: Any = _server_error(table)
            elif table is LOGS:
                error = case((LOGS.c.level.in_(ERROR_LEVELS), 1), else_=0)
            else:
                error = literal(0)
            parts.append(
                select(
                    table.c.user_id.label("user_id"),
                    table.c.session_id.label("session_id"),
                    table.c.timestamp.label("timestamp"),
                    error.label("error"),
                ).where(*self._scope(table, project, period))
            )
        return union_all(*parts).subquery("activity")

    def active_users(self, project: int, interval: Interval, period: Period) -> ActiveUsers:
        # Active: any row of the user's in the event tables or the logs (mobile apps send logs).
        events = self._activity(project, period, (ENDPOINTS, FEATURES, ACTIVITY, LOGS))
        start = bucket(events.c.timestamp, interval, self.dialect).label("bucket")
        users = events.c.user_id
        per_bucket = (
            select(start, func.count(distinct(users)))
            .where(users.is_not(None))
            .group_by(start)
            .order_by(start)
        )
        total = select(func.count(distinct(users))).where(users.is_not(None))
        with self.engine.connect() as conn:
            points = [(as_utc(b), int(n)) for b, n in conn.execute(per_bucket)]
            everyone = int(conn.execute(total).scalar_one())
        return ActiveUsers(interval, points, everyone)

    def sessions(self, project: int, period: Period) -> SessionSummary:
        # Sessions are not rows in the raw tables: rebuild them (SPEC §10) from the events.
        events = self._activity(project, period, (ENDPOINTS, FEATURES, ACTIVITY))
        query = select(events).order_by(events.c.user_id, events.c.timestamp)
        with self.engine.connect() as conn:
            sessions = build_sessions(conn.execute(query))
        return summarize_sessions(sessions)

    def error_rate_by_property(
        self, project: int, key: str, period: Period
    ) -> list[PropertyErrorRate]:
        value = PROPERTIES.c.property_value
        joined = LOGS.join(
            PROPERTIES,
            and_(
                PROPERTIES.c.project_id == LOGS.c.project_id,
                PROPERTIES.c.user_id == LOGS.c.user_id,
                PROPERTIES.c.property_key == key,
            ),
        )
        errors = func.sum(case((LOGS.c.level.in_(ERROR_LEVELS), 1), else_=0))
        query = (
            select(value, func.count(), errors)
            .select_from(joined)
            .where(*self._scope(LOGS, project, period))
            .group_by(value)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for decoded, total, errs in rows:  # the JSON type decodes the value on both databases
            out.append(
                PropertyErrorRate(decoded, int(total), int(errs or 0), int(errs or 0) / total)
            )
        return sorted(out, key=lambda r: (-r.total, json.dumps(r.value, sort_keys=True)))


def sort_endpoints(stats: list[EndpointStat], sort: str) -> list[EndpointStat]:
    if sort not in ENDPOINT_SORTS:
        raise ValueError(sort)
    if sort == "endpoint":
        return sorted(stats, key=lambda s: (s.endpoint, s.method, s.service_name or ""))

    def metric(s: EndpointStat) -> float:
        if sort in ("p50", "p90", "p95", "p99"):
            found = getattr(s.latency, sort)
            return -1.0 if found is None else float(found)
        return float(getattr(s, sort))

    return sorted(stats, key=lambda s: (-metric(s), s.endpoint, s.method))


class _Session:
    __slots__ = ("errors", "events", "first", "last")

    def __init__(self, when: datetime) -> None:
        self.first = self.last = when
        self.events = 0
        self.errors = 0


def build_sessions(rows: Iterable[Any]) -> list[_Session]:
    """Sessions from (user_id, session_id, timestamp, error) rows ordered by user and time:
    by the client's session id when present, else a new one after 30 idle minutes per user."""
    by_id: dict[str, _Session] = {}
    inferred: list[_Session] = []
    current: dict[str, _Session] = {}
    for user, session, when, error in rows:
        when = as_utc(when)
        if session:
            found = by_id.get(session)
            if found is None:
                found = by_id[session] = _Session(when)
        elif user:
            found = current.get(user)
            if found is None or when - found.last > SESSION_GAP:
                found = current[user] = _Session(when)
                inferred.append(found)
        else:
            continue
        found.first, found.last = min(found.first, when), max(found.last, when)
        found.events += 1
        found.errors += int(error or 0)
    return [*by_id.values(), *inferred]


def summarize_sessions(sessions: list[_Session]) -> SessionSummary:
    durations = [(s.last - s.first).total_seconds() * 1000 for s in sessions]
    stats = percentiles_of(durations)
    per_day: dict[datetime, int] = {}
    for s in sessions:
        day = s.first.replace(hour=0, minute=0, second=0, microsecond=0)
        per_day[day] = per_day.get(day, 0) + 1
    return SessionSummary(
        sessions=len(sessions),
        with_errors=sum(1 for s in sessions if s.errors),
        avg_duration_ms=stats.avg,
        p50_duration_ms=stats.p50,
        p95_duration_ms=stats.p95,
        avg_events=sum(s.events for s in sessions) / len(sessions) if sessions else None,
        per_day=sorted(per_day.items()),
    )
