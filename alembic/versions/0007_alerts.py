"""Alerts (SPEC §14): alert_rules (with each rule's evaluation state) and alerts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# As in 0001: JSON text on SQLite is declared TEXT, JSONB on PostgreSQL.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("project_id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("id", sa.Uuid(), primary_key=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("service_name", sa.String(255)),
        sa.Column("endpoint", sa.String(512)),
        sa.Column("op", sa.String(2), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("for_seconds", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("channels", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_since", TS),
        sa.Column("last_value", sa.Double()),
        sa.Column("last_evaluated_at", TS),
        sa.Column("last_error", sa.Text()),
        sa.UniqueConstraint("project_id", "name", name="uq_alert_rules_project_name"),
    )
    op.create_table(
        "alerts",
        sa.Column("project_id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("id", sa.Uuid(), primary_key=True, nullable=False),
        sa.Column("rule_id", sa.Uuid(), nullable=False),
        sa.Column("rule_name", sa.String(255), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("resolved_at", TS),
        sa.Column("acknowledged_at", TS),
        sa.Column("last_notified_at", TS),
        sa.Column("value", sa.Double()),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("notifications", JSON, nullable=False),
    )
    op.create_index("ix_alerts_project_rule_state", "alerts", ["project_id", "rule_id", "state"])
    op.create_index("ix_alerts_project_started", "alerts", ["project_id", "started_at"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("alert_rules")
