"""Shared fixtures: databases migrated by Alembic, and a real server on port 0.

PostgreSQL comes from TEST_DATABASE_URL, else a throw-away cluster when its binaries are
installed, else the PostgreSQL half of each test is skipped with the reason shown. With
REQUIRE_POSTGRES=1 (set by .ci/run) a missing PostgreSQL fails the run instead.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from processor.mapping.rows import TABLES
from processor.server import App
from processor.settings import Settings
from processor.storage.migrate import upgrade
from tests.helpers import browser as browser_helpers
from tests.helpers import free_port
from tests.helpers.rollups import ROLLUP_TABLES
from tests.helpers.tcp_proxy import TcpProxy

REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"


def _throwaway_postgres(base: str) -> tuple[str, subprocess.Popen[bytes] | None, str] | None:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = shutil.which("initdb") or (bins[-1] if bins else None)
    if initdb is None:
        return None
    bindir = os.path.dirname(initdb)
    data = os.path.join(base, "pgdata")
    user = "postgres"
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    subprocess.run(
        [*run_as, initdb, "-D", data, "-U", user, "-A", "trust"], check=True, capture_output=True
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *run_as,
            os.path.join(bindir, "postgres"),
            "-D",
            data,
            "-p",
            str(port),
            "-k",
            base,
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://{user}@127.0.0.1:{port}/postgres"
    for _ in range(100):
        try:
            import psycopg

            psycopg.connect(
                url.replace("postgresql://", "postgresql://", 1), connect_timeout=1
            ).close()
            return url, proc, data
        except Exception:
            time.sleep(0.1)
    proc.terminate()
    return None


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    base = tempfile.mkdtemp(prefix="tp-pg-")
    started = None
    try:
        started = _throwaway_postgres(base)
    except Exception as exc:
        reason = f"could not start a throw-away PostgreSQL: {exc}"
    else:
        reason = "no TEST_DATABASE_URL and no PostgreSQL binaries installed"
    if started is None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    url, proc, _ = started
    yield url
    if proc is not None:
        proc.terminate()
        proc.wait(10)
    shutil.rmtree(base, ignore_errors=True)


def _psycopg_url(url: str) -> str:
    return Settings(database_url=url).sqlalchemy_url


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database for this test session, migrated to head by Alembic."""
    name = f"tp_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(_psycopg_url(postgres_admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"REQUIRE_POSTGRES=1 but PostgreSQL is unusable: {exc}")
        pytest.skip(f"PostgreSQL is unusable: {exc}")
    url = make_url(_psycopg_url(postgres_admin_url)).set(database=name)
    plain = url.render_as_string(hide_password=False).replace(
        "postgresql+psycopg://", "postgresql://"
    )
    upgrade(Settings(database_url=plain).sqlalchemy_url)
    yield plain
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "analytics.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that asks for a database runs once on SQLite and once on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    engine = create_engine(Settings(database_url=url).sqlalchemy_url)
    with engine.begin() as conn:
        # The rollups too: the query API answers from them, so one test's rows would show in
        # the next test's answers.
        for table in (*TABLES, *ROLLUP_TABLES):
            conn.execute(text(f"DELETE FROM {table}"))
        # Keys left by one test would turn authentication on for the next.
        conn.execute(text("DELETE FROM api_keys"))
        # Alert rules left by one test would be evaluated by the next one's server.
        conn.execute(text("DELETE FROM alerts"))
        conn.execute(text("DELETE FROM alert_rules"))
        conn.execute(text("DELETE FROM projects WHERE id <> 1"))
    engine.dispose()
    return url


class Database:
    """Read access for assertions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(Settings(database_url=url).sqlalchemy_url)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def rows(self, table: str, where: str = "1=1", **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            result = conn.execute(text(f"SELECT * FROM {table} WHERE {where}"), params)
            return [dict(r._mapping) for r in result]

    def json(self, value: Any) -> Any:
        """A JSON column's value: PostgreSQL's driver decodes JSONB, SQLite returns text."""
        return value if self.is_postgres or value is None else json.loads(value)

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())

    def dump(self) -> str:
        """A real dump of the database (pg_dump, or SQLite's iterdump), for grepping."""
        if self.is_postgres:
            pg_dump = shutil.which("pg_dump") or next(
                iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), reverse=True)), None
            )
            assert pg_dump, "pg_dump is needed to dump the PostgreSQL test database"
            result = subprocess.run(
                [pg_dump, "--data-only", "--no-owner", self.url],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            return result.stdout
        import sqlite3

        path = make_url(self.engine.url).database
        assert path
        with sqlite3.connect(path) as conn:
            return "\n".join(conn.iterdump())

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.close()


class RunningServer:
    """The real App in its own thread and event loop, so blocking SDK clients can call it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.app: App | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.app = App(self.settings, health_interval=0.5)
            self.loop.run_until_complete(self.app.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> RunningServer:
        self.thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.app is not None and self.thread.is_alive():
            self.call(self.app.shutdown(grace=5))
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    @property
    def grpc_endpoint(self) -> str:
        assert self.app is not None
        return f"127.0.0.1:{self.app.grpc_port}"

    @property
    def http_url(self) -> str:
        assert self.app is not None
        scheme = "https" if self.settings.tls_enabled else "http"
        return f"{scheme}://127.0.0.1:{self.app.http_port}"


@pytest.fixture
def make_server(database_url: str) -> Iterator[Any]:
    """Start servers with chosen settings; all are stopped at the end of the test."""
    started: list[RunningServer] = []

    def make(**changes: Any) -> RunningServer:
        settings = Settings(database_url=database_url, port=0, http_port=0, log_level="WARNING")
        settings = settings.replace(**changes)
        server = RunningServer(settings).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Any) -> RunningServer:
    server: RunningServer = make_server()
    return server


@pytest.fixture
def pg_proxy(postgres_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A TCP proxy in front of the test PostgreSQL (cut it for an outage), and its URL."""
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    yield proxy, proxied
    proxy.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium through Playwright; skipped with the reason when missing
    (a failure under REQUIRE_BROWSER=1). Per module: Playwright's sync API keeps an event
    loop running in the main thread while it is open, which would break every asyncio test
    that runs after it."""
    yield from browser_helpers.chromium()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a database whose raw and rollup tables are empty (rollup and alert tests)."""
    from processor.storage.writer import create_db_engine
    from tests.helpers.rollups import clean

    eng = create_db_engine(Settings(database_url=database_url).sqlalchemy_url)
    clean(eng)
    yield eng
    eng.dispose()
