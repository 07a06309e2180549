"""The OpenAPI 3 description of the query API, served (publicly) at /api/v1/openapi.json."""

from __future__ import annotations

from functools import cache
from typing import Any

from processor import __version__
from processor.alerts.rules import OPS, SEVERITIES
from processor.analytics.funnel_machine import MAX_STEPS, MAX_VALUE, MAX_WINDOW_SECONDS, STEP_TYPES
from processor.api.logs import EVENT_TYPES, SORTABLE
from processor.api.readers import ENDPOINT_SORTS, SOURCES
from processor.mapping.telling_logger import LEVELS
from processor.mapping.values import LOG_TYPES

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
ID = {"name": "id", "in": "path", "required": True, "schema": STR}


def answers(schema: str, *extra: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": ref(schema)}}}
    }
    for status, text in (
        (400, "a bad parameter, named in the answer"),
        (401, "a missing or unknown API key"),
        (403, "the key's scope does not allow this"),
        (429, "rate limited"),
        (503, "database unavailable"),
        *((s, "not found") for s in extra),
    ):
        out[str(status)] = {
            "description": text,
            "content": {"application/json": {"schema": ref("Error")}},
        }
    return out


def get(summary: str, schema: str, parameters: list[dict[str, Any]], *extra: int) -> dict[str, Any]:
    return {
        "get": {"summary": summary, "parameters": parameters, "responses": answers(schema, *extra)}
    }


USER = {
    "name": "userId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 512},
    "description": "the raw user id; hashed before lookup",
}


@cache
def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/v1/users/{userId}/properties": {
            **get("A user's properties (Telling Logger API)", "UserProperties", [USER], 404),
            "post": {
                "summary": "Set a user's properties (ingestion: ingest or admin key)",
                "parameters": [USER],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": obj({"properties": {"type": "object"}})}
                    },
                },
                "responses": answers("SetProperties"),
            },
        },
        "/api/v1/analytics/performance/overview": get(
            "Performance metric percentiles (Telling Logger API)",
            "PerformanceOverview",
            [
                query("startDate", TIME, "ISO 8601; default 24 hours before endDate"),
                query("endDate", TIME, "ISO 8601, exclusive; a bare date includes that day"),
                query("metric", STR, "one metric type"),
            ],
        ),
        "/api/v1/logs/filter": get(
            "Filter logs with paging and sorting (Log Ingestion API)",
            "LogPage",
            [
                query("event_type", enum(EVENT_TYPES)),
                query("event_name", STR),
                query("level", enum(LEVELS)),
                query("type", enum(sorted(LOG_TYPES))),
                query("user_id", STR, "raw user id; hashed before lookup"),
                query("session_id", STR, "raw session id; hashed before lookup"),
                query("app_version", STR),
                query("start_time", TIME),
                query("end_time", TIME),
                query("page", bounded(1, 10_000_000)),
                query("page_size", bounded(1, 1000)),
                query("cursor", STR, "next_cursor of the previous page (sort_by=timestamp)"),
                query("sort_by", enum(SORTABLE)),
                query("sort_order", enum(("desc", "asc"))),
            ],
        ),
        "/api/v1/logs/recent": get("Newest logs", "RecentLogs", [query("limit", bounded(1, 1000))]),
        "/api/v1/status": get("Service status", "Status", []),
        "/api/v1/metrics": get("Row counts of the caller's project", "Metrics", []),
        "/api/v1/analytics/endpoints": get(
            "Per endpoint: requests, rpm, error rate, latency percentiles",
            "EndpointStats",
            [
                *RANGE,
                query("service", STR),
                query("sort", enum(ENDPOINT_SORTS)),
                query("limit", bounded(1, 1000)),
            ],
        ),
        "/api/v1/analytics/timeseries": get(
            "Points over time",
            "TimeSeries",
            [
                query("source", enum(SOURCES)),
                query("interval", enum(("hour", "day"))),
                *RANGE,
                *(query(n, STR) for n in ("endpoint", "service", "feature", "metric")),
                query("level", enum(LEVELS)),
            ],
        ),
        "/api/v1/analytics/features": get(
            "Feature usage", "Features", [*RANGE, query("limit", bounded(1, 1000))]
        ),
        "/api/v1/analytics/active-users": get(
            "Distinct active users per day, week or month",
            "ActiveUsers",
            [query("interval", enum(("day", "week", "month"))), *RANGE],
        ),
        "/api/v1/analytics/sessions": get("Session counts and durations", "Sessions", RANGE),
        "/api/v1/analytics/error-rate": get(
            "Log error rate per value of a user property",
            "ErrorRate",
            [
                query("by", enum(("user_property",))),
                query("property", STR, "user property key", True),
                *RANGE,
            ],
        ),
        "/api/v1/analytics/dashboard": get(
            "Overview KPI tiles (dashboard_metrics): value, previous period, change in percent",
            "Dashboard",
            [],
        ),
        "/api/v1/query": {
            "post": {
                "summary": "Read-only SQL over the project's rows (one SELECT)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("QueryRequest")}},
                },
                "responses": answers("QueryResult"),
            }
        },
        "/api/v1/funnels": {
            **get("The project's funnel definitions", "Funnels", []),
            "post": {
                "summary": "Define a funnel (admin key)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("NewFunnel")}},
                },
                "responses": {
                    **{k: v for k, v in answers("Funnel", 409).items() if k != "200"},
                    "201": answers("Funnel")["200"] | {"description": "created"},
                    "409": {
                        "description": "a funnel of that name exists in the project",
                        "content": {"application/json": {"schema": ref("Error")}},
                    },
                },
            },
        },
        "/api/v1/funnels/{id}/conversion": get(
            "Users reaching each step of a funnel over [start, end)",
            "FunnelConversion",
            [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                    "description": "the funnel's id (another project's funnel is not found)",
                },
                *RANGE,
            ],
            404,
        ),
        "/api/v1/alert-rules": {
            **get("Alert rules (admin key)", "AlertRules", []),
            "post": {
                "summary": "Create an alert rule (admin key)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("NewAlertRule")}},
                },
                "responses": answers("AlertRule"),
            },
        },
        "/api/v1/alert-rules/{id}": {
            "delete": {
                "summary": "Delete an alert rule (admin key)",
                "parameters": [ID],
                "responses": answers("Deleted", 404),
            }
        },
        "/api/v1/alerts": get(
            "Alerts, resolved ones too, newest first", "Alerts", [query("limit", bounded(1, 1000))]
        ),
        "/api/v1/alerts/{id}/ack": {
            "post": {
                "summary": "Acknowledge an alert: no more repeats (admin key)",
                "parameters": [ID],
                "responses": answers("Alert", 404),
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document (public)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "telemetry-processor query API",
            "version": __version__,
            "description": "Answers scoped to the project of the caller's API key. Read endpoints need a read or admin key; setting user properties an ingest or admin key. Identifier fields in answers are hashes.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"apiKey": []}, {"bearer": []}],
    }
