"""A rule's value at ``now``: the SQL behind each source of SPEC §14.

Windows shorter than an hour read the raw rows in (now - window, now]. Windows of an hour or
more read the rollups (endpoint_stats, metric_aggregates) over the whole UTC hours covering
the window, the current partial hour included: counts are summed, percentiles come from the
merged DDSketch sketches (analytics/query.py), never from averaging percentiles. Logs have no
rollup: log counts always read the raw rows (indexed by project, level, timestamp).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.engine import Connection

from processor.alerts.rules import Source
from processor.analytics import query, sketch
from processor.analytics.schema import EndpointStat
from processor.storage.schema import EndpointUsage, Log, PerformanceMetric

ROLLUP_FROM = timedelta(hours=1)
_QUANTILE = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p95_ms": 0.95, "p99_ms": 0.99}


@dataclass(frozen=True)
class Target:
    project_id: int
    source: Source
    window: timedelta
    service: str | None = None
    endpoint: str | None = None


def value_of(conn: Connection, target: Target, now: datetime) -> float | None:
    """The rule's value; None when the window holds no data for a rate or a statistic."""
    kind = target.source.kind
    rollups = target.window >= ROLLUP_FROM
    if kind == "endpoint":
        return _endpoint_rollup(conn, target, now) if rollups else _endpoint_raw(conn, target, now)
    if kind == "metric":
        return _metric_rollup(conn, target, now) if rollups else _metric_raw(conn, target, now)
    return _log_count(conn, target, now)


def _in_window(column: Any, target: Target, now: datetime) -> list[ColumnElement[bool]]:
    return [column > now - target.window, column <= now]


def _endpoint_raw(conn: Connection, t: Target, now: datetime) -> float | None:
    m = EndpointUsage
    where = [m.project_id == t.project_id, *_in_window(m.timestamp, t, now)]
    if t.service is not None:
        where.append(m.service_name == t.service)
    if t.endpoint is not None:
        where.append(m.endpoint == t.endpoint)
    stat = t.source.stat
    if stat in ("request_count", "error_rate"):
        error = or_(and_(m.status_code >= 500, m.status_code <= 599), m.span_status == "error")
        total, errors = conn.execute(
            select(func.count(), func.count().filter(error)).where(*where)
        ).one()
        if stat == "request_count":
            return float(total)
        return errors / total if total else None
    found = conn.scalars(select(m.duration_ms).where(*where, m.duration_ms.is_not(None)))
    durations = sorted(d for d in found if d is not None)
    return sketch.percentile_cont(durations, _QUANTILE[stat])


def _endpoint_rollup(conn: Connection, t: Target, now: datetime) -> float | None:
    m = EndpointStat
    where = [m.project_id == t.project_id]
    if t.service is not None:
        where.append(m.service_name == t.service)
    if t.endpoint is not None:
        where.append(m.endpoint == t.endpoint)
    requests = errors = 0
    blobs: list[bytes | None] = []
    for period, lo, hi in query.pieces(now - t.window, now):
        rows = conn.execute(
            select(m.request_count, m.error_count, m.latency_sketch).where(
                *where, m.period == period, m.bucket_start >= lo, m.bucket_start < hi
            )
        )
        for count, errs, blob in rows:
            requests += count
            errors += errs
            blobs.append(bytes(blob) if blob else None)
    stat = t.source.stat
    if stat == "request_count":
        return float(requests)
    if stat == "error_rate":
        return errors / requests if requests else None
    (value,) = sketch.merge(blobs).quantiles([_QUANTILE[stat]])
    return value


def _metric_raw(conn: Connection, t: Target, now: datetime) -> float | None:
    m = PerformanceMetric
    where = [
        m.project_id == t.project_id,
        m.metric_type == t.source.metric,
        m.value.is_not(None),
        *_in_window(m.timestamp, t, now),
    ]
    if t.service is not None:
        where.append(m.service_name == t.service)
    values = sorted(
        v for v in conn.scalars(select(m.value).where(*where)) if v is not None and math.isfinite(v)
    )
    if not values:
        return None
    stat = t.source.stat
    if stat == "avg":
        return math.fsum(values) / len(values)
    if stat == "min":
        return values[0]
    if stat == "max":
        return values[-1]
    return sketch.percentile_cont(values, _QUANTILE[stat])


def _metric_rollup(conn: Connection, t: Target, now: datetime) -> float | None:
    assert t.source.metric is not None
    stats = query.metric_percentiles(
        conn, t.project_id, t.source.metric, now - t.window, now, service=t.service
    )
    value = stats.get(t.source.stat)
    return None if value is None else float(value)


def _log_count(conn: Connection, t: Target, now: datetime) -> float:
    m = Log
    where = [m.project_id == t.project_id, *_in_window(m.timestamp, t, now)]
    if t.source.level is not None:
        where.append(m.level == t.source.level)
    if t.service is not None:
        where.append(m.service_name == t.service)
    return float(conn.execute(select(func.count()).where(*where)).scalar_one())
