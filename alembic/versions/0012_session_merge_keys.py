"""Mergeable session partials (issue 10, rounds that add new rows): sort keys in session_hours.

A round on PostgreSQL now adds the partials of only the rows written since the last round to
the stored ones, so each chosen value of a partial (first user, entry, exit; latest platform
and app version) is stored with the sort key of the row it came from, which decides it in a
merge (see analytics/session_parts.py). The platform and app version of a client session
become the latest among all its logs, so the per-hour ``*_at`` and ``*_upto*`` columns go.

The stored partials have no keys: they are dropped, and as revision 0010 did, every hour
holding client-session rows is marked dirty (kind ``logs``, which only the sessions step
reads), so the first round rebuilds the partials and rewrites those sessions from the raw
rows still kept. Skipped when no partial was stored.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

KEY = sa.String(64)
GONE = ("platform_at", "platform_upto", "platform_upto_at")
GONE_VERSION = ("version_at", "version_upto", "version_upto_at")
KEYS = ("user_key", "entry_key", "exit_key", "platform_key", "version_key")


def upgrade() -> None:
    bind = op.get_bind()
    stored = bind.execute(sa.text("SELECT 1 FROM session_hours LIMIT 1")).first()
    op.execute("DELETE FROM session_hours")
    with op.batch_alter_table("session_hours") as batch:
        for name in (*GONE, *GONE_VERSION):
            batch.drop_column(name)
        for name in KEYS:
            batch.add_column(sa.Column(name, KEY))
    if stored is None:
        return
    for table in ("endpoint_usage", "feature_usage", "user_activity", "logs"):
        op.execute(
            "INSERT INTO rollup_invalidations (kind, project_id, bucket_start, txid)"
            f" SELECT DISTINCT 'logs', project_id, {_hour('timestamp')}, NULL FROM {table}"
            " WHERE session_id IS NOT NULL"
        )


def _hour(column: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"date_trunc('hour', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    # SQLAlchemy's SQLite DATETIME text: 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return f"substr({column}, 1, 13) || ':00:00.000000'"


def downgrade() -> None:
    # The old partials cannot be derived from the new ones: rebuilt from the raw rows.
    stored = op.get_bind().execute(sa.text("SELECT 1 FROM session_hours LIMIT 1")).first()
    op.execute("DELETE FROM session_hours")
    time = sa.DateTime(timezone=True)
    with op.batch_alter_table("session_hours") as batch:
        for name in KEYS:
            batch.drop_column(name)
        batch.add_column(sa.Column("platform_at", time))
        batch.add_column(sa.Column("platform_upto", sa.String(100)))
        batch.add_column(sa.Column("platform_upto_at", time))
        batch.add_column(sa.Column("version_at", time))
        batch.add_column(sa.Column("version_upto", sa.String(100)))
        batch.add_column(sa.Column("version_upto_at", time))
    if stored is not None:
        for table in ("endpoint_usage", "feature_usage", "user_activity", "logs"):
            op.execute(
                "INSERT INTO rollup_invalidations (kind, project_id, bucket_start, txid)"
                f" SELECT DISTINCT 'logs', project_id, {_hour('timestamp')}, NULL FROM {table}"
                " WHERE session_id IS NOT NULL"
            )
