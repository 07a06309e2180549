"""SQLAlchemy 2 models of the analytics tables (SPEC §5). Alembic owns the schema."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from processor.mapping.rows import LENGTHS

JSONType = JSON().with_variant(JSONB(), "postgresql")
UTCDateTime = DateTime(timezone=True)


def s(column: str) -> String:
    return String(LENGTHS[column])


class Base(DeclarativeBase):
    pass


class EventMixin:
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    project_id: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    trace_id: Mapped[str | None] = mapped_column(s("trace_id"))
    span_id: Mapped[str | None] = mapped_column(s("span_id"))


class EndpointUsage(EventMixin, Base):
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
    event_metadata: Mapped[Any] = mapped_column(JSONType)
    span_status: Mapped[str | None] = mapped_column(s("span_status"))
    __table_args__ = (
        Index("ix_endpoint_usage_project_time", "project_id", "timestamp"),
        Index("ix_endpoint_usage_project_endpoint_time", "project_id", "endpoint", "timestamp"),
        Index("ix_endpoint_usage_project_user_time", "project_id", "user_id", "timestamp"),
    )


class FeatureUsage(EventMixin, Base):
    __tablename__ = "feature_usage"
    feature_name: Mapped[str] = mapped_column(s("feature_name"), nullable=False)
    action: Mapped[str] = mapped_column(s("action"), nullable=False)
    user_id: Mapped[str | None] = mapped_column(s("user_id"))
    organization_id: Mapped[str | None] = mapped_column(s("organization_id"))
    session_id: Mapped[str | None] = mapped_column(s("session_id"))
    duration_ms: Mapped[float | None] = mapped_column(Double)
    service_name: Mapped[str | None] = mapped_column(s("service_name"))
    deployment_type: Mapped[str | None] = mapped_column(s("deployment_type"))
    event_metadata: Mapped[Any] = mapped_column(JSONType)
    span_status: Mapped[str | None] = mapped_column(s("span_status"))
    __table_args__ = (
        Index("ix_feature_usage_project_time", "project_id", "timestamp"),
        Index("ix_feature_usage_project_feature_time", "project_id", "feature_name", "timestamp"),
        Index("ix_feature_usage_project_user_time", "project_id", "user_id", "timestamp"),
    )


class UserActivity(EventMixin, Base):
    __tablename__ = "user_activity"
    event_type: Mapped[str] = mapped_column(s("event_type"), nullable=False)
    user_id: Mapped[str | None] = mapped_column(s("user_id"))
    organization_id: Mapped[str | None] = mapped_column(s("organization_id"))
    session_id: Mapped[str | None] = mapped_column(s("session_id"))
    service_name: Mapped[str | None] = mapped_column(s("service_name"))
    deployment_type: Mapped[str | None] = mapped_column(s("deployment_type"))
    event_metadata: Mapped[Any] = mapped_column(JSONType)
    __table_args__ = (
        Index("ix_user_activity_project_time", "project_id", "timestamp"),
        Index("ix_user_activity_project_type_time", "project_id", "event_type", "timestamp"),
        Index("ix_user_activity_project_user_time", "project_id", "user_id", "timestamp"),
    )


class Log(EventMixin, Base):
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
    metadata_: Mapped[Any] = mapped_column("metadata", JSONType)
    observed_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (
        Index("ix_logs_project_time", "project_id", "timestamp"),
        Index("ix_logs_project_level_time", "project_id", "level", "timestamp"),
        Index("ix_logs_project_type_time", "project_id", "type", "timestamp"),
        Index("ix_logs_project_user_time", "project_id", "user_id", "timestamp"),
        Index("ix_logs_project_session", "project_id", "session_id"),
        Index(
            "ix_logs_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ),
    )


class PerformanceMetric(EventMixin, Base):
    __tablename__ = "performance_metrics"
    metric_type: Mapped[str] = mapped_column(s("metric_type"), nullable=False)
    value: Mapped[float | None] = mapped_column(Double)
    unit: Mapped[str | None] = mapped_column(s("unit"))
    user_id: Mapped[str | None] = mapped_column(s("user_id"))
    session_id: Mapped[str | None] = mapped_column(s("session_id"))
    service_name: Mapped[str | None] = mapped_column(s("service_name"))
    app_version: Mapped[str | None] = mapped_column(s("app_version"))
    metadata_: Mapped[Any] = mapped_column("metadata", JSONType)
    __table_args__ = (
        Index("ix_performance_metrics_project_time", "project_id", "timestamp"),
        Index(
            "ix_performance_metrics_project_metric_time", "project_id", "metric_type", "timestamp"
        ),
        Index("ix_performance_metrics_project_user_time", "project_id", "user_id", "timestamp"),
    )


class UserProperty(EventMixin, Base):
    __tablename__ = "user_properties"
    user_id: Mapped[str] = mapped_column(s("user_id"), nullable=False)
    property_key: Mapped[str] = mapped_column(s("property_key"), nullable=False)
    property_value: Mapped[Any] = mapped_column(JSONType, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    __table_args__ = (
        UniqueConstraint("project_id", "user_id", "property_key", name="uq_user_properties_key"),
        Index("ix_user_properties_project_key", "project_id", "property_key"),
        Index("ix_user_properties_value", "property_value", postgresql_using="gin"),
    )


MODELS = (EndpointUsage, FeatureUsage, UserActivity, Log, PerformanceMetric, UserProperty)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_api_keys_project", "project_id"),)


# The rollup tables live with their stage; importing them registers them on Base.metadata.
from processor.analytics import schema as _rollups  # noqa: E402, F401
