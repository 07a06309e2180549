"""SQLAlchemy 2 models of the analytics tables (SPEC §5). Alembic owns the schema.

Keys (SPEC §13): every primary key starts with ``project_id`` (the Citus distribution column),
and on the raw event tables it includes the partition key ``timestamp`` (and ``level`` on
logs, whose days are sub-partitioned by level). On PostgreSQL the raw tables are
RANGE-partitioned by UTC day; their partitions are made by storage/partitions.py.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from processor.mapping.rows import LENGTHS


class JSONDocument(TypeDecorator[Any]):
    """A JSON value, stored as the migrations store it: JSONB on PostgreSQL, TEXT on SQLite.

    On SQLite a column declared JSON gets NUMERIC affinity, which would turn the JSON text
    '40' into the integer 40; so the column is TEXT and the value is (de)serialised here.
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "sqlite" and value is not None:
            return json.dumps(value)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "sqlite" and value is not None:
            return json.loads(value)
        return value


JSONType = JSONDocument()
UTCDateTime = DateTime(timezone=True)


def s(column: str) -> String:
    return String(LENGTHS[column])


def postgres_only(index: Index) -> Index:
    """An index only PostgreSQL gets (GIN on JSONB); migration 0001 creates these only there."""
    index.info["dialect"] = "postgresql"
    return index.ddl_if(dialect="postgresql")


def exists_on(dialect_name: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` hook for one database: leaves out what ``postgres_only``
    marked for another (autogenerate does not read ``ddl_if``)."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        wanted = getattr(obj, "info", {}).get("dialect")
        return wanted is None or wanted == dialect_name

    return include


class Base(DeclarativeBase):
    pass


# The PostgreSQL partitioning of the raw event tables, as migration 0003 creates it.
PARTITIONED = {"postgresql_partition_by": "RANGE (timestamp)"}
RAW_TABLES = ("endpoint_usage", "feature_usage", "user_activity", "logs", "performance_metrics")
_PARTITION = re.compile(rf"^(?:{'|'.join(RAW_TABLES)})_(?:p\d{{8}}(?:_[a-z]+)?|default)$")


def is_partition(name: str) -> bool:
    """A day's partition (or a logs day's level table) or a DEFAULT partition: made at run
    time by storage.partitions, not by migrations."""
    return _PARTITION.match(name) is not None


def event_key(*middle: str) -> PrimaryKeyConstraint:
    """(project_id, timestamp, …, id): unique per partition and per Citus shard."""
    return PrimaryKeyConstraint("project_id", "timestamp", *middle, "id")


class EventMixin:
    # sort_order: these come first, as in the migrations and the row types.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, sort_order=-5)
    project_id: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default=text("1"), sort_order=-4
    )
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, sort_order=-3)
    trace_id: Mapped[str | None] = mapped_column(s("trace_id"), sort_order=-2)
    span_id: Mapped[str | None] = mapped_column(s("span_id"), sort_order=-1)


# PostgreSQL: the top-level transaction that inserted a raw row (a savepoint's rows too, unlike
# xmin). Invalidation markers carry the same value, so a rollup round adds exactly the rows
# of the transactions whose markers it claimed (analytics.rollup). Filled by the database,
# never by the writer; NULL on SQLite and on rows stored before revision 0011.
INGEST_TXID = text("(pg_current_xact_id())::text::bigint")


class RawMixin(EventMixin):
    ingest_txid: Mapped[int | None] = mapped_column(
        BigInteger, server_default=INGEST_TXID, sort_order=100
    )


class EndpointUsage(RawMixin, Base):
    __tablename__ = "endpoint_usage"
    endpoint: Mapped[str] = mapped_column(s("endpoint"), nullable=False)
    method: Mapped[str] = mapped_column(s("method"), nullable=False)
    user_id: Mapped[str | None] = mapped_column(s("user_id"))
    organization_id: Mapped[str | None] = mapped_column(s("organization_id"))
    session_id: Mapped[str | None] = mapped_column(s("session_id"))
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[float | None] = mapped_column(Double)
    service_name: Mapped[str | None] = mapped_column(s("service_name"))
    deployment_type: Mapped[str | None] = mapped_column(s("deployment_type"))
    event_metadata: Mapped[Any] = mapped_column(JSONType, nullable=True)
    span_status: Mapped[str | None] = mapped_column(s("span_status"))
    __table_args__ = (
        event_key(),
        Index("ix_endpoint_usage_project_time", "project_id", "timestamp"),
        Index("ix_endpoint_usage_project_endpoint_time", "project_id", "endpoint", "timestamp"),
        Index("ix_endpoint_usage_project_user_time", "project_id", "user_id", "timestamp"),
        PARTITIONED,
    )


class FeatureUsage(RawMixin, Base):
    __tablename__ = "feature_usage"
    feature_name: Mapped[str] = mapped_column(s("feature_name"), nullable=False)
    action: Mapped[str] = mapped_column(s("action"), nullable=False)
    user_id: Mapped[str | None] = mapped_column(s("user_id"))
    organization_id: Mapped[str | None] = mapped_column(s("organization_id"))
    session_id: Mapped[str | None] = mapped_column(s("session_id"))
    duration_ms: Mapped[float | None] = mapped_column(Double)
    service_name: Mapped[str | None] = mapped_column(s("service_name"))
    deployment_type: Mapped[str | None] = mapped_column(s("deployment_type"))
    event_metadata: Mapped[Any] = mapped_column(JSONType, nullable=True)
    span_status: Mapped[str | None] = mapped_column(s("span_status"))
    __table_args__ = (
        event_key(),
        Index("ix_feature_usage_project_time", "project_id", "timestamp"),
        Index("ix_feature_usage_project_feature_time", "project_id", "feature_name", "timestamp"),
        Index("ix_feature_usage_project_user_time", "project_id", "user_id", "timestamp"),
        PARTITIONED,
    )


class UserActivity(RawMixin, Base):
    __tablename__ = "user_activity"
    event_type: Mapped[str] = mapped_column(s("event_type"), nullable=False)
    user_id: Mapped[str | None] = mapped_column(s("user_id"))
    organization_id: Mapped[str | None] = mapped_column(s("organization_id"))
    session_id: Mapped[str | None] = mapped_column(s("session_id"))
    service_name: Mapped[str | None] = mapped_column(s("service_name"))
    deployment_type: Mapped[str | None] = mapped_column(s("deployment_type"))
    event_metadata: Mapped[Any] = mapped_column(JSONType, nullable=True)
    __table_args__ = (
        event_key(),
        Index("ix_user_activity_project_time", "project_id", "timestamp"),
        Index("ix_user_activity_project_type_time", "project_id", "event_type", "timestamp"),
        Index("ix_user_activity_project_user_time", "project_id", "user_id", "timestamp"),
        PARTITIONED,
    )


class Log(RawMixin, Base):
    __tablename__ = "logs"
    level: Mapped[str] = mapped_column(s("level"), nullable=False)
    severity_number: Mapped[int | None] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(s("type"), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    stack_trace: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(s("user_id"))
    session_id: Mapped[str | None] = mapped_column(s("session_id"))
    service_name: Mapped[str | None] = mapped_column(s("service_name"))
    device_platform: Mapped[str | None] = mapped_column(s("device_platform"))
    device_os_version: Mapped[str | None] = mapped_column(s("device_os_version"))
    device_model: Mapped[str | None] = mapped_column(s("device_model"))
    app_version: Mapped[str | None] = mapped_column(s("app_version"))
    app_build_number: Mapped[str | None] = mapped_column(s("app_build_number"))
    metadata_: Mapped[Any] = mapped_column("metadata", JSONType, nullable=True)
    observed_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (
        event_key("level"),
        Index("ix_logs_project_time", "project_id", "timestamp"),
        Index("ix_logs_project_level_time", "project_id", "level", "timestamp"),
        Index("ix_logs_project_type_time", "project_id", "type", "timestamp"),
        Index("ix_logs_project_user_time", "project_id", "user_id", "timestamp"),
        Index("ix_logs_project_session", "project_id", "session_id"),
        postgres_only(
            Index(
                "ix_logs_metadata",
                "metadata",
                postgresql_using="gin",
                postgresql_ops={"metadata": "jsonb_path_ops"},
            )
        ),
        PARTITIONED,
    )


class PerformanceMetric(RawMixin, Base):
    __tablename__ = "performance_metrics"
    metric_type: Mapped[str] = mapped_column(s("metric_type"), nullable=False)
    value: Mapped[float | None] = mapped_column(Double)
    unit: Mapped[str | None] = mapped_column(s("unit"))
    user_id: Mapped[str | None] = mapped_column(s("user_id"))
    session_id: Mapped[str | None] = mapped_column(s("session_id"))
    service_name: Mapped[str | None] = mapped_column(s("service_name"))
    app_version: Mapped[str | None] = mapped_column(s("app_version"))
    metadata_: Mapped[Any] = mapped_column("metadata", JSONType, nullable=True)
    __table_args__ = (
        event_key(),
        Index("ix_performance_metrics_project_time", "project_id", "timestamp"),
        Index(
            "ix_performance_metrics_project_metric_time", "project_id", "metric_type", "timestamp"
        ),
        Index("ix_performance_metrics_project_user_time", "project_id", "user_id", "timestamp"),
        PARTITIONED,
    )


class UserProperty(EventMixin, Base):
    __tablename__ = "user_properties"
    user_id: Mapped[str] = mapped_column(s("user_id"), nullable=False)
    property_key: Mapped[str] = mapped_column(s("property_key"), nullable=False)
    property_value: Mapped[Any] = mapped_column(JSONType, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    __table_args__ = (
        PrimaryKeyConstraint("project_id", "id"),
        UniqueConstraint("project_id", "user_id", "property_key", name="uq_user_properties_key"),
        Index("ix_user_properties_project_key", "project_id", "property_key"),
        postgres_only(Index("ix_user_properties_value", "property_value", postgresql_using="gin")),
    )


MODELS = (EndpointUsage, FeatureUsage, UserActivity, Log, PerformanceMetric, UserProperty)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, server_default=func.now()
    )


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, server_default=func.now()
    )
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # ingest (OTLP, JSON ingestion), read (query API) or admin (both); SPEC §11.
    scope: Mapped[str] = mapped_column(
        String(16), nullable=False, default="ingest", server_default=text("'ingest'")
    )
    __table_args__ = (Index("ix_api_keys_project", "project_id"),)


class AnalystRole(Base):
    """A PostgreSQL LOGIN role that row-level security holds to one project."""

    __tablename__ = "analyst_roles"
    role_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


# PostgreSQL only: the key that signs the SQL endpoint's project token, readable by the RLS
# function alone (migration 0004). No primary key: it holds one row.
QUERY_SECRET = Table(
    "query_secret",
    Base.metadata,
    Column("secret", Text, nullable=False),
    info={"dialect": "postgresql"},
)


# The rollup tables live with their stage; importing them registers them on Base.metadata.
from processor.alerts import schema as _alerts  # noqa: E402, F401
from processor.analytics import schema as _rollups  # noqa: E402, F401
