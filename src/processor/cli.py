"""``telemetry-processor``: serve, migrate, hash-id, keys, analysts, forget-user, rollup,
retention, alerts."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence

import structlog

from processor.alerts import commands as alert_commands
from processor.ingest.ratelimit import SharedBuckets
from processor.mapping.privacy import make_hasher
from processor.ops import service_log
from processor.settings import Settings, SettingsError, redact_url

# serve's overriding flags, passed on to the other worker processes.
SERVE_FLAGS = {
    "database_url": "--database-url",
    "bind_address": "--bind",
    "port": "--port",
    "http_port": "--http-port",
}


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
    # Set by `serve --workers N` for the processes it starts: written to once listening,
    # and the shared memory holding the rate-limit buckets of all workers.
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--rate-limit-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)

    migrate = sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    migrate.add_argument("--database-url", help="overrides ANALYTICS_DATABASE_URL")

    hash_id = sub.add_parser("hash-id", help="print the stored hash of an identifier")
    hash_id.add_argument("value")

    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--database-url", help="overrides ANALYTICS_DATABASE_URL")
    keys = sub.add_parser("keys", help="manage API keys (stored as SHA-256 hashes)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser(
        "create", help="create a key and print it once", parents=[database]
    )
    create.add_argument("--project", default="default", help="project name (created if new)")
    create.add_argument(
        "--scope",
        choices=("ingest", "read", "admin"),
        default="ingest",
        help="ingest: OTLP and JSON ingestion; read: the query API; admin: both",
    )
    keys_sub.add_parser(
        "list", help="list key prefixes, scopes, projects and times", parents=[database]
    )
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id or prefix", parents=[database])
    revoke.add_argument("key", help="the key's id or prefix, as `keys list` shows")

    analysts = sub.add_parser(
        "analysts", help="PostgreSQL login roles that see one project's rows (for psql, Grafana)"
    )
    analysts_sub = analysts.add_subparsers(dest="analysts_command", required=True)
    grant = analysts_sub.add_parser(
        "grant", help="create a login role for a project and print it once", parents=[database]
    )
    grant.add_argument("--project", required=True, help="the project whose rows it may read")
    revoke_role = analysts_sub.add_parser("revoke", help="drop an analyst role", parents=[database])
    revoke_role.add_argument("name", help="the role's name, as `analysts grant` printed it")
    analysts_sub.add_parser("list", help="list analyst roles", parents=[database])
    rollup = sub.add_parser(
        "rollup", help="bring every analytics rollup up to date once (waits for a running round)"
    )
    rollup.add_argument(
        "--rebuild", action="store_true", help="recompute every bucket from the raw rows"
    )
    rollup.add_argument("--database-url", help="overrides ANALYTICS_DATABASE_URL")

    forget = sub.add_parser("forget-user", help="delete one user's rows from every table")
    forget.add_argument("user_id", help="the raw user id; it is hashed to find the rows")
    forget.add_argument("--project", help="only this project's rows")
    forget.add_argument("--database-url", help="overrides ANALYTICS_DATABASE_URL")

    retention = sub.add_parser(
        "retention", help="remove rows past their retention (RETENTION) and print per table"
    )
    retention.add_argument(
        "--dry-run", action="store_true", help="only print what would be removed"
    )
    retention.add_argument("--database-url", help="overrides ANALYTICS_DATABASE_URL")
    partitions = sub.add_parser(
        "partitions",
        help="PostgreSQL: make day partitions ahead, move rows out of DEFAULT partitions and,"
        " with LOGS_PARTITION_BY_LEVEL=false, make logs days single-level (what serve does)",
    )
    partitions.add_argument("--database-url", help="overrides ANALYTICS_DATABASE_URL")
    alert_commands.add_parser(sub, database)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    overrides = {
        k: getattr(args, k, None)
        for k in ("database_url", "bind_address", "port", "http_port", "workers", "worker_index")
    }
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        print(f"telemetry-processor: configuration error: {exc}", file=sys.stderr)
        return 2
    service_log.configure(settings.log_level, settings.log_format)

    if args.command == "hash-id":
        print(make_hasher(settings.user_id_hash_key)(args.value))
        return 0
    if args.command == "migrate":
        return migrate(settings)
    if args.command == "serve":
        if not args.no_migrate and migrate(settings) != 0:
            return 1
        # Flags the other workers need too; secrets stay in the environment they inherit.
        passthrough = [
            f"{flag}={overrides[name]}"
            for name, flag in SERVE_FLAGS.items()
            if overrides.get(name) is not None
        ]
        return serve(
            settings, passthrough, ready_fd=args.ready_fd, rate_limit_fd=args.rate_limit_fd
        )
    if args.command == "rollup":
        return rollup(settings, rebuild=args.rebuild)
    if args.command in ("keys", "forget-user", "analysts", "retention", "alerts", "partitions"):
        if migrate(settings, quiet=True) != 0:
            return 1
        if args.command == "alerts":
            return alert_commands.run(settings, args)
        if args.command == "analysts":
            return manage_analysts(settings, args)
        if args.command == "retention":
            return retention(settings, dry_run=args.dry_run)
        if args.command == "partitions":
            return make_partitions(settings)
        return (
            manage_keys(settings, args) if args.command == "keys" else forget_user(settings, args)
        )
    return 2


def manage_keys(settings: Settings, args: argparse.Namespace) -> int:
    from processor.storage import admin
    from processor.storage.writer import create_db_engine

    engine = create_db_engine(settings.sqlalchemy_url)
    try:
        if args.keys_command == "create":
            key, project_id = admin.create_key(engine, args.project, args.scope)
            print(key)
            print(
                f"# {args.scope} key for project {args.project!r} (id {project_id}); "
                "store this key now, it is not shown again",
                file=sys.stderr,
            )
        elif args.keys_command == "list":
            print(
                f"{'id':>4}  {'prefix':<12} {'scope':<7} {'project':<20} {'created':<25} "
                f"{'last used':<25} revoked"
            )
            for k in admin.list_keys(engine):
                print(
                    f"{k.id:>4}  {k.prefix:<12} {k.scope:<7} {k.project:<20} "
                    f"{_when(k.created_at):<25} "
                    f"{_when(k.last_used_at):<25} {_when(k.revoked_at)}"
                )
        elif args.keys_command == "revoke":
            count = admin.revoke_key(engine, args.key)
            print(f"revoked {count} key(s)")
            return 0 if count else 1
    finally:
        engine.dispose()
    return 0


def manage_analysts(settings: Settings, args: argparse.Namespace) -> int:
    from processor.api import analysts
    from processor.storage.writer import create_db_engine

    engine = create_db_engine(settings.sqlalchemy_url)
    try:
        if args.analysts_command == "grant":
            granted = analysts.grant(engine, args.project)
            print(f"role: {granted.role}")
            print(f"password: {granted.password}")
            print(f"url: {granted.url}")
            print(
                f"# sees only project {args.project!r} (id {granted.project_id}); "
                "the password is not shown again",
                file=sys.stderr,
            )
        elif args.analysts_command == "revoke":
            analysts.revoke(engine, args.name)
            print(f"revoked {args.name}")
        else:
            for role, project, created in analysts.list_roles(engine):
                print(f"{role:<60} project {project:<6} {_when(created)}")
    except analysts.AnalystError as exc:
        print(f"telemetry-processor: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def _when(value: object) -> str:
    return "-" if value is None else str(value)[:25]


def forget_user(settings: Settings, args: argparse.Namespace) -> int:
    from processor.storage import admin
    from processor.storage.writer import create_db_engine

    engine = create_db_engine(settings.sqlalchemy_url)
    try:
        project = None
        if args.project:
            project = admin.project_id(engine, args.project)
            if project is None:
                print(f"telemetry-processor: no project named {args.project!r}", file=sys.stderr)
                return 1
        user_hash = make_hasher(settings.user_id_hash_key)(args.user_id)
        removed = admin.forget_user(engine, user_hash, project)
    finally:
        engine.dispose()
    for table, count in removed.items():
        print(f"{table}: {count}")
    print(f"total: {sum(removed.values())} rows removed for user hash {user_hash}")
    return 0


def retention(settings: Settings, *, dry_run: bool) -> int:
    """Waits for a retention round running elsewhere (the serving process), then runs."""
    from processor.ops.scheduler import job_lock
    from processor.storage import retention as policy
    from processor.storage.housekeeping import RETENTION_LOCK
    from processor.storage.writer import create_db_engine

    engine = create_db_engine(settings.sqlalchemy_url, pool_size=2)
    try:
        with job_lock(engine, RETENTION_LOCK, wait=True):
            results = policy.run_retention(engine, settings.retention, dry_run=dry_run)
    finally:
        engine.dispose()
    for line in policy.report_lines(results, postgres=settings.is_postgres):
        print(line)
    return 0


def make_partitions(settings: Settings) -> int:
    """The partition upkeep of the serving process, once (under the same lock as retention)."""
    from processor.ops.scheduler import job_lock
    from processor.storage import partitions
    from processor.storage.housekeeping import RETENTION_LOCK
    from processor.storage.writer import create_db_engine

    if not settings.is_postgres:
        print("telemetry-processor: partitions exist on PostgreSQL only", file=sys.stderr)
        return 2
    engine = create_db_engine(settings.sqlalchemy_url, pool_size=2)
    try:
        with job_lock(engine, RETENTION_LOCK, wait=True):
            report = partitions.ensure_partitions(
                engine,
                premake_days=settings.partition_premake_days,
                policy=settings.retention,
                logs_by_level=settings.logs_partition_by_level,
            )
    finally:
        engine.dispose()
    print(f"partitions created: {len(report.created)}, rows moved: {report.rows_moved}")
    if report.flattened:
        print(f"logs days made single-level: {len(report.flattened)}")
    for table, rows in report.default_rows.items():
        if rows:
            print(f"{table}: {rows} rows left in the DEFAULT partition")
    if report.failed:
        print(f"not done (lock timeout, retry): {', '.join(report.failed)}")
        return 1
    return 0


def rollup(settings: Settings, *, rebuild: bool) -> int:
    from processor.analytics.runner import rollup_once
    from processor.storage.writer import create_db_engine

    if migrate(settings, quiet=True) != 0:
        return 1
    engine = create_db_engine(settings.sqlalchemy_url, pool_size=1)
    try:
        result = rollup_once(engine, rebuild=rebuild, policy=settings.retention)
    finally:
        engine.dispose()
    print(
        f"{'rebuilt' if rebuild else 'rolled up'}: {result.markers} dirty buckets, "
        f"{result.rows} rollup rows written in {result.seconds:.2f} s"
    )
    return 0


def migrate(settings: Settings, *, quiet: bool = False) -> int:
    from processor.storage.migrate import upgrade

    log = structlog.get_logger(__name__)
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
    if not quiet:
        log.info("migrated", database=redact_url(settings.database_url))
    return 0


def serve(
    settings: Settings,
    passthrough: Sequence[str] = (),
    ready_fd: int | None = None,
    rate_limit_fd: int | None = None,
) -> int:
    if settings.workers > 1:
        return serve_workers(settings, passthrough)
    buckets = SharedBuckets(rate_limit_fd) if rate_limit_fd is not None else None
    return asyncio.run(run(settings, ready_fd=ready_fd, buckets=buckets))


async def run(
    settings: Settings,
    on_signal: Callable[[int], None] | None = None,
    ready_fd: int | None = None,
    stop_requested: Callable[[], bool] | None = None,
    buckets: SharedBuckets | None = None,
) -> int:
    from processor.server import App

    app = App(settings, buckets=buckets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping(signum: int) -> None:
        stop.set()
        if on_signal is not None:
            on_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping, sig)
    if stop_requested is not None and stop_requested():
        stop.set()  # a signal came before the handlers above were in place
    try:
        await app.start()
    except Exception as exc:
        structlog.get_logger(__name__).error("start_failed", error=str(exc)[:300])
        await app.shutdown(grace=0)
        return 1
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    await stop.wait()
    await app.shutdown()
    return 0


def serve_workers(settings: Settings, passthrough: Sequence[str]) -> int:
    """N processes on the same ports; the kernel spreads connections (not requests) among them.

    This process is worker 0 and starts the others, so no idle supervisor holds memory. It
    creates the rate-limit buckets they all share, so a project's limit holds across workers,
    and the directory where their metrics meet, so any worker's /metrics counts them all.
    """
    if settings.port == 0 or settings.http_port == 0:
        print("telemetry-processor: --workers needs fixed ports", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "processor", "serve", "--no-migrate", "--workers", "1"]
    others: list[subprocess.Popen[bytes]] = []
    signals: list[int] = []

    def forward(signum: int) -> None:
        for proc in others:
            if proc.poll() is None:
                proc.send_signal(signum)

    def early(signum: int, _frame: object) -> None:
        signals.append(signum)
        forward(signum)

    # Until this process's own loop handles signals, remember them and pass them on.
    signal.signal(signal.SIGTERM, early)
    signal.signal(signal.SIGINT, early)
    buckets = SharedBuckets.create()
    owned_metrics_dir = None
    if settings.metrics_dir is None:
        owned_metrics_dir = tempfile.mkdtemp(prefix="telemetry-processor-metrics-")
        # prometheus_client reads it when first imported (not yet: processor.server is
        # imported in run()), here and in the workers, which inherit the environment.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = owned_metrics_dir
        settings = settings.replace(metrics_dir=owned_metrics_dir)
    pipes = []
    for index in range(1, settings.workers):
        read, write = os.pipe()
        others.append(
            subprocess.Popen(
                [
                    *command,
                    *passthrough,
                    f"--ready-fd={write}",
                    f"--rate-limit-fd={buckets.fd}",
                    f"--worker-index={index}",
                ],
                pass_fds=(write, buckets.fd),
            )
        )
        os.close(write)
        pipes.append(read)
    # Listen only once the others do, so early connections are not all ours.
    for read in pipes:
        with os.fdopen(read, "rb") as ready:
            ready.read(1)  # b"" when that worker failed to start; its exit code tells

    try:
        code = asyncio.run(
            run(
                settings.replace(workers=1),
                on_signal=forward,
                stop_requested=lambda: bool(signals),
                buckets=buckets,
            )
        )
    finally:
        forward(signal.SIGTERM)
        for proc in others:
            proc.wait()
        if owned_metrics_dir is not None:
            shutil.rmtree(owned_metrics_dir, ignore_errors=True)
    return max([code, *(proc.returncode or 0 for proc in others)])


if __name__ == "__main__":
    raise SystemExit(main())
