"""Dirty buckets: from claimed markers to the contiguous time ranges to recompute. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def runs(starts: Iterable[datetime], step: timedelta, most: int) -> list[tuple[datetime, datetime]]:
    """Sorted bucket starts as [start, end) ranges of adjacent buckets, each ``most`` long at
    most, so one query recomputes a run and its memory stays bounded."""
    out: list[tuple[datetime, datetime]] = []
    for start in sorted(set(starts)):
        if out and out[-1][1] == start and (start - out[-1][0]) < step * most:
            out[-1] = (out[-1][0], start + step)
        else:
            out.append((start, start + step))
    return out


def by_project(markers: Iterable[tuple[int, datetime]]) -> dict[int, set[datetime]]:
    grouped: dict[int, set[datetime]] = defaultdict(set)
    for project, bucket in markers:
        grouped[project].add(bucket)
    return dict(grouped)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def days_of(hours: Iterable[datetime]) -> set[datetime]:
    return {midnight(h.astimezone(UTC).date()) for h in hours}


def week_of(day: datetime) -> datetime:
    """The Monday (UTC) starting ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def month_of(day: datetime) -> datetime:
    return day.replace(day=1)


def next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)
