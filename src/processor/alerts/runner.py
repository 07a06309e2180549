"""The alert evaluator: a round every ALERT_EVAL_INTERVAL_SECONDS inside ``serve``.

A round runs in the scheduler's thread under its lock (one evaluator across workers and
replicas), evaluates each rule in its own transaction (a failing rule is recorded on it and
never stops the others), commits the new states, and only then hands the notifications to the
Deliverer, which sends them on threads of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from processor.alerts import evaluate, store
from processor.alerts.rules import format_duration, parse_source
from processor.alerts.schema import Alert, AlertRule
from processor.alerts.sources import Target, value_of
from processor.alerts.webhook import Deliverer, Notice, body
from processor.analytics.sqlparts import utc
from processor.ops.scheduler import PeriodicJob

log = structlog.get_logger(__name__)

# The advisory lock key every worker and replica shares ("tp" + alerts).
ALERT_LOCK_KEY = 0x7470_0014


@dataclass
class RoundResult:
    rules: int = 0
    failed: int = 0
    notices: list[Notice] = field(default_factory=list)


def _open_alert(conn: Connection, rule: AlertRule) -> Alert | None:
    row = conn.execute(
        select(Alert)
        .where(
            Alert.project_id == rule.project_id,
            Alert.rule_id == rule.id,
            Alert.state.in_(store.OPEN),
        )
        .order_by(Alert.started_at.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else Alert(**row._mapping)


def _scope(rule: AlertRule) -> str:
    parts = [f"service {rule.service_name}"] if rule.service_name else []
    if rule.endpoint:
        parts.append(f"endpoint {rule.endpoint}")
    return ", ".join(parts)


def evaluate_rule(
    conn: Connection, rule: AlertRule, now: datetime, repeat: timedelta | None
) -> Notice | None:
    """One rule: its value, its next state, the alert row, and the notice to send."""
    target = Target(
        rule.project_id,
        parse_source(rule.source),
        timedelta(seconds=rule.window_seconds),
        rule.service_name,
        rule.endpoint,
    )
    value = value_of(conn, target, now)
    alert = _open_alert(conn, rule)
    notified = alert.last_notified_at if alert is not None else None
    prev = evaluate.RuleState(
        rule.state,
        utc(rule.state_since) if rule.state_since is not None else None,
        acknowledged=alert is not None and alert.state == store.ACKNOWLEDGED,
        last_notified_at=utc(notified) if notified is not None else None,
    )
    if prev.state == evaluate.FIRING and alert is None:
        prev = evaluate.RuleState()  # its alert was closed (rule edited or deleted meanwhile)
    result = evaluate.step(
        prev,
        value,
        now,
        op=rule.op,
        threshold=rule.threshold,
        for_duration=timedelta(seconds=rule.for_seconds),
        repeat=repeat,
    )
    updated = conn.execute(
        update(AlertRule)
        .where(AlertRule.project_id == rule.project_id, AlertRule.id == rule.id)
        .values(
            state=result.state.state,
            state_since=result.state.since,
            last_value=value,
            last_evaluated_at=now,
            last_error=None,
        )
    ).rowcount
    if not updated or result.event is None:
        return None
    started = now if result.event == evaluate.FIRE else (alert.started_at if alert else now)
    payload = body(
        rule=rule.name,
        state="resolved" if result.event == evaluate.RESOLVE else "firing",
        severity=rule.severity,
        value=value,
        threshold=rule.threshold,
        op=rule.op,
        source=rule.source,
        window=format_duration(timedelta(seconds=rule.window_seconds)),
        started_at=store.iso(started),
        resolved_at=store.iso(now) if result.event == evaluate.RESOLVE else None,
        # A new episode gets a new id; a resolution or repeat speaks of the open alert.
        alert_id=alert.id if alert is not None and result.event != evaluate.FIRE else uuid.uuid4(),
        scope=_scope(rule),
    )
    alert_id = uuid.UUID(payload["alert_id"])
    if result.event == evaluate.FIRE:
        conn.execute(
            insert(Alert).values(
                project_id=rule.project_id,
                id=alert_id,
                rule_id=rule.id,
                rule_name=rule.name,
                severity=rule.severity,
                state=store.FIRING,
                started_at=now,
                last_notified_at=now,
                value=value,
                threshold=rule.threshold,
                message=payload["message"],
                notifications=[],
            )
        )
    elif result.event == evaluate.RESOLVE:
        conn.execute(
            update(Alert)
            .where(Alert.project_id == rule.project_id, Alert.id == alert_id)
            .values(state=store.RESOLVED, resolved_at=now, value=value)
        )
    else:  # a repeat: only while nobody has acknowledged it in the meantime
        still = conn.execute(
            update(Alert)
            .where(
                Alert.project_id == rule.project_id,
                Alert.id == alert_id,
                Alert.state == store.FIRING,
            )
            .values(last_notified_at=now, value=value, message=payload["message"])
        ).rowcount
        if not still:
            return None
    channels = tuple(rule.channels or ())
    return Notice(rule.project_id, alert_id, result.event, payload, channels)


def evaluate_round(engine: Engine, now: datetime, repeat: timedelta | None) -> RoundResult:
    result = RoundResult()
    for rule in store.rules(engine):
        result.rules += 1
        try:
            with engine.begin() as conn:
                notice = evaluate_rule(conn, rule, now, repeat)
        except Exception as exc:
            result.failed += 1
            detail = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            log.warning("alert_rule_failed", rule=str(rule.id), error=detail)
            try:
                with engine.begin() as conn:
                    conn.execute(
                        update(AlertRule)
                        .where(AlertRule.project_id == rule.project_id, AlertRule.id == rule.id)
                        .values(last_error=detail, last_evaluated_at=now)
                    )
            except Exception:
                pass  # the database itself is failing; the next round tries again
            continue
        if notice is not None:
            result.notices.append(notice)
    return result


class AlertEvaluator:
    """Evaluates every rule at ``clock()`` and hands notices to the deliverer."""

    def __init__(
        self,
        deliverer: Deliverer,
        *,
        repeat: timedelta | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.deliverer = deliverer
        self.repeat = repeat
        self.clock = clock

    def __call__(self, engine: Engine) -> RoundResult:
        result = evaluate_round(engine, self.clock(), self.repeat)
        for notice in result.notices:  # after the commit: a notice is never for a lost state
            self.deliverer.submit(notice)
        return result


class AlertRunner(PeriodicJob[RoundResult]):
    """A ``lifecycle.Component``; one evaluator at a time across workers and replicas."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float,
        repeat: timedelta | None,
        deliverer: Deliverer | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.deliverer = deliverer or Deliverer(engine)
        self.evaluator = AlertEvaluator(self.deliverer, repeat=repeat, clock=clock)
        super().__init__(
            "alerts", engine, self.evaluator, interval=interval, lock_key=ALERT_LOCK_KEY
        )

    async def shutdown(self, grace: float = 10.0) -> None:
        await super().shutdown(grace)
        await asyncio.get_running_loop().run_in_executor(None, self.deliverer.close, grace)
