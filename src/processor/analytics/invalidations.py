"""The invalidation log: which (raw table, project, event hour) changed since the last round.

The writer records them in the transaction that commits the rows, so a committed row always
has its marker (a crash loses both or neither); the runner claims markers by deleting them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from processor.analytics.schema import RollupInvalidation

# Raw tables the rollups are computed from. Every row type starts (id, project_id, timestamp).
# logs: sessions take their device platform and app version from them.
SOURCES = ("endpoint_usage", "feature_usage", "user_activity", "performance_metrics", "logs")

Marker = tuple[str, int, datetime]  # (kind, project_id, hour start in UTC)


def hour_of(when: datetime) -> datetime:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def touched(tables: Mapping[str, Sequence[tuple]]) -> set[Marker]:
    """The distinct (kind, project, event hour) of a batch's rows. Pure."""
    markers: set[Marker] = set()
    for kind in SOURCES:
        seen: set[tuple[int, datetime]] = set()
        for row in tables.get(kind, ()):
            seen.add((row[1], row[2]))
        markers.update((kind, project, hour_of(when)) for project, when in seen)
    return markers


def record(conn: Connection, tables: Mapping[str, Sequence[tuple]]) -> None:
    """Insert one marker per touched bucket, in the caller's transaction."""
    markers = touched(tables)
    if markers:
        record_markers(conn, markers)


def record_markers(conn: Connection, markers: Iterable[Marker]) -> None:
    rows = [{"kind": k, "project_id": p, "bucket_start": b} for k, p, b in sorted(markers)]
    if rows:
        conn.execute(insert(RollupInvalidation), rows)
