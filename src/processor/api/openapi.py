"""The OpenAPI 3 description of the query API, served (publicly) at /api/v1/openapi.json."""

from __future__ import annotations

from functools import cache
from typing import Any

from processor import __version__
from processor.api.logs import EVENT_TYPES, SORTABLE
from processor.api.openapi_schemas import RANGE, SCHEMAS, STR, TIME, bounded, enum, obj, query, ref
from processor.api.readers import ENDPOINT_SORTS, SOURCES
from processor.mapping.telling_logger import LEVELS
from processor.mapping.values import LOG_TYPES

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
