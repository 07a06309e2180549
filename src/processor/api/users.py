"""User properties (the Telling Logger's ``/users/{userId}/properties``), by hashed user id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Engine

from processor.api.params import BadParameter
from processor.api.sqlbits import as_utc
from processor.mapping.privacy import Hasher
from processor.mapping.telling_logger import MAX_USER_ID
from processor.storage.schema import UserProperty

PROPERTIES: Table = UserProperty.__table__  # type: ignore[assignment]


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
