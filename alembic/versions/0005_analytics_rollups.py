"""Analytics rollups (SPEC §10): rollup tables, the invalidation log, raw span_status.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# As in 0001: JSON text on SQLite is declared TEXT, JSONB on PostgreSQL.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")
TS = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def key(name: str, type_: sa.types.TypeEngine) -> sa.Column:
    return sa.Column(name, type_, primary_key=True, nullable=False)


def upgrade() -> None:
    for table in ("endpoint_usage", "feature_usage"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("span_status", sa.String(8)))

    op.create_table(
        "rollup_invalidations",
        sa.Column("id", BIGID, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("bucket_start", TS, nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now()),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "endpoint_stats",
        key("project_id", sa.Integer()),
        key("period", sa.String(8)),
        key("bucket_start", TS),
        key("service_name", sa.String(255)),
        key("endpoint", sa.String(512)),
        key("method", sa.String(16)),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("error_count", sa.BigInteger(), nullable=False),
        sa.Column("client_error_count", sa.BigInteger(), nullable=False),
        sa.Column("duration_sum_ms", sa.Double()),
        sa.Column("duration_min_ms", sa.Double()),
        sa.Column("duration_max_ms", sa.Double()),
        sa.Column("p50_ms", sa.Double()),
        sa.Column("p90_ms", sa.Double()),
        sa.Column("p95_ms", sa.Double()),
        sa.Column("p99_ms", sa.Double()),
        sa.Column("unique_users", sa.BigInteger(), nullable=False),
        sa.Column("latency_sketch", sa.LargeBinary()),
    )
    op.create_index(
        "ix_endpoint_stats_project_endpoint",
        "endpoint_stats",
        ["project_id", "endpoint", "period", "bucket_start"],
    )

    op.create_table(
        "metric_aggregates",
        key("project_id", sa.Integer()),
        key("name", sa.String(255)),
        key("period_type", sa.String(8)),
        key("period_start", TS),
        key("service_name", sa.String(255)),
        key("unit", sa.String(64)),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Double(), nullable=False),
        sa.Column("min", sa.Double(), nullable=False),
        sa.Column("max", sa.Double(), nullable=False),
        sa.Column("avg", sa.Double(), nullable=False),
        sa.Column("p50", sa.Double()),
        sa.Column("p90", sa.Double()),
        sa.Column("p95", sa.Double()),
        sa.Column("p99", sa.Double()),
        sa.Column("sketch", sa.LargeBinary()),
    )
    op.create_index(
        "ix_metric_aggregates_period",
        "metric_aggregates",
        ["project_id", "period_type", "period_start"],
    )

    op.create_table(
        "feature_usage_daily",
        key("project_id", sa.Integer()),
        key("date", sa.Date()),
        key("feature_name", sa.String(255)),
        sa.Column("usage_count", sa.BigInteger(), nullable=False),
        sa.Column("unique_users", sa.BigInteger(), nullable=False),
        sa.Column("avg_duration_ms", sa.Double()),
        sa.Column("success_rate", sa.Double()),
    )

    op.create_table(
        "user_activity_daily",
        key("project_id", sa.Integer()),
        key("date", sa.Date()),
        key("user_id", sa.String(32)),
        sa.Column("session_count", sa.Integer(), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("total_duration_ms", sa.Double(), nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("events_breakdown", JSON),
    )
    op.create_index(
        "ix_user_activity_daily_user", "user_activity_daily", ["project_id", "user_id", "date"]
    )

    op.create_table(
        "sessions",
        key("project_id", sa.Integer()),
        key("session_id", sa.String(32)),
        sa.Column("user_id", sa.String(32)),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("device_platform", sa.String(100)),
        sa.Column("app_version", sa.String(100)),
        sa.Column("entry", sa.String(512)),
        sa.Column("exit", sa.String(512)),
    )
    op.create_index("ix_sessions_project_started", "sessions", ["project_id", "started_at"])
    op.create_index("ix_sessions_project_user", "sessions", ["project_id", "user_id", "started_at"])

    op.create_table(
        "funnels",
        key("project_id", sa.Integer()),
        key("id", sa.Uuid()),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("steps", JSON, nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_funnels_project_name"),
    )

    op.create_table(
        "dashboard_metrics",
        key("project_id", sa.Integer()),
        key("widget_id", sa.String(64)),
        key("metric_key", sa.String(64)),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("previous_value", sa.Double()),
        sa.Column("change_percent", sa.Double()),
        sa.Column("updated_at", TS, nullable=False),
    )

    # Rows stored before this revision get their buckets computed by the first round.
    for kind in ("endpoint_usage", "feature_usage", "user_activity", "performance_metrics"):
        op.execute(
            f"INSERT INTO rollup_invalidations (kind, project_id, bucket_start) "
            f"SELECT DISTINCT '{kind}', project_id, {_hour('timestamp')} FROM {kind}"
        )


def _hour(column: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"date_trunc('hour', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    # SQLAlchemy's SQLite DATETIME text: 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return f"substr({column}, 1, 13) || ':00:00.000000'"


def downgrade() -> None:
    for table in (
        "dashboard_metrics",
        "funnels",
        "sessions",
        "user_activity_daily",
        "feature_usage_daily",
        "metric_aggregates",
        "endpoint_stats",
        "rollup_invalidations",
    ):
        op.drop_table(table)
    for table in ("feature_usage", "endpoint_usage"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("span_status")
