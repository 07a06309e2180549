"""gRPC ``processor.analytics.v1.AnalyticsService``: the REST answers as typed messages.

Stubs are generated from protos/processor/analytics/v1/analytics.proto at build time.
Every RPC authenticates from the call's metadata: read RPCs need a read or admin key,
SetUserProperties an ingest or admin key, CreateFunnel an admin key (else PERMISSION_DENIED).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from processor.analytics.v1 import analytics_pb2 as pb
from processor.analytics.v1 import analytics_pb2_grpc as pb_grpc
from processor.api import funnels
from processor.api.alerts_grpc import AlertRpcs
from processor.api.logs import EVENT_TYPES, LogFilter, decode_cursor
from processor.api.params import DEFAULT_SPAN, BadParameter
from processor.api.readers import ENDPOINT_SORTS, SOURCES, Percentiles, Period, SeriesFilters
from processor.api.service import QueryService
from processor.api.users import user_hash
from processor.errors import ProcessorError, StorageUnavailable
from processor.ingest.auth import ADMIN, INGESTION, READING, Authenticator, Caller
from processor.ingest.status import status_codes
from processor.mapping.telling_logger import LEVELS

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AnalyticsService"].full_name


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def period_of(message: Any) -> Period:
    end = message.end.ToDatetime(tzinfo=UTC) if message.HasField("end") else datetime.now(UTC)
    start = (
        message.start.ToDatetime(tzinfo=UTC) if message.HasField("start") else end - DEFAULT_SPAN
    )
    if start >= end:
        raise BadParameter("range.start", "must be before range.end")
    return Period(start, end)


def time_range(period: Period) -> Any:
    return pb.TimeRange(start=timestamp(period.start), end=timestamp(period.end))


def one_of(name: str, value: str, options: tuple[str, ...], default: str) -> str:
    if not value:
        return default
    if value not in options:
        raise BadParameter(name, f"must be one of {', '.join(options)}")
    return value


def bounded(name: str, value: int, default: int, high: int) -> int:
    if value == 0:
        return default
    if not 1 <= value <= high:
        raise BadParameter(name, f"must be between 1 and {high}")
    return value


def stats(p: Percentiles) -> dict[str, float]:
    """Percentile fields for a message; absent values stay unset (0)."""
    fields = {"avg": p.avg, "p50": p.p50, "p90": p.p90, "p95": p.p95, "p99": p.p99}
    return {k: v for k, v in fields.items() if v is not None}


def struct(value: Any) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if isinstance(value, dict):
        json_format.ParseDict(value, message)
    return message


class AnalyticsServicer(AlertRpcs, pb_grpc.AnalyticsServiceServicer):
    def __init__(self, service: QueryService, auth: Authenticator) -> None:
        self.service = service
        self.auth = auth

    async def _answer(
        self,
        context: grpc.aio.ServicerContext,
        allowed: frozenset[str],
        work: Callable[[Caller], Awaitable[Any]],
    ) -> Any:
        try:
            caller = self.auth.caller(dict(context.invocation_metadata() or ()), allowed)
            return await work(caller)
        except ProcessorError as exc:
            code, _ = status_codes(exc)
            await context.abort(code, str(exc))
        except (OperationalError, PoolTimeout):
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, str(StorageUnavailable("database unavailable"))
            )

    async def GetPerformanceOverview(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            period = period_of(request.range)
            metrics = await self.service.call(
                self.service.reader.performance_overview,
                caller.project_id,
                period,
                request.metric or None,
            )
            return pb.PerformanceOverviewResponse(
                period=time_range(period),
                metrics=[
                    pb.MetricSummary(
                        name=m.name,
                        unit=m.unit or "",
                        samples=m.stats.samples,
                        min=m.stats.min or 0.0,
                        max=m.stats.max or 0.0,
                        **stats(m.stats),
                    )
                    for m in metrics
                ],
            )

        return await self._answer(context, READING, work)

    async def GetEndpointStats(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            period = period_of(request.range)
            sort = one_of("sort", request.sort, ENDPOINT_SORTS, "requests")
            limit = bounded("limit", request.limit, 100, 1000)
            found = await self.service.call(
                self.service.reader.endpoint_stats,
                caller.project_id,
                period,
                request.service or None,
                sort,
                limit,
            )
            return pb.EndpointStatsResponse(
                period=time_range(period),
                endpoints=[
                    pb.EndpointStat(
                        service_name=s.service_name or "",
                        endpoint=s.endpoint,
                        method=s.method,
                        requests=s.requests,
                        errors=s.errors,
                        client_errors=s.client_errors,
                        error_rate=s.error_rate,
                        rpm=s.rpm,
                        unique_users=s.unique_users,
                        unique_users_estimated=s.unique_users_estimated,
                        **{k: v for k, v in stats(s.latency).items() if k != "avg"},
                    )
                    for s in found
                ],
            )

        return await self._answer(context, READING, work)

    async def GetTimeSeries(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            source = one_of("source", request.source, SOURCES, "endpoints")
            interval = one_of("interval", request.interval, ("hour", "day"), "hour")
            level = one_of("level", request.level, LEVELS, "") or None
            filters = SeriesFilters(
                endpoint=request.endpoint or None,
                service=request.service or None,
                feature=request.feature or None,
                metric=request.metric or None,
                level=level,
            )
            points = await self.service.call(
                self.service.reader.time_series,
                caller.project_id,
                source,
                interval,
                period_of(request.range),
                filters,
            )
            out = []
            for p in points:
                point = pb.TimePoint(start=timestamp(p.start), count=p.count)
                if p.errors is not None:
                    point.errors = p.errors
                    point.error_rate = p.errors / p.count if p.count else 0.0
                if p.unique_users is not None:
                    point.unique_users = p.unique_users
                if p.values is not None:
                    for k, v in stats(p.values).items():
                        if k in ("avg", "p50", "p95", "p99"):
                            setattr(point, k, v)
                out.append(point)
            return pb.TimeSeriesResponse(source=source, interval=interval, points=out)

        return await self._answer(context, READING, work)

    async def QueryLogs(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            order = one_of("sort_order", request.sort_order, ("desc", "asc"), "desc")
            size = bounded("page_size", request.page_size, 50, 1000)
            cursor = (
                decode_cursor(request.page_token, caller.project_id, order, "page_token")
                if request.page_token
                else None
            )
            hasher = self.service.hasher
            has_range = request.HasField("range")
            period = period_of(request.range) if has_range else None
            f = LogFilter(
                project_id=caller.project_id,
                start=period.start if period and request.range.HasField("start") else None,
                end=period.end if period and request.range.HasField("end") else None,
                level=one_of("level", request.level, LEVELS, "") or None,
                type=request.type or None,
                event_type=one_of("event_type", request.event_type, tuple(EVENT_TYPES), "") or None,
                event_name=request.event_name or None,
                user_hash=user_hash(hasher, request.user_id, "user_id")
                if request.user_id
                else None,
                session_hash=(
                    user_hash(hasher, request.session_id, "session_id")
                    if request.session_id
                    else None
                ),
                app_version=request.app_version or None,
            )
            page = await self.service.log_page(
                f, page=1, page_size=size, sort_by="timestamp", sort_order=order, cursor=cursor
            )
            return pb.QueryLogsResponse(
                logs=[log_entry(entry) for entry in page.logs],
                total=page.total,
                next_page_token=page.next_cursor or "",
            )

        return await self._answer(context, READING, work)

    async def GetUserProperties(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            properties, updated = await self.service.user_properties(
                caller.project_id, request.user_id
            )
            return pb.UserProperties(
                user_id=request.user_id,
                properties=struct(properties),
                updated_at=timestamp(updated),
            )

        return await self._answer(context, READING, work)

    async def SetUserProperties(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            properties = json_format.MessageToDict(request.properties)
            updated = await self.service.set_user_properties(
                caller.project_id, request.user_id, properties
            )
            return pb.SetUserPropertiesResponse(success=True, updated=updated)

        return await self._answer(context, INGESTION, work)

    async def GetActiveUsers(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            interval = one_of("interval", request.interval, ("day", "week", "month"), "day")
            answer = await self.service.call(
                self.service.reader.active_users,
                caller.project_id,
                interval,
                period_of(request.range),
            )
            return pb.ActiveUsersResponse(
                interval=interval,
                points=[pb.ActiveUsersPoint(start=timestamp(s), users=n) for s, n in answer.points],
                total_users=answer.total_users,
            )

        return await self._answer(context, READING, work)

    async def GetFunnelConversion(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            period = period_of(request.range)
            funnel, results = await self.service.call(
                funnels.conversion,
                self.service.engine,
                caller.project_id,
                request.funnel_id,
                period,
            )
            steps = []
            for step, r in zip(funnel.steps, results, strict=True):
                out = pb.FunnelStep(
                    users=r.users,
                    conversion_rate=r.conversion_rate,
                    type=step.type,
                    value=step.value,
                )
                if r.median_seconds_from_previous is not None:
                    out.median_seconds_from_previous = r.median_seconds_from_previous
                steps.append(out)
            return pb.FunnelConversionResponse(steps=steps, period=time_range(period))

        return await self._answer(context, READING, work)

    async def CreateFunnel(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            body: dict[str, Any] = {
                "name": request.name,
                "steps": [{"type": s.type, "value": s.value} for s in request.steps],
                "window_seconds": request.window_seconds,
            }
            if request.description:
                body["description"] = request.description
            new = funnels.parse_new(body)
            created = await self.service.call(
                funnels.create, self.service.engine, caller.project_id, new
            )
            return funnel_message(created)

        return await self._answer(context, frozenset({ADMIN}), work)

    async def ListFunnels(self, request: Any, context: Any) -> Any:
        async def work(caller: Caller) -> Any:
            found = await self.service.call(
                funnels.funnels.list_all, self.service.engine, caller.project_id
            )
            return pb.ListFunnelsResponse(funnels=[funnel_message(f) for f in found])

        return await self._answer(context, READING, work)


def funnel_message(f: Any) -> Any:
    return pb.Funnel(
        id=str(f.id),
        name=f.name,
        description=f.description or "",
        steps=[pb.FunnelStepDefinition(type=s.type, value=s.value) for s in f.steps],
        window_seconds=f.window_seconds,
        created_at=timestamp(f.created_at),
    )


def log_entry(entry: dict[str, Any]) -> Any:
    text = {
        k: entry[k] or ""
        for k in (
            "id",
            "level",
            "type",
            "message",
            "stack_trace",
            "user_id",
            "session_id",
            "service_name",
            "app_version",
            "event_name",
            "trace_id",
            "span_id",
        )
    }
    return pb.LogEntry(
        **text,
        timestamp=timestamp(datetime.fromisoformat(entry["timestamp"])),
        metadata=struct(entry["metadata"]),
        device_platform=entry["device"]["platform"] or "",
    )


def add_to_server(servicer: AnalyticsServicer, server: grpc.aio.Server) -> None:
    pb_grpc.add_AnalyticsServiceServicer_to_server(servicer, server)
