"""The schema comes only from Alembic: migrate.sh, upgrade and downgrade on a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, inspect

from processor.mapping.rows import TABLES
from processor.storage.migrate import alembic_config

ROOT = Path(__file__).resolve().parents[2]


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrate_sh_creates_every_table(tmp_path):
    url = f"sqlite:///{tmp_path}/fresh.db"
    env = {
        **os.environ,
        "ANALYTICS_DATABASE_URL": url,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    subprocess.run(["sh", str(ROOT / "migrate.sh")], env=env, check=True, timeout=120)
    assert {*TABLES, "projects", "api_keys", "alembic_version"} <= tables(url)


def test_downgrade_to_base_and_upgrade_again(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path}/roundtrip.db"
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    assert tables(url) <= {"alembic_version"}
    command.upgrade(config, "head")
    assert set(TABLES) <= tables(url)


def test_postgres_round_trip_on_a_fresh_database(postgres_admin_url):
    import uuid

    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from processor.settings import Settings

    admin_url = Settings(database_url=postgres_admin_url).sqlalchemy_url
    name = f"tp_migrate_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        config = alembic_config(url)
        command.upgrade(config, "head")
        assert {*TABLES, "projects", "api_keys"} <= tables(url)
        engine = create_engine(url)
        with engine.connect() as conn:
            kinds = dict(
                conn.execute(
                    text(
                        "SELECT column_name, data_type FROM information_schema.columns"
                        " WHERE table_name = 'logs'"
                    )
                ).all()
            )
            gin = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_logs_metadata'")
            ).scalar_one()
        engine.dispose()
        assert kinds["metadata"] == "jsonb"
        assert kinds["timestamp"] == "timestamp with time zone"
        assert kinds["id"] == "uuid"
        assert "gin" in gin.lower()
        command.downgrade(config, "base")
        assert tables(url) <= {"alembic_version"}
        command.upgrade(config, "head")
        assert set(TABLES) <= tables(url)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
