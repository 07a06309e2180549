"""Shared helpers of the query API tests: keys, data sent through the real ingestion APIs,
and calls to the REST endpoints."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from processor.mapping.privacy import make_hasher
from processor.storage import admin
from processor.storage.writer import create_db_engine

hash_id = make_hasher()
BASE = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
RANGE = {"start": "2025-01-01T00:00:00Z", "end": "2025-02-01T00:00:00Z"}


def make_key(database_url: str, project: str, scope: str) -> str:
    from processor.settings import Settings

    engine = create_db_engine(Settings(database_url=database_url).sqlalchemy_url)
    try:
        key, _ = admin.create_key(engine, project, scope)
    finally:
        engine.dispose()
    return key


def project_id(database_url: str, name: str) -> int:
    from processor.settings import Settings

    engine = create_db_engine(Settings(database_url=database_url).sqlalchemy_url)
    try:
        found = admin.project_id(engine, name)
    finally:
        engine.dispose()
    assert found is not None
    return found


def headers(key: str | None) -> dict[str, str]:
    return {"x-api-key": key} if key else {}


def get(server: Any, path: str, key: str | None = None, **params: Any) -> requests.Response:
    return requests.get(f"{server.http_url}{path}", params=params, headers=headers(key), timeout=30)


def post(server: Any, path: str, body: Any, key: str | None = None) -> requests.Response:
    return requests.post(
        f"{server.http_url}{path}",
        data=orjson.dumps(body),
        headers={"content-type": "application/json", **headers(key)},
        timeout=60,
    )


def send_logs(server: Any, key: str | None, logs: list[dict[str, Any]]) -> None:
    """Through the Telling Logger ingestion API."""
    resp = post(server, "/api/v1/logs", logs, key)
    assert resp.status_code == 200, resp.text


def tl_log(i: int, *, user: str, level: str = "info", when: datetime = BASE, **extra: Any) -> dict:
    return {
        "id": f"log-{user}-{i}",
        "type": extra.pop("type", "general"),
        "level": level,
        "message": extra.pop("message", f"message {i} of {user}"),
        "timestamp": when.isoformat(),
        "userId": user,
        "sessionId": extra.pop("session", f"{user}-session"),
        **extra,
    }


@dataclass
class Request:
    route: str
    status: int
    duration_ms: float
    when: datetime
    user: str | None = None
    session: str | None = None
    method: str = "GET"
    service: str = "api"


def send_requests(server: Any, key: str | None, requests_: list[Request]) -> None:
    """SERVER spans over OTLP/HTTP (protobuf), one per request."""
    message = trace_service_pb2.ExportTraceServiceRequest()
    by_service: dict[str, Any] = {}
    for n, r in enumerate(requests_):
        if r.service not in by_service:
            rs = message.resource_spans.add()
            kv = rs.resource.attributes.add()
            kv.key, kv.value.string_value = "service.name", r.service
            by_service[r.service] = rs.scope_spans.add()
        start = int(r.when.timestamp() * 1e9)
        digest = hashlib.sha256(f"{r}{n}".encode()).digest()
        span = trace_pb2.Span(
            trace_id=digest[:16],
            span_id=digest[16:24],
            name=f"{r.method} {r.route}",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=start,
            end_time_unix_nano=start + int(r.duration_ms * 1e6),
        )
        attributes: dict[str, Any] = {
            "http.request.method": r.method,
            "http.route": r.route,
            "http.response.status_code": r.status,
        }
        if r.user:
            attributes["user.id"] = r.user
        if r.session:
            attributes["session.id"] = r.session
        for k, v in attributes.items():
            kv = span.attributes.add()
            kv.key = k
            if isinstance(v, int):
                kv.value.int_value = v
            else:
                kv.value.string_value = v
        by_service[r.service].spans.append(span)
    resp = requests.post(
        f"{server.http_url}/v1/traces",
        data=message.SerializeToString(),
        headers={"content-type": "application/x-protobuf", **headers(key)},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text


def send_events(server: Any, key: str | None, events: list[dict[str, Any]]) -> None:
    """Through the Log Ingestion API's batch endpoint."""
    resp = post(server, "/api/v1/batch-ingest", {"logs": events}, key)
    assert resp.status_code == 200, resp.text


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


def roll_up(server: Any) -> None:
    """One rollup round now, as `telemetry-processor rollup` runs it (waiting for a round in
    progress), so answers from the rollups include everything sent so far."""
    from processor.analytics.runner import rollup_once

    assert server.app is not None
    rollup_once(server.app.engine)
