"""One rollup round: claim the dirty buckets, recompute them from the raw rows, upsert.

PostgreSQL: one transaction that claims first (DELETE … RETURNING) and then reads the raw
rows. A marker committed after the claim is not deleted, so its rows wait for the next round
and nothing is missed under READ COMMITTED. The writer only appends markers, so it never
waits for the runner.

Under a retention policy, buckets older than their raw tables' cutoff are frozen
(processor.analytics.frozen): their markers are dropped unrecomputed, so dropping raw rows
never changes a rollup.

SQLite (one writer at a time): markers are read with their highest id, each recomputation
commits in its own short transaction, and the markers up to that id are deleted last. SQLite
commits in id order, so every marker up to that id had its rows visible to the reads; a crash
in between only leaves markers that are recomputed (idempotently) next time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import delete, text
from sqlalchemy.engine import Connection, Engine

from processor.analytics import daily, dashboard, endpoint_rows, endpoints, metrics, sessions
from processor.analytics.buckets import DAY, HOUR, days_of, month_of, runs, week_of
from processor.analytics.frozen import Floors, Policy, kept, with_whole_days
from processor.analytics.invalidations import SOURCES, hour_of
from processor.analytics.schema import (
    EndpointDayUser,
    EndpointHourUser,
    EndpointStat,
    FeatureDayUser,
    FeatureHourPart,
    FeatureUsageDaily,
    MetricAggregate,
    RollupInvalidation,
    Session,
    UserActivityDaily,
    UserDaySession,
    UserHourPart,
)
from processor.analytics.sqlparts import Delta, Sql, as_hour, utc

# Tables the rounds maintain from raw rows (funnels are definitions, computed on request).
REBUILT = (EndpointStat, MetricAggregate, FeatureUsageDaily, UserActivityDaily, Session)
# An hour closes this long after its end: rows arriving later recompute it.
CLOSE_AFTER = timedelta(minutes=10)
MINUTE = timedelta(minutes=1)
HOURS_PER_QUERY = 24
DAYS_PER_QUERY = 7

Step = Callable[[Sql], int]
Dirty = dict[str, dict[int, set[datetime]]]  # kind -> project -> hour starts


@dataclass
class AddedRows:
    """One project's rows added since the last round: their event minutes per raw table,
    and the transactions that added them (PostgreSQL writer markers)."""

    minutes: dict[str, set[datetime]] = field(default_factory=dict)
    txids: set[int] = field(default_factory=set)


Added = dict[int, AddedRows]


@dataclass
class RoundResult:
    markers: int = 0
    rows: int = 0
    seconds: float = 0.0
    projects: set[int] = field(default_factory=set)


def run_round(
    engine: Engine,
    *,
    rebuild: bool = False,
    now: datetime | None = None,
    policy: Policy | None = None,
    tiles: bool = True,
    final: bool = True,
) -> RoundResult:
    """Bring every rollup up to date once. The caller holds the runner lock. ``policy``: the
    retention policy, whose cutoffs freeze old buckets (None: nothing is frozen). ``tiles``:
    refresh the dashboard tiles too (the runner does so at most once a minute). ``final``:
    every hour's percentiles from its raw rows, the current one's too (``rollup``); the
    serving runner passes False, and open hours then grow by their added rows alone."""
    started = time.perf_counter()
    result = RoundResult()
    when = now or datetime.now(UTC)
    floors = Floors.of(policy, when)
    pg = engine.dialect.name == "postgresql"
    if pg or rebuild:
        with engine.connect() as plain:
            # One snapshot for the claim and every read: rows of a transaction whose marker
            # this round did not claim are invisible to it, so they are added exactly once,
            # by the round that claims their marker.
            conn = plain.execution_options(isolation_level="REPEATABLE READ") if pg else plain
            with conn.begin():
                _tune(conn)
                added: Added = {}
                if rebuild:
                    dirty = _everything(conn, result, floors)
                else:
                    dirty, added = _claim(conn, result)
                opened = None if final or not pg else open_from(when)
                steps = plan(dirty, _projects(conn, dirty), now, floors, tiles, added, opened)
                for step in steps:
                    result.rows += step(Sql(conn))
    else:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, kind, project_id, bucket_start FROM rollup_invalidations")
            ).all()
            projects = _projects(conn, {})
        newest = max((r[0] for r in rows), default=0)
        dirty = _dirty(((r[1], r[2], r[3]) for r in rows), result)
        for step in plan(dirty, projects | result.projects, now, floors, tiles):
            with engine.begin() as conn:
                result.rows += step(Sql(conn))
        if rows:
            with engine.begin() as conn:
                conn.execute(delete(RollupInvalidation).where(RollupInvalidation.id <= newest))
    result.seconds = time.perf_counter() - started
    return result


# A round's statements read one or more hours of raw rows and group them, on PostgreSQL:
# - jit: compiling the expressions took a second per statement, more than it saved;
# - work_mem: the default 4 MB spilled an hour's sort (percentile_cont) to disk;
# - enable_indexscan: a fresh day partition has no statistics yet, and the planner then reads
#   its hour through the (project_id, timestamp) index row by row, a heap page per row;
#   a bitmap scan reads each page once (measured: 3.7 s -> 1.1 s for 1.2 M rows);
# - no parallel workers: a round must not take the cores ingestion runs on, and a parallel
#   plan adds floating-point sums in a varying order (a rebuild must give the same rows).
ROUND_SETTINGS = {
    "jit": "off",
    "work_mem": "64MB",
    "enable_indexscan": "off",
    "max_parallel_workers_per_gather": "0",
}


def _tune(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        for name, value in ROUND_SETTINGS.items():
            conn.execute(
                text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value}
            )


def _dirty(markers: object, result: RoundResult) -> Dirty:
    dirty: Dirty = {kind: {} for kind in SOURCES}
    for kind, project, bucket in markers:  # type: ignore[attr-defined]
        result.markers += 1
        result.projects.add(project)
        if kind in dirty:
            dirty[kind].setdefault(project, set()).add(as_hour(bucket))
    return dirty


def open_from(now: datetime) -> datetime:
    """The first hour still open at ``now``: an hour closes CLOSE_AFTER past its end."""
    return hour_of(now - HOUR - CLOSE_AFTER) + HOUR


def _claim(conn: Connection, result: RoundResult) -> tuple[Dirty, Added]:
    """Claim every marker: those without a transaction (forget-user, older ones) dirty
    their hours; a writer's give the minutes and transactions of added rows."""
    full: list[tuple[str, int, datetime]] = []
    added: Added = {}
    for kind, project, bucket, txid in conn.execute(
        text("DELETE FROM rollup_invalidations RETURNING kind, project_id, bucket_start, txid")
    ):
        if txid is None:
            full.append((kind, project, bucket))
            continue
        result.markers += 1
        result.projects.add(project)
        rows = added.setdefault(project, AddedRows())
        rows.minutes.setdefault(kind, set()).add(utc(bucket))
        rows.txids.add(int(txid))
    return _dirty(full, result), added


def _everything(conn: Connection, result: RoundResult, floors: Floors) -> Dirty:
    """--rebuild: every bucket from scratch (its old rollup rows go), except frozen buckets,
    whose raw rows retention removed: their rollup rows stay as they are."""
    conn.execute(delete(RollupInvalidation))
    since: list[tuple[Any, Any, datetime | None]] = [
        (EndpointStat, EndpointStat.bucket_start, floors.endpoints),
        (EndpointDayUser, EndpointDayUser.day, floors.endpoints),
        (EndpointHourUser, EndpointHourUser.hour, floors.endpoints),
        (MetricAggregate, MetricAggregate.period_start, floors.metrics),
        (FeatureUsageDaily, FeatureUsageDaily.date, floors.features),
        (FeatureHourPart, FeatureHourPart.bucket_start, floors.features),
        (FeatureDayUser, FeatureDayUser.day, floors.features),
        (UserActivityDaily, UserActivityDaily.date, floors.users),
        (UserHourPart, UserHourPart.bucket_start, floors.users),
        (UserDaySession, UserDaySession.day, floors.users),
    ]
    for model, column, floor in since:
        if floor is None:
            conn.execute(delete(model))
        else:
            bound = floor.date() if column.key in ("date", "day") else floor
            conn.execute(delete(model).where(column >= bound))
    sql = Sql(conn)
    markers = []
    for kind in SOURCES:
        for project, hour in sql.rows(
            f"SELECT DISTINCT project_id, {sql.hour('timestamp')} FROM {kind}"
        ):
            markers.append((kind, project, hour))
    return _dirty(markers, result)


def _projects(conn: Connection, dirty: Dirty) -> set[int]:
    known = {int(r[0]) for r in conn.execute(text("SELECT id FROM projects"))}
    return known | {p for by in dirty.values() for p in by}


def plan(
    dirty: Dirty,
    projects: set[int],
    now: datetime | None = None,
    floors: Floors | None = None,
    tiles: bool = True,
    added: Added | None = None,
    opened: datetime | None = None,
) -> list[Step]:
    """The recomputations the dirty buckets need, hours before the days built from them;
    frozen buckets (``floors``) are left out. ``added``: rows to add (PostgreSQL): each
    rollup adds them to its hours, except metrics, which recompute theirs, and hours that
    are recomputed anyway. ``opened``: the first open hour (None: every hour is final)."""
    steps: list[Step] = []
    floors = floors or Floors()
    added = added or {}

    def each(fn: Callable[[Sql, int, datetime, datetime], int], project: int, ranges: list) -> None:
        steps.extend(partial(_call, fn, project, start, end) for start, end in ranges)

    endpoint_hours = partial(endpoints.recompute_hours, open_from=opened)
    split = _portions(dirty, added, ("endpoint_usage",), floors.endpoints, whole_days=floors)
    for project, (full, minutes) in split.items():
        each(endpoint_hours, project, runs(full, HOUR, HOURS_PER_QUERY))
        if minutes:
            steps.append(partial(_endpoint_rows, project, minutes, added[project].txids, opened))
        hours = full | {hour_of(m) for m in minutes}
        each(endpoints.recompute_days, project, runs(days_of(hours), DAY, DAYS_PER_QUERY))
    for project, (hours, minutes) in _portions(
        dirty, added, ("performance_metrics",), floors.metrics
    ).items():
        # Metrics recompute the hours of their added rows too.
        hours = with_whole_days(hours | {hour_of(m) for m in minutes}, floors)
        each(metrics.recompute_hours, project, runs(hours, HOUR, HOURS_PER_QUERY))
        days = days_of(hours)
        each(metrics.recompute_days, project, runs(days, DAY, DAYS_PER_QUERY))
        for period, place in (("weekly", week_of), ("monthly", month_of)):
            for start in sorted(kept({place(d) for d in days}, floors.longer)):
                steps.append(partial(_longer, project, period, start))
    for project, hours, delta in _split(dirty, added, ("feature_usage",), floors.features):
        each(daily.recompute_feature_hours, project, runs(hours, HOUR, HOURS_PER_QUERY))
        each(daily.recompute_features, project, runs(days_of(hours), DAY, DAYS_PER_QUERY))
        if delta is not None:
            steps.append(partial(_add, daily.add_feature_delta, project, delta))
    for project, hours, delta in _split(dirty, added, USER_SOURCES, floors.users):
        # One day per step: its hours' parts, then the day rows of their users.
        for same_day in daily.day_hours(hours).values():
            each(daily.recompute_users, project, runs(same_day, HOUR, HOURS_PER_QUERY))
        if delta is not None:
            steps.append(partial(_add, daily.add_user_delta, project, delta))
    for project, hours, delta in _split(dirty, added, SESSION_SOURCES, None):
        each(sessions.recompute, project, runs(hours, HOUR, HOURS_PER_QUERY))
        if delta is not None:
            steps.append(partial(_add, sessions.add_delta, project, delta))
    when = now or datetime.now(UTC)
    for project in sorted(projects | set(split)):
        steps.append(partial(_finalize, project, opened))
    for project in sorted(projects) if tiles else ():
        steps.append(partial(_dashboard, project, when))
    return steps


USER_SOURCES = ("endpoint_usage", "feature_usage", "user_activity")
SESSION_SOURCES = (*USER_SOURCES, "logs")


def _portions(
    dirty: Dirty,
    added: Added,
    kinds: tuple[str, ...],
    floor: datetime | None,
    *,
    whole_days: Floors | None = None,
) -> dict[int, tuple[set[datetime], set[datetime]]]:
    """Per project, for a rollup built from ``kinds``: the hours marked dirty (recomputed),
    and the minutes of the rows added in other hours (added to what is stored). Never both
    for one hour in a round: its added rows would count twice. ``whole_days`` (rollups with
    hour rows): a day whose hour rows retention removed is recomputed whole, added rows or
    not."""
    out = {}
    for project in sorted({p for kind in kinds for p in dirty[kind]} | set(added)):
        hours = kept({h for kind in kinds for h in dirty[kind].get(project, ())}, floor)
        rows = added.get(project, AddedRows())
        minutes = {m for kind in kinds for m in kept(rows.minutes.get(kind, ()), floor)}
        if whole_days is not None:
            cut = whole_days.hours
            expired = {hour_of(m) for m in minutes if cut and hour_of(m).replace(hour=0) < cut}
            hours = with_whole_days(hours | expired, whole_days)
        minutes = {m for m in minutes if hour_of(m) not in hours}
        if hours or minutes:
            out[project] = (hours, minutes)
    return out


def _split(
    dirty: Dirty, added: Added, kinds: tuple[str, ...], floor: datetime | None
) -> list[tuple[int, set[datetime], Delta | None]]:
    """``_portions``, with the added rows as the Delta that selects them."""
    return [
        (
            project,
            hours,
            delta_of(project, sorted(minutes), added[project].txids) if minutes else None,
        )
        for project, (hours, minutes) in _portions(dirty, added, kinds, floor).items()
    ]


def _add(fn: Callable[[Sql, int, Delta], int], project: int, delta: Delta, sql: Sql) -> int:
    return fn(sql, project, delta)


def _endpoint_rows(
    project: int, minutes: set[datetime], txids: set[int], opened: datetime | None, sql: Sql
) -> int:
    """Add rows to their hours; an hour already final (no user set kept) is recomputed."""
    final = endpoint_rows.exact_hours(sql, project, {hour_of(m) for m in minutes})
    written = sum(
        endpoints.recompute_hours(sql, project, start, end, opened)
        for start, end in runs(final, HOUR, HOURS_PER_QUERY)
    )
    rest = sorted(m for m in minutes if hour_of(m) not in final)
    if rest:
        written += endpoint_rows.add_rows(sql, project, delta_of(project, rest, txids))
    return written


def _finalize(project: int, opened: datetime | None, sql: Sql) -> int:
    """Percentiles from the raw rows for the hours that closed (all of them when final)."""
    if not sql.pg:
        return 0
    hours = endpoint_rows.open_hours(sql, project, opened)
    return endpoint_rows.finalize(sql, project, hours) if hours else 0


# Time ranges one delta statement names at most: beyond, the closest ranges are joined (the
# transaction filter keeps the rows exact; a wider range only reads more index entries).
MAX_RANGES = 16


def delta_of(project: int, minutes: list[datetime], txids: set[int]) -> Delta:
    """The rows of ``txids`` within the event minutes, for one project."""
    ranges: list[list[datetime]] = []
    for m in sorted(minutes):
        if ranges and ranges[-1][1] >= m:
            ranges[-1][1] = m + MINUTE
        else:
            ranges.append([m, m + MINUTE])
    while len(ranges) > MAX_RANGES:
        i = min(range(len(ranges) - 1), key=lambda j: ranges[j + 1][0] - ranges[j][1])
        ranges[i : i + 2] = [[ranges[i][0], ranges[i + 1][1]]]
    params: dict[str, Any] = {"project": project, "txids": sorted(txids)}
    spans = []
    for i, (lo, hi) in enumerate(ranges):
        spans.append(f"(timestamp >= :lo{i} AND timestamp < :hi{i})")
        params[f"lo{i}"], params[f"hi{i}"] = lo, hi
    where = f"project_id = :project AND ingest_txid = ANY(:txids) AND ({' OR '.join(spans)})"
    return Delta(where, params)


def _call(
    fn: Callable[[Sql, int, datetime, datetime], int],
    project: int,
    start: datetime,
    end: datetime,
    sql: Sql,
) -> int:
    return fn(sql, project, start, end)


def _longer(project: int, period: str, start: datetime, sql: Sql) -> int:
    return metrics.recompute_longer(sql, project, period, start)


def _dashboard(project: int, when: datetime, sql: Sql) -> int:
    return dashboard.refresh(sql, project, when)
