"""The data lifecycle runner of the serving process (SPEC §13): partitions and retention.

PostgreSQL: at start, and every RETENTION_INTERVAL_SECONDS, partitions are made
PARTITION_PREMAKE_DAYS ahead and rows stranded in DEFAULT partitions are moved out. Retention
first runs FIRST_RETENTION_DELAY seconds after start (or one interval, if shorter), then
every interval. One process does this at a time across workers and replicas (the shared
scheduler of processor.ops.scheduler, which the ``retention`` CLI's lock is also taken from).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from processor.ops.scheduler import PeriodicJob
from processor.settings import Settings
from processor.storage import partitions, retention

# The advisory lock key every worker, replica and the `retention` CLI share ("tp" + 13).
RETENTION_LOCK = 0x7470_0013
FIRST_RETENTION_DELAY = 300.0


class Housekeeping:
    """processor.lifecycle.Component: ``start()`` then ``shutdown(grace)``, safe twice.
    Owns ``engine`` (its own small pool, so it never takes the writer's connections)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        rollups: Sequence[retention.RollupRetention] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.rollups = rollups
        self.postgres = engine.dialect.name == "postgresql"
        interval = float(settings.retention_interval_seconds)
        self.runner: PeriodicJob[list[retention.TableResult]] = PeriodicJob(
            "retention",
            engine,
            self.round,
            interval=interval,
            lock_key=RETENTION_LOCK,
            first_delay=min(interval, FIRST_RETENTION_DELAY),
            on_start=self.make_partitions if self.postgres else None,
        )

    async def start(self) -> None:
        await self.runner.start()

    async def shutdown(self, grace: float = 10.0) -> None:
        await self.runner.shutdown(grace)
        self.engine.dispose()

    def make_partitions(self, engine: Engine) -> None:
        """At start (PostgreSQL): partitions ahead, strays moved out of DEFAULT."""
        partitions.ensure_partitions(
            engine,
            premake_days=self.settings.partition_premake_days,
            policy=self.settings.retention,
            logs_by_level=self.settings.logs_partition_by_level,
        )

    def round(self, engine: Engine) -> list[retention.TableResult]:
        """One round, in the runner's thread: partitions, then retention."""
        if self.postgres:
            self.make_partitions(engine)
        if self.runner.stop.is_set():
            return []
        return retention.run_retention(
            engine, self.settings.retention, rollups=self.rollups, stop=self.runner.stop
        )

    async def run_now(self) -> bool:
        """One full round now (tests, operators); False when another process holds the lock."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.runner.run_once) is not None
