"""The six analytics tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# JSON text on SQLite is declared TEXT: a column declared JSON gets NUMERIC affinity there,
# which would turn the JSON text '40' into the integer 40.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")
TS = sa.DateTime(timezone=True)


def common() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("project_id", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("timestamp", TS, nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("span_id", sa.String(16)),
    ]


def identity(org: bool = True) -> list[sa.Column]:
    cols = [sa.Column("user_id", sa.String(32))]
    if org:
        cols.append(sa.Column("organization_id", sa.String(32)))
    cols.append(sa.Column("session_id", sa.String(32)))
    return cols


def upgrade() -> None:
    is_pg = op.get_bind().dialect.name == "postgresql"

    op.create_table(
        "endpoint_usage",
        *common(),
        sa.Column("endpoint", sa.String(512), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        *identity(),
        sa.Column("status_code", sa.Integer()),
        sa.Column("duration_ms", sa.Double()),
        sa.Column("service_name", sa.String(255)),
        sa.Column("deployment_type", sa.String(50)),
        sa.Column("event_metadata", JSON),
    )
    op.create_index("ix_endpoint_usage_project_time", "endpoint_usage", ["project_id", "timestamp"])
    op.create_index(
        "ix_endpoint_usage_project_endpoint_time",
        "endpoint_usage",
        ["project_id", "endpoint", "timestamp"],
    )
    op.create_index(
        "ix_endpoint_usage_project_user_time",
        "endpoint_usage",
        ["project_id", "user_id", "timestamp"],
    )

    op.create_table(
        "feature_usage",
        *common(),
        sa.Column("feature_name", sa.String(255), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        *identity(),
        sa.Column("duration_ms", sa.Double()),
        sa.Column("service_name", sa.String(255)),
        sa.Column("deployment_type", sa.String(50)),
        sa.Column("event_metadata", JSON),
    )
    op.create_index("ix_feature_usage_project_time", "feature_usage", ["project_id", "timestamp"])
    op.create_index(
        "ix_feature_usage_project_feature_time",
        "feature_usage",
        ["project_id", "feature_name", "timestamp"],
    )
    op.create_index(
        "ix_feature_usage_project_user_time",
        "feature_usage",
        ["project_id", "user_id", "timestamp"],
    )

    op.create_table(
        "user_activity",
        *common(),
        sa.Column("event_type", sa.String(50), nullable=False),
        *identity(),
        sa.Column("service_name", sa.String(255)),
        sa.Column("deployment_type", sa.String(50)),
        sa.Column("event_metadata", JSON),
    )
    op.create_index("ix_user_activity_project_time", "user_activity", ["project_id", "timestamp"])
    op.create_index(
        "ix_user_activity_project_type_time",
        "user_activity",
        ["project_id", "event_type", "timestamp"],
    )
    op.create_index(
        "ix_user_activity_project_user_time",
        "user_activity",
        ["project_id", "user_id", "timestamp"],
    )

    op.create_table(
        "logs",
        *common(),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("severity_number", sa.Integer()),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("stack_trace", sa.Text()),
        *identity(org=False),
        sa.Column("service_name", sa.String(255)),
        sa.Column("device_platform", sa.String(100)),
        sa.Column("device_os_version", sa.String(100)),
        sa.Column("device_model", sa.String(255)),
        sa.Column("app_version", sa.String(100)),
        sa.Column("app_build_number", sa.String(100)),
        sa.Column("metadata", JSON),
        sa.Column("observed_timestamp", TS),
    )
    op.create_index("ix_logs_project_time", "logs", ["project_id", "timestamp"])
    op.create_index("ix_logs_project_level_time", "logs", ["project_id", "level", "timestamp"])
    op.create_index("ix_logs_project_type_time", "logs", ["project_id", "type", "timestamp"])
    op.create_index("ix_logs_project_user_time", "logs", ["project_id", "user_id", "timestamp"])
    op.create_index("ix_logs_project_session", "logs", ["project_id", "session_id"])

    op.create_table(
        "performance_metrics",
        *common(),
        sa.Column("metric_type", sa.String(255), nullable=False),
        sa.Column("value", sa.Double()),
        sa.Column("unit", sa.String(64)),
        *identity(org=False),
        sa.Column("service_name", sa.String(255)),
        sa.Column("app_version", sa.String(100)),
        sa.Column("metadata", JSON),
    )
    op.create_index(
        "ix_performance_metrics_project_time", "performance_metrics", ["project_id", "timestamp"]
    )
    op.create_index(
        "ix_performance_metrics_project_metric_time",
        "performance_metrics",
        ["project_id", "metric_type", "timestamp"],
    )
    op.create_index(
        "ix_performance_metrics_project_user_time",
        "performance_metrics",
        ["project_id", "user_id", "timestamp"],
    )

    op.create_table(
        "user_properties",
        *common(),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("property_key", sa.String(255), nullable=False),
        sa.Column("property_value", JSON, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "user_id", "property_key", name="uq_user_properties_key"),
    )
    op.create_index(
        "ix_user_properties_project_key", "user_properties", ["project_id", "property_key"]
    )

    if is_pg:
        # Analysts filter on JSON keys in logs and user properties.
        op.create_index(
            "ix_logs_metadata",
            "logs",
            ["metadata"],
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        )
        op.create_index(
            "ix_user_properties_value",
            "user_properties",
            ["property_value"],
            postgresql_using="gin",
        )


def downgrade() -> None:
    for table in (
        "user_properties",
        "performance_metrics",
        "logs",
        "user_activity",
        "feature_usage",
        "endpoint_usage",
    ):
        op.drop_table(table)
