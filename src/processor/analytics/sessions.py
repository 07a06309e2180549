"""The ``sessions`` table, recomputed for the sessions that dirty hours touch (SPEC §10).

A round hands over [start, end) of dirty hours of one project. Sessions can span hours, so:

- client sessions (``session.id``): a client may keep one id for days, so the session is
  kept as per-hour partials (``session_hours``, see session_parts). The round recomputes the
  partials of its hours from those hours' raw rows, then every session with a partial in
  them, before or after, from all its partials (primary-key reads): the raw rows read are
  the dirty hours', whatever the sessions' spans.
- inferred sessions (30 idle minutes, per user): for each user with session-less events in
  those hours, the window [start - 30 min, end + 30 min] is widened until its first and
  last events are more than 30 minutes from its edges (and it covers the user's stored
  inferred sessions it overlaps), so the sessions inside it are whole; they replace the
  stored ones inside it.

Device platform and app version come from the session's logs (sessionize.attach_devices),
which the writer marks dirty too. The sessionization itself is the pure sessionize module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, text

from processor.analytics.schema import Session, SessionHour
from processor.analytics.session_parts import HourPart, hour_parts, merge
from processor.analytics.sessionize import (
    GAP,
    INFERRED,
    SessionEvent,
    SessionLog,
    SessionRow,
    attach_devices,
    sessionize,
)
from processor.analytics.sqlparts import CHUNK, Sql, as_time, replace_scope

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
    return _client_sessions(sql, project, start, end) + _idle_sessions(sql, project, start, end)


def _client_sessions(sql: Sql, project: int, start: datetime, end: datetime) -> int:
    """Recompute the partials of the hours [start, end), then every session with a partial
    there (before or after) from all its partials: raw rows are read for these hours only."""
    where = (
        "project_id = :project AND session_id IS NOT NULL"
        " AND timestamp >= :start AND timestamp < :end"
    )
    events = _to_events(sql.rows(_events_sql(where), project=project, start=start, end=end))
    logs = [
        SessionLog(as_time(r[1]), _key(r[0]), r[2], r[3], r[4], r[5])
        for r in sql.rows(
            f"""SELECT id, timestamp, user_id, session_id, device_platform, app_version
                FROM logs WHERE {where}""",
            project=project,
            start=start,
            end=end,
        )
    ]
    parts = hour_parts(events, logs)
    in_hours = "project_id = :project AND hour >= :start AND hour < :end"
    ids = {
        r[0]
        for r in sql.rows(
            f"SELECT DISTINCT session_id FROM session_hours WHERE {in_hours}",
            project=project,
            start=start,
            end=end,
        )
    }
    sql.execute(
        f"DELETE FROM session_hours WHERE {in_hours}", project=project, start=start, end=end
    )
    if parts:
        sql.conn.execute(insert(SessionHour), [{"project_id": project, **vars(p)} for p in parts])
    if sql.pg and len(parts) >= ANALYZE_AFTER:
        # Many rows written in this transaction (a rebuild, a backfill): without fresh
        # statistics PostgreSQL reads the look-ups by session id below through the
        # project_id prefix of another index, every row of the project per chunk (measured:
        # 180 ms a chunk at 700,000 partials, 0.8 ms after ANALYZE, which counts this
        # transaction's own rows).
        sql.execute("ANALYZE session_hours, sessions")
    ids.update(p.session_id for p in parts)
    ordered = sorted(ids)
    written = 0
    for first in range(0, len(ordered), CHUNK):
        chunk = ordered[first : first + CHUNK]
        stored: dict[str, list[HourPart]] = {}
        for r in _run(
            sql,
            f"SELECT {PART_COLUMNS} FROM session_hours"
            " WHERE project_id = :project AND session_id IN :ids",
            chunk,
            project=project,
        ):
            stored.setdefault(r[0], []).append(_part(r))
        rows = [merge(sid, stored[sid]) for sid in chunk if sid in stored]
        t = Session
        written += replace_scope(
            sql.conn,
            t,
            [t.project_id == project, t.session_id.in_(chunk)],
            [_record(r, project) for r in rows if r is not None],
        )
    return written


PART_FIELDS = [f.name for f in fields(HourPart)]
PART_COLUMNS = ", ".join(PART_FIELDS)
_TIMES = {n for n in PART_FIELDS if n == "hour" or n.endswith("_at")}


def _part(row: Any) -> HourPart:
    values: dict[str, Any] = {
        n: (as_time(v) if n in _TIMES and v is not None else v)
        for n, v in zip(PART_FIELDS, row, strict=True)
    }
    return HourPart(**values)


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
