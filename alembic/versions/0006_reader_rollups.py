"""The reader role may SELECT the rollup tables too, held to one project by the same policy:
the SQL endpoint (POST /api/v1/query) and analysts' login roles see the rollups of their
project only. The invalidation log is the runner's bookkeeping, not an answer: it stays
unreadable.

Grafana's analytics dashboard reads endpoint_stats and the other rollups through an analyst
role (``telemetry-processor analysts grant``); migration 0004 granted the raw tables only.
PostgreSQL only; SQLite has no roles.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

READER = "processor_reader"
ROLLUPS = (
    "endpoint_stats",
    "metric_aggregates",
    "feature_usage_daily",
    "user_activity_daily",
    "sessions",
    "funnels",
    "dashboard_metrics",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ROLLUPS:
        op.execute(f"GRANT SELECT ON {table} TO {READER}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY project_isolation ON {table} FOR SELECT TO {READER}"
            " USING (project_id = (SELECT processor_rls_project()))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ROLLUPS:
        op.execute(f"DROP POLICY IF EXISTS project_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {READER}")
