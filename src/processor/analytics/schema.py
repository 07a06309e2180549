"""SQLAlchemy models of the rollup tables (SPEC §10) and the invalidation log.

They live on the raw tables' ``Base`` so one metadata describes the whole schema; Alembic
revision 0005 creates them. Identifier columns hold hashes (SPEC §7). A NULL service name or
unit is stored as '' so it can be part of a primary key.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Double,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from processor.storage.schema import INGEST_TXID, Base, JSONType, UTCDateTime, s

# SQLite only makes an INTEGER PRIMARY KEY its rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class RollupInvalidation(Base):
    """Append-only: the writer adds one row per (kind, project, hour) a batch touched, in the
    batch's own transaction; the runner claims rows by deleting them. No unique constraint, so
    a writer never waits on the runner's locks."""

    __tablename__ = "rollup_invalidations"
    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)  # the raw table
    project_id: Mapped[int] = mapped_column(Integer, nullable=False)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)  # event hour
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime, server_default=func.now())
    # PostgreSQL, writer markers: the transaction that added the rows (the raw rows'
    # ingest_txid), and bucket_start is the event minute: the round adds just those rows.
    # NULL (forget-user, SQLite, older markers): recompute the bucket's hour from scratch.
    txid: Mapped[int | None] = mapped_column(BigInteger, server_default=INGEST_TXID)
    __table_args__ = {"sqlite_autoincrement": True}


class EndpointStat(Base):
    __tablename__ = "endpoint_stats"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(8), primary_key=True)  # hour | day
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    service_name: Mapped[str] = mapped_column(s("service_name"), primary_key=True)
    endpoint: Mapped[str] = mapped_column(s("endpoint"), primary_key=True)
    method: Mapped[str] = mapped_column(s("method"), primary_key=True)
    request_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    error_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    client_error_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    duration_sum_ms: Mapped[float | None] = mapped_column(Double)
    duration_min_ms: Mapped[float | None] = mapped_column(Double)
    duration_max_ms: Mapped[float | None] = mapped_column(Double)
    p50_ms: Mapped[float | None] = mapped_column(Double)
    p90_ms: Mapped[float | None] = mapped_column(Double)
    p95_ms: Mapped[float | None] = mapped_column(Double)
    p99_ms: Mapped[float | None] = mapped_column(Double)
    unique_users: Mapped[int] = mapped_column(BigInteger, nullable=False)
    latency_sketch: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The bucket's distinct users as a HyperLogLog (analytics.distinct), mergeable over a
    # range; NULL on rows written before revision 0008 (ranges then count raw rows).
    users_sketch: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Whether p50…p99 are percentile_cont of the bucket's raw rows. False while an hour is
    # open and added rows grow it (its percentiles then come from its sketch, within 1 %):
    # the first round after the hour closes computes them from the raw rows. Day rows are
    # always merged sketches (false).
    percentiles_exact: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("true")
    )
    __table_args__ = (
        Index(
            "ix_endpoint_stats_project_endpoint",
            "project_id",
            "endpoint",
            "period",
            "bucket_start",
        ),
    )


class EndpointDayUser(Base):
    """The exact set of users of one (day, service, endpoint, method), fed from each dirty
    hour's raw rows (insert, ignore what is there): a day row's ``unique_users`` is its count,
    so a round never re-reads a whole day of raw rows. Forget-user deletes from it; retention
    drops a day's set with the day's raw rows (the day is frozen from then on)."""

    __tablename__ = "endpoint_day_users"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    service_name: Mapped[str] = mapped_column(s("service_name"), primary_key=True)
    endpoint: Mapped[str] = mapped_column(s("endpoint"), primary_key=True)
    method: Mapped[str] = mapped_column(s("method"), primary_key=True)
    user_id: Mapped[str] = mapped_column(s("user_id"), primary_key=True)


class EndpointHourUser(Base):
    """The users of an open hour's (service, endpoint, method), while added rows maintain the
    hour's row: a user new to the set adds one to ``unique_users``. Dropped when the hour
    closes (its row is then final; late rows recompute the hour from the raw rows)."""

    __tablename__ = "endpoint_hour_users"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    service_name: Mapped[str] = mapped_column(s("service_name"), primary_key=True)
    endpoint: Mapped[str] = mapped_column(s("endpoint"), primary_key=True)
    method: Mapped[str] = mapped_column(s("method"), primary_key=True)
    user_id: Mapped[str] = mapped_column(s("user_id"), primary_key=True)


class MetricAggregate(Base):
    __tablename__ = "metric_aggregates"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(s("metric_type"), primary_key=True)
    period_type: Mapped[str] = mapped_column(String(8), primary_key=True)  # hourly … monthly
    period_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    service_name: Mapped[str] = mapped_column(s("service_name"), primary_key=True)
    unit: Mapped[str] = mapped_column(s("unit"), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sum: Mapped[float] = mapped_column(Double, nullable=False)
    min: Mapped[float] = mapped_column(Double, nullable=False)
    max: Mapped[float] = mapped_column(Double, nullable=False)
    avg: Mapped[float] = mapped_column(Double, nullable=False)
    p50: Mapped[float | None] = mapped_column(Double)
    p90: Mapped[float | None] = mapped_column(Double)
    p95: Mapped[float | None] = mapped_column(Double)
    p99: Mapped[float | None] = mapped_column(Double)
    sketch: Mapped[bytes | None] = mapped_column(LargeBinary)
    __table_args__ = (
        Index("ix_metric_aggregates_period", "project_id", "period_type", "period_start"),
    )


class FeatureUsageDaily(Base):
    __tablename__ = "feature_usage_daily"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    feature_name: Mapped[str] = mapped_column(s("feature_name"), primary_key=True)
    usage_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    unique_users: Mapped[int] = mapped_column(BigInteger, nullable=False)
    avg_duration_ms: Mapped[float | None] = mapped_column(Double)
    success_rate: Mapped[float | None] = mapped_column(Double)


class FeatureHourPart(Base):
    """One hour's additive part of a feature's day (runner bookkeeping, like
    ``endpoint_day_users``): a round recomputes only its dirty hours' parts from the raw rows,
    and a ``feature_usage_daily`` row adds up its day's parts; its unique users are counted in
    ``feature_day_users``. ``duration_count`` counts the rows with a duration (the average's
    denominator); ``success_count`` those whose span status is not 'error'."""

    __tablename__ = "feature_hour_parts"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    feature_name: Mapped[str] = mapped_column(s("feature_name"), primary_key=True)
    usage_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    duration_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    duration_sum_ms: Mapped[float | None] = mapped_column(Double)
    success_count: Mapped[int] = mapped_column(BigInteger, nullable=False)


class FeatureDayUser(Base):
    """The exact users of one (day, feature), fed from each dirty hour's raw rows (insert,
    ignore what is there); ``feature_usage_daily.unique_users`` is its count."""

    __tablename__ = "feature_day_users"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    feature_name: Mapped[str] = mapped_column(s("feature_name"), primary_key=True)
    user_id: Mapped[str] = mapped_column(s("user_id"), primary_key=True)


class UserHourPart(Base):
    """One hour's additive part of a user's day, per kind of event ('requests', 'features'
    or a user_activity event type): a ``user_activity_daily`` row adds up its day's parts
    (counts and durations summed, first and last seen as min and max, the kinds as its
    events_breakdown); its session_count is counted in ``user_day_sessions``."""

    __tablename__ = "user_hour_parts"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    user_id: Mapped[str] = mapped_column(s("user_id"), primary_key=True)
    kind: Mapped[str] = mapped_column(s("event_type"), primary_key=True)
    event_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    duration_sum_ms: Mapped[float] = mapped_column(Double, nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # A day row reads its user's parts of the day (the users of a dirty hour, by user).
    __table_args__ = (Index("ix_user_hour_parts_user", "project_id", "user_id", "bucket_start"),)


class UserDaySession(Base):
    """The exact session ids of one user's day (insert-only from dirty hours, like the other
    day sets)."""

    __tablename__ = "user_day_sessions"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[str] = mapped_column(s("user_id"), primary_key=True)
    session_id: Mapped[str] = mapped_column(s("session_id"), primary_key=True)


class UserActivityDaily(Base):
    __tablename__ = "user_activity_daily"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[str] = mapped_column(s("user_id"), primary_key=True)
    session_count: Mapped[int] = mapped_column(Integer, nullable=False)
    event_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    total_duration_ms: Mapped[float] = mapped_column(Double, nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    events_breakdown: Mapped[Any] = mapped_column(JSONType, nullable=True)
    __table_args__ = (Index("ix_user_activity_daily_user", "project_id", "user_id", "date"),)


class Session(Base):
    __tablename__ = "sessions"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(s("session_id"), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(s("user_id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    duration_ms: Mapped[float] = mapped_column(Double, nullable=False)
    event_count: Mapped[int] = mapped_column(Integer, nullable=False)
    error_count: Mapped[int] = mapped_column(Integer, nullable=False)
    device_platform: Mapped[str | None] = mapped_column(s("device_platform"))
    app_version: Mapped[str | None] = mapped_column(s("app_version"))
    entry: Mapped[str | None] = mapped_column(s("endpoint"))
    exit: Mapped[str | None] = mapped_column(s("endpoint"))
    __table_args__ = (
        Index("ix_sessions_project_started", "project_id", "started_at"),
        Index("ix_sessions_project_user", "project_id", "user_id", "started_at"),
    )


# A session_hours sort key: 'YYYY-MM-DD HH:MM:SS.ffffff' + kind digit + row id (36 characters
# of uuid text on PostgreSQL, 32 hex on SQLite).
SESSION_KEY_MAX = 64


class SessionHour(Base):
    """One client session's events and logs within one UTC hour, summarized (the session's
    per-hour partial, see analytics/session_parts.py): partials merge, so a round adds the
    partial of its new rows to the stored one, or recomputes an hour's partials from its raw
    rows, and each touched ``sessions`` row is merged from all its partials; a session id a
    client keeps for days costs a round its new rows, not every hour the session spans. Each
    chosen value (first user, entry, exit; latest platform, app version) is stored with the
    sort key of the row it came from (``*_key``), which decides it in a merge. Forget-user
    clears ``user_id``; retention drops an hour's partials under ``rollups.day`` once their
    session row is gone. Runner bookkeeping, like endpoint_day_users: not granted to the
    reader role."""

    __tablename__ = "session_hours"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(s("session_id"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    event_count: Mapped[int] = mapped_column(Integer, nullable=False)
    error_count: Mapped[int] = mapped_column(Integer, nullable=False)
    first_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_key: Mapped[str | None] = mapped_column(String(SESSION_KEY_MAX))
    user_id: Mapped[str | None] = mapped_column(s("user_id"))
    entry_key: Mapped[str | None] = mapped_column(String(SESSION_KEY_MAX))
    entry: Mapped[str | None] = mapped_column(s("endpoint"))
    exit_key: Mapped[str | None] = mapped_column(String(SESSION_KEY_MAX))
    exit: Mapped[str | None] = mapped_column(s("endpoint"))
    platform_key: Mapped[str | None] = mapped_column(String(SESSION_KEY_MAX))
    platform: Mapped[str | None] = mapped_column(s("device_platform"))
    version_key: Mapped[str | None] = mapped_column(String(SESSION_KEY_MAX))
    version: Mapped[str | None] = mapped_column(s("app_version"))
    __table_args__ = (
        Index("ix_session_hours_project_hour", "project_id", "hour"),
        Index("ix_session_hours_user", "user_id"),
    )


class Funnel(Base):
    __tablename__ = "funnels"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    steps: Mapped[Any] = mapped_column(JSONType, nullable=False)
    window_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_funnels_project_name"),)


class DashboardMetric(Base):
    __tablename__ = "dashboard_metrics"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    widget_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    metric_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Double, nullable=False)
    previous_value: Mapped[float | None] = mapped_column(Double)
    change_percent: Mapped[float | None] = mapped_column(Double)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


ROLLUP_MODELS = (
    EndpointStat,
    EndpointDayUser,
    EndpointHourUser,
    MetricAggregate,
    FeatureUsageDaily,
    FeatureHourPart,
    FeatureDayUser,
    UserActivityDaily,
    UserHourPart,
    UserDaySession,
    Session,
    SessionHour,
    Funnel,
    DashboardMetric,
)
