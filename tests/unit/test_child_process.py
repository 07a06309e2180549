"""The supervised child process of processor.ops.child, and the settings it is handed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import timedelta

import pytest

from processor.background import in_child, in_memory
from processor.ops.child import ChildProcess
from processor.settings import Settings, SettingsError, parse_retention

# Writes its first stdin line to the file named, then lives until its stdin ends.
ECHO = "import sys; open(sys.argv[1], 'w').write(sys.stdin.readline()); sys.stdin.read()"
# Ignores SIGTERM: only SIGKILL ends it.
STUBBORN = (
    "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('up', flush=True); sys.stdin.read(); import time; time.sleep(60)"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def until(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_the_child_gets_the_payload_and_stops_with_us(tmp_path):
    out = tmp_path / "out.txt"

    async def go() -> tuple[int, int | None]:
        child = ChildProcess("echo", [sys.executable, "-c", ECHO, str(out)], b"hello")
        await child.start()
        pid = child.pid
        assert pid is not None
        await until(lambda: out.exists() and out.read_text() == "hello\n")
        await child.shutdown(5)
        await child.shutdown(5)  # safe twice
        assert child.proc is not None and child.pid is None
        return pid, child.proc.returncode

    pid, code = await go()
    assert code == -signal.SIGTERM  # stopped, not killed
    assert not alive(pid)


async def test_a_child_that_dies_is_started_again_with_growing_delays():
    async def go() -> ChildProcess:
        child = ChildProcess(
            "dies", [sys.executable, "-c", "pass"], b"x", backoff=(0.05, 0.2), healthy_after=60
        )
        await child.start()
        await until(lambda: child.starts >= 5)
        await child.shutdown(1)
        starts = child.starts
        await asyncio.sleep(0.3)  # longer than any delay: a restart would have come
        assert child.starts == starts  # none after shutdown
        return child

    child = await go()
    assert child.delays[:4] == [0.05, 0.1, 0.2, 0.2]  # doubled, then capped


async def test_the_delay_starts_over_after_a_healthy_run():
    async def go() -> ChildProcess:
        # Each child "runs" longer than healthy_after (0): every restart waits the least.
        child = ChildProcess(
            "dies", [sys.executable, "-c", "pass"], b"x", backoff=(0.05, 0.2), healthy_after=0
        )
        await child.start()
        await until(lambda: child.starts >= 4)
        await child.shutdown(1)
        return child

    assert (await go()).delays[:3] == [0.05, 0.05, 0.05]


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace():
    async def go() -> int | None:
        child = ChildProcess("stubborn", [sys.executable, "-c", STUBBORN], b"x")
        await child.start()
        await asyncio.sleep(0.5)
        await child.shutdown(0.5)
        assert child.proc is not None
        return child.proc.returncode

    assert await go() == -signal.SIGKILL


async def test_shutdown_before_start_is_harmless():
    async def go() -> None:
        child = ChildProcess("never", [sys.executable, "-c", "pass"], b"x")
        await child.shutdown(0)
        await child.start()  # closed: starts nothing
        assert child.proc is None

    await go()


def test_settings_cross_to_the_child_unchanged():
    settings = Settings(
        database_url="postgresql://u:secret@db/x",
        api_keys=("a", "b:read"),
        alert_webhook_allowed_hosts=("hooks.example.com",),
        retention=parse_retention("logs=7d,rollups.day=forever"),
        rollup_interval_seconds=2.5,
        background_mode="process",
    )
    again = Settings.from_json(settings.to_json())
    assert again == settings
    assert again.retention["logs.error"] == timedelta(days=7)
    assert again.retention["rollups.day"] is None


def test_settings_from_another_version_are_refused():
    with pytest.raises(SettingsError):
        Settings.from_json('{"database_url": "sqlite://"}')


def test_background_mode_is_validated():
    assert Settings.from_env({"BACKGROUND_MODE": "Thread"}).background_mode == "thread"
    with pytest.raises(SettingsError, match="BACKGROUND_MODE"):
        Settings.from_env({"BACKGROUND_MODE": "fork"})


@pytest.mark.parametrize(
    ("url", "memory"),
    [
        ("sqlite://", True),
        ("sqlite:///:memory:", True),
        ("sqlite:///file:db?mode=memory&cache=shared&uri=true", True),
        ("sqlite:///analytics.db", False),
        ("postgresql://postgres@127.0.0.1/x", False),
    ],
)
def test_only_a_database_other_processes_can_open_goes_to_the_child(url, memory):
    settings = Settings(database_url=url)
    assert in_memory(settings.sqlalchemy_url) is memory
    assert in_child(settings) is not memory
    assert not in_child(settings.replace(background_mode="thread"))
