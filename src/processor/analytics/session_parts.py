"""Client sessions from mergeable per-hour partials (SPEC §10), computed in SQL.

A client session's row is a function of its events and logs. Split them by UTC hour: each
(session, hour) partial (``session_hours``) is a SQL aggregation of that hour's raw rows, and
partials MERGE: the partial of rows A and the partial of rows B combine into the partial of
A + B. So a round can recompute an hour's partials from its raw rows (full path), or add the
partials of only the rows written since the last round to the stored ones (delta path), and
either way the session's row is the merge of its hours' partials.

Per partial: event and error counts (add), first and last event time (min, max), and the
first non-empty user, entry and exit label in event order with each its sort key (keep the
smaller / larger key). An event's key is fixed-width text ``timestamp | kind | id`` (kind 0/1/2
for endpoint/feature/user_activity), compared bytewise (``COLLATE "C"``), so ``min(key ||
value)`` picks the value of the first event and ``substr`` splits the two again. Platform and
app version of a client session: the latest non-empty value among all the session's logs, at
any time (ties by id), with a log key ``timestamp | 3 | id`` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text

from processor.analytics.sessionize import LABEL_MAX, SessionRow
from processor.analytics.sqlparts import Sql, as_time

STAMP = 26  # 'YYYY-MM-DD HH:MM:SS.ffffff'

# (value column, key column, keep the smaller key?) of each partial's chosen value.
CHOSEN = (
    ("user_id", "user_key", True),
    ("entry", "entry_key", True),
    ("exit", "exit_key", False),
    ("platform", "platform_key", False),
    ("version", "version_key", False),
)
COLUMNS = "project_id, session_id, hour, event_count, error_count, first_at, last_at, " + ", ".join(
    f"{key}, {value}" for value, key, _ in CHOSEN
)


@dataclass(frozen=True)
class Dialect:
    """The few expressions that differ: the key's text parts, the hour, bytewise order."""

    pg: bool

    @property
    def collate(self) -> str:
        return ' COLLATE "C"' if self.pg else ""

    @property
    def key_width(self) -> int:
        return STAMP + 1 + (36 if self.pg else 32)

    def key(self, kind: int) -> str:
        if self.pg:  # uuid text: fixed-width, lowercase; its dashes keep the order
            return (
                "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
                f" || '{kind}' || CAST(id AS text)"
            )
        # SQLAlchemy's SQLite DATETIME text (always with microseconds); ids are stored as
        # uuid text with or without dashes: the 32 hex digits, either way
        return f"timestamp || '{kind}' || replace(id, '-', '')"

    def hour(self) -> str:
        if self.pg:
            return "date_trunc('hour', timestamp AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        return "substr(timestamp, 1, 13) || ':00:00.000000'"


def _rows_sql(d: Dialect, where: str) -> str:
    """Client-session events and logs selected by ``where``, as one row shape."""
    label = f"substr(method || ' ' || endpoint, 1, {LABEL_MAX})"
    error = (
        "CASE WHEN (status_code >= 500 AND status_code <= 599) OR span_status = 'error'"
        " THEN 1 ELSE 0 END"
    )
    cols = "session_id, {hour} AS hour, {at} AS at, {ev} AS ev, {err} AS err, {user} AS u,"
    cols += " {label} AS label, {platform} AS platform, {version} AS version, {key} AS k"
    feature_error = "CASE WHEN span_status = 'error' THEN 1 ELSE 0 END"
    none = "CAST(NULL AS TEXT)"
    parts = []
    for kind, table, lab, err in (
        (0, "endpoint_usage", label, error),
        (1, "feature_usage", f"substr(feature_name, 1, {LABEL_MAX})", feature_error),
        (2, "user_activity", none, "0"),
    ):
        shape = cols.format(
            hour=d.hour(), at="timestamp", ev=1, err=err, user="user_id", label=lab,
            platform=none, version=none, key=d.key(kind),
        )  # fmt: skip
        parts.append(f"SELECT {shape} FROM {table} WHERE {where}")
    shape = cols.format(
        hour=d.hour(), at="NULL", ev=0, err=0, user=none, label=none,
        platform="NULLIF(device_platform, '')", version="NULLIF(app_version, '')", key=d.key(3),
    )  # fmt: skip
    parts.append(f"SELECT {shape} FROM logs WHERE {where}")
    return "\n UNION ALL ".join(parts)


def partials_sql(d: Dialect, where: str) -> str:
    """The (session, hour) partials of the raw rows ``where`` selects (session-less rows
    left out), in ``session_hours`` column order, ``:project`` bound."""
    width = d.key_width
    picks = [
        f"{'min' if smaller else 'max'}((k || {src}){d.collate}) AS {value}"
        for (value, _, smaller), src in zip(
            CHOSEN, ("u", "label", "label", "platform", "version"), strict=True
        )
    ]
    split = ", ".join(f"substr({v}, 1, {width}), substr({v}, {width + 1})" for v, _, _ in CHOSEN)
    where = f"({where}) AND session_id IS NOT NULL"
    return f"""
        SELECT :project, session_id, hour, event_count, error_count, first_at, last_at, {split}
        FROM (
            SELECT session_id, hour, sum(ev) AS event_count, sum(err) AS error_count,
                min(at) AS first_at, max(at) AS last_at, {", ".join(picks)}
            FROM ({_rows_sql(d, where)}) AS r
            GROUP BY session_id, hour
        ) AS p
        WHERE true"""  # SQLite reads "ON CONFLICT" after a bare FROM as a join


def merge_sql(d: Dialect) -> str:
    """The upsert clause that merges a new partial (``excluded``) into the stored one."""

    def wins(col: str, smaller: bool, collate: str = "") -> str:
        return (
            f"session_hours.{col} IS NULL OR excluded.{col}{collate}"
            f" {'<' if smaller else '>'} session_hours.{col}"
        )

    def pick(col: str, test: str) -> str:
        return f"{col} = CASE WHEN {test} THEN excluded.{col} ELSE session_hours.{col} END"

    sets = [
        "event_count = session_hours.event_count + excluded.event_count",
        "error_count = session_hours.error_count + excluded.error_count",
        pick("first_at", wins("first_at", True)),
        pick("last_at", wins("last_at", False)),
    ]
    for value, key, smaller in CHOSEN:
        test = wins(key, smaller, d.collate)
        sets += [pick(key, test), pick(value, test)]
    return "ON CONFLICT (project_id, session_id, hour) DO UPDATE SET " + ", ".join(sets)


def sessions_sql(d: Dialect) -> str:
    """Each session's merged partials (the sessions ``ids`` selects that have an event)."""
    width = d.key_width
    picks = ", ".join(
        f"substr({'min' if smaller else 'max'}(({key} || {value}){d.collate}), {width + 1})"
        for value, key, smaller in CHOSEN
    )
    return f"""
        SELECT session_id, min(first_at), max(last_at), sum(event_count), sum(error_count),
            {picks}
        FROM session_hours WHERE project_id = :project AND session_id {{ids}}
        GROUP BY session_id HAVING sum(event_count) > 0"""


def by_ids(sql: Sql, query: str, ids: list[str], **params: Any) -> list[Any]:
    """Run ``query``, whose ``{ids}`` becomes a test of ``session_id`` against ``ids``: one
    array on PostgreSQL (a hashed look-up; an IN list of binds is searched linearly per
    row), an IN list of binds on SQLite (callers keep it under CHUNK)."""
    if sql.pg:
        result = sql.conn.execute(text(query.format(ids="= ANY(:ids)")), {**params, "ids": ids})
    else:
        stmt = text(query.format(ids="IN :ids")).bindparams(bindparam("ids", expanding=True))
        result = sql.conn.execute(stmt, {**params, "ids": ids})
    return list(result) if result.returns_rows else []


def session_rows(sql: Sql, project: int, ids: list[str]) -> list[SessionRow]:
    """The rows of the client sessions ``ids`` merged from all their partials; a session
    without an event (only logs) has none."""
    found = by_ids(sql, sessions_sql(Dialect(sql.pg)), ids, project=project)
    return [
        SessionRow(
            session_id=r[0],
            started_at=as_time(r[1]),
            ended_at=as_time(r[2]),
            event_count=int(r[3]),
            error_count=int(r[4]),
            user_id=r[5],
            entry=r[6],
            exit=r[7],
            device_platform=r[8],
            app_version=r[9],
        )
        for r in found
    ]


def hours_of(sql: Sql, project: int, start: datetime, end: datetime) -> set[str]:
    """The sessions with a partial in the hours [start, end)."""
    return {
        r[0]
        for r in sql.rows(
            "SELECT DISTINCT session_id FROM session_hours WHERE project_id = :project"
            " AND hour >= :start AND hour < :end",
            project=project,
            start=start,
            end=end,
        )
    }
