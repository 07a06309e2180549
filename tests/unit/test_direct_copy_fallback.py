"""Which failures of a direct COPY send its rows to the staging path (storage/postgres_copy.py):
only those about the rows. Anything else must fail the transaction, so the client retries."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from processor.storage.postgres_copy import fallback_reason


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (errors.lookup("23505")("duplicate key"), "conflict"),  # a retried or repeated row
        (errors.lookup("22P02")("invalid input syntax for type json"), "data"),
        (errors.lookup("22021")("invalid byte sequence"), "data"),
        (errors.lookup("23514")("violates check constraint"), "data"),
        (errors.lookup("23502")("null value"), "data"),
        (errors.lookup("0A000")("COPY FROM not supported with row-level security"), "unsupported"),
        (psycopg.DataError("int too large for int4"), "data"),  # raised client-side
        (ValueError("badly formed hexadecimal UUID string"), "data"),  # from a dumper
        (errors.lookup("40P01")("deadlock detected"), None),
        (errors.lookup("57014")("canceling statement due to user request"), None),
        (errors.lookup("42P01")("relation does not exist"), None),
        (errors.lookup("08006")("connection failure"), None),
        (psycopg.OperationalError("consuming input failed"), None),
        (RuntimeError("a bug"), None),
    ],
    ids=lambda v: v if isinstance(v, str | type(None)) else type(v).__name__,
)
def test_only_failures_about_the_rows_take_the_staging_path(
    exc: BaseException, reason: str | None
) -> None:
    assert fallback_reason(exc) == reason
