"""The alert RPCs of ``AnalyticsService`` (SPEC §14): the REST answers as typed messages.

A mixin of AnalyticsServicer: it uses the servicer's ``_answer`` (authentication and error
mapping), ``service`` and ``auth``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from processor.alerts import rules, store
from processor.analytics.v1 import analytics_pb2 as pb
from processor.api.alerts_rest import ADMINISTERING
from processor.api.params import BadParameter
from processor.ingest.auth import READING, Caller


def _stamp(text: str | None) -> timestamp_pb2.Timestamp | None:
    if text is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(text.replace("Z", "+00:00")))
    return stamp


def rule_message(r: dict[str, Any]) -> Any:
    return pb.AlertRule(
        id=r["id"],
        name=r["name"],
        source=r["source"],
        service=r["service"] or "",
        endpoint=r["endpoint"] or "",
        op=r["op"],
        threshold=r["threshold"],
        window=r["window"],
        for_duration=r["for"],
        severity=r["severity"],
        channels=r["channels"],
        state=r["state"],
        last_value=r["last_value"],
        created_at=_stamp(r["created_at"]),
    )


def alert_message(a: dict[str, Any]) -> Any:
    notes = []
    for entry in a["notifications"]:
        note = struct_pb2.Struct()
        json_format.ParseDict(entry, note)
        notes.append(note)
    return pb.Alert(
        id=a["id"],
        rule_id=a["rule_id"],
        rule=a["rule"],
        severity=a["severity"],
        state=a["state"],
        started_at=_stamp(a["started_at"]),
        resolved_at=_stamp(a["resolved_at"]),
        acknowledged_at=_stamp(a["acknowledged_at"]),
        value=a["value"],
        threshold=a["threshold"],
        message=a["message"],
        notifications=notes,
    )


class AlertRpcs:
    service: Any
    _answer: Any

    async def ListAlertRules(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            found = await self.service.call(
                store.list_rules, self.service.engine, caller.project_id
            )
            return pb.AlertRules(rules=[rule_message(r) for r in found])

        return await self._answer(context, ADMINISTERING, work)

    async def CreateAlertRule(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            spec = rules.build_rule(
                name=request.name,
                source=request.source,
                op=request.op,
                threshold=request.threshold,
                window=request.window,
                for_duration=request.for_duration or None,
                severity=request.severity or None,
                service=request.service or None,
                endpoint=request.endpoint or None,
                webhooks=list(request.webhooks),
                allowed_hosts=self.service.settings.alert_webhook_allowed_hosts,
            )
            created = await self.service.call(
                store.create_rule, self.service.engine, caller.project_id, spec
            )
            return rule_message(created)

        return await self._answer(context, ADMINISTERING, work)

    async def DeleteAlertRule(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            rule_id = store.parse_id("id", request.id)
            await self.service.call(
                store.delete_rule, self.service.engine, caller.project_id, rule_id
            )
            return pb.DeleteAlertRuleResponse(deleted=str(rule_id))

        return await self._answer(context, ADMINISTERING, work)

    async def ListAlerts(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            limit = request.limit or 100
            if not 1 <= limit <= 1000:
                raise BadParameter("limit", "must be between 1 and 1000")
            found = await self.service.call(
                store.list_alerts, self.service.engine, caller.project_id, limit=limit
            )
            return pb.Alerts(alerts=[alert_message(a) for a in found])

        return await self._answer(context, READING, work)

    async def AcknowledgeAlert(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            alert_id = store.parse_id("id", request.id)
            acked = await self.service.call(
                store.acknowledge, self.service.engine, caller.project_id, alert_id
            )
            return alert_message(acked)

        return await self._answer(context, ADMINISTERING, work)
