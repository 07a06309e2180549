"""Sessions from events (SPEC §10), pure: no database.

A session is the client's ``session.id`` (stored hashed) when the event has one; otherwise a
user's events without a session id are split where more than 30 minutes pass between two of
them. Inferred sessions get a deterministic id from the user and the first event's time, with
a prefix no stored (hexadecimal) client session id can have.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

GAP = timedelta(minutes=30)
INFERRED = "idle-"
LABEL_MAX = 512  # the entry and exit columns; "METHOD /route" can be longer than a route


@dataclass(frozen=True)
class SessionEvent:
    when: datetime
    tiebreak: str  # orders events at the same instant: "<table rank>:<row id>"
    user_id: str | None
    session_id: str | None
    label: str | None  # "METHOD /route" or a feature name; None for activity events
    error: bool


@dataclass(frozen=True)
class SessionLog:
    """A log row's device facts, for the session it falls in."""

    when: datetime
    tiebreak: str
    user_id: str | None
    session_id: str | None
    device_platform: str | None
    app_version: str | None


@dataclass
class SessionRow:
    session_id: str
    user_id: str | None
    started_at: datetime
    ended_at: datetime
    event_count: int
    error_count: int
    entry: str | None
    exit: str | None
    device_platform: str | None = None
    app_version: str | None = None

    @property
    def duration_ms(self) -> float:
        return (self.ended_at - self.started_at).total_seconds() * 1000.0

    @property
    def inferred(self) -> bool:
        return self.session_id.startswith(INFERRED)


def inferred_id(user_id: str, first: datetime) -> str:
    digest = hashlib.sha256(f"{user_id}|{first.isoformat()}".encode()).hexdigest()
    return INFERRED + digest[:16]


def _summarize(session_id: str, events: list[SessionEvent]) -> SessionRow:
    events.sort(key=lambda e: (e.when, e.tiebreak))
    labelled = [e.label[:LABEL_MAX] for e in events if e.label is not None]
    user = next((e.user_id for e in events if e.user_id is not None), None)
    return SessionRow(
        session_id=session_id,
        user_id=user,
        started_at=events[0].when,
        ended_at=events[-1].when,
        event_count=len(events),
        error_count=sum(1 for e in events if e.error),
        entry=labelled[0] if labelled else None,
        exit=labelled[-1] if labelled else None,
    )


def split_idle(events: list[SessionEvent]) -> list[list[SessionEvent]]:
    """One user's events without a session id, cut where the gap exceeds 30 minutes."""
    runs: list[list[SessionEvent]] = []
    for e in sorted(events, key=lambda e: (e.when, e.tiebreak)):
        if runs and e.when - runs[-1][-1].when <= GAP:
            runs[-1].append(e)
        else:
            runs.append([e])
    return runs


def sessionize(events: Iterable[SessionEvent]) -> list[SessionRow]:
    """Every session the events make, ordered by (started_at, session_id). Events with
    neither a session id nor a user belong to no session."""
    by_client: dict[str, list[SessionEvent]] = defaultdict(list)
    by_user: dict[str, list[SessionEvent]] = defaultdict(list)
    for e in events:
        if e.session_id is not None:
            by_client[e.session_id].append(e)
        elif e.user_id is not None:
            by_user[e.user_id].append(e)
    rows = [_summarize(sid, evs) for sid, evs in by_client.items()]
    for user, evs in by_user.items():
        for run in split_idle(evs):
            rows.append(_summarize(inferred_id(user, run[0].when), run))
    rows.sort(key=lambda r: (r.started_at, r.session_id))
    return rows


def attach_devices(rows: Iterable[SessionRow], logs: Iterable[SessionLog]) -> None:
    """Platform and app version of each session: the latest non-empty value among the logs
    with the session's id, at any time (client sessions), or among the logs of its user
    without a session id inside [started_at, ended_at] (inferred sessions); None when no
    such log has one. Ties in time go by the log's tie-break (its id)."""
    groups: dict[tuple[str, str], list[SessionLog]] = defaultdict(list)
    for g in sorted(logs, key=lambda g: (g.when, g.tiebreak)):
        if g.session_id is not None:
            groups[("session", g.session_id)].append(g)
        elif g.user_id is not None:
            groups[("user", g.user_id)].append(g)
    for row in rows:
        if row.inferred:
            mine = groups.get(("user", row.user_id or ""), [])
            mine = [g for g in mine if row.started_at <= g.when <= row.ended_at]
        else:
            mine = groups.get(("session", row.session_id), [])
        row.device_platform = next(
            (g.device_platform for g in reversed(mine) if g.device_platform), None
        )
        row.app_version = next((g.app_version for g in reversed(mine) if g.app_version), None)
