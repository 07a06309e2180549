"""The ``sessions`` table, recomputed for the sessions that dirty hours touch (SPEC §10).

A round hands over [start, end) of dirty hours of one project. Sessions can span hours, so:

- client sessions (``session.id``): every session id seen in those hours is recomputed from
  all its events. Before this step the stored row covered every older event of that id, and
  every newer event lies in a dirty hour of this round, so the events between the stored
  row's start (or ``start``) and its end (or ``end``) are all of them.
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
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text

from processor.analytics.schema import Session
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
    ids = _touched(sql, project, start, end, "session_id")
    ids |= {
        r[0]
        for r in sql.rows(
            "SELECT session_id FROM sessions WHERE project_id = :project"
            " AND started_at < :end AND ended_at >= :start"
            f" AND session_id NOT LIKE '{INFERRED}%'",
            project=project,
            start=start,
            end=end,
        )
    }
    # The window that holds every event of every touched session: the dirty hours widened to
    # the stored rows of those sessions (primary-key look-ups). Its events are read once and
    # kept for the touched ids; one scan, not one per chunk of ids (session_id has no index).
    ordered = sorted(ids)
    lo, hi = start, end
    for first in range(0, len(ordered), CHUNK):
        known = _run(
            sql,
            "SELECT min(started_at), max(ended_at) FROM sessions"
            " WHERE project_id = :project AND session_id IN :ids",
            ordered[first : first + CHUNK],
            project=project,
        )[0]
        if known[0] is not None:
            lo, hi = min(lo, as_time(known[0])), max(hi, as_time(known[1]))
    where = (
        "project_id = :project AND session_id IS NOT NULL AND timestamp >= :lo AND timestamp <= :hi"
    )
    events = [
        e
        for e in _to_events(sql.rows(_events_sql(where), project=project, lo=lo, hi=hi))
        if e.session_id in ids
    ]
    rows = sessionize(events)
    logs = sql.rows(
        f"""SELECT id, timestamp, user_id, session_id, device_platform, app_version
            FROM logs WHERE {where}""",
        project=project,
        lo=lo,
        hi=hi,
    )
    attach_devices(
        rows,
        [
            SessionLog(as_time(r[1]), _key(r[0]), r[2], r[3], r[4], r[5])
            for r in logs
            if r[3] in ids
        ],
    )
    by_id: dict[str, list[SessionRow]] = {}
    for row in rows:
        by_id.setdefault(row.session_id, []).append(row)
    written = 0
    for first in range(0, len(ordered), CHUNK):
        chunk = ordered[first : first + CHUNK]
        t = Session
        written += replace_scope(
            sql.conn,
            t,
            [t.project_id == project, t.session_id.in_(chunk)],
            [_record(r, project) for sid in chunk for r in by_id.get(sid, ())],
        )
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
