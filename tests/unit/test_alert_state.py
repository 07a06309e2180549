"""The alert state machine (inactive → pending → firing → resolved), a table of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processor.alerts.evaluate import (
    FIRE,
    FIRING,
    INACTIVE,
    PENDING,
    REPEAT,
    RESOLVE,
    RuleState,
    breached,
    step,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
M = timedelta(minutes=1)

# prev state, value, minutes after T0, for-duration (min), repeat (min or None),
# expected state, expected event
CASES = [
    ("quiet stays inactive", RuleState(), 0.0, 0, 2, None, INACTIVE, None),
    ("no data is no breach", RuleState(), None, 0, 0, None, INACTIVE, None),
    ("breach with no for-duration fires at once", RuleState(), 5.0, 0, 0, None, FIRING, FIRE),
    ("breach starts pending", RuleState(), 5.0, 0, 2, None, PENDING, None),
    ("pending shorter than for stays pending", RuleState(PENDING, T0), 5.0, 1, 2, None, PENDING, None),
    ("pending as long as for fires", RuleState(PENDING, T0), 5.0, 2, 2, None, FIRING, FIRE),
    ("pending that recovers is silent", RuleState(PENDING, T0), 0.0, 1, 2, None, INACTIVE, None),
    ("firing that holds sends nothing", RuleState(FIRING, T0, False, T0), 5.0, 1, 0, None, FIRING, None),
    ("firing that recovers resolves", RuleState(FIRING, T0, False, T0), 0.0, 1, 0, None, INACTIVE, RESOLVE),
    ("acknowledged still resolves", RuleState(FIRING, T0, True, T0), 0.0, 1, 0, 30, INACTIVE, RESOLVE),
    ("no data resolves a firing rule", RuleState(FIRING, T0, False, T0), None, 1, 0, None, INACTIVE, RESOLVE),
    ("firing repeats after the interval", RuleState(FIRING, T0, False, T0), 5.0, 30, 0, 30, FIRING, REPEAT),
    ("no repeat before the interval", RuleState(FIRING, T0, False, T0), 5.0, 29, 0, 30, FIRING, None),
    ("acknowledged never repeats", RuleState(FIRING, T0, True, T0), 5.0, 90, 0, 30, FIRING, None),
    ("repeat off never repeats", RuleState(FIRING, T0, False, T0), 5.0, 900, 0, None, FIRING, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("prev", "value", "minutes", "hold", "repeat", "state", "event"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_step(prev, value, minutes, hold, repeat, state, event):
    now = T0 + minutes * M
    result = step(
        prev,
        value,
        now,
        op=">",
        threshold=1.0,
        for_duration=hold * M,
        repeat=None if repeat is None else repeat * M,
    )
    assert (result.state.state, result.event) == (state, event)


def test_a_repeat_restarts_the_interval():
    first = step(
        RuleState(FIRING, T0, False, T0),
        5.0,
        T0 + 30 * M,
        op=">",
        threshold=1.0,
        for_duration=0 * M,
        repeat=30 * M,
    )
    again = step(
        first.state, 5.0, T0 + 45 * M, op=">", threshold=1.0, for_duration=0 * M, repeat=30 * M
    )
    assert first.event == REPEAT and again.event is None


def test_pending_keeps_the_time_the_breach_began():
    later = step(
        RuleState(PENDING, T0), 5.0, T0 + M, op=">", threshold=1.0, for_duration=5 * M, repeat=None
    )
    assert later.state.since == T0


@pytest.mark.parametrize(
    ("value", "op", "threshold", "expected"),
    [
        (1.0, ">", 1.0, False),
        (1.0, ">=", 1.0, True),
        (0.5, "<", 1.0, True),
        (1.0, "<=", 1.0, True),
        (2.0, "<=", 1.0, False),
        (None, "<", 1.0, False),
    ],
)
def test_breached(value, op, threshold, expected):
    assert breached(value, op, threshold) is expected
