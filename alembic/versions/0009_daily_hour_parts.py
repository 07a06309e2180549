"""Cheaper rollup rounds for the two daily tables (issue 10): per-hour parts and exact day sets.

``feature_hour_parts`` and ``user_hour_parts`` hold each hour's additive part of a
``feature_usage_daily`` / ``user_activity_daily`` row; ``feature_day_users`` and
``user_day_sessions`` each day's exact users of a feature and session ids of a user. A round
then reads only its dirty hours' raw rows and builds day rows from the parts and sets, the way
endpoint day rows are built since revision 0008, instead of re-reading the whole day.

They are filled here from the raw rows already stored, so day rows recomputed after the
upgrade stay exact. Like endpoint_day_users they are the runner's bookkeeping: the reader role
is not granted them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def key(name: str, type_: sa.types.TypeEngine) -> sa.Column:
    return sa.Column(name, type_, primary_key=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "feature_hour_parts",
        key("project_id", sa.Integer()),
        key("bucket_start", TIME),
        key("feature_name", sa.String(255)),
        sa.Column("usage_count", sa.BigInteger(), nullable=False),
        sa.Column("duration_count", sa.BigInteger(), nullable=False),
        sa.Column("duration_sum_ms", sa.Double()),
        sa.Column("success_count", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "feature_day_users",
        key("project_id", sa.Integer()),
        key("day", sa.Date()),
        key("feature_name", sa.String(255)),
        key("user_id", sa.String(32)),
    )
    op.create_table(
        "user_hour_parts",
        key("project_id", sa.Integer()),
        key("bucket_start", TIME),
        key("user_id", sa.String(32)),
        key("kind", sa.String(50)),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("duration_sum_ms", sa.Double(), nullable=False),
        sa.Column("first_seen_at", TIME, nullable=False),
        sa.Column("last_seen_at", TIME, nullable=False),
    )
    op.create_index(
        "ix_user_hour_parts_user", "user_hour_parts", ["project_id", "user_id", "bucket_start"]
    )
    op.create_table(
        "user_day_sessions",
        key("project_id", sa.Integer()),
        key("day", sa.Date()),
        key("user_id", sa.String(32)),
        key("session_id", sa.String(32)),
    )
    _fill(op.get_bind().dialect.name == "postgresql")


def _fill(postgres: bool) -> None:
    if postgres:
        hour = "date_trunc('hour', timestamp AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        day = "CAST(timestamp AT TIME ZONE 'UTC' AS DATE)"
    else:  # SQLAlchemy's SQLite DATETIME text form, as the runner writes it
        hour = "substr(timestamp, 1, 13) || ':00:00.000000'"
        day = "substr(timestamp, 1, 10)"
    op.execute(
        "INSERT INTO feature_hour_parts (project_id, bucket_start, feature_name, usage_count,"
        " duration_count, duration_sum_ms, success_count)"
        f" SELECT project_id, {hour}, feature_name, count(*), count(duration_ms),"
        " sum(duration_ms), sum(CASE WHEN span_status = 'error' THEN 0 ELSE 1 END)"
        " FROM feature_usage GROUP BY 1, 2, 3"
    )
    op.execute(
        "INSERT INTO feature_day_users (project_id, day, feature_name, user_id)"
        f" SELECT DISTINCT project_id, {day}, feature_name, user_id FROM feature_usage"
        " WHERE user_id IS NOT NULL"
    )
    events = """
        SELECT project_id, timestamp, user_id, session_id, duration_ms, 'requests' AS kind
            FROM endpoint_usage WHERE user_id IS NOT NULL
        UNION ALL
        SELECT project_id, timestamp, user_id, session_id, duration_ms, 'features' AS kind
            FROM feature_usage WHERE user_id IS NOT NULL
        UNION ALL
        SELECT project_id, timestamp, user_id, session_id, CAST(NULL AS DOUBLE PRECISION),
            event_type FROM user_activity WHERE user_id IS NOT NULL"""
    op.execute(
        "INSERT INTO user_hour_parts (project_id, bucket_start, user_id, kind, event_count,"
        " duration_sum_ms, first_seen_at, last_seen_at)"
        f" SELECT project_id, {hour}, user_id, kind, count(*), coalesce(sum(duration_ms), 0),"
        f" min(timestamp), max(timestamp) FROM ({events}) e GROUP BY 1, 2, 3, 4"
    )
    op.execute(
        "INSERT INTO user_day_sessions (project_id, day, user_id, session_id)"
        f" SELECT DISTINCT project_id, {day}, user_id, session_id FROM ({events}) e"
        " WHERE session_id IS NOT NULL"
    )


def downgrade() -> None:
    for table in ("user_day_sessions", "user_hour_parts", "feature_day_users"):
        op.drop_table(table)
    op.drop_table("feature_hour_parts")
