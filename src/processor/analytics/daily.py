"""feature_usage_daily and user_activity_daily, built from per-hour parts and exact day sets.

A round reads the raw rows of its dirty hours only: each dirty hour's additive parts are
recomputed (``feature_hour_parts``, ``user_hour_parts``) and its users / session ids added to
the day's exact set (``feature_day_users``, ``user_day_sessions``: insert, ignore what is
there); a day row then adds up its day's parts and counts its set. Counts, sums, min, max and
distinct counts stay exact, the way endpoint day rows are built (analytics.endpoints).

A user's day counts their rows in endpoint_usage, feature_usage and user_activity (the rows
that make up sessions, SPEC §10); session_count is the distinct session ids among them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from processor.analytics.buckets import DAY
from processor.analytics.schema import (
    FeatureHourPart,
    FeatureUsageDaily,
    UserActivityDaily,
    UserHourPart,
)
from processor.analytics.sqlparts import (
    CHUNK,
    Delta,
    Sql,
    as_date,
    as_hour,
    as_time,
    hash_grouping,
    ratio,
    replace_scope,
    upsert,
)

WINDOW = "project_id = :project AND timestamp >= :start AND timestamp < :end"
# Users whose day rows one statement recomputes on PostgreSQL (SQLite: CHUNK, its bound
# parameter limit in mind).
USERS_PER_QUERY = 5000


def _add_to_set(sql: Sql, table: str, columns: str, select_rows: str, **params: Any) -> None:
    """INSERT the distinct rows of ``select_rows`` into a day set, ignoring those there."""
    if sql.pg:
        sql.execute(
            f"INSERT INTO {table} ({columns}) {select_rows} ON CONFLICT DO NOTHING", **params
        )
    else:
        sql.execute(f"INSERT OR IGNORE INTO {table} ({columns}) {select_rows}", **params)


# --- feature_usage_daily ------------------------------------------------------------------------


# PostgreSQL: one pass over the rows groups them by hour, feature and user; the parts add up
# the users' groups and the day sets take their users from the same groups.
_FEATURES_GROUPED = """WITH g AS MATERIALIZED (
        SELECT date_trunc('hour', timestamp, 'UTC') AS hour, feature_name, user_id,
            count(*) AS n, count(duration_ms) AS timed, sum(duration_ms) AS total,
            sum(CASE WHEN span_status = 'error' THEN 0 ELSE 1 END) AS ok
        FROM feature_usage WHERE {where} GROUP BY 1, 2, 3),
    s AS (INSERT INTO feature_day_users (project_id, day, feature_name, user_id)
        SELECT DISTINCT :project, CAST(hour AT TIME ZONE 'UTC' AS DATE), feature_name, user_id
        FROM g WHERE user_id IS NOT NULL ON CONFLICT DO NOTHING)
    """
_FEATURE_PARTS = "hour, feature_name, sum(n), sum(timed), sum(total), sum(ok)"


def recompute_feature_hours(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    """The hours' parts from their raw rows; their users into the days' sets."""
    window = {"project": project, "start": start, "end": end}
    if sql.pg:
        with hash_grouping(sql):
            found = sql.rows(
                f"{_FEATURES_GROUPED.format(where=WINDOW)} SELECT {_FEATURE_PARTS} FROM g GROUP BY 1, 2",
                **window,
            )
    else:
        found = sql.rows(
            f"""SELECT {sql.hour("timestamp")}, feature_name, count(*), count(duration_ms),
                    sum(duration_ms), sum(CASE WHEN span_status = 'error' THEN 0 ELSE 1 END)
                FROM feature_usage WHERE {WINDOW}
                GROUP BY 1, 2""",
            **window,
        )
        _add_to_set(
            sql,
            "feature_day_users",
            "project_id, day, feature_name, user_id",
            f"""SELECT DISTINCT project_id, {sql.day("timestamp")}, feature_name, user_id
                FROM feature_usage WHERE {WINDOW} AND user_id IS NOT NULL""",
            **window,
        )
    rows = [
        {
            "project_id": project,
            "bucket_start": as_hour(r[0]),
            "feature_name": r[1],
            "usage_count": int(r[2]),
            "duration_count": int(r[3]),
            "duration_sum_ms": r[4],
            "success_count": int(r[5]),
        }
        for r in found
    ]
    t = FeatureHourPart
    return replace_scope(
        sql.conn,
        t,
        [t.project_id == project, t.bucket_start >= start, t.bucket_start < end],
        rows,
    )


def recompute_features(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    """Whole days [start, end): each (day, feature) from its hours' parts and its user set."""
    return _feature_days(sql, project, start, end)


def add_feature_delta(sql: Sql, project: int, delta: Delta) -> int:
    """PostgreSQL: add the delta's feature rows to their hours' parts and their users to the
    days' sets, then recompute the day rows of the (day, feature) keys they touched. Reads
    the delta rows, and of the rest only the touched keys' parts and set counts."""
    where, params = _delta_window(project, delta)
    add_sums = _add_nullable("t.duration_sum_ms", "excluded.duration_sum_ms")
    with hash_grouping(sql):
        touched = sql.rows(
            _FEATURES_GROUPED.format(where=where)
            + f"""INSERT INTO feature_hour_parts AS t (project_id, bucket_start, feature_name,
                    usage_count, duration_count, duration_sum_ms, success_count)
                SELECT :project, {_FEATURE_PARTS} FROM g GROUP BY 2, 3
                ON CONFLICT (project_id, bucket_start, feature_name) DO UPDATE SET
                    usage_count = t.usage_count + excluded.usage_count,
                    duration_count = t.duration_count + excluded.duration_count,
                    duration_sum_ms = {add_sums},
                    success_count = t.success_count + excluded.success_count
                RETURNING t.bucket_start, t.feature_name""",
            **params,
        )
    by_day: dict[datetime, set[str]] = defaultdict(set)
    for bucket, feature in touched:
        by_day[as_hour(bucket).replace(hour=0)].add(feature)
    written = len(touched)
    for day, features in sorted(by_day.items()):
        written += _feature_days(sql, project, day, day + DAY, sorted(features))
    return written


def _feature_days(
    sql: Sql, project: int, start: datetime, end: datetime, features: Sequence[str] | None = None
) -> int:
    """The day rows of days [start, end) from their parts and user sets: every feature, or
    only ``features`` (PostgreSQL)."""
    only = "" if features is None else " AND feature_name = ANY(:features)"
    days: dict[tuple, list[Any]] = defaultdict(list)
    for r in sql.rows(
        f"""SELECT bucket_start, feature_name, usage_count, duration_count, duration_sum_ms,
               success_count
           FROM feature_hour_parts WHERE project_id = :project
               AND bucket_start >= :start AND bucket_start < :end{only}""",
        project=project,
        start=start,
        end=end,
        features=features,
    ):
        days[(as_hour(r[0]).date(), r[1])].append(r)
    bound = _dates(sql, start, end)
    users = {
        (as_date(r[0]), r[1]): int(r[2])
        for r in sql.rows(
            f"""SELECT day, feature_name, count(*) FROM feature_day_users
               WHERE project_id = :project AND day >= :start AND day < :end{only}
               GROUP BY 1, 2""",
            project=project,
            start=bound[0],
            end=bound[1],
            features=features,
        )
    }
    rows = []
    for (day, feature), parts in days.items():
        usage = sum(int(p[2]) for p in parts)
        timed = sum(int(p[3]) for p in parts)
        sums = [p[4] for p in parts if p[4] is not None]
        rows.append(
            {
                "project_id": project,
                "date": day,
                "feature_name": feature,
                "usage_count": usage,
                "unique_users": users.get((day, feature), 0),
                "avg_duration_ms": ratio(math.fsum(sums), timed) if sums else None,
                "success_rate": sum(int(p[5]) for p in parts) / usage,
            }
        )
    t = FeatureUsageDaily
    scope = [t.project_id == project, t.date >= start.date(), t.date < end.date()]
    if features is not None:
        scope.append(t.feature_name.in_(features))
    return replace_scope(sql.conn, t, scope, rows)


def _delta_window(project: int, delta: Delta) -> tuple[str, dict[str, Any]]:
    """The delta's rows of ``project`` (its where names the project already: kept as a guard)."""
    if delta.params.get("project", project) != project:
        raise ValueError(f"a delta of project {delta.params['project']} given for {project}")
    return f"project_id = :project AND ({delta.where})", {**delta.params, "project": project}


def _add_nullable(left: str, right: str) -> str:
    """A SUM of two parts where NULL means no values (not unknown)."""
    return f"CASE WHEN {left} IS NULL THEN {right} WHEN {right} IS NULL THEN {left} ELSE {left} + {right} END"


# --- user_activity_daily ------------------------------------------------------------------------


def _events(where: str = f"{WINDOW} AND user_id IS NOT NULL") -> str:
    """The rows a user's day counts (``where`` holds in every raw table), with their kind."""
    return f"""
        SELECT project_id, user_id, session_id, timestamp, duration_ms, 'requests' AS kind
            FROM endpoint_usage WHERE {where}
        UNION ALL
        SELECT project_id, user_id, session_id, timestamp, duration_ms, 'features' AS kind
            FROM feature_usage WHERE {where}
        UNION ALL
        SELECT project_id, user_id, session_id, timestamp, CAST(NULL AS DOUBLE PRECISION),
            event_type FROM user_activity WHERE {where}"""


# PostgreSQL: one pass over the rows groups them by hour, user, kind and session: the parts
# add up the sessions' groups and the session ids come from the same groups (two passes over
# an hour's rows took twice as long; there are far fewer groups than rows).
_GROUPED = """WITH g AS MATERIALIZED (
        SELECT date_trunc('hour', timestamp, 'UTC') AS hour, user_id, kind, session_id,
            count(*) AS n, coalesce(sum(duration_ms), 0) AS total, min(timestamp) AS lo,
            max(timestamp) AS hi
        FROM ({events}) e GROUP BY 1, 2, 3, 4),
    s AS (INSERT INTO user_day_sessions (project_id, day, user_id, session_id)
        SELECT DISTINCT :project, CAST(hour AT TIME ZONE 'UTC' AS DATE), user_id, session_id
        FROM g WHERE session_id IS NOT NULL ON CONFLICT DO NOTHING)
    """


def recompute_users(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    """Hours [start, end) of one UTC day: their parts and session ids from the raw rows, then
    the day rows of every user the hours had before or have now."""
    events = _events()
    t = UserHourPart
    scope = [t.project_id == project, t.bucket_start >= start, t.bucket_start < end]
    before = {r[0] for r in sql.conn.execute(select(t.user_id).distinct().where(*scope))}
    if sql.pg:
        with hash_grouping(sql):
            found = sql.rows(
                _GROUPED.format(events=events)
                + """SELECT hour, user_id, kind, sum(n), sum(total), min(lo), max(hi)
                    FROM g GROUP BY 1, 2, 3""",
                project=project,
                start=start,
                end=end,
            )
    else:
        found = sql.rows(
            f"""SELECT {sql.hour("timestamp")}, user_id, kind, count(*),
                    coalesce(sum(duration_ms), 0), min(timestamp), max(timestamp)
                FROM ({events}) e GROUP BY 1, 2, 3""",
            project=project,
            start=start,
            end=end,
        )
        _add_to_set(
            sql,
            "user_day_sessions",
            "project_id, day, user_id, session_id",
            f"""SELECT DISTINCT project_id, {sql.day("timestamp")}, user_id, session_id
                FROM ({events}) e WHERE session_id IS NOT NULL""",
            project=project,
            start=start,
            end=end,
        )
    parts = [
        {
            "project_id": project,
            "bucket_start": as_hour(r[0]),
            "user_id": r[1],
            "kind": r[2],
            "event_count": int(r[3]),
            "duration_sum_ms": float(r[4]),
            "first_seen_at": as_time(r[5]),
            "last_seen_at": as_time(r[6]),
        }
        for r in found
    ]
    replace_scope(sql.conn, t, scope, parts)
    # The day rows of every user these hours had before or have now, by name: a sub-select
    # of the hours' parts would do, but PostgreSQL plans it as a quadratic nested loop while
    # the parts have no statistics yet (a fresh table, or right after retention).
    users = sorted(before | {p["user_id"] for p in parts})
    return len(parts) + _users_days(sql, project, {start.replace(hour=0): users})


def add_user_delta(sql: Sql, project: int, delta: Delta) -> int:
    """PostgreSQL: add the delta's rows (of every raw table) to their users' hour parts and
    their session ids to the days' sets, then recompute the day rows of the (day, user) keys
    they touched. Reads the delta rows, and of the rest only the touched users' days."""
    where, params = _delta_window(project, delta)
    with hash_grouping(sql):
        touched = sql.rows(
            _GROUPED.format(events=_events(f"{where} AND user_id IS NOT NULL"))
            + """INSERT INTO user_hour_parts AS t (project_id, bucket_start, user_id, kind,
                    event_count, duration_sum_ms, first_seen_at, last_seen_at)
                SELECT :project, hour, user_id, kind, sum(n), sum(total), min(lo), max(hi)
                FROM g GROUP BY 2, 3, 4
                ON CONFLICT (project_id, bucket_start, user_id, kind) DO UPDATE SET
                    event_count = t.event_count + excluded.event_count,
                    duration_sum_ms = t.duration_sum_ms + excluded.duration_sum_ms,
                    first_seen_at = least(t.first_seen_at, excluded.first_seen_at),
                    last_seen_at = greatest(t.last_seen_at, excluded.last_seen_at)
                RETURNING t.bucket_start, t.user_id""",
            **params,
        )
    by_day: dict[datetime, set[str]] = defaultdict(set)
    for bucket, user in touched:
        by_day[as_hour(bucket).replace(hour=0)].add(user)
    # Parts only grow here: no day row can go stale, so none is looked for.
    return len(touched) + _users_days(
        sql, project, {day: sorted(users) for day, users in by_day.items()}, stale=False
    )


def _users_days(
    sql: Sql, project: int, users: dict[datetime, list[str]], stale: bool = True
) -> int:
    """The day rows of each day's ``users``, a statement per chunk of users; ``stale``: the
    rows of those left without parts are deleted (PostgreSQL deltas: none can be)."""
    step = USERS_PER_QUERY if sql.pg else CHUNK
    written = 0
    for day, names in sorted(users.items()):
        for i in range(0, len(names), step):
            written += _user_days(sql, project, day, names[i : i + step], stale)
    return written


def _user_days(
    sql: Sql, project: int, day: datetime, users: Sequence[str], stale: bool = True
) -> int:
    """The day rows of ``users`` on ``day``, from their hour parts and session sets."""
    params = {f"u{n}": user for n, user in enumerate(users)}
    scope = f"project_id = :project AND user_id IN ({', '.join(f':{n}' for n in params)})"
    found: dict[str, dict[str, Any]] = {}
    for r in sql.rows(
        f"""SELECT user_id, kind, sum(event_count), sum(duration_sum_ms), min(first_seen_at),
                max(last_seen_at)
            FROM user_hour_parts WHERE {scope}
                AND bucket_start >= :day AND bucket_start < :next
            GROUP BY 1, 2""",
        project=project,
        day=day,
        next=day + DAY,
        **params,
    ):
        row = found.setdefault(r[0], {"sums": [], "seen": [], "breakdown": {}})
        row["breakdown"][r[1]] = int(r[2])
        row["sums"].append(float(r[3]))
        row["seen"].extend((as_time(r[4]), as_time(r[5])))
    bound = _dates(sql, day, day + DAY)
    sessions = {
        r[0]: int(r[1])
        for r in sql.rows(
            f"""SELECT user_id, count(*) FROM user_day_sessions
                WHERE {scope} AND day >= :first AND day < :after GROUP BY 1""",
            project=project,
            first=bound[0],
            after=bound[1],
            **params,
        )
    }
    rows = [
        {
            "project_id": project,
            "date": day.date(),
            "user_id": user,
            "session_count": sessions.get(user, 0),
            "event_count": sum(f["breakdown"].values()),
            "total_duration_ms": math.fsum(f["sums"]),
            "first_seen_at": min(f["seen"]),
            "last_seen_at": max(f["seen"]),
            "events_breakdown": dict(sorted(f["breakdown"].items())),
        }
        for user, f in found.items()
    ]
    t = UserActivityDaily
    if not stale:
        return upsert(sql.conn, t, rows)
    return replace_scope(
        sql.conn,
        t,
        [
            t.project_id == project,
            t.date == day.date(),
            t.user_id.in_(users),
        ],
        rows,
    )


def _dates(sql: Sql, start: datetime, end: datetime) -> Sequence[Any]:
    """A DATE range as the database compares it (SQLite: ISO text)."""
    first, after = start.date(), end.date()
    return (first, after) if sql.pg else (first.isoformat(), after.isoformat())


def day_hours(hours: Iterable[datetime]) -> dict[datetime, set[datetime]]:
    """Dirty hours grouped by their UTC day. Pure."""
    out: dict[datetime, set[datetime]] = defaultdict(set)
    for h in hours:
        out[h.replace(hour=0)].add(h)
    return out
