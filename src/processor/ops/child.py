"""A supervised child process: started, watched, restarted with backoff, stopped with us.

The child gets ``payload`` as the first line of its stdin and keeps reading it: the pipe's
other end belongs to this process only, so when this process dies, however it dies (SIGKILL
included), the child reads end-of-file and stops by itself; it is never orphaned. The child
runs in a session of its own, so a Ctrl-C at a terminal reaches the parent only, which then
stops the child in order (SIGTERM, then SIGKILL after ``grace``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Sequence

import structlog

log = structlog.get_logger(__name__)


class ChildProcess:
    """A ``lifecycle.Component``. A child that exits while we are not stopping is started
    again after ``backoff[0]`` seconds, doubling up to ``backoff[1]``; the delay starts over
    once a child has run ``healthy_after`` seconds."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        payload: bytes,
        *,
        backoff: tuple[float, float] = (1.0, 60.0),
        healthy_after: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.payload = payload.rstrip(b"\n") + b"\n"
        self.backoff = backoff
        self.healthy_after = healthy_after
        self.env = env
        self.starts = 0  # children started, the first included
        self.delays: list[float] = []  # the wait before each restart
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self) -> None:
        if self._task is None and not self._closed:
            await self._spawn()  # started now, so a failure to start shows at once
            self._task = asyncio.create_task(self._watch(), name=self.name)

    async def _spawn(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, start_new_session=True, env=self.env
        )
        self.starts += 1
        assert self.proc.stdin is not None
        self.proc.stdin.write(self.payload)
        with contextlib.suppress(ConnectionError):
            await self.proc.stdin.drain()
        log.info(f"{self.name}_started", pid=self.proc.pid, starts=self.starts)

    async def _watch(self) -> None:
        delay = self.backoff[0]
        while True:
            assert self.proc is not None
            started = time.monotonic()
            code = await self.proc.wait()
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            if time.monotonic() - started >= self.healthy_after:
                delay = self.backoff[0]
            log.warning(f"{self.name}_exited", pid=self.proc.pid, code=code, restart_in=delay)
            self.delays.append(delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff[1])
            try:
                await self._spawn()
            except OSError as exc:  # e.g. out of processes: try again after the next delay
                log.warning(f"{self.name}_not_started", error=str(exc)[:300])

    async def shutdown(self, grace: float = 10.0) -> None:
        """SIGTERM and end-of-input; SIGKILL if it has not exited within ``grace``. Safe
        twice, and before ``start()``."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:  # waiting for the child to exit, or to restart it
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            log.warning(f"{self.name}_killed", pid=proc.pid, grace=grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
