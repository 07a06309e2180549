"""Health (/health, /readiness, /liveness) and Prometheus (/metrics) endpoints, served on the
HTTP port next to the receivers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from processor.ops import self_metrics

Ready = Callable[[], Awaitable[bool]]


def routes(ready: Ready, metrics_dir: str | None = None) -> list[web.RouteDef]:
    """``ready()`` says whether the database answers; health and readiness follow it.
    ``metrics_dir``: the workers' shared metrics, when there are several."""

    async def health(_request: web.Request) -> web.Response:
        up = await ready()
        return web.json_response(
            {"status": "ok" if up else "degraded", "database": "up" if up else "down"},
            status=200 if up else 503,
        )

    async def liveness(_request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readiness(_request: web.Request) -> web.Response:
        up = await ready()
        return web.json_response(
            {"ready": up, "database": "up" if up else "down"}, status=200 if up else 503
        )

    async def metrics(_request: web.Request) -> web.Response:
        body, content_type = self_metrics.exposition(metrics_dir)
        return web.Response(body=body, headers={"Content-Type": content_type})

    return [
        web.get("/health", health),
        web.get("/liveness", liveness),
        web.get("/readiness", readiness),
        web.get("/metrics", metrics),
    ]
