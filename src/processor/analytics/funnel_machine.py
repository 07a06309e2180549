"""Funnel conversion (SPEC §10), pure: step definitions, the per-user state machine and the
per-step answer. Like PostHog's ``aggregate_funnel``: the database hands over each user's
matching events in time order; this decides how far the user got.

Rules:
- Every event that matches step 1 starts an attempt. An attempt at step k advances to k+1 on
  the next event (in time order, same-instant events in a fixed order) that matches step k+1
  and is at most ``window`` after the attempt's step-1 event. One event advances an attempt
  by at most one step; it may advance several attempts, and start one.
- A user's counted attempt is the one that got furthest; among equals, the earliest started.
- Per step: the users whose counted attempt reached it, the share of step 1's users, and the
  median seconds from the previous step over those users (None for step 1, or no users).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

STEP_TYPES = ("event", "feature", "endpoint", "log")
MAX_STEPS = 20
MAX_VALUE = 512
MAX_WINDOW_SECONDS = 366 * 24 * 3600


@dataclass(frozen=True)
class Step:
    type: str
    value: str

    def as_json(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}


@dataclass(frozen=True)
class Hit:
    """One of a user's events, with the indices of the steps it matches."""

    when: datetime
    tiebreak: str
    steps: frozenset[int]


@dataclass(frozen=True)
class StepResult:
    users: int
    conversion_rate: float
    median_seconds_from_previous: float | None


def parse_steps(raw: Any) -> list[Step]:
    """Checked step definitions; ValueError with a message fit for a 400 otherwise."""
    if not isinstance(raw, list) or not raw:
        raise ValueError("must be a non-empty list of {type, value} objects")
    if len(raw) > MAX_STEPS:
        raise ValueError(f"at most {MAX_STEPS} steps")
    steps = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"type", "value"}:
            raise ValueError(f"step {i + 1} must be an object with exactly type and value")
        kind, value = item["type"], item["value"]
        if kind not in STEP_TYPES:
            raise ValueError(f"step {i + 1}: type must be one of {', '.join(STEP_TYPES)}")
        if not isinstance(value, str) or not value or len(value) > MAX_VALUE or "\x00" in value:
            raise ValueError(
                f"step {i + 1}: value must be a non-empty string of at most {MAX_VALUE} characters"
            )
        if kind == "endpoint" and (" " not in value.strip() or value != value.strip()):
            raise ValueError(f'step {i + 1}: an endpoint value is "METHOD /route"')
        steps.append(Step(kind, value))
    return steps


def progress(hits: Sequence[Hit], n_steps: int, window: timedelta) -> list[datetime]:
    """The step times of a user's counted attempt (empty when no step-1 event)."""
    best: list[datetime] = []

    def done(attempt: list[datetime]) -> None:
        nonlocal best
        if len(attempt) > len(best) or (len(attempt) == len(best) and attempt[0] < best[0]):
            best = attempt

    active: list[list[datetime]] = []
    for hit in sorted(hits, key=lambda h: (h.when, h.tiebreak)):
        still = []
        for attempt in active:
            if hit.when - attempt[0] > window:
                done(attempt)
                continue
            if len(attempt) in hit.steps:
                attempt.append(hit.when)
            if len(attempt) == n_steps:
                done(attempt)
            else:
                still.append(attempt)
        active = still
        if 0 in hit.steps:
            if n_steps == 1:
                done([hit.when])
            else:
                active.append([hit.when])
    for attempt in active:
        done(attempt)
    return best


def conversion(reached: Iterable[list[datetime]], n_steps: int) -> list[StepResult]:
    """Per step, from each user's counted attempt."""
    users = [0] * n_steps
    gaps: list[list[float]] = [[] for _ in range(n_steps)]
    for times in reached:
        for k, when in enumerate(times):
            users[k] += 1
            if k:
                gaps[k].append((when - times[k - 1]).total_seconds())
    first = users[0]
    return [
        StepResult(
            users=users[k],
            conversion_rate=users[k] / first if first else 0.0,
            median_seconds_from_previous=statistics.median(gaps[k]) if gaps[k] else None,
        )
        for k in range(n_steps)
    ]
