"""The rollup runner: a round every ROLLUP_INTERVAL_SECONDS inside ``serve``."""

from __future__ import annotations

from functools import partial

from sqlalchemy.engine import Engine

from processor.analytics.frozen import Policy
from processor.analytics.rollup import RoundResult, run_round
from processor.ops.scheduler import PeriodicJob

# The advisory lock key every worker and replica shares ("tp" + rollups).
ROLLUP_LOCK_KEY = 0x7470_0010


class RollupRunner(PeriodicJob[RoundResult]):
    """A ``lifecycle.Component``; one runner at a time across workers and replicas."""

    def __init__(self, engine: Engine, *, interval: float, policy: Policy | None = None) -> None:
        """``policy``: the retention policy; buckets past its raw cutoffs stay frozen."""
        job = partial(run_round, policy=policy)
        super().__init__("rollup", engine, job, interval=interval, lock_key=ROLLUP_LOCK_KEY)


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
