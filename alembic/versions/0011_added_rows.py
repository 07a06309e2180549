"""Rollup rounds that add new rows instead of re-reading their hours (issue 10).

- Raw tables get ``ingest_txid``: on PostgreSQL the top-level transaction that inserted the
  row (``pg_current_xact_id()``, the same inside the writer's savepoints), filled by the
  database; the invalidation markers get the same value in ``txid``. A round claims markers
  and reads only the rows of their transactions, within the minutes the markers name.
  Existing rows keep NULL (they are rolled up already). SQLite: the columns stay NULL and
  rounds recompute dirty hours as before.
- ``endpoint_hour_users``: the users of an open hour's endpoint row, while added rows
  maintain it (a new user adds one to ``unique_users``).
- ``endpoint_stats.percentiles_exact``: false while an open hour's percentiles come from its
  merged sketch; the round after the hour closes sets them from the raw rows.

Adding a nullable column without default and then setting the default rewrites no table.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

RAW_TABLES = ("endpoint_usage", "feature_usage", "user_activity", "logs", "performance_metrics")
TXID = "(pg_current_xact_id())::text::bigint"


def key(name: str, type_: sa.types.TypeEngine) -> sa.Column:
    return sa.Column(name, type_, primary_key=True, nullable=False)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, column in (
        *((t, "ingest_txid") for t in RAW_TABLES),
        ("rollup_invalidations", "txid"),
    ):
        op.add_column(table, sa.Column(column, sa.BigInteger()))
        if postgres:  # reaches the existing partitions too
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {TXID}")
    op.add_column(
        "endpoint_stats",
        sa.Column(
            "percentiles_exact", sa.Boolean(), nullable=False, server_default=sa.text("true")
        ),
    )
    op.execute("UPDATE endpoint_stats SET percentiles_exact = false WHERE period = 'day'")
    op.create_table(
        "endpoint_hour_users",
        key("project_id", sa.Integer()),
        key("hour", sa.DateTime(timezone=True)),
        key("service_name", sa.String(255)),
        key("endpoint", sa.String(512)),
        key("method", sa.String(16)),
        key("user_id", sa.String(32)),
    )


def downgrade() -> None:
    op.drop_table("endpoint_hour_users")
    op.drop_column("endpoint_stats", "percentiles_exact")
    for table in (*RAW_TABLES, "rollup_invalidations"):
        op.drop_column(table, "txid" if table == "rollup_invalidations" else "ingest_txid")
