"""Client sessions from per-hour partials (SPEC §10), pure: no database.

A client session's row is a function of its events and logs. Split them by UTC hour: each
hour's summary (``HourPart``) is computed from that hour's raw rows alone, and the session's
row is merged from its hours' summaries, equal to ``sessionize`` + ``attach_devices`` over all
its rows. So a round re-reads only its dirty hours, however long a client keeps a session id.

The merge needs, per hour: event and error counts, first and last event time, and the first
non-empty user, entry and exit label in time order (hours are disjoint, so the hour order
orders them across hours). Platform and app version are the latest non-empty value among the
session's logs inside [started_at, ended_at]: an hour strictly inside the span gives its
latest value; the last event's hour gives its latest at or before its last event (``upto``);
the first event's hour's value counts only at or after the first event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from processor.analytics.invalidations import hour_of
from processor.analytics.sessionize import LABEL_MAX, SessionEvent, SessionLog, SessionRow

Found = tuple[str | None, datetime | None]


@dataclass
class HourPart:
    session_id: str
    hour: datetime
    event_count: int = 0
    error_count: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    user_id: str | None = None
    entry: str | None = None
    exit: str | None = None
    platform: str | None = None
    platform_at: datetime | None = None
    platform_upto: str | None = None
    platform_upto_at: datetime | None = None
    version: str | None = None
    version_at: datetime | None = None
    version_upto: str | None = None
    version_upto_at: datetime | None = None


def _latest(logs: list[SessionLog], field: str, upto: datetime | None = None) -> Found:
    """The latest non-empty ``field`` among time-ordered logs (at or before ``upto``)."""
    for g in reversed(logs):
        value = getattr(g, field)
        if value and (upto is None or g.when <= upto):
            return value, g.when
    return None, None


def hour_parts(events: Iterable[SessionEvent], logs: Iterable[SessionLog]) -> list[HourPart]:
    """The (session, hour) summaries of client-session events and logs (rows without a
    session id are left out), ordered by (session, hour)."""
    by_hour: dict[tuple[str, datetime], list[SessionEvent]] = defaultdict(list)
    for e in events:
        if e.session_id is not None:
            by_hour[(e.session_id, hour_of(e.when))].append(e)
    logs_by_hour: dict[tuple[str, datetime], list[SessionLog]] = defaultdict(list)
    for g in logs:
        if g.session_id is not None:
            logs_by_hour[(g.session_id, hour_of(g.when))].append(g)
    parts = []
    for key in sorted(by_hour.keys() | logs_by_hour.keys()):
        part = HourPart(*key)
        evs = sorted(by_hour.get(key, ()), key=lambda e: (e.when, e.tiebreak))
        if evs:
            labelled = [e.label[:LABEL_MAX] for e in evs if e.label is not None]
            part.event_count = len(evs)
            part.error_count = sum(1 for e in evs if e.error)
            part.first_at, part.last_at = evs[0].when, evs[-1].when
            part.user_id = next((e.user_id for e in evs if e.user_id is not None), None)
            part.entry = labelled[0] if labelled else None
            part.exit = labelled[-1] if labelled else None
        hour_logs = sorted(logs_by_hour.get(key, ()), key=lambda g: (g.when, g.tiebreak))
        if hour_logs:
            part.platform, part.platform_at = _latest(hour_logs, "device_platform")
            part.version, part.version_at = _latest(hour_logs, "app_version")
            if part.last_at is not None:
                upto = part.last_at
                part.platform_upto, part.platform_upto_at = _latest(
                    hour_logs, "device_platform", upto
                )
                part.version_upto, part.version_upto_at = _latest(hour_logs, "app_version", upto)
        parts.append(part)
    return parts


def _device(parts: list[HourPart], field: str, first: HourPart, last: HourPart) -> str | None:
    assert first.first_at is not None
    found = None
    for p in parts:
        if not first.hour <= p.hour <= last.hour:
            continue
        suffix = "_upto" if p is last else ""
        value = getattr(p, field + suffix)
        when = getattr(p, f"{field}{suffix}_at")
        if value and when is not None and when >= first.first_at:
            found = value
    return found


def merge(session_id: str, parts: Iterable[HourPart]) -> SessionRow | None:
    """The session's row from all its hours' partials; None when none has an event."""
    ordered = sorted(parts, key=lambda p: p.hour)
    with_events = [p for p in ordered if p.event_count]
    if not with_events:
        return None
    first, last = with_events[0], with_events[-1]
    assert first.first_at is not None and last.last_at is not None
    return SessionRow(
        session_id=session_id,
        user_id=next((p.user_id for p in with_events if p.user_id is not None), None),
        started_at=first.first_at,
        ended_at=last.last_at,
        event_count=sum(p.event_count for p in with_events),
        error_count=sum(p.error_count for p in with_events),
        entry=next((p.entry for p in with_events if p.entry is not None), None),
        exit=next((p.exit for p in reversed(with_events) if p.exit is not None), None),
        device_platform=_device(ordered, "platform", first, last),
        app_version=_device(ordered, "version", first, last),
    )
