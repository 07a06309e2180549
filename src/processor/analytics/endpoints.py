"""endpoint_stats: per (service, endpoint, method) RED numbers per hour and per day.

Hour rows: everything from the bucket's raw rows, percentiles by percentile_cont, plus the
HyperLogLog of the bucket's users (analytics.distinct); each dirty hour also adds its users to
the day's exact user set (``endpoint_day_users``). Day rows: from the day's hour rows only —
counts and sums added, min of mins, max of maxes, latency and user sketches merged (never
averaged percentiles) — and unique users counted in the day's set. So a round reads the raw
rows of its dirty hours once, never a whole day of them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, datetime
from typing import Any

from processor.analytics import distinct, sketch
from processor.analytics.schema import EndpointStat
from processor.analytics.sketch import Bins
from processor.analytics.sqlparts import Sql, as_date, as_hour, replace_scope

GROUP = "coalesce(service_name, '') AS service_name, endpoint, method"
KEY = ("service_name", "endpoint", "method")
PERCENTILES = ("p50_ms", "p90_ms", "p95_ms", "p99_ms")
WINDOW = "project_id = :project AND timestamp >= :start AND timestamp < :end"


def percentile_columns(sql: Sql) -> str:
    """p50_ms … p99_ms of a group's raw rows (percentile_cont)."""
    return ", ".join(
        f"{sql.pct(q, 'duration_ms')} AS {name}"
        for q, name in zip(sketch.QUANTILES, PERCENTILES, strict=True)
    )


def totals(sql: Sql, where: str = WINDOW, *, percentiles: bool = True) -> str:
    """Each hour group's counts, sums, min and max (and percentiles) of the rows ``where``
    selects."""
    pct = f", {percentile_columns(sql)}" if percentiles else ""
    return f"""
        SELECT {sql.hour("timestamp")} AS bucket, {GROUP},
            count(*) AS request_count,
            sum(CASE WHEN status_code BETWEEN 500 AND 599 OR span_status = 'error'
                THEN 1 ELSE 0 END) AS error_count,
            sum(CASE WHEN status_code BETWEEN 400 AND 499 THEN 1 ELSE 0 END)
                AS client_error_count,
            sum(duration_ms) AS duration_sum_ms,
            min(duration_ms) AS duration_min_ms,
            max(duration_ms) AS duration_max_ms
            {pct}
        FROM endpoint_usage WHERE {where}
        GROUP BY 1, 2, 3, 4"""


def hour_bins(sql: Sql, project: int, start: datetime, end: datetime) -> dict[tuple, Bins]:
    """Each hour group's latency sketch, from bin counts the database groups."""
    return bins_of(sql, WINDOW, project=project, start=start, end=end)


def bins_of(sql: Sql, where: str, **params: Any) -> dict[tuple, Bins]:
    """Each hour group's latency sketch of the rows ``where`` selects."""
    col = "duration_ms"
    found: dict[tuple, Bins] = defaultdict(Bins)
    for r in sql.rows(
        f"""SELECT {sql.hour("timestamp")}, {GROUP}, {sql.dd_sign(col)}, {sql.dd_key(col)},
                count(*)
            FROM endpoint_usage WHERE {where} AND {sql.finite(col)}
            GROUP BY 1, 2, 3, 4, 5, 6""",
        **params,
    ):
        found[(as_hour(r[0]), r[1], r[2], r[3])].add(int(r[4]), int(r[5]), float(r[6]))
    return found


def hour_users(
    sql: Sql, project: int, start: datetime, end: datetime, open_from: datetime | None = None
) -> dict[tuple, Any]:
    """Each hour group's users as a HyperLogLog (its exact count is the rows it was fed); the
    same distinct users go into their days' exact sets (users already there stay once) and,
    for open hours (from ``open_from``, PostgreSQL), into the hour's set that added rows are
    counted against. On PostgreSQL one scan does all (a data-modifying CTE); SQLite runs two
    statements."""
    pairs = f"""SELECT DISTINCT {sql.hour("timestamp")} AS hour, {GROUP}, user_id
        FROM endpoint_usage WHERE {WINDOW} AND user_id IS NOT NULL"""
    columns = "(project_id, day, service_name, endpoint, method, user_id)"
    if sql.pg:
        sql.execute(
            "DELETE FROM endpoint_hour_users WHERE project_id = :project"
            " AND hour >= :start AND hour < :end",
            project=project,
            start=start,
            end=end,
        )
        query = f"""WITH pairs AS ({pairs}), added AS (
                INSERT INTO endpoint_day_users {columns}
                SELECT DISTINCT :project, CAST(hour AS DATE), service_name, endpoint, method,
                    user_id FROM pairs
                ON CONFLICT DO NOTHING), hour_set AS (
                INSERT INTO endpoint_hour_users
                    (project_id, hour, service_name, endpoint, method, user_id)
                SELECT :project, hour AT TIME ZONE 'UTC', service_name, endpoint, method,
                    user_id FROM pairs WHERE hour AT TIME ZONE 'UTC' >= :open_from)
            SELECT * FROM pairs"""
    else:
        sql.execute(
            f"""INSERT OR IGNORE INTO endpoint_day_users {columns}
                SELECT DISTINCT project_id, {sql.day("timestamp")}, {GROUP}, user_id
                FROM endpoint_usage WHERE {WINDOW} AND user_id IS NOT NULL""",
            project=project,
            start=start,
            end=end,
        )
        query = pairs
    users: dict[tuple, list[str]] = defaultdict(list)
    bound = {"open_from": open_from or end} if sql.pg else {}
    for r in sql.rows(query, project=project, start=start, end=end, **bound):
        users[(as_hour(r[0]), r[1], r[2], r[3])].append(r[4])
    return {k: (len(v), distinct.sketch_of(v)) for k, v in users.items()}


def recompute_hours(
    sql: Sql, project: int, start: datetime, end: datetime, open_from: datetime | None = None
) -> int:
    """The hours' rows from their raw rows. Hours from ``open_from`` on are open: added rows
    will grow them (analytics.endpoint_rows), so their percentiles come from the sketch they
    will merge into, and their user sets are kept; earlier hours are final and exact."""
    bins = hour_bins(sql, project, start, end)
    users = hour_users(sql, project, start, end, open_from)
    rows = []
    for r in sql.rows(totals(sql), project=project, start=start, end=end):
        m = dict(r._mapping)
        m["bucket_start"] = as_hour(m.pop("bucket"))
        key = (m["bucket_start"], *(m[k] for k in KEY))
        found = bins.get(key)
        m["latency_sketch"] = found.encode() if found else None
        count, hll = users.get(key, (0, distinct.sketch_of(())))
        m["unique_users"], m["users_sketch"] = count, distinct.encode(hll)
        m["percentiles_exact"] = open_from is None or m["bucket_start"] < open_from
        if not m["percentiles_exact"]:
            m.update(zip(PERCENTILES, found.quantiles() if found else [None] * 4, strict=True))
        rows.append(_row(project, "hour", m))
    return _replace(sql, project, "hour", start, end, rows)


class _Day:
    """One day group's hour rows, added up."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.sums: list[float] = []
        self.low: float | None = None
        self.high: float | None = None
        self.blobs: list[bytes] = []
        self.users = distinct.Union()

    def add(self, r: Any) -> None:
        for i, n in enumerate((r.request_count, r.error_count, r.client_error_count)):
            self.counts[i] += int(n)
        if r.duration_sum_ms is not None:
            self.sums.append(r.duration_sum_ms)
        if r.duration_min_ms is not None:
            self.low = r.duration_min_ms if self.low is None else min(self.low, r.duration_min_ms)
        if r.duration_max_ms is not None:
            self.high = (
                r.duration_max_ms if self.high is None else max(self.high, r.duration_max_ms)
            )
        if r.latency_sketch:
            self.blobs.append(r.latency_sketch)
        self.users.add(r.users_sketch)


def recompute_days(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    days: dict[tuple, _Day] = defaultdict(_Day)
    for r in sql.rows(
        """SELECT bucket_start, service_name, endpoint, method, request_count, error_count,
               client_error_count, duration_sum_ms, duration_min_ms, duration_max_ms,
               latency_sketch, users_sketch
           FROM endpoint_stats WHERE project_id = :project AND period = 'hour'
               AND bucket_start >= :start AND bucket_start < :end
           ORDER BY bucket_start""",
        project=project,
        start=start,
        end=end,
    ):
        days[(as_hour(r[0]).replace(hour=0), r[1], r[2], r[3])].add(r)
    users = day_user_counts(sql, project, start.date(), end.date())
    rows = []
    for (day, *key), d in days.items():
        merged = sketch.merge(d.blobs)
        found = merged if merged.count else None
        p50, p90, p95, p99 = found.quantiles() if found else (None, None, None, None)
        m: dict[str, Any] = dict(zip(KEY, key, strict=True))
        m.update(
            bucket_start=day,
            request_count=d.counts[0],
            error_count=d.counts[1],
            client_error_count=d.counts[2],
            duration_sum_ms=math.fsum(d.sums) if d.sums else None,
            duration_min_ms=d.low,
            duration_max_ms=d.high,
            p50_ms=p50,
            p90_ms=p90,
            p95_ms=p95,
            p99_ms=p99,
            unique_users=users.get((day.date(), *key), 0),
            latency_sketch=found.encode() if found else None,
            users_sketch=None if d.users.missing else distinct.encode(d.users.sketch()),
            percentiles_exact=False,  # day rows merge their hours' sketches (SPEC §10)
        )
        rows.append(_row(project, "day", m))
    return _replace(sql, project, "day", start, end, rows)


def day_user_counts(sql: Sql, project: int, start: date, end: date) -> dict[tuple, int]:
    bound = (start, end) if sql.pg else (start.isoformat(), end.isoformat())
    return {
        (as_date(r[0]), r[1], r[2], r[3]): int(r[4])
        for r in sql.rows(
            """SELECT day, service_name, endpoint, method, count(*) FROM endpoint_day_users
               WHERE project_id = :project AND day >= :start AND day < :end
               GROUP BY 1, 2, 3, 4""",
            project=project,
            start=bound[0],
            end=bound[1],
        )
    }


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
