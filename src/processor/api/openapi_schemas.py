"""Schemas of the OpenAPI description (components and the small builders they use)."""

from __future__ import annotations

from typing import Any

from processor.alerts.rules import OPS, SEVERITIES
from processor.analytics import distinct
from processor.analytics.funnel_machine import MAX_STEPS, MAX_VALUE, MAX_WINDOW_SECONDS, STEP_TYPES

NUM = {"type": "number", "nullable": True}
INT = {"type": "integer"}
STR = {"type": "string"}
NSTR = {"type": "string", "nullable": True}
TIME = {"type": "string", "format": "date-time"}
ANY: dict[str, Any] = {}  # any JSON value


def obj(properties: dict[str, Any], *, extra: bool = True) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": extra,
    }


def arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def query(
    name: str, schema: dict[str, Any], description: str = "", required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


def enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def bounded(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


RANGE = [
    query("start", TIME, "range start (ISO 8601); default: 24 hours before end"),
    query("end", TIME, "range end, exclusive (ISO 8601); default: now"),
]
STATS = {"avg": NUM, "min": NUM, "max": NUM, "p50": NUM, "p90": NUM, "p95": NUM, "p99": NUM}
SCHEMAS: dict[str, Any] = {
    "Error": obj({"error": STR}),
    "Period": obj({"start": TIME, "end": TIME}),
    "UserProperties": obj({"userId": STR, "properties": {"type": "object"}, "updatedAt": TIME}),
    "SetProperties": obj({"success": {"type": "boolean"}, "updated": INT}),
    "PerformanceOverview": obj(
        {
            "period": ref("Period"),
            "metrics": {
                "type": "object",
                "additionalProperties": obj({**STATS, "samples": INT, "unit": NSTR}),
            },
        }
    ),
    "Log": obj(
        {
            "id": STR,
            "timestamp": TIME,
            "level": STR,
            "type": STR,
            "event_name": NSTR,
            "message": STR,
            "stack_trace": NSTR,
            "user_id": NSTR,
            "session_id": NSTR,
            "service_name": NSTR,
            "app_version": NSTR,
            "app_build_number": NSTR,
            "device": {"type": "object"},
            "trace_id": NSTR,
            "span_id": NSTR,
            "metadata": ANY,
        }
    ),
    "LogPage": obj(
        {
            "logs": arr(ref("Log")),
            "page": INT,
            "page_size": INT,
            "total": INT,
            "next_cursor": NSTR,
        }
    ),
    "RecentLogs": obj({"logs": arr(ref("Log")), "count": INT, "limit": INT}),
    "Status": obj(
        {"status": STR, "service": STR, "version": STR, "database": STR, "project_id": INT}
    ),
    "Metrics": obj(
        {
            "project_id": INT,
            "tables": {
                "type": "object",
                "additionalProperties": obj(
                    {
                        "rows": INT,
                        "last_hour": INT,
                        "last_24h": INT,
                        "latest": {**TIME, "nullable": True},
                    }
                ),
            },
            "total_rows": INT,
        }
    ),
    "EndpointStats": obj(
        {
            "period": ref("Period"),
            "endpoints": arr(
                obj(
                    {
                        "service_name": NSTR,
                        "endpoint": STR,
                        "method": STR,
                        "requests": INT,
                        "errors": INT,
                        "client_errors": INT,
                        "error_rate": {"type": "number", "minimum": 0, "maximum": 1},
                        "rpm": {"type": "number"},
                        "unique_users": INT,
                        "unique_users_estimated": {
                            "type": "boolean",
                            "description": "true: unique_users spans several rollup buckets"
                            f" and is a {distinct.DESCRIPTION}; false: exact",
                        },
                        "avg_ms": NUM,
                        **{p: NUM for p in ("p50", "p90", "p95", "p99")},
                    }
                )
            ),
        }
    ),
    "TimeSeries": obj(
        {
            "source": STR,
            "interval": STR,
            "period": ref("Period"),
            "points": arr(obj({"start": TIME, "count": INT})),
        }
    ),
    "Features": obj(
        {
            "period": ref("Period"),
            "features": arr(
                obj(
                    {
                        "feature_name": STR,
                        "usage_count": INT,
                        "unique_users": INT,
                        "avg_duration_ms": NUM,
                        "success_rate": NUM,
                    }
                )
            ),
        }
    ),
    "ActiveUsers": obj(
        {
            "interval": STR,
            "period": ref("Period"),
            "points": arr(obj({"start": TIME, "users": INT})),
            "total_users": INT,
        }
    ),
    "Sessions": obj(
        {
            "period": ref("Period"),
            "sessions": INT,
            "sessions_with_errors": INT,
            "avg_duration_ms": NUM,
            "p50_duration_ms": NUM,
            "p95_duration_ms": NUM,
            "avg_events": NUM,
            "per_day": arr(obj({"start": TIME, "sessions": INT})),
        }
    ),
    "ErrorRate": obj(
        {
            "period": ref("Period"),
            "property": STR,
            "values": arr(
                obj(
                    {
                        "value": ANY,
                        "total": INT,
                        "errors": INT,
                        "error_rate": {"type": "number", "minimum": 0, "maximum": 1},
                    }
                )
            ),
        }
    ),
    "FunnelStepDefinition": obj(
        {
            "type": enum(STEP_TYPES),
            "value": {"type": "string", "minLength": 1, "maxLength": MAX_VALUE},
        },
        extra=False,
    ),
    "NewFunnel": obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 255},
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_STEPS,
                "items": ref("FunnelStepDefinition"),
            },
            "window_seconds": bounded(1, MAX_WINDOW_SECONDS),
        },
        extra=False,
    )
    | {
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 255},
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_STEPS,
                "items": ref("FunnelStepDefinition"),
            },
            "window_seconds": bounded(1, MAX_WINDOW_SECONDS),
            "description": {"type": "string", "nullable": True, "maxLength": 2000},
        }
    },
    "Funnel": obj(
        {
            "id": {"type": "string", "format": "uuid"},
            "name": STR,
            "description": NSTR,
            "steps": arr(ref("FunnelStepDefinition")),
            "window_seconds": INT,
            "created_at": TIME,
        }
    ),
    "Funnels": obj({"funnels": arr(ref("Funnel"))}),
    "FunnelConversion": obj(
        {
            "funnel_id": STR,
            "name": STR,
            "window_seconds": INT,
            "period": ref("Period"),
            "steps": arr(
                obj(
                    {
                        "type": STR,
                        "value": STR,
                        "users": INT,
                        "conversion_rate": {"type": "number", "minimum": 0, "maximum": 1},
                        "median_seconds_from_previous": NUM,
                    }
                )
            ),
        }
    ),
    "Dashboard": obj(
        {
            "project_id": INT,
            "metrics": arr(
                obj(
                    {
                        "widget_id": STR,
                        "metric_key": STR,
                        "value": {"type": "number"},
                        "previous_value": NUM,
                        "change_percent": NUM,
                        "updated_at": TIME,
                    }
                )
            ),
        }
    ),
    "QueryRequest": obj({"sql": STR})
    | {"properties": {"sql": STR, "limit": {"type": "integer", "minimum": 1}}},
    "QueryResult": obj(
        {
            "columns": arr(STR),
            "rows": arr(arr(ANY)),
            "row_count": INT,
            "truncated": {"type": "boolean"},
        }
    ),
}
# Alerts (SPEC §14).
DURATION = {"type": "string", "pattern": "^[0-9]+[smhd]$"}
SCHEMAS |= {
    "AlertRule": obj(
        {
            "id": STR,
            "name": STR,
            "source": STR,
            "service": NSTR,
            "endpoint": NSTR,
            "op": enum(OPS),
            "threshold": {"type": "number"},
            "window": STR,
            "for": STR,
            "severity": enum(SEVERITIES),
            "channels": arr(STR),
            "state": enum(("inactive", "pending", "firing")),
            "state_since": {**TIME, "nullable": True},
            "last_value": NUM,
            "last_evaluated_at": {**TIME, "nullable": True},
            "last_error": NSTR,
            "created_at": TIME,
        }
    ),
    "AlertRules": obj({"rules": arr(ref("AlertRule"))}),
    "NewAlertRule": {
        "type": "object",
        "required": ["name", "source", "op", "threshold", "window"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 255},
            "source": {
                "type": "string",
                "description": "endpoint.error_rate | endpoint.p95_ms | endpoint.p99_ms | "
                "endpoint.request_count | metric:NAME.STAT | logs.count[:LEVEL]",
            },
            "op": enum(OPS),
            "threshold": {"type": "number"},
            "window": DURATION,
            "for": DURATION,
            "severity": enum(SEVERITIES),
            "service": STR,
            "endpoint": STR,
            "webhooks": arr({"type": "string", "format": "uri"}),
        },
    },
    "Deleted": obj({"deleted": STR}),
    "Alert": obj(
        {
            "id": STR,
            "rule_id": STR,
            "rule": STR,
            "severity": enum(SEVERITIES),
            "state": enum(("firing", "acknowledged", "resolved")),
            "started_at": TIME,
            "resolved_at": {**TIME, "nullable": True},
            "acknowledged_at": {**TIME, "nullable": True},
            "value": NUM,
            "threshold": {"type": "number"},
            "message": STR,
            "notifications": arr({"type": "object"}),
        }
    ),
    "Alerts": obj({"alerts": arr(ref("Alert"))}),
}
