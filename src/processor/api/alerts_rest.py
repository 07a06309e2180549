"""REST for alerts (SPEC §14): ``/api/v1/alert-rules`` (admin key) and ``/api/v1/alerts``
(read key; acknowledging needs admin). JSON lists, scoped to the caller's project."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from processor.alerts import rules, store
from processor.api import params
from processor.api.service import QueryService
from processor.ingest.auth import ADMIN, READING, Caller

ADMINISTERING = frozenset({ADMIN})
PREFIX = "/api/v1"
# The fields a new rule may have, as the CLI's flags name them.
RULE_FIELDS = (
    "name",
    "source",
    "op",
    "threshold",
    "window",
    "for",
    "severity",
    "service",
    "endpoint",
    "webhooks",
)


class AlertsApi:
    def __init__(self, service: QueryService, wrap: Any) -> None:
        """``wrap(handler, scopes)``: RestApi's authentication and error mapping."""
        self.service = service
        self.wrap = wrap

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get(f"{PREFIX}/alert-rules", self.wrap(self.list_rules, ADMINISTERING))
        r.add_post(f"{PREFIX}/alert-rules", self.wrap(self.create_rule, ADMINISTERING))
        r.add_delete(f"{PREFIX}/alert-rules/{{id}}", self.wrap(self.delete_rule, ADMINISTERING))
        r.add_get(f"{PREFIX}/alerts", self.wrap(self.list_alerts, READING))
        r.add_post(f"{PREFIX}/alerts/{{id}}/ack", self.wrap(self.ack, ADMINISTERING))

    async def list_rules(self, _request: web.Request, caller: Caller) -> Any:
        found = await self.service.call(store.list_rules, self.service.engine, caller.project_id)
        return {"rules": found}

    async def create_rule(self, request: web.Request, caller: Caller) -> Any:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise params.BadParameter("body", "must be JSON") from None
        if not isinstance(body, dict):
            raise params.BadParameter("body", "must be a JSON object")
        unknown = sorted(set(body) - set(RULE_FIELDS))
        if unknown:
            raise params.BadParameter(unknown[0], f"is not a rule field ({', '.join(RULE_FIELDS)})")
        hooks = body.get("webhooks", [])
        if not isinstance(hooks, list):
            raise params.BadParameter("webhooks", "must be a list of URLs")
        spec = rules.build_rule(
            name=body.get("name"),
            source=body.get("source"),
            op=body.get("op"),
            threshold=body.get("threshold"),
            window=body.get("window"),
            for_duration=body.get("for"),
            severity=body.get("severity"),
            service=body.get("service"),
            endpoint=body.get("endpoint"),
            webhooks=hooks,
            allowed_hosts=self.service.settings.alert_webhook_allowed_hosts,
        )
        return await self.service.call(
            store.create_rule, self.service.engine, caller.project_id, spec
        )

    async def delete_rule(self, request: web.Request, caller: Caller) -> Any:
        rule_id = store.parse_id("id", request.match_info["id"])
        await self.service.call(store.delete_rule, self.service.engine, caller.project_id, rule_id)
        return {"deleted": str(rule_id)}

    async def list_alerts(self, request: web.Request, caller: Caller) -> Any:
        limit = params.integer(request.query, "limit", 100, 1, 1000)
        found = await self.service.call(
            store.list_alerts, self.service.engine, caller.project_id, limit=limit
        )
        return {"alerts": found}

    async def ack(self, request: web.Request, caller: Caller) -> Any:
        alert_id = store.parse_id("id", request.match_info["id"])
        return await self.service.call(
            store.acknowledge, self.service.engine, caller.project_id, alert_id
        )
