"""Dialect helpers for the raw-table reader: time buckets, UTC values, percentiles.

PostgreSQL computes percentiles with ``percentile_cont``; SQLite has none, so the same
linear interpolation runs here over the sorted values (``percentile_cont`` semantics).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal_column, select
from sqlalchemy.engine import Connection

from processor.analytics.sketch import percentile_cont
from processor.api.readers import Interval, Percentiles, Period

QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
SQLITE_BUCKETS = {
    "hour": "%Y-%m-%d %H:00:00",
    "day": "%Y-%m-%d 00:00:00",
    "month": "%Y-%m-01 00:00:00",
}


def percentiles_of(values: Sequence[float]) -> Percentiles:
    ordered = sorted(values)
    if not ordered:
        return Percentiles()
    return Percentiles(
        samples=len(ordered),
        avg=math.fsum(ordered) / len(ordered),
        min=float(ordered[0]),
        max=float(ordered[-1]),
        **{name: percentile_cont(ordered, q) for name, q in QUANTILES.items()},
    )


def as_utc(value: Any) -> datetime:
    """A bucket or timestamp read back from either database, as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as the Telling Logger writes times."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bucket(column: Any, interval: Interval, dialect: str) -> ColumnElement[Any]:
    """The start of ``column``'s UTC hour/day/week (Monday)/month.

    Rendered with literals (``interval`` is one of a fixed set), so the same expression in
    SELECT and GROUP BY is one expression to PostgreSQL, not two with different parameters.
    """
    if interval not in ("hour", "day", "week", "month"):
        raise ValueError(interval)
    if dialect == "postgresql":
        return func.date_trunc(literal_column(f"'{interval}'"), column, literal_column("'UTC'"))
    if interval == "week":
        return func.strftime(
            literal_column("'%Y-%m-%d 00:00:00'"),
            column,
            literal_column("'-6 days'"),
            literal_column("'weekday 1'"),
        )
    fmt = SQLITE_BUCKETS[interval]
    return func.strftime(literal_column(f"'{fmt}'"), column)


def in_period(column: Any, period: Period) -> ColumnElement[bool]:
    return and_(column >= period.start, column < period.end)


def summarize(
    conn: Connection,
    dialect: str,
    value: Any,
    keys: Sequence[Any],
    where: Sequence[ColumnElement[bool]],
    table: Any,
) -> dict[tuple[Any, ...], Percentiles]:
    """Count, avg, min, max and percentiles of ``value`` per group of ``keys``."""
    conditions = [*where, value.is_not(None)]
    if dialect == "postgresql":
        stats = [func.percentile_cont(q).within_group(value) for q in QUANTILES.values()]
        query = (
            select(
                *keys, func.count(value), func.avg(value), func.min(value), func.max(value), *stats
            )
            .select_from(table)
            .where(*conditions)
            .group_by(*keys)
        )
        out: dict[tuple[Any, ...], Percentiles] = {}
        n = len(keys)
        for row in conn.execute(query):
            count, avg, low, high, *ps = row[n:]
            out[tuple(row[:n])] = Percentiles(
                int(count),
                _float(avg),
                _float(low),
                _float(high),
                *(_float(p) for p in ps),
            )
        return out
    grouped: dict[tuple[Any, ...], list[float]] = {}
    query = select(*keys, value).select_from(table).where(*conditions).order_by(*keys, value)
    for row in conn.execute(query):
        grouped.setdefault(tuple(row[:-1]), []).append(float(row[-1]))
    return {key: percentiles_of(values) for key, values in grouped.items()}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
