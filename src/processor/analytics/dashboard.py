"""dashboard_metrics: the Overview KPI tiles, refreshed by every round.

Windows are whole hours so they come from hour rollups: "last 24 h" is the current hour and
the 23 before it, "previous" the 24 hours before that. DAU and sessions are distinct counts,
which do not merge, so they come from the raw rows of the window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from processor.analytics import sketch
from processor.analytics.buckets import HOUR
from processor.analytics.invalidations import hour_of
from processor.analytics.schema import DashboardMetric
from processor.analytics.sqlparts import Sql, as_time, ratio, replace_scope

WIDGET = "overview"
DAY = timedelta(hours=24)


def windows(now: datetime) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    end = hour_of(now) + HOUR
    return (end - DAY, end), (end - 2 * DAY, end - DAY)


def tiles(sql: Sql, project: int, start: datetime, end: datetime) -> dict[str, float | None]:
    requests, errors = sql.rows(
        """SELECT coalesce(sum(request_count), 0), coalesce(sum(error_count), 0)
           FROM endpoint_stats WHERE project_id = :project AND period = 'hour'
               AND bucket_start >= :start AND bucket_start < :end""",
        project=project,
        start=start,
        end=end,
    )[0]
    blobs = sql.rows(
        """SELECT latency_sketch FROM endpoint_stats WHERE project_id = :project
               AND period = 'hour' AND bucket_start >= :start AND bucket_start < :end""",
        project=project,
        start=start,
        end=end,
    )
    merged = sketch.merge(r[0] for r in blobs)
    window = "project_id = :project AND timestamp >= :start AND timestamp < :end"
    union = " UNION ".join(
        f"SELECT {{col}} FROM {t} WHERE {window} AND {{col}} IS NOT NULL"
        for t in ("endpoint_usage", "feature_usage", "user_activity")
    )
    users = sql.rows(
        f"SELECT count(*) FROM ({union.format(col='user_id')}) u",
        project=project,
        start=start,
        end=end,
    )[0][0]
    sessions = sql.rows(
        f"SELECT count(*) FROM ({union.format(col='session_id')}) s",
        project=project,
        start=start,
        end=end,
    )[0][0]
    return {
        "requests": float(requests),
        "error_rate": ratio(float(errors), float(requests)),
        "p95_latency_ms": merged.quantiles((0.95,))[0] if merged.count else None,
        "dau": float(users),
        "sessions": float(sessions),
    }


def refresh(sql: Sql, project: int, now: datetime | None = None) -> int:
    """Rewrite the project's tiles; a tile whose numbers did not change keeps its row."""
    now = now or datetime.now(UTC)
    current, previous = windows(now)
    values = tiles(sql, project, *current)
    before = tiles(sql, project, *previous)
    stored = {
        r[0]: (r[1], r[2], r[3])
        for r in sql.rows(
            """SELECT metric_key, value, previous_value, updated_at FROM dashboard_metrics
               WHERE project_id = :project AND widget_id = :widget""",
            project=project,
            widget=WIDGET,
        )
    }
    rows: list[dict[str, Any]] = []
    for key, value in values.items():
        if value is None:
            continue  # no data to rate: the tile shows none rather than a made-up zero
        prev = before[key]
        change = ratio((value - prev) * 100.0, prev) if prev is not None else None
        old = stored.get(key)
        same = old is not None and (old[0], old[1]) == (value, prev)
        rows.append(
            {
                "project_id": project,
                "widget_id": WIDGET,
                "metric_key": key,
                "value": value,
                "previous_value": prev,
                "change_percent": change,
                "updated_at": as_time(old[2]) if same and old else now,
            }
        )
    t = DashboardMetric
    return replace_scope(sql.conn, t, [t.project_id == project, t.widget_id == WIDGET], rows)
