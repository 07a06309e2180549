"""The data lifecycle runner of the serving process (SPEC §13): partitions and retention.

PostgreSQL: at start, and every RETENTION_INTERVAL_SECONDS, partitions are made
PARTITION_PREMAKE_DAYS ahead and rows stranded in DEFAULT partitions are moved out. Retention
first runs FIRST_RETENTION_DELAY seconds after start (or one interval, if shorter), then
every interval. One process does this at a time across workers and replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from processor.settings import Settings
from processor.storage import partitions, retention
from processor.storage.maintenance import PeriodicRunner, RunnerLock, lock_key

RETENTION_LOCK = lock_key("tp-retn")
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
        self.runner = PeriodicRunner(
            "retention",
            RunnerLock(engine, RETENTION_LOCK),
            self.round,
            interval=interval,
            first_delay=min(interval, FIRST_RETENTION_DELAY),
            at_start=self.postgres,
        )

    async def start(self) -> None:
        await self.runner.start()

    async def shutdown(self, grace: float = 10.0) -> None:
        await self.runner.shutdown(grace)
        self.engine.dispose()

    def round(self, first: bool = False) -> None:
        """One round, in the runner's thread: partitions, then (after the first) retention."""
        if self.postgres:
            partitions.ensure_partitions(
                self.engine,
                premake_days=self.settings.partition_premake_days,
                policy=self.settings.retention,
            )
        if first or self.runner.stop.is_set():
            return
        retention.run_retention(
            self.engine, self.settings.retention, rollups=self.rollups, stop=self.runner.stop
        )

    async def run_now(self) -> bool:
        """One full round now (tests, operators); False when another process holds the lock."""
        return await asyncio.get_running_loop().run_in_executor(None, self.runner.run_once, False)
