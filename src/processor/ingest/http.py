"""OTLP/HTTP receiver, the seeds' JSON ingestion APIs, health and Prometheus metrics.

aiohttp runs in the same event loop as the gRPC server, so both share one pipeline, one
writer and one group commit.
"""

from __future__ import annotations

import base64
import ssl
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processor.errors import InvalidRequest, PayloadTooLarge, ProcessorError
from processor.ingest.auth import Authenticator
from processor.ingest.grpc import RESPONSES
from processor.ingest.pipeline import REQUEST_TYPES, Outcome, Pipeline, Signal
from processor.ingest.status import lookup, retry_after_header, rpc_status
from processor.mapping import json_apis
from processor.settings import Settings

log = structlog.get_logger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# OTLP/JSON encodes these bytes fields as hex; protobuf's JSON mapping expects base64.
HEX_ID_FIELDS = frozenset(
    {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
)

Health = Callable[[], Awaitable[bool]]


def hex_ids_to_base64(node: Any) -> None:
    """Rewrite OTLP/JSON hex ids in place so ``json_format`` can parse the message."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in HEX_ID_FIELDS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raw = b"\x00"  # wrong length: the router rejects just this record
                node[key] = base64.b64encode(raw).decode()
            elif isinstance(value, (dict, list)):
                hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            hex_ids_to_base64(item)


def parse_json(signal: Signal, body: bytes) -> Message:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidRequest("an OTLP/JSON request must be a JSON object")
    hex_ids_to_base64(document)
    message = REQUEST_TYPES[signal]()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise InvalidRequest(f"malformed OTLP/JSON {signal} request: {exc}") from exc
    return message


def media_type(request: web.Request) -> str:
    return request.content_type.split(";")[0].strip().lower()


def encode(message: Message, content_type: str) -> web.Response:
    if content_type == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
    else:
        body = message.SerializeToString()
    return web.Response(body=body, content_type=content_type)


class HttpReceiver:
    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        auth: Authenticator,
        *,
        ready: Health,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.auth = auth
        self.ready = ready
        self.max_body = settings.max_http_body_mib << 20
        self.runner: web.AppRunner | None = None
        self.port = settings.http_port
        # Other stages' routes on the same port (the query API): each adds its own.
        self.extensions: list[Callable[[web.Application], None]] = []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body + 1)
        app.router.add_post("/v1/traces", self._otlp(Signal.TRACES))
        app.router.add_post("/v1/logs", self._otlp(Signal.LOGS))
        app.router.add_post("/v1/metrics", self._otlp(Signal.METRICS))
        app.router.add_post("/api/v1/logs", self._compat(json_apis.telling_logger_logs, "logs"))
        app.router.add_post("/api/v1/ingest", self._compat(json_apis.ingest_one, "ingest"))
        app.router.add_post("/api/v1/batch-ingest", self._compat(json_apis.ingest_batch, "ingest"))
        app.router.add_get("/health", self._health)
        app.router.add_get("/liveness", self._liveness)
        app.router.add_get("/readiness", self._readiness)
        app.router.add_get("/metrics", self._metrics)
        for register in self.extensions:
            register(app)
        return app

    async def start(self) -> None:
        # Decompression is ours, so a gzip bomb is bounded before it is held in memory.
        self.runner = web.AppRunner(self.app(), auto_decompress=False, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(
            self.runner,
            self.settings.bind_address,
            self.settings.http_port,
            ssl_context=ssl_context(self.settings),
            reuse_port=True,
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info(
            "http_listening",
            address=self.settings.bind_address,
            port=self.port,
            tls=self.settings.tls_enabled,
        )

    async def shutdown(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()

    async def body(self, request: web.Request) -> bytes:
        """The request body, decompressed, bounded by MAX_HTTP_BODY_MIB after decompression."""
        if request.content_length is not None and request.content_length > self.max_body:
            raise PayloadTooLarge(f"body over {self.settings.max_http_body_mib} MiB")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise PayloadTooLarge(f"body over {self.settings.max_http_body_mib} MiB") from exc
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return raw
        if encoding not in ("gzip", "deflate"):
            raise InvalidRequest(f"unsupported Content-Encoding {encoding!r}")
        if not raw:
            return raw
        wbits = zlib.MAX_WBITS | (16 if encoding == "gzip" else 0)
        parts: list[bytes] = []
        size = 0
        pending = raw
        while True:  # gzip may hold several members; the body is their concatenation
            inflater = zlib.decompressobj(wbits)
            try:
                part = inflater.decompress(pending, self.max_body + 1 - size)
            except zlib.error as exc:
                raise InvalidRequest(f"malformed {encoding} body: {exc}") from exc
            size += len(part)
            if size > self.max_body or inflater.unconsumed_tail:
                raise PayloadTooLarge(
                    f"decompressed body over {self.settings.max_http_body_mib} MiB"
                )
            if not inflater.eof:
                raise InvalidRequest(f"truncated {encoding} body")
            parts.append(part)
            pending = inflater.unused_data.lstrip(b"\x00")  # gzip(1) tolerates zero padding
            if encoding != "gzip" or not pending:
                return b"".join(parts)

    def _otlp(self, signal: Signal) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        respond = RESPONSES[signal]

        async def handle(request: web.Request) -> web.StreamResponse:
            content_type = media_type(request)
            if content_type not in (PROTOBUF, JSON):
                return web.json_response(
                    {
                        "code": 3,
                        "message": f"unsupported content type {content_type!r}; "
                        f"use {PROTOBUF} or {JSON}",
                    },
                    status=415,
                )
            try:
                project_id = self.auth.project_for(_headers(request))
                body = await self.body(request)
                with self.pipeline.admit(len(body)):
                    payload = parse_json(signal, body) if content_type == JSON else body
                    outcome: Outcome = await self.pipeline.export(
                        signal, payload, project_id=project_id, receiver="http"
                    )
            except ProcessorError as exc:
                return self._failure(exc, content_type)
            return encode(respond(outcome), content_type)

        return handle

    def _compat(
        self, mapper: json_apis.Mapper, name: str
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                project_id = self.auth.project_for(_headers(request))
                body = await self.body(request)
                with self.pipeline.admit(len(body)):
                    try:
                        document = orjson.loads(body)
                    except orjson.JSONDecodeError as exc:
                        raise InvalidRequest(f"malformed JSON: {exc}") from exc
                    batch, reply = mapper(
                        document,
                        json_apis.Context(
                            hasher=self.pipeline.hasher,
                            project_id=project_id,
                            max_batch_size=self.settings.max_batch_size,
                        ),
                    )
                    outcome = await self.pipeline.commit(name, batch, receiver="http")
            except json_apis.FieldError as exc:
                return web.json_response(
                    {"success": False, "error": str(exc), "field": exc.field}, status=400
                )
            except ProcessorError as exc:
                return self._failure(exc, JSON)
            if outcome.rejected:
                reply["rejected"] = outcome.rejected
                reply["error"] = outcome.error_message
            return web.json_response(reply, dumps=lambda o: orjson.dumps(o).decode())

        return handle

    def _failure(self, exc: ProcessorError, content_type: str) -> web.Response:
        _, http_status = lookup(exc)
        status = rpc_status(exc)
        if content_type == PROTOBUF:
            body, media = status.SerializeToString(), PROTOBUF
        else:
            body, media = json_format.MessageToJson(status, indent=None).encode(), JSON
        return web.Response(
            status=http_status, body=body, content_type=media, headers=retry_after_header(exc)
        )

    async def _health(self, _request: web.Request) -> web.Response:
        ready = await self.ready()
        return web.json_response(
            {"status": "ok" if ready else "degraded", "database": "up" if ready else "down"},
            status=200 if ready else 503,
        )

    async def _liveness(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readiness(self, _request: web.Request) -> web.Response:
        ready = await self.ready()
        return web.json_response(
            {"ready": ready, "database": "up" if ready else "down"}, status=200 if ready else 503
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _headers(request: web.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert_file or not settings.tls_key_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_client_ca_file:
        context.load_verify_locations(settings.tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
