"""The service: receivers → pipeline → writer, started and stopped as one."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os

import grpc
import structlog

from processor import background
from processor.alerts.runner import AlertRunner
from processor.analytics.runner import RollupRunner
from processor.api.rollup_reader import RollupReader
from processor.api.service import QueryService
from processor.background import BackgroundProcess
from processor.ingest.auth import KeyGate
from processor.ingest.grpc import GrpcReceiver
from processor.ingest.http import HttpReceiver
from processor.ingest.pipeline import Pipeline
from processor.ingest.ratelimit import RateLimiter, SharedBuckets
from processor.lifecycle import Component
from processor.mapping import fast
from processor.mapping.privacy import make_hasher
from processor.ops import health, self_metrics
from processor.settings import Settings, redact_url
from processor.storage import admin
from processor.storage.housekeeping import Housekeeping
from processor.storage.writer import SqlWriter, create_db_engine

log = structlog.get_logger(__name__)


class App:
    """Owns every component. ``start()`` starts them in order (writer, pipeline, query API,
    receivers); ``shutdown()`` stops them in reverse, and is safe to call twice."""

    def __init__(
        self,
        settings: Settings,
        *,
        health_interval: float = 2.0,
        buckets: SharedBuckets | None = None,
    ) -> None:
        """``buckets``: the rate-limit buckets shared with the other workers, if any."""
        self.settings = settings
        self.health_interval = health_interval
        self.engine = create_db_engine(settings.sqlalchemy_url)
        self.writer = SqlWriter(
            self.engine,
            max_rows=settings.writer_max_rows,
            direct_copy=settings.writer_direct_copy,
        )
        # Partitions and retention (SPEC §13), on a small pool of its own.
        self.housekeeping = Housekeeping(
            settings, create_db_engine(settings.sqlalchemy_url, pool_size=2)
        )
        self.auth = KeyGate(
            settings.api_keys,
            RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst, buckets=buckets),
        )
        self.pipeline = Pipeline(
            self.writer,
            make_hasher(settings.user_id_hash_key),
            max_inflight_requests=settings.max_inflight_requests,
            max_inflight_bytes=settings.max_inflight_mib << 20,
            max_batch_size=settings.max_batch_size,
        )
        self.grpc = GrpcReceiver(settings, self.pipeline, self.auth)
        self.http = HttpReceiver(
            settings,
            self.pipeline,
            self.auth,
            routes=health.routes(self.check_ready, settings.metrics_dir),
        )
        self.query = QueryService(
            settings, self.engine, RollupReader(self.engine), self.pipeline, self.check_ready
        )
        self._add_query_api()
        # The rollup and alert runners: in one child process of the top-level serve, or
        # (BACKGROUND_MODE=thread, in-memory SQLite) in a thread here (processor.background).
        self.background: BackgroundProcess | None = None
        self.rollups: RollupRunner | None = None
        self.alerts: AlertRunner | None = None
        if background.in_child(settings):
            if settings.worker_index == 0 and background.wanted(settings):
                self.background = BackgroundProcess(settings)
        elif settings.is_postgres or settings.worker_index == 0:
            # Every worker tries on PostgreSQL (the advisory lock picks one per round); on
            # SQLite only worker 0 runs them, beside its writer.
            for job in background.runners(settings):
                if isinstance(job, RollupRunner):
                    self.rollups = job
                elif isinstance(job, AlertRunner):
                    self.alerts = job
        # Started stage by stage; the components of one stage stop together.
        self.stages: list[tuple[Component, ...]] = [
            (self.writer,),
            (self.pipeline,),
            (self.query,),
            (self.housekeeping,),
            *([(self.background,)] if self.background is not None else []),
            *([(self.rollups,)] if self.rollups is not None else []),
            *([(self.alerts,)] if self.alerts is not None else []),
            (self.grpc, self.http),
        ]
        self.database_up = False
        self._monitor: asyncio.Task[None] | None = None
        self._stopped = False

    def _add_query_api(self) -> None:
        """The query API of SPEC §11: REST on the HTTP port, AnalyticsService on the gRPC one."""
        from processor.api import grpc_service
        from processor.api.alerts_rest import AlertsApi
        from processor.api.rest import RestApi
        from processor.ui import WebUi

        rest = RestApi(self.query, self.auth)
        self.http.extensions.append(rest.register)
        self.http.extensions.append(AlertsApi(self.query, rest.guarded).register)
        self.http.extensions.append(WebUi().register)  # SPEC §12: the page calls the API
        servicer = grpc_service.AnalyticsServicer(self.query, self.auth)

        def add_analytics(server: grpc.aio.Server) -> str:
            grpc_service.add_to_server(servicer, server)
            return grpc_service.SERVICE_NAME

        self.grpc.extensions.append(add_analytics)

    @property
    def grpc_port(self) -> int:
        return self.grpc.port

    @property
    def http_port(self) -> int:
        return self.http.port

    async def start(self) -> None:
        fast.configure(self.settings.fast_path)
        runners = [r for r in (self.background, self.rollups, self.alerts) if r is not None]
        for stage in self.stages[:-1]:
            for component in stage:
                if component not in runners:  # started last, once serving
                    await component.start()
        await self.refresh_keys()
        self._warn_if_open()
        for component in self.stages[-1]:
            await component.start()
        await self._update_health()
        self._monitor = asyncio.create_task(self._watch_database())
        for runner in runners:
            await runner.start()
        log.info(
            "started",
            database=redact_url(self.settings.database_url),
            grpc_port=self.grpc_port,
            http_port=self.http_port,
            auth=self.auth.enabled,
        )

    async def check_ready(self) -> bool:
        await self._update_health()
        return self.database_up

    async def _update_health(self) -> None:
        up = await self.writer.ping()
        if up != self.database_up:
            log.info("database_up" if up else "database_down")
        self.database_up = up
        self_metrics.DATABASE_UP.set(1 if up else 0)
        if not self._stopped:
            await self.grpc.set_serving(up)

    async def refresh_keys(self) -> None:
        """Reload API keys from the database (rotation without restart); record last use."""
        loop = asyncio.get_running_loop()
        try:
            stored = await loop.run_in_executor(None, admin.active_keys, self.engine)
            used = self.auth.take_used()
            if used:
                await loop.run_in_executor(None, admin.touch_keys, self.engine, used)
        except Exception as exc:
            if not self.auth.loaded:
                log.warning("api_keys_not_loaded", error=type(exc).__name__)
            return
        self.auth.update(stored)

    async def _watch_database(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            await self._update_health()
            await self.refresh_keys()

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, finish and commit what is in flight, then close the database."""
        if self._stopped:
            return
        self._stopped = True
        # New requests are refused with a retry hint while the receivers wind down.
        self.pipeline.drain()
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for stage in reversed(self.stages):
            await asyncio.gather(*(component.shutdown(grace) for component in stage))
        for runner in (self.rollups, self.alerts):
            if runner is not None:
                runner.engine.dispose()
        self_metrics.worker_stopped(os.getpid(), self.settings.metrics_dir)
        log.info("stopped")

    def _warn_if_open(self) -> None:
        try:
            loopback = ipaddress.ip_address(self.settings.bind_address).is_loopback
        except ValueError:
            loopback = self.settings.bind_address == "localhost"
        if not loopback and not self.auth.enabled and not self.settings.tls_enabled:
            log.warning(
                "listening_unprotected",
                bind_address=self.settings.bind_address,
                hint="set API_KEYS and TLS_CERT_FILE/TLS_KEY_FILE, or bind to 127.0.0.1",
            )
