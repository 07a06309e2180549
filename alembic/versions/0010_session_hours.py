"""Bounded sessions round (issue 10): session_hours, each client session's per-hour partials.

A client may keep one session id for days; the round used to re-read every raw row between a
touched session's start and end (no index on session_id), so a long-lived id cost the whole
span. Now each dirty hour's raw rows update that hour's partials and the session row merges
its partials (see analytics/session_parts.py).

Sessions stored before this revision have no partials: every hour holding client-session
rows is marked dirty (as kind ``logs``, which only the sessions step reads), so the first
round builds the partials and rewrites those sessions from the raw rows still kept. Skipped
when no session was ever stored (a fresh or never-rolled-up database).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def key(name: str, type_: sa.types.TypeEngine) -> sa.Column:
    return sa.Column(name, type_, primary_key=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "session_hours",
        key("project_id", sa.Integer()),
        key("session_id", sa.String(32)),
        key("hour", TS),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("first_at", TS),
        sa.Column("last_at", TS),
        sa.Column("user_id", sa.String(32)),
        sa.Column("entry", sa.String(512)),
        sa.Column("exit", sa.String(512)),
        sa.Column("platform", sa.String(100)),
        sa.Column("platform_at", TS),
        sa.Column("platform_upto", sa.String(100)),
        sa.Column("platform_upto_at", TS),
        sa.Column("version", sa.String(100)),
        sa.Column("version_at", TS),
        sa.Column("version_upto", sa.String(100)),
        sa.Column("version_upto_at", TS),
    )
    op.create_index("ix_session_hours_project_hour", "session_hours", ["project_id", "hour"])
    op.create_index("ix_session_hours_user", "session_hours", ["user_id"])
    stored = op.get_bind().execute(sa.text("SELECT 1 FROM sessions LIMIT 1")).first()
    if stored is None:
        return
    for table in ("endpoint_usage", "feature_usage", "user_activity", "logs"):
        op.execute(
            "INSERT INTO rollup_invalidations (kind, project_id, bucket_start)"
            f" SELECT DISTINCT 'logs', project_id, {_hour('timestamp')} FROM {table}"
            " WHERE session_id IS NOT NULL"
        )


def _hour(column: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"date_trunc('hour', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    # SQLAlchemy's SQLite DATETIME text: 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return f"substr({column}, 1, 13) || ':00:00.000000'"


def downgrade() -> None:
    op.drop_table("session_hours")
