"""Cheaper rollup rounds (issues 10, 11): endpoint_day_users (each day's exact user set per
endpoint, so day rows no longer re-read a day of raw rows) and endpoint_stats.users_sketch (a
HyperLogLog per row, so unique users over a range merge instead of COUNT DISTINCT on raw rows).

The set is filled here from the raw rows already stored, so day rows recomputed after the
upgrade stay exact. Existing rows get no users sketch: ranges touching them count their users
from raw rows, as before, until ``telemetry-processor rollup --rebuild`` writes the sketches.
The set is the runner's bookkeeping, like rollup_invalidations: the reader role (SQL endpoint,
analysts' roles) is not granted it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def key(name: str, type_: sa.types.TypeEngine) -> sa.Column:
    return sa.Column(name, type_, primary_key=True, nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("endpoint_stats") as batch:
        batch.add_column(sa.Column("users_sketch", sa.LargeBinary()))
    op.create_table(
        "endpoint_day_users",
        key("project_id", sa.Integer()),
        key("day", sa.Date()),
        key("service_name", sa.String(255)),
        key("endpoint", sa.String(512)),
        key("method", sa.String(16)),
        key("user_id", sa.String(32)),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    day = "CAST(timestamp AT TIME ZONE 'UTC' AS DATE)" if postgres else "substr(timestamp, 1, 10)"
    op.execute(
        "INSERT INTO endpoint_day_users"
        " (project_id, day, service_name, endpoint, method, user_id)"
        f" SELECT DISTINCT project_id, {day}, coalesce(service_name, ''), endpoint, method,"
        " user_id FROM endpoint_usage WHERE user_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("endpoint_day_users")
    with op.batch_alter_table("endpoint_stats") as batch:
        batch.drop_column("users_sketch")
