"""Which columns each table's rows fill, and the keys that make a retried insert harmless."""

from __future__ import annotations

from sqlalchemy import Table

from processor.mapping.rows import ROW_TYPES
from processor.storage.schema import MODELS

COLUMNS = {table: row_type._fields for table, row_type in ROW_TYPES.items()}  # type: ignore[attr-defined]
UPSERT_KEY = {"user_properties": ("project_id", "user_id", "property_key")}
# The raw tables' primary keys (project_id, timestamp[, level], id): on a partitioned table a
# unique key must hold the partition key, so a retried row is recognised by all of it.
CONFLICT_KEY = {
    table.name: ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
    for table in (model.__table__ for model in MODELS)
    if isinstance(table, Table)
}
UPSERT_SET = ("timestamp", "trace_id", "span_id", "property_value", "updated_at")
