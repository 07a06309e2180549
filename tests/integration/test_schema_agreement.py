"""One schema: the migrations, the SQLAlchemy models and the row types describe the same tables.

Each test runs on SQLite and on PostgreSQL, against a database migrated to head by Alembic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from processor.mapping.rows import ROW_TYPES
from processor.settings import Settings
from processor.storage.migrate import compare_options
from processor.storage.schema import MODELS, RAW_TABLES, Base, UserProperty
from processor.storage.writer import COLUMNS


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(Settings(database_url=database_url).sqlalchemy_url)
    yield engine
    engine.dispose()


def test_models_match_the_migrated_database(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts=compare_options(conn.dialect.name))
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_row_types_have_their_tables_columns_in_order(engine):
    inspector = inspect(engine)
    for table, row_type in ROW_TYPES.items():
        fields = list(row_type._fields)  # type: ignore[attr-defined]
        # The database fills ingest_txid itself (last column): the writer never sends it.
        columns = [c["name"] for c in inspector.get_columns(table)]
        filled = ["ingest_txid"] if table in RAW_TABLES else []
        assert columns == fields + filled, table
        assert [c.name for c in Base.metadata.tables[table].columns] == fields + filled, table
        assert list(COLUMNS[table]) == fields, table


def test_every_analytics_model_has_a_row_type():
    assert {model.__tablename__ for model in MODELS} == set(ROW_TYPES)


def test_json_that_looks_like_a_number_stays_json_text(engine):
    """On SQLite a column declared JSON would turn the text '40' into the integer 40."""
    now = datetime.now(UTC)
    row = UserProperty(
        id=uuid.uuid4(),
        timestamp=now,
        user_id="u" * 32,
        property_key="age",
        property_value="40",
        updated_at=now,
    )
    with Session(engine) as session:
        session.add(row)
        session.commit()
        stored = session.scalars(select(UserProperty.property_value)).one()
        raw = session.execute(
            text("SELECT CAST(property_value AS TEXT), project_id FROM user_properties")
        ).one()
    assert stored == "40"
    assert tuple(raw) == ('"40"', 1)
