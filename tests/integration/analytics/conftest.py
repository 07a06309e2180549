"""Rollup fixtures; the helpers they share with the tests are in tests/helpers/rollups.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from processor.settings import Settings
from processor.storage.writer import create_db_engine
from tests.helpers.rollups import clean


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a database whose raw and rollup tables are empty."""
    eng = create_db_engine(Settings(database_url=database_url).sqlalchemy_url)
    clean(eng)
    yield eng
    eng.dispose()
