"""Alembic environment: runs migrations against the service's configured database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, event, pool

from processor.storage.migrate import compare_options
from processor.storage.schema import Base

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from processor.settings import Settings

    return Settings.from_env().sqlalchemy_url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            **compare_options(connection.dialect.name),
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        # Only a database without tables takes this (an existing one needs a VACUUM): it
        # lets retention give freed pages back with PRAGMA incremental_vacuum.
        def incremental(conn: object, _record: object) -> None:
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:  # type: ignore[attr-defined]
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # type: ignore[attr-defined]

        event.listen(engine, "connect", incremental)
    with engine.connect() as conn:
        context.configure(
            connection=conn, target_metadata=target_metadata, **compare_options(conn.dialect.name)
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
