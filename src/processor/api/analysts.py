"""Direct database access for analysts (psql, Grafana, Metabase): PostgreSQL LOGIN roles that
row-level security holds to one project.

``grant`` creates a role ``analyst_<project>_<random>`` with a random password, a member of
``processor_reader`` (SELECT on the analytics tables only, no TEMP), and records it in
``analyst_roles``, which the RLS function of migration 0004 reads by ``session_user``: the
role sees its project's rows and nothing else, whatever it SETs. ``revoke`` drops it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg import sql
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine, make_url

from processor.api.sql_runner import READER_ROLE
from processor.storage import admin
from processor.storage.schema import AnalystRole

ROLE_PATTERN = re.compile(r"^analyst_[a-z0-9_]{1,40}_[0-9a-f]{6}$")


class AnalystError(ValueError):
    """The grant or revoke cannot be done; the message says why."""


@dataclass(frozen=True)
class Grant:
    role: str
    password: str
    project_id: int
    url: str


def _quote(engine: Engine, statement: sql.Composable) -> str:
    raw = engine.raw_connection()
    try:
        return statement.as_string(raw.driver_connection)
    finally:
        raw.close()


def grant(engine: Engine, project: str) -> Grant:
    if engine.dialect.name != "postgresql":
        raise AnalystError("analyst roles need PostgreSQL (SQLite has no roles)")
    pid = admin.project_id(engine, project)
    if pid is None:
        raise AnalystError(f"no project named {project!r}")
    slug = re.sub(r"[^a-z0-9_]+", "_", project.lower()).strip("_")[:40] or "project"
    role = f"analyst_{slug}_{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(24)
    create = _quote(
        engine,
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
            sql.Identifier(role), sql.Literal(password), sql.Identifier(READER_ROLE)
        ),
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(create)
        conn.execute(
            insert(AnalystRole).values(role_name=role, project_id=pid, created_at=datetime.now(UTC))
        )
    url = make_url(engine.url).set(drivername="postgresql", username=role, password=password)
    return Grant(role, password, pid, url.render_as_string(hide_password=False))


def revoke(engine: Engine, role: str) -> None:
    if engine.dialect.name != "postgresql":
        raise AnalystError("analyst roles need PostgreSQL (SQLite has no roles)")
    with engine.begin() as conn:
        found = conn.execute(
            select(AnalystRole.role_name).where(AnalystRole.role_name == role)
        ).scalar_one_or_none()
        if found is None or not ROLE_PATTERN.match(role):
            raise AnalystError(f"{role!r} is not an analyst role granted here")
        conn.execute(delete(AnalystRole).where(AnalystRole.role_name == role))
        conn.exec_driver_sql(_quote(engine, sql.SQL("DROP ROLE {}").format(sql.Identifier(role))))


def list_roles(engine: Engine) -> list[tuple[str, int, datetime]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(AnalystRole.role_name, AnalystRole.project_id, AnalystRole.created_at).order_by(
                AnalystRole.created_at
            )
        )
        return [(r, int(p), c) for r, p, c in rows]
