"""Fixtures for the pure unit tests: no server, no database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from processor.mapping import RouteContext
from processor.mapping.privacy import Hasher, make_hasher

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def h() -> Hasher:
    """The default (unkeyed) identifier hash, for computing expected column values."""
    return make_hasher()


@pytest.fixture
def ctx(h: Hasher) -> RouteContext:
    return RouteContext(hasher=h, project_id=1, now=NOW)
