"""User properties (the Telling Logger's ``/users/{userId}/properties``), by hashed user id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Engine

from processor.api.params import BadParameter
from processor.api.sqlbits import as_utc
from processor.mapping.identity import USER_PROPERTY_MAP, RouteContext, user_property_rows
from processor.mapping.privacy import Hasher
from processor.mapping.rows import Batch
from processor.storage.schema import UserProperty

PROPERTIES: Table = UserProperty.__table__  # type: ignore[assignment]
MAX_USER_ID = 512


def user_hash(hasher: Hasher, raw: str, name: str = "userId") -> str:
    if not raw or len(raw) > MAX_USER_ID or "\x00" in raw:
        raise BadParameter(name, f"must be 1 to {MAX_USER_ID} characters, without NUL")
    return hasher(raw)


def get_properties(
    engine: Engine, project: int, hashed: str
) -> tuple[dict[str, Any], datetime] | None:
    c = PROPERTIES.c
    query = (
        select(c.property_key, c.property_value, c.updated_at)
        .where(c.project_id == project, c.user_id == hashed)
        .order_by(c.property_key)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        return None
    return {k: v for k, v, _ in rows}, max(as_utc(u) for _, _, u in rows)


def property_batch(
    properties: Any, hashed: str, project: int, hasher: Hasher, max_properties: int
) -> Batch:
    """The rows that set ``properties`` now, the same way ingestion stores them (values
    scrubbed of e-mails and addresses, newest write wins)."""
    if not isinstance(properties, dict):
        raise BadParameter("properties", "must be a JSON object")
    if len(properties) > max_properties:
        raise BadParameter("properties", f"at most {max_properties} properties per request")
    for key in properties:
        if not key or "\x00" in key:
            raise BadParameter("properties", "keys must be non-empty, without NUL")
    now = datetime.now(UTC)
    ctx = RouteContext(hasher=hasher, project_id=project, now=now)
    batch = Batch()
    batch.received = len(properties)
    rows = user_property_rows({USER_PROPERTY_MAP: properties}, hashed, now, (None, None), ctx)
    batch.rows["user_properties"].extend(rows)
    return batch
