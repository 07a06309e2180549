"""Reading the rollups: percentiles, endpoint stats and time series over any range.

Pure functions of a SQLAlchemy Connection, for the query API. Percentiles over a range come
from merging the sketches of the buckets in it (never from averaging percentiles): whole UTC
days from day rows, the hours at either end from hour rows. Ranges are widened to whole hours,
the rollups' finest bucket. Rates are fractions 0 to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.engine import Connection

from processor.analytics import sketch
from processor.analytics.buckets import DAY, HOUR
from processor.analytics.invalidations import hour_of
from processor.analytics.schema import EndpointStat, MetricAggregate
from processor.analytics.sketch import Bins
from processor.analytics.sqlparts import utc

PCT_NAMES = ("p50", "p90", "p95", "p99")


@dataclass(frozen=True)
class _Source:
    model: Any
    period: Any  # the period column
    start: Any  # the bucket start column
    sketch: Any
    hour: str
    day: str


ENDPOINTS = _Source(
    EndpointStat,
    EndpointStat.period,
    EndpointStat.bucket_start,
    EndpointStat.latency_sketch,
    "hour",
    "day",
)
METRICS = _Source(
    MetricAggregate,
    MetricAggregate.period_type,
    MetricAggregate.period_start,
    MetricAggregate.sketch,
    "hourly",
    "daily",
)


def _ceil(when: datetime, step: timedelta) -> datetime:
    floor = when.replace(hour=0, minute=0, second=0, microsecond=0)
    if step == HOUR:
        floor = hour_of(when)
    return floor if floor == when else floor + step


def pieces(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """[start, end) as ('hour'|'day', from, to) pieces: whole days inside, hours around."""
    start, end = hour_of(utc(start)), _ceil(utc(end), HOUR)
    if end <= start:
        return []
    first_day, last_day = _ceil(start, DAY), utc(end).replace(hour=0)
    if first_day >= last_day:
        return [("hour", start, end)]
    out = [("day", first_day, last_day)]
    if start < first_day:
        out.append(("hour", start, first_day))
    if last_day < end:
        out.append(("hour", last_day, end))
    return out


def select_pieces(
    conn: Connection,
    src: _Source,
    project_id: int,
    start: datetime,
    end: datetime,
    columns: Sequence[Any],
    where: Sequence[ColumnElement[bool]],
) -> list[Any]:
    """Rows of ``src`` in [start, end) (widened to whole hours): day rows for the whole UTC
    days inside, hour rows for the hours at either end, so no event is counted twice."""
    rows: list[Any] = []
    m = src.model
    for period, lo, hi in pieces(start, end):
        rows.extend(
            conn.execute(
                select(*columns).where(
                    m.project_id == project_id,
                    src.period == (src.hour if period == "hour" else src.day),
                    src.start >= lo,
                    src.start < hi,
                    *where,
                )
            )
        )
    return rows


def _pct(bins: Bins, quantiles: Sequence[float] = sketch.QUANTILES) -> dict[str, float | None]:
    values = bins.quantiles(quantiles)
    return {f"p{round(q * 100):g}": v for q, v in zip(quantiles, values, strict=True)}


def endpoint_percentiles(
    conn: Connection,
    project_id: int,
    endpoint: str,
    start: datetime,
    end: datetime,
    *,
    service: str | None = None,
    method: str | None = None,
    quantiles: Sequence[float] = sketch.QUANTILES,
) -> dict[str, Any]:
    """Percentiles (ms) of one endpoint's latency over [start, end): ``{"count", "p50", …}``."""
    m = EndpointStat
    where = [m.endpoint == endpoint]
    if service is not None:
        where.append(m.service_name == service)
    if method is not None:
        where.append(m.method == method)
    rows = select_pieces(conn, ENDPOINTS, project_id, start, end, [m.latency_sketch], where)
    merged = sketch.merge(r[0] for r in rows)
    return {"count": int(merged.count), **_pct(merged, quantiles)}


def endpoint_stats(
    conn: Connection,
    project_id: int,
    start: datetime,
    end: datetime,
    *,
    service: str | None = None,
    sort: str = "requests",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Per (service, endpoint, method): requests, rpm, errors, error_rate, p50..p99 (ms)."""
    m = EndpointStat
    where = [m.service_name == service] if service is not None else []
    columns = [
        m.service_name,
        m.endpoint,
        m.method,
        m.request_count,
        m.error_count,
        m.client_error_count,
        m.duration_sum_ms,
        m.latency_sketch,
    ]
    grouped: dict[tuple, dict[str, Any]] = {}
    for r in select_pieces(conn, ENDPOINTS, project_id, start, end, columns, where):
        entry = grouped.setdefault(
            (r[0], r[1], r[2]),
            {"requests": 0, "errors": 0, "client_errors": 0, "sum": 0.0, "bins": Bins()},
        )
        entry["requests"] += r[3]
        entry["errors"] += r[4]
        entry["client_errors"] += r[5]
        entry["sum"] += r[6] or 0.0
        if r[7]:
            entry["bins"].merge(sketch.decode(bytes(r[7])))
    minutes = max((utc(end) - utc(start)).total_seconds() / 60.0, 1e-9)
    out = []
    for (svc, endpoint, method), e in grouped.items():
        timed = e["bins"].count
        out.append(
            {
                "service": svc,
                "endpoint": endpoint,
                "method": method,
                "requests": e["requests"],
                "rpm": e["requests"] / minutes,
                "errors": e["errors"],
                "client_errors": e["client_errors"],
                "error_rate": e["errors"] / e["requests"] if e["requests"] else 0.0,
                "avg_ms": e["sum"] / timed if timed else None,
                **_pct(e["bins"]),
            }
        )
    key = sort if sort in ("requests", "errors", "error_rate", *PCT_NAMES) else "requests"
    out.sort(key=lambda e: (-(e[key] or 0.0), e["endpoint"], e["method"]))
    return out[:limit] if limit is not None else out


def metric_percentiles(
    conn: Connection,
    project_id: int,
    name: str,
    start: datetime,
    end: datetime,
    *,
    service: str | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """count, sum, min, max, avg and p50…p99 of one metric over [start, end)."""
    m = MetricAggregate
    where = [m.name == name]
    if service is not None:
        where.append(m.service_name == service)
    if unit is not None:
        where.append(m.unit == unit)
    columns = [m.count, m.sum, m.min, m.max, m.sketch]
    rows = select_pieces(conn, METRICS, project_id, start, end, columns, where)
    count = sum(r[0] for r in rows)
    total = sum(r[1] for r in rows)
    merged = sketch.merge(r[4] for r in rows)
    return {
        "count": count,
        "sum": total,
        "min": min((r[2] for r in rows), default=None),
        "max": max((r[3] for r in rows), default=None),
        "avg": total / count if count else None,
        **_pct(merged),
    }


def timeseries(
    conn: Connection,
    project_id: int,
    source: str,
    interval: str,
    start: datetime,
    end: datetime,
    *,
    endpoint: str | None = None,
    service: str | None = None,
    metric: str | None = None,
) -> list[dict[str, Any]]:
    """Points per hour or day in [start, end) for ``source`` 'endpoints' or 'metrics'.

    Endpoint points: requests, errors, error_rate, p50…p99; metric points: count, sum, min,
    max, avg, p50…p99. Buckets without rows are left out.
    """
    if interval not in ("hour", "day"):
        raise ValueError("interval must be hour or day")
    if source not in ("endpoints", "metrics"):
        raise ValueError("source must be endpoints or metrics")
    src = ENDPOINTS if source == "endpoints" else METRICS
    m = src.model
    where: list[ColumnElement[bool]] = [m.project_id == project_id]
    where.append(src.period == (src.hour if interval == "hour" else src.day))
    lo = (
        hour_of(utc(start))
        if interval == "hour"
        else utc(start).replace(hour=0, minute=0, second=0, microsecond=0)
    )
    where += [src.start >= lo, src.start < utc(end)]
    if service is not None:
        where.append(m.service_name == service)
    if source == "endpoints":
        if endpoint is not None:
            where.append(m.endpoint == endpoint)
        columns = [src.start, m.request_count, m.error_count, m.request_count, src.sketch]
    else:
        if metric is not None:
            where.append(m.name == metric)
        columns = [src.start, m.count, m.sum, m.min, m.max, src.sketch]
    points: dict[datetime, dict[str, Any]] = {}
    for r in conn.execute(select(*columns).where(*where)):
        at = utc(r[0])
        p = points.setdefault(at, {"bucket_start": at, "bins": Bins()})
        if source == "endpoints":
            p["requests"] = p.get("requests", 0) + r[1]
            p["errors"] = p.get("errors", 0) + r[2]
        else:
            p["count"] = p.get("count", 0) + r[1]
            p["sum"] = p.get("sum", 0.0) + r[2]
            p["min"] = min(p.get("min", r[3]), r[3])
            p["max"] = max(p.get("max", r[4]), r[4])
        if r[-1]:
            p["bins"].merge(sketch.decode(bytes(r[-1])))
    out = []
    for at in sorted(points):
        p = points[at]
        bins = p.pop("bins")
        if source == "endpoints":
            p["error_rate"] = p["errors"] / p["requests"] if p["requests"] else 0.0
        else:
            p["avg"] = p["sum"] / p["count"] if p["count"] else None
        p.update(_pct(bins))
        out.append(p)
    return out


__all__ = [
    "endpoint_percentiles",
    "endpoint_stats",
    "metric_percentiles",
    "pieces",
    "select_pieces",
    "timeseries",
]
