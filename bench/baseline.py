"""BASELINE — a minimal processor written the way the original Telemetry Processor Service
design writes rows, for comparison only. Not the product.

A synchronous gRPC server on a thread pool; per request, open a
SQLAlchemy ORM session, turn each span into an ORM object (``session.add``) and commit once
per request. Same tables (``processor.storage.schema``), same hashing of identifiers; none of the
product's group commit, COPY or idempotent ids (ids are ``uuid4``).

Run: ``python -m bench.baseline --port 4317 --database-url postgresql+psycopg://…``
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import threading
import uuid
from concurrent import futures
from datetime import UTC, datetime
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from processor.storage.schema import EndpointUsage, FeatureUsage, Log

SEVERITY = ((21, "fatal"), (17, "error"), (13, "warning"), (9, "info"), (5, "debug"), (1, "trace"))


def hash_id(value: Any) -> str | None:
    return None if value is None else hashlib.sha256(str(value).encode()).hexdigest()[:16]


def extract(kvs: Any) -> dict[str, Any]:
    """The original design's AttributeExtractor: every attribute into a dict."""
    out: dict[str, Any] = {}
    for kv in kvs:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


def when(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC)


class BaselineTraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def Export(self, request: Any, context: Any) -> Any:
        with self.sessions() as session:
            for resource_spans in request.resource_spans:
                resource = extract(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.process_span(span, resource, session)
            session.commit()
        return trace_service_pb2.ExportTraceServiceResponse()

    def process_span(self, span: Any, resource: dict[str, Any], session: Session) -> None:
        attrs = extract(span.attributes)
        merged = {**resource, **attrs}
        common = {
            "id": uuid.uuid4(),
            "project_id": 1,
            "timestamp": when(span.start_time_unix_nano),
            "trace_id": span.trace_id.hex(),
            "span_id": span.span_id.hex(),
            "user_id": hash_id(merged.get("user.id")),
            "organization_id": hash_id(merged.get("organization.id")),
            "session_id": hash_id(merged.get("session.id")),
            "service_name": merged.get("service.name"),
            "deployment_type": merged.get("deployment.type"),
        }
        duration = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
        metadata = {
            k: v
            for k, v in attrs.items()
            if k not in ("user.id", "organization.id", "session.id", "client.address")
        }
        method = attrs.get("http.request.method") or attrs.get("http.method")
        if span.kind == Span.SPAN_KIND_SERVER and method:
            session.add(
                EndpointUsage(
                    **common,
                    endpoint=attrs.get("http.route") or attrs.get("url.path") or "/",
                    method=str(method),
                    status_code=attrs.get("http.response.status_code"),
                    duration_ms=duration,
                    event_metadata=metadata,
                )
            )
        if attrs.get("feature.name"):
            session.add(
                FeatureUsage(
                    **common,
                    feature_name=attrs["feature.name"],
                    action=attrs.get("feature.action") or "used",
                    duration_ms=duration,
                    event_metadata=metadata,
                )
            )


class BaselineLogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def Export(self, request: Any, context: Any) -> Any:
        with self.sessions() as session:
            for resource_logs in request.resource_logs:
                resource = extract(resource_logs.resource.attributes)
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        attrs = extract(record.attributes)
                        merged = {**resource, **attrs}
                        level = next(
                            (name for least, name in SEVERITY if record.severity_number >= least),
                            "info",
                        )
                        session.add(
                            Log(
                                id=uuid.uuid4(),
                                project_id=1,
                                timestamp=when(record.time_unix_nano),
                                trace_id=record.trace_id.hex() or None,
                                span_id=record.span_id.hex() or None,
                                level=level,
                                severity_number=record.severity_number or None,
                                type=attrs.get("log.type") or "general",
                                message=record.body.string_value,
                                user_id=hash_id(merged.get("user.id")),
                                session_id=hash_id(merged.get("session.id")),
                                service_name=merged.get("service.name"),
                                app_version=merged.get("service.version"),
                                metadata_={
                                    k: v
                                    for k, v in attrs.items()
                                    if k not in ("user.id", "session.id", "organization.id")
                                },
                                observed_timestamp=when(record.observed_time_unix_nano),
                            )
                        )
            session.commit()
        return logs_service_pb2.ExportLogsServiceResponse()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--database-url", required=True, help="a SQLAlchemy URL")
    p.add_argument("--threads", type=int, default=10)
    args = p.parse_args()

    engine = create_engine(args.database_url, pool_size=args.threads, max_overflow=0)
    sessions = sessionmaker(engine)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.threads),
        options=[("grpc.max_receive_message_length", 16 << 20)],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
        BaselineTraceService(sessions), server
    )
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(BaselineLogsService(sessions), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("baseline serving", flush=True)
    stop.wait()
    server.stop(5).wait()
    engine.dispose()


if __name__ == "__main__":
    main()
