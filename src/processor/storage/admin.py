"""Projects, API keys and the right to be forgotten: database operations for the CLI and auth."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Table, delete, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine

from processor.analytics import invalidations
from processor.analytics.runner import ROLLUP_LOCK_KEY
from processor.analytics.schema import (
    EndpointDayUser,
    EndpointHourUser,
    FeatureDayUser,
    Session,
    SessionHour,
    UserActivityDaily,
    UserDaySession,
    UserHourPart,
)
from processor.analytics.sqlparts import Sql, as_hour
from processor.ingest.auth import INGEST, SCOPES, key_digest
from processor.ops.scheduler import job_lock
from processor.storage.schema import MODELS, ApiKey, Project

log = structlog.get_logger(__name__)

# Rollup tables that hold a user id: their rows of the user are deleted outright (the day sets
# of endpoint_day_users, feature_day_users and user_day_sessions, an open hour's
# endpoint_hour_users, and the user's hour parts,
# among them, so recomputed day rows leave the user out). The other rollups only count users;
# they are recomputed from the remaining raw rows. (Funnel results are not stored: funnels
# are computed on request from the raw rows.)
USER_ROLLUPS = (
    UserActivityDaily,
    Session,
    EndpointDayUser,
    EndpointHourUser,
    FeatureDayUser,
    UserHourPart,
    UserDaySession,
)

KEY_PREFIX = "tpk_"


@dataclass(frozen=True)
class KeyInfo:
    id: int
    prefix: str
    project: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    scope: str


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def project_id(engine: Engine, name: str, *, create: bool = False) -> int | None:
    with engine.begin() as conn:
        found = conn.execute(select(Project.id).where(Project.name == name)).scalar_one_or_none()
        if found is not None or not create:
            return found
        return int(
            conn.execute(
                insert(Project)
                .values(name=name, created_at=datetime.now(UTC))
                .returning(Project.id)
            ).scalar_one()
        )


def create_key(engine: Engine, project: str, scope: str = INGEST) -> tuple[str, int]:
    """A new key for ``project`` (created if new). Only the key's SHA-256 is stored."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    pid = project_id(engine, project, create=True)
    assert pid is not None
    key = generate_key()
    with engine.begin() as conn:
        conn.execute(
            insert(ApiKey).values(
                project_id=pid,
                key_hash=key_digest(key),
                prefix=key[: len(KEY_PREFIX) + 6],
                created_at=datetime.now(UTC),
                scope=scope,
            )
        )
    return key, pid


def list_keys(engine: Engine) -> list[KeyInfo]:
    query = (
        select(
            ApiKey.id,
            ApiKey.prefix,
            Project.name,
            ApiKey.created_at,
            ApiKey.last_used_at,
            ApiKey.revoked_at,
            ApiKey.scope,
        )
        .join(Project, Project.id == ApiKey.project_id)
        .order_by(ApiKey.id)
    )
    with engine.connect() as conn:
        return [KeyInfo(*row) for row in conn.execute(query)]


def revoke_key(engine: Engine, prefix_or_id: str) -> int:
    """Revoke keys by id or prefix; returns how many were revoked."""
    condition = (
        ApiKey.id == int(prefix_or_id) if prefix_or_id.isdigit() else ApiKey.prefix == prefix_or_id
    )
    with engine.begin() as conn:
        result = conn.execute(
            update(ApiKey)
            .where(condition, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return int(result.rowcount)


def active_keys(engine: Engine) -> dict[str, tuple[int, str]]:
    """SHA-256 of every unrevoked key → (its project id, its scope)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(ApiKey.key_hash, ApiKey.project_id, ApiKey.scope).where(
                ApiKey.revoked_at.is_(None)
            )
        )
        return {digest: (int(pid), str(scope)) for digest, pid, scope in rows}


def touch_keys(engine: Engine, used: dict[str, datetime]) -> None:
    if not used:
        return
    with engine.begin() as conn:
        for digest, when in used.items():
            conn.execute(update(ApiKey).where(ApiKey.key_hash == digest).values(last_used_at=when))


def forget_user(engine: Engine, user_hash: str, project: int | None = None) -> dict[str, int]:
    """Delete every row of one (hashed) user from every raw table and the rollups that name
    users, and mark every (raw table, project, hour) the deleted rows were in dirty, in the
    same transaction: the next rollup round recomputes those buckets, so counts and
    unique_users stay exact and a crash cannot leave one without the other.

    It waits for a rollup round in progress (the runner's lock): a round that read the raw
    rows before this commit would otherwise write the user's hash back into a day set."""
    removed: dict[str, int] = {}
    with job_lock(engine, ROLLUP_LOCK_KEY, wait=True), engine.begin() as conn:
        markers = _buckets_of(conn, user_hash, project)
        for model in (*MODELS, *USER_ROLLUPS):
            table: Table = model.__table__  # type: ignore[assignment]
            statement = delete(table).where(table.c.user_id == user_hash)
            if project is not None:
                statement = statement.where(table.c.project_id == project)
            removed[table.name] = int(conn.execute(statement).rowcount)
        # A session's hour partials name the hour's first user: the name goes now; the
        # partial stays until the round recomputes its hour (dirty, as the user's rows were
        # in it), so that round still finds the session and rebuilds what remains of it.
        parts: Table = SessionHour.__table__  # type: ignore[assignment]
        cleared = (
            update(parts).where(parts.c.user_id == user_hash).values(user_id=None, user_key=None)
        )
        if project is not None:
            cleared = cleared.where(parts.c.project_id == project)
        removed[parts.name] = int(conn.execute(cleared).rowcount)
        invalidations.record_markers(conn, markers)
    log.info("user_forgotten", rows=sum(removed.values()), dirty_buckets=len(markers))
    return removed


def _buckets_of(conn: Connection, user_hash: str, project: int | None) -> set[invalidations.Marker]:
    """The (raw table, project, event hour) of the user's rows in the rollups' raw tables."""
    sql = Sql(conn)
    where = "user_id = :user" + ("" if project is None else " AND project_id = :project")
    found: set[invalidations.Marker] = set()
    for kind in invalidations.SOURCES:
        rows = conn.execute(
            text(f"SELECT DISTINCT project_id, {sql.hour('timestamp')} FROM {kind} WHERE {where}"),
            {"user": user_hash, "project": project},
        )
        found.update((kind, int(p), as_hour(hour)) for p, hour in rows)
    # A session named after the user may hold other users' events (a shared device): every
    # hour it spans is dirty, so the round rebuilds what remains of it.
    spans = conn.execute(
        text(f"SELECT project_id, started_at, ended_at FROM sessions WHERE {where}"),
        {"user": user_hash, "project": project},
    )
    for p, started, ended in spans:
        hour, last = invalidations.hour_of(as_hour(started)), invalidations.hour_of(as_hour(ended))
        while hour <= last:
            found.add(("endpoint_usage", int(p), hour))
            hour += timedelta(hours=1)
    return found


def count_projects(engine: Engine) -> int:
    """How many projects exist (the SQL endpoint on SQLite can isolate only one)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Project)).scalar_one())
