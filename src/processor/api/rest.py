"""REST handlers of the query API (SPEC §11) on the HTTP port: parse, call, render JSON.

Every handler authenticates first (read endpoints need a read or admin key; setting user
properties is ingestion: ingest or admin), and answers only from the caller's project.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from processor.api import funnels, params, render
from processor.api.dashboard import dashboard_metrics
from processor.api.logs import EVENT_TYPES, SORTABLE, LogFilter, decode_cursor
from processor.api.openapi import document
from processor.api.readers import ENDPOINT_SORTS, SOURCES, SeriesFilters
from processor.api.service import QueryService
from processor.api.sqlbits import iso
from processor.api.users import user_hash
from processor.errors import ProcessorError, StorageUnavailable
from processor.ingest.auth import ADMIN, INGESTION, READING, Authenticator, Caller
from processor.ingest.status import status_codes
from processor.mapping.telling_logger import LEVELS
from processor.mapping.values import LOG_TYPES

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request, Caller], Awaitable[Any]]
PREFIX = "/api/v1"
ADMINS = frozenset({ADMIN})  # funnel (and alert) definitions


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def error_response(exc: ProcessorError) -> web.Response:
    _, status = status_codes(exc)
    body: dict[str, Any] = {"error": str(exc)}
    parameter = getattr(exc, "parameter", None)
    if parameter:
        body["parameter"] = parameter
    return web.json_response(body, status=status, dumps=dumps)


class RestApi:
    def __init__(self, service: QueryService, auth: Authenticator) -> None:
        self.service = service
        self.auth = auth

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get(f"{PREFIX}/openapi.json", self.openapi)
        r.add_get(f"{PREFIX}/users/{{userId}}/properties", self.guarded(self.get_properties))
        r.add_post(
            f"{PREFIX}/users/{{userId}}/properties",
            self.guarded(self.set_properties, INGESTION),
        )
        for path, handler in (
            ("/analytics/performance/overview", self.performance_overview),
            ("/logs/filter", self.logs_filter),
            ("/logs/recent", self.logs_recent),
            ("/status", self.status),
            ("/metrics", self.metrics),
            ("/analytics/endpoints", self.endpoints),
            ("/analytics/timeseries", self.timeseries),
            ("/analytics/features", self.features),
            ("/analytics/active-users", self.active_users),
            ("/analytics/sessions", self.sessions),
            ("/analytics/error-rate", self.error_rate),
            ("/analytics/dashboard", self.dashboard),
        ):
            r.add_get(PREFIX + path, self.guarded(handler))
        r.add_post(f"{PREFIX}/query", self.guarded(self.query))
        r.add_post(f"{PREFIX}/funnels", self.guarded(self.create_funnel, ADMINS))
        r.add_get(f"{PREFIX}/funnels", self.guarded(self.list_funnels))
        r.add_get(f"{PREFIX}/funnels/{{id}}/conversion", self.guarded(self.funnel_conversion))

    def guarded(
        self, handler: Handler, allowed: frozenset[str] = READING
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """``handler`` behind key checking (scopes in ``allowed``) and error mapping; the
        alerts endpoints use it too, so every read endpoint refuses the same way."""

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                headers = {k.lower(): v for k, v in request.headers.items()}
                caller = self.auth.caller(headers, allowed)
                answer = await handler(request, caller)
            except ProcessorError as exc:
                return error_response(exc)
            except (OperationalError, PoolTimeout) as exc:
                log.warning("query_api_database_error", error=type(exc).__name__)
                return error_response(StorageUnavailable("database unavailable"))
            if isinstance(answer, web.StreamResponse):
                return answer
            return web.json_response(answer, dumps=dumps)

        return handle

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(document(), dumps=dumps)

    async def get_properties(self, request: web.Request, caller: Caller) -> Any:
        raw = request.match_info["userId"]
        properties, updated = await self.service.user_properties(caller.project_id, raw)
        return {"userId": raw, "properties": properties, "updatedAt": iso(updated)}

    async def set_properties(self, request: web.Request, caller: Caller) -> Any:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise params.BadParameter("body", "must be JSON") from None
        if not isinstance(body, dict) or "properties" not in body:
            raise params.BadParameter("properties", 'is required: {"properties": {...}}')
        raw = request.match_info["userId"]
        updated = await self.service.set_user_properties(caller.project_id, raw, body["properties"])
        return {"success": True, "updated": updated}

    async def performance_overview(self, request: web.Request, caller: Caller) -> Any:
        q = request.query
        period = params.period(q, "startDate", "endDate")
        metric = params.text(q, "metric")
        metrics = await self.service.call(
            self.service.reader.performance_overview, caller.project_id, period, metric
        )
        return render.performance(period, metrics)

    async def logs_filter(self, request: web.Request, caller: Caller) -> Any:
        q = request.query
        sort_by = params.choice(q, "sort_by", SORTABLE, "timestamp")
        sort_order = params.choice(q, "sort_order", ("desc", "asc"), "desc")
        page = params.integer(q, "page", 1, 1, 10_000_000)
        page_size = params.integer(q, "page_size", 50, 1, 1000)
        token = params.text(q, "cursor")
        cursor = None
        if token is not None:
            if sort_by != "timestamp":
                raise params.BadParameter("cursor", "works with sort_by=timestamp only")
            cursor = decode_cursor(token, caller.project_id, sort_order)
        start = q.get("start_time") or None
        end = q.get("end_time") or None
        user = params.text(q, "user_id")
        session = params.text(q, "session_id")
        f = LogFilter(
            project_id=caller.project_id,
            start=params.parse_time("start_time", start) if start else None,
            end=params.parse_time("end_time", end, end=True) if end else None,
            level=params.optional_choice(q, "level", LEVELS),
            type=params.optional_choice(q, "type", tuple(sorted(LOG_TYPES))),
            event_type=params.optional_choice(q, "event_type", tuple(EVENT_TYPES)),
            event_name=params.text(q, "event_name"),
            user_hash=user_hash(self.service.hasher, user, "user_id") if user else None,
            session_hash=(
                user_hash(self.service.hasher, session, "session_id") if session else None
            ),
            app_version=params.text(q, "app_version"),
        )
        result = await self.service.log_page(
            f,
            page=page,
            page_size=page_size,
            sort_by=sort_by,
            sort_order=sort_order,
            cursor=cursor,
        )
        return {
            "logs": result.logs,
            "page": page,
            "page_size": page_size,
            "total": result.total,
            "next_cursor": result.next_cursor,
        }

    async def logs_recent(self, request: web.Request, caller: Caller) -> Any:
        limit = params.integer(request.query, "limit", 50, 1, 1000)
        found = await self.service.recent_logs(caller.project_id, limit)
        return {"logs": found, "count": len(found), "limit": limit}

    async def status(self, _request: web.Request, caller: Caller) -> Any:
        return await self.service.status(caller)

    async def metrics(self, _request: web.Request, caller: Caller) -> Any:
        tables = await self.service.table_counts(caller.project_id)
        return {
            "project_id": caller.project_id,
            "tables": tables,
            "total_rows": sum(t["rows"] for t in tables.values()),
            "ingested_last_hour": sum(t["last_hour"] for t in tables.values()),
            "ingested_last_24h": sum(t["last_24h"] for t in tables.values()),
        }

    async def endpoints(self, request: web.Request, caller: Caller) -> Any:
        q = request.query
        period = params.period(q)
        sort = params.choice(q, "sort", ENDPOINT_SORTS, "requests")
        limit = params.integer(q, "limit", 100, 1, 1000)
        stats = await self.service.call(
            self.service.reader.endpoint_stats,
            caller.project_id,
            period,
            params.text(q, "service"),
            sort,
            limit,
        )
        return render.endpoints(period, stats)

    async def timeseries(self, request: web.Request, caller: Caller) -> Any:
        q = request.query
        source = params.choice(q, "source", SOURCES, "endpoints")
        interval = params.choice(q, "interval", ("hour", "day"), "hour")
        period = params.period(q)
        filters = SeriesFilters(
            endpoint=params.text(q, "endpoint"),
            service=params.text(q, "service"),
            feature=params.text(q, "feature"),
            metric=params.text(q, "metric"),
            level=params.optional_choice(q, "level", LEVELS),
        )
        points = await self.service.call(
            self.service.reader.time_series, caller.project_id, source, interval, period, filters
        )
        return render.series(source, interval, period, points)

    async def features(self, request: web.Request, caller: Caller) -> Any:
        q = request.query
        period = params.period(q)
        limit = params.integer(q, "limit", 100, 1, 1000)
        stats = await self.service.call(
            self.service.reader.features, caller.project_id, period, limit
        )
        return render.features(period, stats)

    async def active_users(self, request: web.Request, caller: Caller) -> Any:
        q = request.query
        interval = params.choice(q, "interval", ("day", "week", "month"), "day")
        period = params.period(q, default_span=render.DEFAULT_ACTIVE_SPAN[interval])
        answer = await self.service.call(
            self.service.reader.active_users, caller.project_id, interval, period
        )
        return render.active(period, answer)

    async def sessions(self, request: web.Request, caller: Caller) -> Any:
        period = params.period(request.query)
        summary = await self.service.call(self.service.reader.sessions, caller.project_id, period)
        return render.sessions(period, summary)

    async def error_rate(self, request: web.Request, caller: Caller) -> Any:
        q = request.query
        params.choice(q, "by", ("user_property",), "user_property")
        key = params.text(q, "property")
        if key is None:
            raise params.BadParameter("property", "is required (a user property key)")
        period = params.period(q, default_span=render.WEEK)
        rates = await self.service.call(
            self.service.reader.error_rate_by_property, caller.project_id, key, period
        )
        return render.error_rates(period, key, rates)

    async def dashboard(self, _request: web.Request, caller: Caller) -> Any:
        tiles = await self.service.call(dashboard_metrics, self.service.engine, caller.project_id)
        return {"project_id": caller.project_id, "metrics": tiles}

    async def query(self, request: web.Request, caller: Caller) -> Any:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise params.BadParameter("body", 'must be JSON: {"sql": "SELECT ..."}') from None
        if not isinstance(body, dict):
            raise params.BadParameter("body", "must be a JSON object")
        sql = body.get("sql")
        if not isinstance(sql, str):
            raise params.BadParameter("sql", "is required (a string)")
        limit = body.get("limit")
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            raise params.BadParameter("limit", "must be a positive integer")
        result = await self.service.query(caller, sql, limit)
        return {
            "columns": result.columns,
            "rows": result.rows,
            "row_count": len(result.rows),
            "truncated": result.truncated,
        }

    async def create_funnel(self, request: web.Request, caller: Caller) -> Any:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise params.BadParameter("body", "must be JSON") from None
        new = funnels.parse_new(body)
        created = await self.service.call(
            funnels.create, self.service.engine, caller.project_id, new
        )
        return web.json_response(funnels.render(created), status=201, dumps=dumps)

    async def list_funnels(self, _request: web.Request, caller: Caller) -> Any:
        found = await self.service.call(
            funnels.funnels.list_all, self.service.engine, caller.project_id
        )
        return {"funnels": [funnels.render(f) for f in found]}

    async def funnel_conversion(self, request: web.Request, caller: Caller) -> Any:
        period = params.period(request.query)
        funnel, results = await self.service.call(
            funnels.conversion,
            self.service.engine,
            caller.project_id,
            request.match_info["id"],
            period,
        )
        return funnels.render_conversion(funnel, period, results)
