"""Funnel requests of the query API: body checks (a 400 names the field) and the operations
the REST handlers and the gRPC servicer share. Creating a funnel needs an admin key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from processor.analytics import funnels
from processor.analytics.funnel_machine import MAX_WINDOW_SECONDS, StepResult, parse_steps
from processor.api.params import BadParameter
from processor.api.readers import Period
from processor.api.sqlbits import iso
from processor.errors import Conflict, NotFound

MAX_NAME = 255
MAX_DESCRIPTION = 2000


@dataclass(frozen=True)
class NewFunnel:
    name: str
    steps: list[funnels.Step]
    window_seconds: int
    description: str | None


def parse_new(body: Any) -> NewFunnel:
    if not isinstance(body, dict):
        raise BadParameter("body", 'must be a JSON object: {"name", "steps", "window_seconds"}')
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or "\x00" in name:
        raise BadParameter(
            "name", f"is required: a non-empty string of at most {MAX_NAME} characters"
        )
    try:
        steps = parse_steps(body.get("steps"))
    except ValueError as exc:
        raise BadParameter("steps", str(exc)) from None
    window = body.get("window_seconds")
    if (
        not isinstance(window, int)
        or isinstance(window, bool)
        or not 1 <= window <= MAX_WINDOW_SECONDS
    ):
        raise BadParameter(
            "window_seconds", f"is required: an integer from 1 to {MAX_WINDOW_SECONDS}"
        )
    description = body.get("description")
    if description is not None and (
        not isinstance(description, str)
        or len(description) > MAX_DESCRIPTION
        or "\x00" in description
    ):
        raise BadParameter(
            "description", f"must be a string of at most {MAX_DESCRIPTION} characters"
        )
    extra = set(body) - {"name", "steps", "window_seconds", "description"}
    if extra:
        field = sorted(extra)[0]
        raise BadParameter(field, "is not a funnel field")
    return NewFunnel(name, steps, window, description)


def create(engine: Engine, project: int, new: NewFunnel) -> funnels.FunnelDef:
    try:
        return funnels.create(
            engine, project, new.name, new.steps, new.window_seconds, new.description
        )
    except funnels.DuplicateName:
        raise Conflict(f"name: a funnel named {new.name!r} exists in this project") from None


def find(engine: Engine, project: int, raw_id: str) -> funnels.FunnelDef:
    """The caller's project's funnel; another project's (or a malformed id) is not found."""
    try:
        funnel_id = uuid.UUID(raw_id)
    except ValueError:
        raise NotFound("no such funnel") from None
    found = funnels.get(engine, project, funnel_id)
    if found is None:
        raise NotFound("no such funnel")
    return found


def conversion(
    engine: Engine, project: int, raw_id: str, period: Period
) -> tuple[funnels.FunnelDef, list[StepResult]]:
    funnel = find(engine, project, raw_id)
    return funnel, funnels.compute(engine, project, funnel, period.start, period.end)


def render(funnel: funnels.FunnelDef) -> dict[str, Any]:
    return {**funnel.as_json(), "created_at": iso(funnel.created_at)}


def render_conversion(
    funnel: funnels.FunnelDef, period: Period, results: list[StepResult]
) -> dict[str, Any]:
    return {
        "funnel_id": str(funnel.id),
        "name": funnel.name,
        "window_seconds": funnel.window_seconds,
        "period": {"start": iso(period.start), "end": iso(period.end)},
        "steps": [
            {
                **step.as_json(),
                "users": r.users,
                "conversion_rate": r.conversion_rate,
                "median_seconds_from_previous": r.median_seconds_from_previous,
            }
            for step, r in zip(funnel.steps, results, strict=True)
        ],
    }
