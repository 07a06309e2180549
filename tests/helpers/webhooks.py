"""A local HTTP receiver standing in for alert webhooks (aiohttp on port 0, in its own thread).

Paths behave as the test arranges: ``fail_first(path, n)`` answers 500 to the first n
requests; ``hang(path)`` holds every request until ``release()``; any other path answers 200.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from typing import Any

import orjson
from aiohttp import web


class Receiver:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.received: dict[str, list[dict[str, Any]]] = defaultdict(list)  # accepted bodies
        self.attempts: dict[str, int] = defaultdict(int)
        self.failures: dict[str, int] = {}
        self.hanging: set[str] = set()
        self.held = 0  # requests being held now
        self._released: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        payload = orjson.loads(await request.read())
        with self._lock:
            self.attempts[path] += 1
            failing = self.failures.get(path, 0) > 0
            if failing:
                self.failures[path] -= 1
        if path in self.hanging:
            assert self._released is not None
            self.held += 1
            await self._released.wait()
            self.held -= 1
        if failing:
            return web.Response(status=500, text="not now")
        with self._lock:
            self.received[path].append(payload)
        return web.Response(text="ok")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_first(self, path: str, count: int) -> None:
        self.failures[path] = count

    def hang(self, path: str) -> None:
        self.hanging.add(path)

    def release(self) -> None:
        if self._released is not None:
            self.loop.call_soon_threadsafe(self._released.set)

    def states(self, path: str) -> list[str]:
        with self._lock:
            return [body["state"] for body in self.received[path]]

    def stop(self) -> None:
        self.release()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
