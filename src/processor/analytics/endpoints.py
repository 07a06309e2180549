"""endpoint_stats: per (service, endpoint, method) RED numbers per hour and per day.

Hour rows: everything from the bucket's raw rows, percentiles by percentile_cont. Day rows:
counts, sums, min, max and unique users from the day's raw rows; percentiles and the sketch
from the day's merged hour sketches (never averaged).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from processor.analytics import sketch
from processor.analytics.schema import EndpointStat
from processor.analytics.sketch import Bins
from processor.analytics.sqlparts import Sql, as_hour, replace_scope

GROUP = "coalesce(service_name, '') AS service_name, endpoint, method"
KEY = ("service_name", "endpoint", "method")


def _totals(sql: Sql, bucket: str, percentiles: bool) -> str:
    pct = "".join(
        f", {sql.pct(q, 'duration_ms')} AS {name}"
        for q, name in zip(sketch.QUANTILES, ("p50_ms", "p90_ms", "p95_ms", "p99_ms"), strict=True)
    )
    return f"""
        SELECT {bucket} AS bucket, {GROUP},
            count(*) AS request_count,
            sum(CASE WHEN status_code BETWEEN 500 AND 599 OR span_status = 'error'
                THEN 1 ELSE 0 END) AS error_count,
            sum(CASE WHEN status_code BETWEEN 400 AND 499 THEN 1 ELSE 0 END)
                AS client_error_count,
            sum(duration_ms) AS duration_sum_ms,
            min(duration_ms) AS duration_min_ms,
            max(duration_ms) AS duration_max_ms,
            count(DISTINCT user_id) AS unique_users
            {pct if percentiles else ""}
        FROM endpoint_usage
        WHERE project_id = :project AND timestamp >= :start AND timestamp < :end
        GROUP BY 1, 2, 3, 4"""


def hour_bins(sql: Sql, project: int, start: datetime, end: datetime) -> dict[tuple, Bins]:
    """Each hour group's latency sketch, from bin counts the database groups."""
    col = "duration_ms"
    found: dict[tuple, Bins] = defaultdict(Bins)
    for r in sql.rows(
        f"""SELECT {sql.hour("timestamp")}, {GROUP}, {sql.dd_sign(col)}, {sql.dd_key(col)},
                count(*)
            FROM endpoint_usage
            WHERE project_id = :project AND timestamp >= :start AND timestamp < :end
                AND {sql.finite(col)}
            GROUP BY 1, 2, 3, 4, 5, 6""",
        project=project,
        start=start,
        end=end,
    ):
        found[(as_hour(r[0]), r[1], r[2], r[3])].add(int(r[4]), int(r[5]), float(r[6]))
    return found


def recompute_hours(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    bins = hour_bins(sql, project, start, end)
    rows = []
    for r in sql.rows(
        _totals(sql, sql.hour("timestamp"), True), project=project, start=start, end=end
    ):
        m = dict(r._mapping)
        m["bucket_start"] = as_hour(m.pop("bucket"))
        found = bins.get((m["bucket_start"], *(m[k] for k in KEY)))
        m["latency_sketch"] = found.encode() if found else None
        rows.append(_row(project, "hour", m))
    return _replace(sql, project, "hour", start, end, rows)


def recompute_days(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    merged: dict[tuple, Bins] = defaultdict(Bins)
    for r in sql.rows(
        """SELECT bucket_start, service_name, endpoint, method, latency_sketch
           FROM endpoint_stats WHERE project_id = :project AND period = 'hour'
               AND bucket_start >= :start AND bucket_start < :end""",
        project=project,
        start=start,
        end=end,
    ):
        if r[4]:
            day = as_hour(r[0]).replace(hour=0)
            merged[(day, r[1], r[2], r[3])].merge(sketch.decode(bytes(r[4])))
    rows = []
    for r in sql.rows(
        _totals(sql, sql.day("timestamp"), False), project=project, start=start, end=end
    ):
        m = dict(r._mapping)
        m["bucket_start"] = as_hour(str(m.pop("bucket"))[:10] + " 00")
        found = merged.get((m["bucket_start"], *(m[k] for k in KEY)))
        p50, p90, p95, p99 = found.quantiles() if found else (None, None, None, None)
        m.update(p50_ms=p50, p90_ms=p90, p95_ms=p95, p99_ms=p99)
        m["latency_sketch"] = found.encode() if found else None
        rows.append(_row(project, "day", m))
    return _replace(sql, project, "day", start, end, rows)


def _row(project: int, period: str, m: dict[str, Any]) -> dict[str, Any]:
    m.update(project_id=project, period=period)
    for name in ("request_count", "error_count", "client_error_count", "unique_users"):
        m[name] = int(m[name] or 0)
    return m


def _replace(
    sql: Sql, project: int, period: str, start: datetime, end: datetime, rows: list[dict]
) -> int:
    t = EndpointStat
    return replace_scope(
        sql.conn,
        t,
        [
            t.project_id == project,
            t.period == period,
            t.bucket_start >= start,
            t.bucket_start < end,
        ],
        rows,
    )
