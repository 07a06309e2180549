"""What the test database holds, and holding its writes."""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Iterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url


def stored_counts(db: Any, table: str = "feature_usage") -> dict[str, int]:
    """How many rows ``table`` holds per span id (a retry must never make it 2)."""
    return dict(Counter(row["span_id"] for row in db.rows(table)))


@contextlib.contextmanager
def writes_held(db: Any, mode: str, table: str = "feature_usage") -> Iterator[None]:
    """Hold a lock that makes the processor's inserts into ``table`` wait until the block ends.

    ``mode`` is the PostgreSQL lock mode: SHARE blocks writes only; ACCESS EXCLUSIVE blocks
    reads of the table too. SQLite has one writer lock for the whole database (BEGIN
    IMMEDIATE), which blocks every write and no read, whatever ``mode`` says.
    """
    if db.is_postgres:
        with db.engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(text(f"LOCK TABLE {table} IN {mode} MODE"))
            try:
                yield
            finally:
                transaction.rollback()
    else:
        conn = sqlite3.connect(make_url(db.url).database or "", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
