"""feature_usage_daily and user_activity_daily, recomputed per day from the raw rows.

A user's day counts their rows in endpoint_usage, feature_usage and user_activity (the rows
that make up sessions, SPEC §10); session_count is the distinct session ids among them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from processor.analytics.schema import FeatureUsageDaily, UserActivityDaily
from processor.analytics.sqlparts import Sql, as_date, as_time, replace_scope


def recompute_features(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    rows = [
        {
            "project_id": project,
            "date": as_date(r[0]),
            "feature_name": r[1],
            "usage_count": int(r[2]),
            "unique_users": int(r[3]),
            "avg_duration_ms": r[4],
            "success_rate": float(r[5]),
        }
        for r in sql.rows(
            f"""SELECT {sql.day("timestamp")}, feature_name, count(*), count(DISTINCT user_id),
                    avg(duration_ms),
                    avg(CASE WHEN span_status = 'error' THEN 0.0 ELSE 1.0 END)
                FROM feature_usage
                WHERE project_id = :project AND timestamp >= :start AND timestamp < :end
                GROUP BY 1, 2""",
            project=project,
            start=start,
            end=end,
        )
    ]
    t = FeatureUsageDaily
    return replace_scope(
        sql.conn,
        t,
        [t.project_id == project, t.date >= start.date(), t.date < end.date()],
        rows,
    )


def _events() -> str:
    window = (
        "project_id = :project AND timestamp >= :start AND timestamp < :end AND user_id IS NOT NULL"
    )
    return f"""
        SELECT user_id, session_id, timestamp, duration_ms, 'requests' AS kind
            FROM endpoint_usage WHERE {window}
        UNION ALL
        SELECT user_id, session_id, timestamp, duration_ms, 'features' AS kind
            FROM feature_usage WHERE {window}
        UNION ALL
        SELECT user_id, session_id, timestamp, CAST(NULL AS DOUBLE PRECISION),
            event_type FROM user_activity WHERE {window}"""


def recompute_users(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    events = _events()
    breakdown: dict[tuple, dict[str, int]] = defaultdict(dict)
    for r in sql.rows(
        f"SELECT {sql.day('timestamp')}, user_id, kind, count(*) FROM ({events}) e GROUP BY 1, 2, 3",
        project=project,
        start=start,
        end=end,
    ):
        breakdown[(as_date(r[0]), r[1])][r[2]] = int(r[3])
    rows = []
    for r in sql.rows(
        f"""SELECT {sql.day("timestamp")}, user_id, count(DISTINCT session_id), count(*),
                coalesce(sum(duration_ms), 0), min(timestamp), max(timestamp)
            FROM ({events}) e GROUP BY 1, 2""",
        project=project,
        start=start,
        end=end,
    ):
        day = as_date(r[0])
        rows.append(
            {
                "project_id": project,
                "date": day,
                "user_id": r[1],
                "session_count": int(r[2]),
                "event_count": int(r[3]),
                "total_duration_ms": float(r[4]),
                "first_seen_at": as_time(r[5]),
                "last_seen_at": as_time(r[6]),
                "events_breakdown": dict(sorted(breakdown[(day, r[1])].items())),
            }
        )
    t = UserActivityDaily
    return replace_scope(
        sql.conn,
        t,
        [t.project_id == project, t.date >= start.date(), t.date < end.date()],
        rows,
    )
