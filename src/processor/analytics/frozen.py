"""Which buckets a rollup round may recompute, given the retention policy (SPEC §10, §13). Pure.

Dropping raw rows never changes a rollup: retention removes no rollup row and writes no
invalidation marker, and a bucket older than its raw tables' retention cutoff is *frozen*: a
round never recomputes it (a late row for such a day would otherwise replace the day's
numbers by its own; the next retention run removes that row), and ``rollup --rebuild``
neither deletes nor recomputes it. Buckets past ``rollups.day`` are frozen too (their day rows
are gone, so a week or a day recomputed there would lose the rest).

An endpoint or metric day older than the ``rollups.hour`` cutoff has lost its hour rows, whose
sketches give the day's percentiles: recomputing it recomputes all 24 of its hours from the
raw rows first (the next retention run removes those hour rows again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from processor.analytics.buckets import HOUR, days_of
from processor.storage.retention import cutoff

Policy = Mapping[str, timedelta | None]


def _latest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class Floors:
    """The oldest bucket start each rollup may recompute; None: no limit."""

    endpoints: datetime | None = None
    metrics: datetime | None = None
    longer: datetime | None = None  # weekly and monthly metric rows, merged from day rows
    features: datetime | None = None
    users: datetime | None = None
    hours: datetime | None = None  # days before this have no hour rows left

    @classmethod
    def of(cls, policy: Policy | None, now: datetime) -> Floors:
        if policy is None:
            return cls()

        def cut(target: str) -> datetime | None:
            return cutoff(policy[target], now)

        day = cut("rollups.day")
        return cls(
            endpoints=_latest(cut("endpoint_usage"), day),
            metrics=_latest(cut("performance_metrics"), day),
            longer=day,
            features=_latest(cut("feature_usage"), day),
            users=_latest(cut("endpoint_usage"), cut("feature_usage"), cut("user_activity"), day),
            hours=cut("rollups.hour"),
        )


def kept(starts: Iterable[datetime], floor: datetime | None) -> set[datetime]:
    """The bucket starts a round may recompute."""
    return {s for s in starts if floor is None or s >= floor}


def with_whole_days(hours: set[datetime], floors: Floors) -> set[datetime]:
    """Dirty hours, plus every hour of a dirty day whose hour rows retention removed."""
    if floors.hours is None:
        return hours
    out = set(hours)
    for day in days_of(hours):
        if day < floors.hours:
            out.update(day + HOUR * i for i in range(24))
    return out
