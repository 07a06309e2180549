"""The periodic runners of ``serve`` that ingestion does not need: rollup rounds (SPEC §10)
and alert evaluation (SPEC §14).

With ``BACKGROUND_MODE=process`` (the default) they run in one child process of the
top-level ``serve`` (worker 0 with ``--workers N``), so their Python work never holds a
serving worker's GIL. The child is ``python -m processor.background``: it reads the settings
from the first line of its stdin and stops on SIGTERM or when its stdin ends, i.e. when the
serving process is gone (processor.ops.child supervises and restarts it). Each runner keeps its
lock (PostgreSQL advisory lock, SQLite file lock), so one round at a time still holds across
replicas. An in-memory SQLite database is seen by its own process only: there, and with
``BACKGROUND_MODE=thread``, the runners run in a thread of the serving worker(s) as before.

Partition upkeep and retention (storage/housekeeping.py) stay in the serving process: rows
for a day without a partition land in the DEFAULT partition, so ingestion needs that upkeep
done at start, and its rounds are rare (hourly) and spent in the database, not in Python.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from typing import Any

import structlog
from sqlalchemy.engine import make_url

from processor.ops.child import ChildProcess
from processor.ops.scheduler import PeriodicJob
from processor.settings import Settings, child_environment

log = structlog.get_logger(__name__)

MODULE = "processor.background"


def runners(settings: Settings) -> list[PeriodicJob[Any]]:
    """The runners the settings turn on, each on a small connection pool of its own (a long
    round never holds the writer's connections)."""
    from processor.alerts.runner import AlertRunner
    from processor.analytics.runner import RollupRunner
    from processor.storage.writer import create_db_engine

    found: list[PeriodicJob[Any]] = []
    if settings.rollup_interval_seconds > 0:
        found.append(
            RollupRunner(
                create_db_engine(settings.sqlalchemy_url, pool_size=1),
                interval=settings.rollup_interval_seconds,
                policy=settings.retention,
            )
        )
    if settings.alert_eval_interval_seconds > 0:
        # Evaluation plus the delivery threads recording outcomes.
        found.append(
            AlertRunner(
                create_db_engine(settings.sqlalchemy_url, pool_size=2),
                interval=settings.alert_eval_interval_seconds,
                repeat=settings.alert_repeat,
            )
        )
    return found


def in_memory(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    return parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"


def in_child(settings: Settings) -> bool:
    """Whether ``serve`` runs the runners in its child process (else in a thread)."""
    return settings.background_mode == "process" and not in_memory(settings.sqlalchemy_url)


def wanted(settings: Settings) -> bool:
    return settings.rollup_interval_seconds > 0 or settings.alert_eval_interval_seconds > 0


class BackgroundProcess(ChildProcess):
    """The child process running ``runners(settings)``; a ``lifecycle.Component``."""

    def __init__(self, settings: Settings, *, backoff: tuple[float, float] = (1.0, 60.0)):
        # Without the metrics directory: the runners report no metrics, and a process there
        # would count in the workers' sums (its processor_database_up of 0 in the minimum).
        env = child_environment(without=("PROMETHEUS_MULTIPROC_DIR",))
        super().__init__(
            "background",
            [sys.executable, "-m", MODULE],
            settings.to_json().encode(),
            backoff=backoff,
            env=env,
        )


async def run(settings: Settings, *, grace: float = 10.0) -> int:
    """The child's life: the runners, until SIGTERM/SIGINT or the end of stdin."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def parent_gone() -> None:
        sys.stdin.buffer.read()  # returns at end of input: the serving process closed it or died
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=parent_gone, name="parent-watch", daemon=True).start()
    jobs = runners(settings)
    for job in jobs:
        await job.start()
    log.info("background_running", runners=[job.name for job in jobs])
    await stop.wait()
    await asyncio.gather(*(job.shutdown(grace) for job in jobs))
    for job in jobs:
        job.engine.dispose()
    log.info("background_stopped")
    return 0


def main() -> int:
    from processor.ops import service_log

    line = sys.stdin.buffer.readline()
    if not line:
        return 0  # the parent went away before it said anything
    settings = Settings.from_json(line.decode())
    service_log.configure(settings.log_level, settings.log_format, process="background")
    return asyncio.run(run(settings))


if __name__ == "__main__":
    raise SystemExit(main())
