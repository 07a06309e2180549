"""The rollup tables become readable by the SQL endpoint's reader role, held to one project.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

PostgreSQL only: SELECT on the project-scoped rollup tables of SPEC §10 for
``processor_reader`` (and so for analysts' login roles, its members), with the same
row-level-security policy 0004 gives the raw tables. The invalidation log is the runner's
bookkeeping, not an answer: it stays unreadable.
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
