"""Reading and writing alert_rules and alerts: rule management, acknowledgement, delivery
outcomes. Plain functions of an Engine; ``project_id`` None means every project (the CLI)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from processor.alerts.evaluate import INACTIVE
from processor.alerts.rules import RuleSpec, format_duration, redact
from processor.alerts.schema import Alert, AlertRule
from processor.errors import FieldError, NotFound

FIRING, ACKNOWLEDGED, RESOLVED = "firing", "acknowledged", "resolved"
OPEN = (FIRING, ACKNOWLEDGED)
# Delivery outcomes of one process append to an alert's notifications one at a time.
_record_lock = threading.Lock()


def parse_id(name: str, text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text.strip())
    except (ValueError, AttributeError):
        raise FieldError(name, f"must be a UUID, got {text!r}") from None


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def rule_view(r: AlertRule) -> dict[str, Any]:
    """A rule as answers show it; webhook URLs redacted (they may hold tokens)."""
    return {
        "id": str(r.id),
        "name": r.name,
        "source": r.source,
        "service": r.service_name,
        "endpoint": r.endpoint,
        "op": r.op,
        "threshold": r.threshold,
        "window": format_duration(timedelta(seconds=r.window_seconds)),
        "for": format_duration(timedelta(seconds=r.for_seconds)),
        "severity": r.severity,
        "channels": [redact(u) for u in r.channels or []],
        "state": r.state,
        "state_since": iso(r.state_since),
        "last_value": r.last_value,
        "last_evaluated_at": iso(r.last_evaluated_at),
        "last_error": r.last_error,
        "created_at": iso(r.created_at),
    }


def alert_view(a: Alert) -> dict[str, Any]:
    return {
        "id": str(a.id),
        "rule_id": str(a.rule_id),
        "rule": a.rule_name,
        "severity": a.severity,
        "state": a.state,
        "started_at": iso(a.started_at),
        "resolved_at": iso(a.resolved_at),
        "acknowledged_at": iso(a.acknowledged_at),
        "value": a.value,
        "threshold": a.threshold,
        "message": a.message,
        "notifications": list(a.notifications or []),
    }


def create_rule(engine: Engine, project_id: int, spec: RuleSpec) -> dict[str, Any]:
    rule = AlertRule(
        project_id=project_id,
        id=uuid.uuid4(),
        name=spec.name,
        source=spec.source,
        service_name=spec.service,
        endpoint=spec.endpoint,
        op=spec.op,
        threshold=spec.threshold,
        window_seconds=int(spec.window.total_seconds()),
        for_seconds=int(spec.for_duration.total_seconds()),
        severity=spec.severity,
        channels=list(spec.channels),
        created_at=datetime.now(UTC),
        state=INACTIVE,
    )
    try:
        with engine.begin() as conn:
            conn.execute(insert(AlertRule).values(**_columns(rule)))
    except IntegrityError:
        raise FieldError("name", f"a rule named {spec.name!r} exists in this project") from None
    return rule_view(rule)


def _columns(obj: Any) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}


def _scoped(model: Any, project_id: int | None) -> list[Any]:
    return [] if project_id is None else [model.project_id == project_id]


def rules(engine: Engine, project_id: int | None = None) -> list[AlertRule]:
    with engine.connect() as conn:
        found = conn.execute(
            select(AlertRule)
            .where(*_scoped(AlertRule, project_id))
            .order_by(AlertRule.project_id, AlertRule.created_at, AlertRule.id)
        )
        return [AlertRule(**row._mapping) for row in found]


def list_rules(engine: Engine, project_id: int | None = None) -> list[dict[str, Any]]:
    return [rule_view(r) for r in rules(engine, project_id)]


def delete_rule(engine: Engine, project_id: int | None, rule_id: uuid.UUID) -> None:
    """Delete a rule; its open alert is closed (resolved, without a notification)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        gone = conn.execute(
            delete(AlertRule).where(AlertRule.id == rule_id, *_scoped(AlertRule, project_id))
        ).rowcount
        if not gone:
            raise NotFound(f"no alert rule {rule_id}")
        conn.execute(
            update(Alert)
            .where(Alert.rule_id == rule_id, Alert.state.in_(OPEN))
            .values(state=RESOLVED, resolved_at=now, message=Alert.message + " (rule deleted)")
        )


def list_alerts(
    engine: Engine, project_id: int | None = None, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Every alert, resolved ones too, newest first."""
    with engine.connect() as conn:
        stmt = (
            select(Alert)
            .where(*_scoped(Alert, project_id))
            .order_by(Alert.started_at.desc(), Alert.id)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        return [alert_view(Alert(**row._mapping)) for row in conn.execute(stmt)]


def acknowledge(engine: Engine, project_id: int | None, alert_id: uuid.UUID) -> dict[str, Any]:
    """A firing alert becomes acknowledged (no more repeats); others are left as they are."""
    with engine.begin() as conn:
        conn.execute(
            update(Alert)
            .where(Alert.id == alert_id, Alert.state == FIRING, *_scoped(Alert, project_id))
            .values(state=ACKNOWLEDGED, acknowledged_at=datetime.now(UTC))
        )
        row = conn.execute(
            select(Alert).where(Alert.id == alert_id, *_scoped(Alert, project_id))
        ).one_or_none()
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    return alert_view(Alert(**row._mapping))


def record_delivery(engine: Engine, project_id: int, alert_id: uuid.UUID, entry: dict) -> None:
    """Append one delivery outcome to the alert's notifications."""
    with _record_lock, engine.begin() as conn:
        stmt = select(Alert.notifications).where(
            Alert.project_id == project_id, Alert.id == alert_id
        )
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        current = conn.execute(stmt).scalar_one_or_none()
        if current is None:
            return
        conn.execute(
            update(Alert)
            .where(Alert.project_id == project_id, Alert.id == alert_id)
            .values(notifications=[*current, entry])
        )
