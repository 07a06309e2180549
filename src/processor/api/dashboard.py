"""The Overview KPI tiles: the caller's project's rows of ``dashboard_metrics`` (SPEC §10),
as the rollup runner last wrote them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Engine

from processor.analytics.schema import DashboardMetric
from processor.api.sqlbits import as_utc, iso

TILES: Table = DashboardMetric.__table__  # type: ignore[assignment]


def dashboard_metrics(engine: Engine, project: int) -> list[dict[str, Any]]:
    c = TILES.c
    query = (
        select(c.widget_id, c.metric_key, c.value, c.previous_value, c.change_percent, c.updated_at)
        .where(c.project_id == project)
        .order_by(c.widget_id, c.metric_key)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "widget_id": widget,
            "metric_key": key,
            "value": value,
            "previous_value": previous,
            "change_percent": change,
            "updated_at": iso(as_utc(updated)),
        }
        for widget, key, value, previous, change, updated in rows
    ]
