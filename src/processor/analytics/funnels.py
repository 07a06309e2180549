"""Funnel definitions (the ``funnels`` table) and their conversion over [start, end), computed
on request from the raw rows (SPEC §10).

Matching (exact, case-sensitive string equality), only among rows with a user id:
- ``event``: a user_activity row whose event_type or event name (``event.name`` in its
  metadata) is the value, or a log record whose event name (``event.name`` from OTLP,
  ``event_name`` from the Log Ingestion API) is the value;
- ``feature``: feature_usage.feature_name;
- ``endpoint``: ``"METHOD /route"`` of an endpoint_usage row (method and endpoint column);
- ``log``: logs.message.
Only events inside [start, end) count, later steps included. The database filters by project,
range and the steps' matchers and returns rows ordered by user and time; they are streamed
one user at a time into the pure state machine (funnel_machine), so the answer is the same on
PostgreSQL and SQLite and memory holds one user's events.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    cast,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from processor.analytics.funnel_machine import Hit, Step, StepResult, conversion, progress
from processor.analytics.schema import Funnel
from processor.analytics.sqlparts import as_time
from processor.storage.schema import EndpointUsage, FeatureUsage, Log, UserActivity

ENDPOINTS, FEATURES, ACTIVITY, LOGS = (
    m.__table__ for m in (EndpointUsage, FeatureUsage, UserActivity, Log)
)


class DuplicateName(Exception):
    """A funnel of that name exists in the project."""


@dataclass(frozen=True)
class FunnelDef:
    id: uuid.UUID
    name: str
    description: str | None
    steps: list[Step]
    window_seconds: int
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "description": self.description,
            "steps": [s.as_json() for s in self.steps],
            "window_seconds": self.window_seconds,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
        }


def _definition(row: Any) -> FunnelDef:
    return FunnelDef(
        id=row.id if isinstance(row.id, uuid.UUID) else uuid.UUID(str(row.id)),
        name=row.name,
        description=row.description,
        steps=[Step(s["type"], s["value"]) for s in row.steps],
        window_seconds=int(row.window_seconds),
        created_at=as_time(row.created_at),
    )


def create(
    engine: Engine,
    project: int,
    name: str,
    steps: list[Step],
    window_seconds: int,
    description: str | None = None,
) -> FunnelDef:
    found = FunnelDef(
        id=uuid.uuid4(),
        name=name,
        description=description,
        steps=steps,
        window_seconds=window_seconds,
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    row = {
        "project_id": project,
        "id": found.id,
        "name": name,
        "description": description,
        "steps": [s.as_json() for s in steps],
        "window_seconds": window_seconds,
        "created_at": found.created_at,
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(Funnel), [row])
    except IntegrityError:
        raise DuplicateName(name) from None
    return found


def list_all(engine: Engine, project: int) -> list[FunnelDef]:
    t = Funnel.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.project_id == project).order_by(t.c.name)).all()
    return [_definition(r) for r in rows]


def get(engine: Engine, project: int, funnel_id: uuid.UUID) -> FunnelDef | None:
    t = Funnel.__table__
    with engine.connect() as conn:
        row = conn.execute(
            select(t).where(t.c.project_id == project, t.c.id == funnel_id)
        ).one_or_none()
    return _definition(row) if row is not None else None


# --- conversion -------------------------------------------------------------------------------


def _event_name(table: Any, column: str, key: str) -> ColumnElement[Any]:
    return table.c[column][key].as_string()


def _sources() -> list[tuple[int, Any, ColumnElement[Any], ColumnElement[Any]]]:
    """(source, table, a, b) per raw table: the columns ``matches`` tests."""
    name = func.coalesce(
        _event_name(LOGS, "metadata", "event.name"), _event_name(LOGS, "metadata", "event_name")
    )
    return [
        (
            0,
            ENDPOINTS,
            ENDPOINTS.c.method + literal(" ") + ENDPOINTS.c.endpoint,
            cast(null(), String),
        ),
        (1, FEATURES, FEATURES.c.feature_name, cast(null(), String)),
        (2, ACTIVITY, ACTIVITY.c.event_type, _event_name(ACTIVITY, "event_metadata", "event.name")),
        (3, LOGS, LOGS.c.message, name),
    ]


def _matcher(
    source: int, table: Any, b: ColumnElement[Any], step: Step
) -> ColumnElement[Any] | None:
    v = step.value
    if step.type == "endpoint" and source == 0:
        method, _, route = v.partition(" ")
        return and_(table.c.method == method, table.c.endpoint == route)
    if step.type == "feature" and source == 1:
        return table.c.feature_name == v
    if step.type == "event" and source == 2:
        return or_(table.c.event_type == v, b == v)
    if step.type == "event" and source == 3:
        return b == v
    if step.type == "log" and source == 3:
        return table.c.message == v
    return None


def matches(step: Step, source: int, a: str | None, b: str | None) -> bool:
    """The same rule as the SQL filter, on a fetched row."""
    if step.type == "endpoint":
        return source == 0 and a == step.value
    if step.type == "feature":
        return source == 1 and a == step.value
    if step.type == "event":
        return (source == 2 and step.value in (a, b)) or (source == 3 and b == step.value)
    return source == 3 and a == step.value


def _rows(
    engine: Engine, project: int, steps: list[Step], start: datetime, end: datetime
) -> Iterator[Any]:
    parts = []
    for source, table, a, b in _sources():
        tests = [m for m in (_matcher(source, table, b, s) for s in steps) if m is not None]
        if not tests:
            continue
        parts.append(
            select(
                literal(source).label("source"),
                cast(table.c.id, String).label("rid"),
                table.c.user_id.label("user_id"),
                table.c.timestamp.label("ts"),
                a.label("a"),
                b.label("b"),
            ).where(
                table.c.project_id == project,
                table.c.timestamp >= start,
                table.c.timestamp < end,
                table.c.user_id.is_not(None),
                or_(*tests),
            )
        )
    if not parts:
        return
    query = union_all(*parts).subquery()
    ordered = select(query).order_by(query.c.user_id, query.c.ts)
    with engine.connect() as conn:
        yield from conn.execution_options(stream_results=True, yield_per=2000).execute(ordered)


def compute(
    engine: Engine, project: int, funnel: FunnelDef, start: datetime, end: datetime
) -> list[StepResult]:
    window = timedelta(seconds=funnel.window_seconds)
    n = len(funnel.steps)

    def reached() -> Iterator[list[datetime]]:
        for _, rows in itertools.groupby(
            _rows(engine, project, funnel.steps, start, end), key=lambda r: r.user_id
        ):
            hits = []
            for r in rows:
                found = frozenset(
                    k for k, s in enumerate(funnel.steps) if matches(s, r.source, r.a, r.b)
                )
                if found:
                    key = f"{r.source}:{str(r.rid).replace('-', '').lower()}"
                    hits.append(Hit(as_time(r.ts), key, found))
            times = progress(hits, n, window)
            if times:
                yield times

    return conversion(reached(), n)
