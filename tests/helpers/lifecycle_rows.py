"""Raw rows at chosen times, written straight to the tables (retention and partition tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from processor.storage.schema import MODELS

TABLES = {model.__tablename__: model.__table__ for model in MODELS}
REQUIRED: dict[str, dict[str, Any]] = {
    "endpoint_usage": {"endpoint": "/items", "method": "GET"},
    "feature_usage": {"feature_name": "export", "action": "used"},
    "user_activity": {"event_type": "login"},
    "logs": {"level": "info", "type": "general", "message": "hello"},
    "performance_metrics": {"metric_type": "fps", "value": 60.0},
    "user_properties": {"property_key": "plan", "property_value": '"pro"'},
}


def days_ago(days: float, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=days)


def add_rows(engine: Engine, table: str, times: list[datetime], **values: Any) -> None:
    """One row per time, with the table's required columns filled in."""
    rows = []
    for moment in times:
        row = {
            "id": uuid.uuid4(),
            "project_id": 1,
            "timestamp": moment.astimezone(UTC),
            **REQUIRED[table],
            **values,
        }
        if table == "user_properties":
            row.setdefault("user_id", uuid.uuid4().hex[:16])
            row["updated_at"] = row["timestamp"]
        rows.append(row)
    with engine.begin() as conn:
        conn.execute(insert(TABLES[table]), rows)


def count(engine: Engine, table: str, **equal: Any) -> int:
    t = TABLES[table]
    query = select(func.count()).select_from(t)
    for column, value in equal.items():
        query = query.where(t.c[column] == value)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
