"""What the test database holds, and holding its writes."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import make_url

from processor.mapping.rows import Batch
from processor.settings import Settings
from processor.storage.writer import SqlWriter, WriteResult, create_db_engine


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


def write_together(url: str, batches: Sequence[Batch], *, direct_copy: bool) -> list[WriteResult]:
    """Write ``batches`` through the real SqlWriter, all queued before it starts, so that one
    group commit takes them together (as concurrent requests are taken)."""

    async def go() -> list[WriteResult]:
        writer = SqlWriter(
            create_db_engine(Settings(database_url=url).sqlalchemy_url), direct_copy=direct_copy
        )
        writes = [asyncio.ensure_future(writer.write(b)) for b in batches]
        await asyncio.sleep(0)  # every write is queued
        await writer.start()
        try:
            return list(await asyncio.gather(*writes))
        finally:
            await writer.shutdown()

    return asyncio.run(go())


def metric(name: str, **labels: str) -> float:
    """A Prometheus sample of this process (the test servers run in it); 0 before any."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
