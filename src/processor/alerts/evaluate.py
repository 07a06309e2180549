"""The per-rule state machine (pure): inactive → pending → firing → resolved.

``step`` takes what is stored about a rule and the value just computed, and answers the new
state and the notification to send, if any:

- a breach starts *pending*; it becomes *firing* once it has lasted the rule's for-duration
  (at once when that is 0) — one ``firing`` notification;
- a pending rule whose value recovers goes back to inactive, silently;
- a firing rule whose value recovers *resolves* — one ``resolved`` notification, also when the
  alert was acknowledged — and the rule is inactive again;
- while it keeps firing, the alert is re-notified (``repeat``) every ``repeat`` interval
  unless it has been acknowledged; ``repeat`` None never repeats.

A value of None (no data in the window: no requests for an error rate or a percentile) is not
a breach: it counts as a recovery. Counts are 0, never None, so ``request_count < 1`` alerts on
silence.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"
FIRE, RESOLVE, REPEAT = "firing", "resolved", "repeat"

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def breached(value: float | None, op: str, threshold: float) -> bool:
    return value is not None and COMPARE[op](value, threshold)


@dataclass(frozen=True)
class RuleState:
    state: str = INACTIVE
    since: datetime | None = None  # when the current state began
    acknowledged: bool = False  # the open alert was acknowledged
    last_notified_at: datetime | None = None  # last firing or repeat notification


@dataclass(frozen=True)
class Step:
    state: RuleState
    event: str | None  # FIRE, RESOLVE, REPEAT or None


def step(
    prev: RuleState,
    value: float | None,
    now: datetime,
    *,
    op: str,
    threshold: float,
    for_duration: timedelta,
    repeat: timedelta | None,
) -> Step:
    bad = breached(value, op, threshold)
    if prev.state == FIRING:
        if not bad:
            return Step(RuleState(INACTIVE, now), RESOLVE)
        last = prev.last_notified_at or prev.since
        if (
            repeat is not None
            and not prev.acknowledged
            and last is not None
            and now - last >= repeat
        ):
            return Step(RuleState(FIRING, prev.since, False, now), REPEAT)
        return Step(prev, None)
    if not bad:
        return Step(prev if prev.state == INACTIVE else RuleState(INACTIVE, now), None)
    since = prev.since if prev.state == PENDING and prev.since is not None else now
    if now - since >= for_duration:
        return Step(RuleState(FIRING, now, False, now), FIRE)
    return Step(RuleState(PENDING, since), None)
