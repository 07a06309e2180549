"""metric_aggregates: performance_metrics values per (name, service, unit) and period.

hourly: all from raw rows (percentile_cont). daily: count, sum, min, max from raw rows,
percentiles from merged hourly sketches. weekly and monthly: merged from daily rows, which
keeps count, sum, min and max exact and costs no raw scan. Non-finite values are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from processor.analytics import sketch
from processor.analytics.buckets import DAY, month_of, next_month, week_of
from processor.analytics.schema import MetricAggregate
from processor.analytics.sketch import Bins
from processor.analytics.sqlparts import Sql, as_hour, replace_scope

GROUP = (
    "metric_type AS name, coalesce(service_name, '') AS service_name, coalesce(unit, '') AS unit"
)
KEY = ("name", "service_name", "unit")
PCT = ("p50", "p90", "p95", "p99")


def _totals(sql: Sql, bucket: str, percentiles: bool) -> str:
    pct = "".join(
        f", {sql.pct(q, 'value')} AS {name}" for q, name in zip(sketch.QUANTILES, PCT, strict=True)
    )
    return f"""
        SELECT {bucket} AS bucket, {GROUP}, count(value) AS count, sum(value) AS sum,
            min(value) AS min, max(value) AS max {pct if percentiles else ""}
        FROM performance_metrics
        WHERE project_id = :project AND timestamp >= :start AND timestamp < :end
            AND {sql.finite("value")}
        GROUP BY 1, 2, 3, 4"""


def recompute_hours(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    bins: dict[tuple, Bins] = defaultdict(Bins)
    for r in sql.rows(
        f"""SELECT {sql.hour("timestamp")}, {GROUP}, {sql.dd_sign("value")},
                {sql.dd_key("value")}, count(*)
            FROM performance_metrics
            WHERE project_id = :project AND timestamp >= :start AND timestamp < :end
                AND {sql.finite("value")}
            GROUP BY 1, 2, 3, 4, 5, 6""",
        project=project,
        start=start,
        end=end,
    ):
        bins[(as_hour(r[0]), r[1], r[2], r[3])].add(int(r[4]), int(r[5]), float(r[6]))
    rows = []
    for r in sql.rows(
        _totals(sql, sql.hour("timestamp"), True), project=project, start=start, end=end
    ):
        m = dict(r._mapping)
        m["period_start"] = as_hour(m.pop("bucket"))
        found = bins.get((m["period_start"], *(m[k] for k in KEY)))
        m["sketch"] = found.encode() if found else None
        rows.append(_row(project, "hourly", m))
    return _replace(sql, project, "hourly", start, end, rows)


def recompute_days(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    merged = _merged(sql, project, "hourly", start, end, lambda t: t.replace(hour=0))
    rows = []
    for r in sql.rows(
        _totals(sql, sql.day("timestamp"), False), project=project, start=start, end=end
    ):
        m = dict(r._mapping)
        m["period_start"] = as_hour(str(m.pop("bucket"))[:10] + " 00")
        found = merged.get((m["period_start"], *(m[k] for k in KEY)), (None, None))[1]
        m.update(zip(PCT, found.quantiles() if found else (None,) * 4, strict=True))
        m["sketch"] = found.encode() if found else None
        rows.append(_row(project, "daily", m))
    return _replace(sql, project, "daily", start, end, rows)


def recompute_longer(sql: Sql, project: int, period: str, start: datetime) -> int:
    """One week (starting Monday) or month, from its daily rows."""
    end = start + 7 * DAY if period == "weekly" else next_month(start)
    place = week_of if period == "weekly" else month_of
    rows = []
    for key, (totals, found) in _merged(sql, project, "daily", start, end, place).items():
        m = dict(zip(("period_start", *KEY), key, strict=True), **totals)
        m.update(zip(PCT, found.quantiles() if found.count else (None,) * 4, strict=True))
        m["sketch"] = found.encode() if found.count else None
        rows.append(_row(project, period, m))
    return _replace(sql, project, period, start, end, rows)


def _merged(
    sql: Sql,
    project: int,
    period: str,
    start: datetime,
    end: datetime,
    place: Callable[[datetime], datetime],
) -> dict[tuple, tuple[dict[str, Any], Bins]]:
    """Rows of ``period`` in [start, end) merged into the bucket ``place`` gives them."""
    out: dict[tuple, tuple[dict[str, Any], Bins]] = {}
    for r in sql.rows(
        """SELECT period_start, name, service_name, unit, count, sum, min, max, sketch
           FROM metric_aggregates WHERE project_id = :project AND period_type = :period
               AND period_start >= :start AND period_start < :end
           ORDER BY period_start""",
        project=project,
        period=period,
        start=start,
        end=end,
    ):
        key = (place(as_hour(r[0])), r[1], r[2], r[3])
        totals, found = out.setdefault(
            key, ({"count": 0, "sum": 0.0, "min": r[6], "max": r[7]}, Bins())
        )
        totals["count"] += r[4]
        totals["sum"] += r[5]
        totals["min"] = min(totals["min"], r[6])
        totals["max"] = max(totals["max"], r[7])
        if r[8]:
            found.merge(sketch.decode(bytes(r[8])))
    return out


def _row(project: int, period: str, m: dict[str, Any]) -> dict[str, Any]:
    m.update(project_id=project, period_type=period, count=int(m["count"]))
    m["avg"] = m["sum"] / m["count"] if m["count"] else 0.0
    return m


def _replace(
    sql: Sql, project: int, period: str, start: datetime, end: datetime, rows: list[dict]
) -> int:
    t = MetricAggregate
    return replace_scope(
        sql.conn,
        t,
        [
            t.project_id == project,
            t.period_type == period,
            t.period_start >= start,
            t.period_start < end,
        ],
        rows,
    )
