"""`telemetry-processor rollup [--rebuild]` and the one-runner-at-a-time lock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy.engine import Engine

from processor import cli
from processor.analytics.runner import ROLLUP_LOCK_KEY
from processor.ops.scheduler import PeriodicJob, job_lock
from tests.helpers.rollups import (
    ROLLUP_TABLES,
    Event,
    at,
    batch_of,
    check_rollups,
    stored,
    write,
)


def traffic() -> list[Event]:
    return [
        Event(n, at(n * 0.7 - 30), f"/e{n % 3}", (200, 404, 503)[n % 3], n * 1.5, f"u{n % 4}",
              f"s{n % 5}", ("ok", "error", None)[n % 3])
        for n in range(60)
    ]  # fmt: skip


def snapshot(engine: Engine) -> dict[str, list]:
    out = {}
    for table in ROLLUP_TABLES:
        rows = [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in r.values())
            for r in stored(engine, table)
        ]
        out[table] = sorted(rows, key=repr)
    return out


def rollup(engine: Engine, *flags: str) -> None:
    url = engine.url.render_as_string(False).replace("postgresql+psycopg://", "postgresql://")
    assert cli.main(["rollup", "--database-url", url, *flags]) == 0


def test_a_second_rollup_without_new_data_changes_nothing(engine, capsys):
    write(engine, batch_of(traffic()))
    rollup(engine)
    first = snapshot(engine)
    assert first["endpoint_stats"] and not first["rollup_invalidations"]
    rollup(engine)
    assert snapshot(engine) == first
    assert "0 dirty buckets" in capsys.readouterr().out.splitlines()[-1]
    check_rollups(engine)


def test_rebuild_recomputes_every_bucket_and_gives_the_same_rows(engine):
    write(engine, batch_of(traffic()))
    rollup(engine)
    before = snapshot(engine)
    rollup(engine, "--rebuild")
    assert snapshot(engine) == before


def test_rollup_waits_for_a_round_in_progress_then_runs(engine):
    write(engine, batch_of(traffic()))
    url = engine.url.render_as_string(False).replace("postgresql+psycopg://", "postgresql://")
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    with job_lock(engine, ROLLUP_LOCK_KEY, wait=True):  # a runner's round, in progress
        proc = subprocess.Popen(
            [sys.executable, "-m", "processor", "rollup", "--database-url", url],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            if engine.dialect.name == "postgresql":
                _wait_for_a_blocked_advisory_lock(engine)
            else:
                time.sleep(3)
            assert proc.poll() is None, "rollup ran while another round held the lock"
            assert not snapshot(engine)["endpoint_stats"]
        except BaseException:
            proc.kill()
            raise
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert "rolled up" in out
    check_rollups(engine)


def _wait_for_a_blocked_advisory_lock(engine: Engine) -> None:
    from sqlalchemy import text

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar()
        if waiting:
            return
        time.sleep(0.1)
    pytest.fail("the rollup command never waited for the advisory lock")


def test_a_second_runner_skips_the_round_while_one_runs(engine):
    inside, release = threading.Event(), threading.Event()

    def slow(_engine: Engine) -> str:
        inside.set()
        release.wait(30)
        return "ran"

    first = PeriodicJob("a", engine, slow, interval=60, lock_key=ROLLUP_LOCK_KEY)
    second = PeriodicJob("b", engine, lambda _e: "ran", interval=60, lock_key=ROLLUP_LOCK_KEY)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(first.run_once()))
    thread.start()
    try:
        assert inside.wait(30)
        assert second.run_once() is None
        assert second.skipped == 1
    finally:
        release.set()
        thread.join(30)
    assert result == ["ran"]
    assert second.run_once() == "ran"  # the lock is free again
