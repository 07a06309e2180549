"""The runner refreshes the dashboard tiles at most once a minute, not every round."""

from __future__ import annotations

from processor.analytics import runner
from processor.analytics.rollup import RoundResult


def test_tiles_are_refreshed_at_most_once_per_minute(monkeypatch):
    clock = [1000.0]
    asked: list[bool] = []
    finals: list[bool] = []

    def fake_round(engine, *, policy=None, tiles=True, final=True):
        asked.append(tiles)
        finals.append(final)
        return RoundResult()

    monkeypatch.setattr(runner, "run_round", fake_round)
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    rounds = runner._Rounds(None)
    for step in (0.0, 5.0, 30.0, 24.0, 1.0, 5.0):
        clock[0] += step
        rounds(None)
    # Rounds at t = 0, 5, 35, 59, 60 and 65 s: tiles at 0 and again at 60 only.
    assert asked == [True, False, False, False, True, False]
    # The serving runner leaves open hours' percentiles to their close.
    assert finals == [False] * 6
