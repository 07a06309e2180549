"""The rollup runner: a round every ROLLUP_INTERVAL_SECONDS inside ``serve``."""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from processor.analytics.frozen import Policy
from processor.analytics.rollup import RoundResult, run_round
from processor.ops.scheduler import PeriodicJob

# The advisory lock key every worker and replica shares ("tp" + rollups).
ROLLUP_LOCK_KEY = 0x7470_0010
# The dashboard tiles count DAU and sessions over 48 h of raw rows: a runner refreshes them at
# most this often, not every round (a short ROLLUP_INTERVAL_SECONDS would otherwise spend
# most of each round on them). `telemetry-processor rollup` always refreshes them.
TILES_EVERY_SECONDS = 60.0


class _Rounds:
    """The runner's job: a round, with the tiles when they are due."""

    def __init__(self, policy: Policy | None) -> None:
        self.policy = policy
        self.tiles_due = 0.0  # time.monotonic() of the next tile refresh

    def __call__(self, engine: Engine) -> RoundResult:
        tiles = time.monotonic() >= self.tiles_due
        # Open hours grow by their added rows; their exact percentiles wait for the close.
        result = run_round(engine, policy=self.policy, tiles=tiles, final=False)
        if tiles:
            self.tiles_due = time.monotonic() + TILES_EVERY_SECONDS
        return result


class RollupRunner(PeriodicJob[RoundResult]):
    """A ``lifecycle.Component``; one runner at a time across workers and replicas."""

    def __init__(self, engine: Engine, *, interval: float, policy: Policy | None = None) -> None:
        """``policy``: the retention policy; buckets past its raw cutoffs stay frozen."""
        super().__init__(
            "rollup", engine, _Rounds(policy), interval=interval, lock_key=ROLLUP_LOCK_KEY
        )


def rollup_once(
    engine: Engine, *, rebuild: bool = False, policy: Policy | None = None
) -> RoundResult:
    """`telemetry-processor rollup`: wait for a round in progress elsewhere, then run one."""
    job = PeriodicJob(
        "rollup",
        engine,
        lambda e: run_round(e, rebuild=rebuild, policy=policy),
        interval=0,
        lock_key=ROLLUP_LOCK_KEY,
    )
    result = job.run_once(wait=True)
    assert result is not None
    return result
