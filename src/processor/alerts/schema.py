"""Models of alert_rules and alerts (SPEC §14), on the one ``Base``; Alembic revision 0007
creates them. Both are distributed by project_id (Citus): their keys hold it.

A rule carries its evaluation state (inactive | pending | firing, since when, last value);
an ``alerts`` row is one firing episode: firing, acknowledged, then resolved.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Double, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from processor.storage.schema import Base, JSONType, UTCDateTime


class AlertRule(Base):
    __tablename__ = "alert_rules"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    source: Mapped[str] = mapped_column(String(300), nullable=False)
    service_name: Mapped[str | None] = mapped_column(String(255))
    endpoint: Mapped[str | None] = mapped_column(String(512))
    op: Mapped[str] = mapped_column(String(2), nullable=False)
    threshold: Mapped[float] = mapped_column(Double, nullable=False)
    window_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    for_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    channels: Mapped[Any] = mapped_column(JSONType, nullable=False)  # webhook URLs
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # Evaluation state (evaluate.py).
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    state_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_value: Mapped[float | None] = mapped_column(Double)
    last_evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_alert_rules_project_name"),)


class Alert(Base):
    __tablename__ = "alerts"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    rule_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    rule_name: Mapped[str] = mapped_column(String(255), nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # firing|acknowledged|resolved
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    value: Mapped[float | None] = mapped_column(Double)
    threshold: Mapped[float] = mapped_column(Double, nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    # One entry per delivery: kind, channel (redacted), outcome, attempts, status, error, at.
    notifications: Mapped[Any] = mapped_column(JSONType, nullable=False)
    __table_args__ = (
        Index("ix_alerts_project_rule_state", "project_id", "rule_id", "state"),
        Index("ix_alerts_project_started", "project_id", "started_at"),
    )


ALERT_MODELS = (AlertRule, Alert)
