"""The invalidation log: which (raw table, project, event time bucket) changed since the last
round.

The writer records them in the transaction that commits the rows, so a committed row always
has its marker (a crash loses both or neither); the runner claims markers by deleting them.
On PostgreSQL a writer marker names the event minute and, through the database default, the
transaction (``txid``, the rows' ``ingest_txid``): the round adds just those rows. Markers
of other changes (forget-user) and all SQLite markers have no txid and name an hour, which
the round recomputes from its raw rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from processor.analytics.schema import RollupInvalidation
from processor.analytics.sqlparts import utc

# Raw tables the rollups are computed from. Every row type starts (id, project_id, timestamp).
# logs: sessions take their device platform and app version from them.
SOURCES = ("endpoint_usage", "feature_usage", "user_activity", "performance_metrics", "logs")

Marker = tuple[str, int, datetime]  # (kind, project_id, bucket start in UTC)


def hour_of(when: datetime) -> datetime:
    return utc(when).replace(minute=0, second=0, microsecond=0)


def minute_of(when: datetime) -> datetime:
    return utc(when).replace(second=0, microsecond=0)


def touched(
    tables: Mapping[str, Sequence[tuple]], bucket: Callable[[datetime], datetime] = hour_of
) -> set[Marker]:
    """The distinct (kind, project, event bucket) of a batch's rows. Pure."""
    markers: set[Marker] = set()
    for kind in SOURCES:
        seen: set[tuple[int, datetime]] = set()
        for row in tables.get(kind, ()):
            seen.add((row[1], row[2]))
        markers.update((kind, project, bucket(when)) for project, when in seen)
    return markers


def record(conn: Connection, tables: Mapping[str, Sequence[tuple]]) -> None:
    """Insert one marker per touched bucket, in the caller's transaction: on PostgreSQL per
    minute, with the transaction (the database fills txid); on SQLite per hour."""
    added = conn.dialect.name == "postgresql"
    markers = touched(tables, minute_of if added else hour_of)
    if markers:
        record_markers(conn, markers, added=added)


def record_markers(conn: Connection, markers: Iterable[Marker], *, added: bool = False) -> None:
    """``added``: the markers' transaction only added raw rows (the writer's); otherwise the
    round recomputes the markers' hours from scratch (txid NULL)."""
    # On PostgreSQL the column's default would name this transaction: NULL says recompute.
    # (SQLite has no default; a database still below revision 0011 has no column.)
    extra = {"txid": None} if not added and conn.dialect.name == "postgresql" else {}
    rows = [{"kind": k, "project_id": p, "bucket_start": b, **extra} for k, p, b in sorted(markers)]
    if rows:
        conn.execute(insert(RollupInvalidation), rows)
