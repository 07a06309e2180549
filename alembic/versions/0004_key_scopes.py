"""API key scopes; on PostgreSQL, a SELECT-only reader role held to one project by RLS.

- ``api_keys.scope``: ``ingest`` (OTLP and the JSON ingestion APIs), ``read`` (the query API),
  ``admin`` (both). Existing keys become ``ingest``.
- PostgreSQL only: the NOLOGIN role ``processor_reader`` with SELECT on the analytics tables
  and nothing else (no TEMP, no other table), row-level-security policies on ``project_id``
  for it and its members, and the function that names the project a reader may see:
  * for an analyst's LOGIN role (``telemetry-processor analysts grant``): the project
    recorded for that ``session_user`` in ``analyst_roles`` (a SET cannot change it);
  * for the server's ``POST /api/v1/query`` (SET LOCAL ROLE processor_reader): the
    transaction setting ``processor.project``, valid only as ``ID:sha256(secret:ID)`` with
    the secret of ``query_secret``, which the reader cannot read. Changing the setting,
    resetting it or guessing another id leaves the reader with no rows.
  The service's own database user owns the tables, so RLS does not apply to ingestion.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

READER = "processor_reader"
# Tables the reader may SELECT; each gets the project policy. Rollup tables add themselves.
READABLE = (
    "endpoint_usage",
    "feature_usage",
    "user_activity",
    "logs",
    "performance_metrics",
    "user_properties",
)

CREATE_READER = f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER}') THEN
    BEGIN
      CREATE ROLE {READER} NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;  -- another database's migration created it at the same moment
    END;
  END IF;
END $$;
"""

PROJECT_FUNCTION = f"""
CREATE FUNCTION processor_rls_project() RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
  granted integer;
  token text;
  claimed text;
  key text;
BEGIN
  SELECT a.project_id INTO granted FROM public.analyst_roles a WHERE a.role_name = session_user;
  IF FOUND THEN
    RETURN granted;
  END IF;
  token := current_setting('processor.project', true);
  IF token IS NULL OR token !~ '^[0-9]{{1,9}}:[0-9a-f]{{64}}$' THEN
    RETURN NULL;
  END IF;
  claimed := split_part(token, ':', 1);
  SELECT s.secret INTO key FROM public.query_secret s LIMIT 1;
  IF key IS NOT NULL AND split_part(token, ':', 2)
     = encode(sha256(convert_to(key || ':' || claimed, 'UTF8')), 'hex') THEN
    RETURN claimed::integer;
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION processor_rls_project() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION processor_rls_project() TO {READER};
"""


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("scope", sa.String(16), nullable=False, server_default="ingest"),
    )
    op.create_table(
        "analyst_roles",
        sa.Column("role_name", sa.String(63), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_table("query_secret", sa.Column("secret", sa.Text(), nullable=False))
    op.execute(
        "INSERT INTO query_secret (secret)"
        " SELECT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')"
    )
    op.execute(CREATE_READER)
    # The service's user switches to the reader with SET LOCAL ROLE for POST /api/v1/query.
    op.execute(f"GRANT {READER} TO CURRENT_USER")
    # No temporary tables for the reader (TEMP comes from PUBLIC, so it is taken from PUBLIC
    # on this database and given back to the service's user).
    op.execute(
        "DO $$ BEGIN"
        " EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());"
        " EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO CURRENT_USER', current_database());"
        " END $$;"
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {READER}")
    op.execute(PROJECT_FUNCTION)
    for table in READABLE:
        op.execute(f"GRANT SELECT ON {table} TO {READER}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY project_isolation ON {table} FOR SELECT TO {READER}"
            " USING (project_id = (SELECT processor_rls_project()))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in READABLE:
            op.execute(f"DROP POLICY IF EXISTS project_isolation ON {table}")
            op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
            op.execute(f"REVOKE ALL ON {table} FROM {READER}")
        op.execute("DROP FUNCTION IF EXISTS processor_rls_project()")
        op.execute(f"REVOKE USAGE ON SCHEMA public FROM {READER}")
        op.execute(
            "DO $$ BEGIN"
            " EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());"
            " END $$;"
        )
        # The role is shared by every database of the cluster: it stays.
        op.drop_table("query_secret")
    op.drop_table("analyst_roles")
    op.drop_column("api_keys", "scope")
