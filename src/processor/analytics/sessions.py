"""The ``sessions`` table: recomputed for dirty hours, or extended by a delta (SPEC §10).

- client sessions (``session.id``): a client may keep one id for days, so the session is
  kept as mergeable per-hour partials (``session_hours``, see session_parts). The full path
  (``recompute``: SQLite, rebuilds, forget-user, late data) recomputes the partials of its
  hours from those hours' raw rows; the delta path (``add_delta``, PostgreSQL rounds) merges
  the partials of only the new rows into the stored ones. Then every session with a touched
  partial is rewritten from all its partials (primary-key reads): the raw rows read are the
  dirty hours' or the delta's, whatever the sessions' spans. Platform and app version: the
  latest non-empty value among all the session's logs.
- inferred sessions (30 idle minutes, per user): for each user with session-less events in
  those hours (or in the delta), the window [start - 30 min, end + 30 min] is widened until
  its first and last events are more than 30 minutes from its edges (and it covers the
  user's stored inferred sessions it overlaps), so the sessions inside it are whole; they
  replace the stored ones inside it. Platform and app version: the latest non-empty value
  among the user's session-less logs inside the session (sessionize.attach_devices).

The writer marks the hours of logs dirty too. The sessionization itself is the pure
sessionize module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects import postgresql, sqlite

from processor.analytics.buckets import HOUR
from processor.analytics.invalidations import hour_of
from processor.analytics.schema import Session
from processor.analytics.session_parts import (
    COLUMNS,
    Dialect,
    by_ids,
    hours_of,
    merge_sql,
    partials_sql,
    session_rows,
)
from processor.analytics.sessionize import (
    GAP,
    INFERRED,
    SessionEvent,
    SessionLog,
    SessionRow,
    attach_devices,
    sessionize,
)
from processor.analytics.sqlparts import CHUNK, Delta, Sql, as_time, hash_grouping, replace_scope

# Partial rows one step writes beyond which it refreshes the planner's statistics first.
ANALYZE_AFTER = 10_000
EVENT_TABLES = ("endpoint_usage", "feature_usage", "user_activity")


def _events_sql(where: str) -> str:
    return f"""
        SELECT 0, id, timestamp, user_id, session_id, method || ' ' || endpoint,
            CASE WHEN (status_code >= 500 AND status_code <= 599) OR span_status = 'error'
                THEN 1 ELSE 0 END
            FROM endpoint_usage WHERE {where}
        UNION ALL
        SELECT 1, id, timestamp, user_id, session_id, feature_name,
            CASE WHEN span_status = 'error' THEN 1 ELSE 0 END
            FROM feature_usage WHERE {where}
        UNION ALL
        SELECT 2, id, timestamp, user_id, session_id, NULL, 0
            FROM user_activity WHERE {where}"""


def _key(value: Any) -> str:
    return str(value).replace("-", "")


def _run(sql: Sql, query: str, ids: Sequence[str], **params: Any) -> list[Any]:
    bound = {k: sql.param(v) if isinstance(v, datetime) else v for k, v in params.items()}
    stmt = text(query).bindparams(bindparam("ids", expanding=True))
    return list(sql.conn.execute(stmt, {**bound, "ids": list(ids)}))


def _to_events(rows: list[Any]) -> list[SessionEvent]:
    return [
        SessionEvent(
            when=as_time(r[2]),
            tiebreak=f"{r[0]}:{_key(r[1])}",
            user_id=r[3],
            session_id=r[4],
            label=r[5],
            error=bool(r[6]),
        )
        for r in rows
    ]


def _logs(sql: Sql, where: str, ids: Sequence[str], **params: Any) -> list[SessionLog]:
    rows = _run(
        sql,
        f"""SELECT id, timestamp, user_id, session_id, device_platform, app_version
            FROM logs WHERE {where}""",
        ids,
        **params,
    )
    return [SessionLog(as_time(r[1]), _key(r[0]), r[2], r[3], r[4], r[5]) for r in rows]


def _record(row: SessionRow, project: int) -> dict[str, Any]:
    return {
        "project_id": project,
        "session_id": row.session_id,
        "user_id": row.user_id,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "duration_ms": row.duration_ms,
        "event_count": row.event_count,
        "error_count": row.error_count,
        "device_platform": row.device_platform,
        "app_version": row.app_version,
        "entry": row.entry,
        "exit": row.exit,
    }


def _touched(sql: Sql, project: int, start: datetime, end: datetime, column: str) -> set[str]:
    """Distinct values of ``column`` among the events and logs of [start, end)."""
    only = "session_id IS NULL AND " if column == "user_id" else ""
    where = (
        f"project_id = :project AND timestamp >= :start AND timestamp < :end"
        f" AND {only}{column} IS NOT NULL"
    )
    union = " UNION ".join(
        f"SELECT DISTINCT {column} FROM {t} WHERE {where}" for t in (*EVENT_TABLES, "logs")
    )
    return {r[0] for r in sql.rows(union, project=project, start=start, end=end)}


def recompute(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    """The full path: the hours [start, end) recomputed from all their raw rows."""
    return _client_sessions(sql, project, start, end) + _idle_sessions(sql, project, start, end)


def add_delta(sql: Sql, project: int, delta: Delta) -> int:
    """The delta path (PostgreSQL): the rows ``delta`` selects, never seen before, added to
    the stored partials; then the touched sessions rewritten from their partials, and the
    inferred sessions of the users with session-less rows among them re-sessionized."""
    params = {**delta.params, "project": project}
    d = Dialect(sql.pg)
    with hash_grouping(sql):
        touched = {
            r[0]
            for r in sql.rows(
                f"INSERT INTO session_hours ({COLUMNS}) {partials_sql(d, delta.where)}"
                f" {merge_sql(d)} RETURNING session_id",
                **params,
            )
        }
    return _rewrite(sql, project, touched) + _idle_delta(sql, project, delta.where, params)


def _client_sessions(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    """Recompute the partials of the hours [start, end), then every session with a partial
    there (before or after) from all its partials: raw rows are read for these hours only."""
    in_hours = "project_id = :project AND hour >= :start AND hour < :end"
    ids = hours_of(sql, project, start, end)
    sql.execute(
        f"DELETE FROM session_hours WHERE {in_hours}", project=project, start=start, end=end
    )
    with hash_grouping(sql):
        written = sql.execute(
            f"INSERT INTO session_hours ({COLUMNS}) "
            + partials_sql(
                Dialect(sql.pg),
                "project_id = :project AND timestamp >= :start AND timestamp < :end",
            ),
            project=project,
            start=start,
            end=end,
        )
    if sql.pg and written >= ANALYZE_AFTER:
        # Many rows written in this transaction (a rebuild, a backfill): without fresh
        # statistics PostgreSQL reads the look-ups by session id below through the
        # project_id prefix of another index, every row of the project per chunk (measured:
        # 180 ms a chunk at 700,000 partials, 0.8 ms after ANALYZE, which counts this
        # transaction's own rows).
        sql.execute("ANALYZE session_hours, sessions")
    return _rewrite(sql, project, ids | hours_of(sql, project, start, end))


def _rewrite(sql: Sql, project: int, ids: set[str]) -> int:
    """The sessions ``ids`` rewritten from all their partials (gone when none has events)."""
    ordered = sorted(ids)
    step = max(len(ordered), 1) if sql.pg else CHUNK
    written = 0
    for first in range(0, len(ordered), step):
        chunk = ordered[first : first + step]
        rows = session_rows(sql, project, chunk)
        if rows:
            insert = postgresql.insert if sql.pg else sqlite.insert
            stmt = insert(Session)
            names = ["project_id", "session_id"]
            updates = {c.name: stmt.excluded[c.name] for c in stmt.table.c if c.name not in names}
            sql.conn.execute(
                stmt.on_conflict_do_update(index_elements=names, set_=updates),
                [_record(r, project) for r in rows],
            )
        gone = sorted(set(chunk) - {r.session_id for r in rows})
        if gone:
            by_ids(
                sql,
                "DELETE FROM sessions WHERE project_id = :project AND session_id {ids}",
                gone,
                project=project,
            )
        written += len(rows)
    return written


def _idle_delta(sql: Sql, project: int, where: str, params: dict[str, Any]) -> int:
    """Re-sessionize the users with session-less rows in the delta, each over a window
    around the hours of those rows (widened as the full path widens it)."""
    union = " UNION ALL ".join(
        f"SELECT user_id, timestamp FROM {t} WHERE ({where})"
        " AND session_id IS NULL AND user_id IS NOT NULL"
        for t in (*EVENT_TABLES, "logs")
    )
    spans: dict[tuple[datetime, datetime], list[str]] = {}
    for user, first, last in sql.rows(
        f"SELECT user_id, min(timestamp), max(timestamp) FROM ({union}) AS d GROUP BY user_id",
        **params,
    ):
        span = (hour_of(as_time(first)), hour_of(as_time(last)) + HOUR)
        spans.setdefault(span, []).append(user)
    written = 0
    for (start, end), users in sorted(spans.items()):
        ordered = sorted(users)
        for first in range(0, len(ordered), CHUNK):
            chunk = ordered[first : first + CHUNK]
            written += _idle_chunk(sql, project, chunk, start - GAP, end + GAP)
    return written


def _idle_sessions(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    lo, hi = start - GAP, end + GAP
    users = _touched(sql, project, start, end, "user_id")
    users |= {
        r[0]
        for r in sql.rows(
            "SELECT user_id FROM sessions WHERE project_id = :project"
            " AND started_at <= :hi AND ended_at >= :lo"
            f" AND session_id LIKE '{INFERRED}%'",
            project=project,
            lo=lo,
            hi=hi,
        )
    }
    written = 0
    ordered = sorted(users)
    for first in range(0, len(ordered), CHUNK):
        written += _idle_chunk(sql, project, ordered[first : first + CHUNK], lo, hi)
    return written


def _idle_chunk(sql: Sql, project: int, users: list[str], lo: datetime, hi: datetime) -> int:
    where = (
        "project_id = :project AND user_id IN :ids AND session_id IS NULL"
        " AND timestamp >= :lo AND timestamp <= :hi"
    )
    stored_sql = (
        "SELECT min(started_at), max(ended_at) FROM sessions WHERE project_id = :project"
        f" AND user_id IN :ids AND session_id LIKE '{INFERRED}%'"
        " AND started_at <= :hi AND ended_at >= :lo"
    )
    while True:  # widen until every session inside is whole
        stored = _run(sql, stored_sql, users, project=project, lo=lo, hi=hi)[0]
        if stored[0] is not None:
            lo, hi = min(lo, as_time(stored[0])), max(hi, as_time(stored[1]))
        events = _to_events(_run(sql, _events_sql(where), users, project=project, lo=lo, hi=hi))
        new_lo, new_hi = lo, hi
        for e in events:
            if e.when - GAP < new_lo:
                new_lo = e.when - GAP
            if e.when + GAP > new_hi:
                new_hi = e.when + GAP
        if (new_lo, new_hi) == (lo, hi):
            break
        lo, hi = new_lo, new_hi
    rows = sessionize(events)
    attach_devices(rows, _logs(sql, where, users, project=project, lo=lo, hi=hi))
    t = Session
    return replace_scope(
        sql.conn,
        t,
        [
            t.project_id == project,
            t.user_id.in_(users),
            t.session_id.like(f"{INFERRED}%"),
            t.started_at <= hi,
            t.ended_at >= lo,
        ],
        [_record(r, project) for r in rows],
    )
