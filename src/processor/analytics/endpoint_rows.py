"""Open hours of endpoint_stats grow by the rows added since the last round (PostgreSQL).

A round hands over a ``Delta``: the raw rows of the transactions whose markers it claimed.
Only those rows are read. Counts, sums, min and max add up exactly; the latency sketch and
the users HyperLogLog merge (the sketch of the union); a user counts once per hour through
the hour's set (``endpoint_hour_users``: a user new to it adds one). Percentiles of an open
hour come from its sketch (within 1 %), until the first round after the hour closes, which
sets them from the hour's raw rows with percentile_cont (``finalize``) and drops the set.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import text

from processor.analytics import distinct, sketch
from processor.analytics.buckets import HOUR, runs
from processor.analytics.endpoints import (
    GROUP,
    KEY,
    PERCENTILES,
    WINDOW,
    bins_of,
    percentile_columns,
    totals,
)
from processor.analytics.schema import EndpointStat
from processor.analytics.sketch import Bins
from processor.analytics.sqlparts import Delta, Sql, as_hour, upsert

HOURS_PER_QUERY = 24
COUNTS = ("request_count", "error_count", "client_error_count")


def exact_hours(sql: Sql, project: int, hours: set[datetime]) -> set[datetime]:
    """Those of ``hours`` whose rows are final (no user set kept): rows added to them
    recompute the hour instead."""
    return {
        as_hour(r[0])
        for r in sql.rows(
            """SELECT DISTINCT bucket_start FROM endpoint_stats WHERE project_id = :project
                AND period = 'hour' AND percentiles_exact AND bucket_start = ANY(:hours)""",
            project=project,
            hours=sorted(hours),
        )
    }


def add_rows(sql: Sql, project: int, delta: Delta) -> int:
    """Add the delta's endpoint_usage rows to their (open) hours' rows."""
    where, params = delta.where, delta.params
    added: dict[tuple, dict[str, Any]] = {}
    for r in sql.rows(totals(sql, where, percentiles=False), **params):
        part = dict(r._mapping)
        added[(as_hour(part.pop("bucket")), *(part[k] for k in KEY))] = part
    if not added:
        return 0
    bins = bins_of(sql, where, **params)
    hour = sql.hour("timestamp")
    # Users new to their hour (and their day): the hour's count grows by them.
    new_users: dict[tuple, list[str]] = defaultdict(list)
    for r in sql.rows(
        f"""WITH pairs AS (
                SELECT DISTINCT {hour} AS hour, {GROUP}, user_id FROM endpoint_usage
                WHERE {where} AND user_id IS NOT NULL),
            day_set AS (
                INSERT INTO endpoint_day_users
                    (project_id, day, service_name, endpoint, method, user_id)
                SELECT :project, CAST(hour AS DATE), service_name, endpoint, method, user_id
                FROM pairs ON CONFLICT DO NOTHING)
            INSERT INTO endpoint_hour_users
                (project_id, hour, service_name, endpoint, method, user_id)
            SELECT :project, hour AT TIME ZONE 'UTC', service_name, endpoint, method, user_id
            FROM pairs ON CONFLICT DO NOTHING
            RETURNING hour, service_name, endpoint, method, user_id""",
        **params,
    ):
        new_users[(as_hour(r[0]), r[1], r[2], r[3])].append(r[4])
    stored = {
        (as_hour(r.bucket_start), r.service_name, r.endpoint, r.method): r
        for r in sql.rows(
            """SELECT * FROM endpoint_stats WHERE project_id = :project AND period = 'hour'
                AND bucket_start = ANY(:hours)""",
            project=project,
            hours=sorted({k[0] for k in added}),
        )
    }
    rows = [
        _merged(project, key, stored.get(key), part, bins.get(key), new_users.get(key, []))
        for key, part in added.items()
    ]
    return upsert(sql.conn, EndpointStat, rows)


def _merged(
    project: int,
    key: tuple,
    old: Any,
    part: dict[str, Any],
    bins: Bins | None,
    users: list[str],
) -> dict[str, Any]:
    m: dict[str, Any] = {"project_id": project, "period": "hour", "bucket_start": key[0]}
    m.update(zip(KEY, key[1:], strict=True))
    latency = sketch.merge([old.latency_sketch if old is not None else None])
    if bins is not None:
        latency.merge(bins)
    hll = distinct.Union()
    if old is not None:
        hll.add(old.users_sketch)
    hll.add(distinct.encode(distinct.sketch_of(users)))
    for name in COUNTS:
        m[name] = int(part[name]) + (int(getattr(old, name)) if old is not None else 0)
    before = (
        (old.duration_sum_ms, old.duration_min_ms, old.duration_max_ms)
        if old is not None
        else (None, None, None)
    )
    values = [v for v in (before[0], part["duration_sum_ms"]) if v is not None]
    m["duration_sum_ms"] = math.fsum(values) if values else None
    lows = [v for v in (before[1], part["duration_min_ms"]) if v is not None]
    highs = [v for v in (before[2], part["duration_max_ms"]) if v is not None]
    m["duration_min_ms"] = min(lows) if lows else None
    m["duration_max_ms"] = max(highs) if highs else None
    found = latency if latency.count else None
    m.update(zip(PERCENTILES, found.quantiles() if found else [None] * 4, strict=True))
    m["latency_sketch"] = found.encode() if found else None
    m["unique_users"] = len(users) + (int(old.unique_users) if old is not None else 0)
    m["users_sketch"] = distinct.encode(hll.sketch())
    m["percentiles_exact"] = False
    return m


def open_hours(sql: Sql, project: int, before: datetime | None) -> list[datetime]:
    """Hours whose percentiles still come from sketches, closed before ``before`` (None:
    all of them)."""
    bound = "" if before is None else " AND bucket_start < :before"
    return [
        as_hour(r[0])
        for r in sql.rows(
            "SELECT DISTINCT bucket_start FROM endpoint_stats WHERE project_id = :project"
            f" AND period = 'hour' AND NOT percentiles_exact{bound} ORDER BY 1",
            project=project,
            before=before,
        )
    ]


def finalize(sql: Sql, project: int, hours: list[datetime]) -> int:
    """The closed hours' percentiles from their raw rows (percentile_cont); their user sets
    go (rows added later recompute the hour)."""
    wanted = set(hours)
    updates = []
    for start, end in runs(hours, HOUR, HOURS_PER_QUERY):
        for r in sql.rows(
            f"""SELECT {sql.hour("timestamp")}, {GROUP}, {percentile_columns(sql)}
                FROM endpoint_usage WHERE {WINDOW} GROUP BY 1, 2, 3, 4""",
            project=project,
            start=start,
            end=end,
        ):
            if as_hour(r[0]) in wanted:
                updates.append(
                    {"project": project, "b": as_hour(r[0]), "s": r[1], "e": r[2], "m": r[3],
                     "p50": r[4], "p90": r[5], "p95": r[6], "p99": r[7]}
                )  # fmt: skip
    if updates:
        sql.conn.execute(
            text(
                """UPDATE endpoint_stats SET p50_ms = :p50, p90_ms = :p90, p95_ms = :p95,
                    p99_ms = :p99 WHERE project_id = :project AND period = 'hour'
                    AND bucket_start = :b AND service_name = :s AND endpoint = :e
                    AND method = :m"""
            ),
            updates,
        )
    for statement in (
        "UPDATE endpoint_stats SET percentiles_exact = true WHERE project_id = :project"
        " AND period = 'hour' AND bucket_start = ANY(:hours)",
        "DELETE FROM endpoint_hour_users WHERE project_id = :project AND hour = ANY(:hours)",
    ):
        sql.execute(statement, project=project, hours=hours)
    return len(updates)
