"""``telemetry-processor``: serve, migrate, hash-id."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import signal
import sys
from collections.abc import Sequence

import structlog

from processor import logs
from processor.privacy import make_hasher
from processor.settings import Settings, SettingsError, redact_url


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="telemetry-processor", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate, then receive OTLP and write analytics rows")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")
    serve.add_argument("--database-url", help="overrides ANALYTICS_DATABASE_URL")
    serve.add_argument("--bind", dest="bind_address", help="overrides BIND_ADDRESS")
    serve.add_argument("--port", type=int, help="OTLP gRPC port (overrides PORT)")
    serve.add_argument("--http-port", type=int, help="OTLP/HTTP port (overrides HTTP_PORT)")
    serve.add_argument("--workers", type=int, help="processes sharing the ports (SO_REUSEPORT)")

    migrate = sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    migrate.add_argument("--database-url", help="overrides ANALYTICS_DATABASE_URL")

    hash_id = sub.add_parser("hash-id", help="print the stored hash of an identifier")
    hash_id.add_argument("value")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    overrides = {
        k: getattr(args, k, None)
        for k in ("database_url", "bind_address", "port", "http_port", "workers")
    }
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        print(f"telemetry-processor: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)

    if args.command == "hash-id":
        print(make_hasher(settings.user_id_hash_key)(args.value))
        return 0
    if args.command == "migrate":
        return migrate(settings)
    if args.command == "serve":
        if not args.no_migrate and migrate(settings) != 0:
            return 1
        return serve(settings)
    return 2


def migrate(settings: Settings) -> int:
    from processor.migrate import upgrade

    log = structlog.get_logger("processor.cli")
    try:
        upgrade(settings.sqlalchemy_url)
    except Exception as exc:
        log.error(
            "migration_failed",
            database=redact_url(settings.database_url),
            error=type(exc).__name__,
            detail=str(exc).splitlines()[0][:300],
        )
        return 1
    log.info("migrated", database=redact_url(settings.database_url))
    return 0


def serve(settings: Settings) -> int:
    if settings.workers > 1:
        return serve_workers(settings)
    return asyncio.run(run(settings))


async def run(settings: Settings) -> int:
    from processor.server import App

    app = App(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
    except Exception as exc:
        structlog.get_logger("processor.cli").error("start_failed", error=str(exc)[:300])
        await app.shutdown(grace=0)
        return 1
    await stop.wait()
    await app.shutdown()
    return 0


def _worker(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)
    raise SystemExit(asyncio.run(run(settings)))


def serve_workers(settings: Settings) -> int:
    """N processes on the same ports; the kernel spreads connections (not requests) among them."""
    if settings.port == 0 or settings.http_port == 0:
        print("telemetry-processor: --workers needs fixed ports", file=sys.stderr)
        return 2
    ctx = multiprocessing.get_context("spawn")
    one = settings.replace(workers=1)
    procs = [
        ctx.Process(target=_worker, args=(one,), daemon=False) for _ in range(settings.workers)
    ]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                import os

                os.kill(proc.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in procs:
        proc.join()
    return max((proc.exitcode or 0) for proc in procs)


if __name__ == "__main__":
    raise SystemExit(main())
