"""OTLP/HTTP receiver and the JSON APIs: authenticate, read the body, hand it to the pipeline
with its wire format, and answer in the request's content type.

aiohttp runs in the same event loop as the gRPC server, so both share one pipeline, one
writer and one group commit.
"""

from __future__ import annotations

import ssl
import zlib
from collections.abc import Awaitable, Callable, Iterable

import orjson
import structlog
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from processor.errors import FieldError, InvalidRequest, PayloadTooLarge, ProcessorError
from processor.ingest import formats
from processor.ingest.auth import Authenticator
from processor.ingest.decode import Signal
from processor.ingest.formats import WireFormat
from processor.ingest.pipeline import Outcome, Pipeline
from processor.ingest.status import error_status, retry_after_header, status_codes
from processor.settings import Settings

log = structlog.get_logger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# POST path -> the JSON API's wire format.
JSON_APIS = {
    "/api/v1/logs": formats.TELLING_LOGGER,
    "/api/v1/ingest": formats.LOG_INGESTION_EVENT,
    "/api/v1/batch-ingest": formats.LOG_INGESTION_BATCH,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def media_type(request: web.Request) -> str:
    return request.content_type.split(";")[0].strip().lower()


def encode(message: Message, content_type: str) -> web.Response:
    if content_type == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
    else:
        body = message.SerializeToString()
    return web.Response(body=body, content_type=content_type)


class HttpReceiver:
    """Serves ``routes`` (health, metrics) next to its own on the same port."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        auth: Authenticator,
        *,
        routes: Iterable[web.RouteDef] = (),
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.auth = auth
        self.routes = list(routes)
        self.max_body = settings.max_http_body_mib << 20
        self.runner: web.AppRunner | None = None
        self.port = settings.http_port
        # Other stages' routes on the same port (the query API): each adds its own.
        self.extensions: list[Callable[[web.Application], None]] = []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body + 1)
        for signal in Signal:
            app.router.add_post(f"/v1/{signal}", self._otlp(signal))
        for path, fmt in JSON_APIS.items():
            app.router.add_post(path, self._json_api(fmt))
        app.router.add_routes(self.routes)
        for register in self.extensions:
            register(app)
        return app

    async def start(self) -> None:
        if self.runner is not None:
            return
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
        self.port = self.runner.addresses[0][1]  # the bound port, when HTTP_PORT is 0
        log.info(
            "http_listening",
            address=self.settings.bind_address,
            port=self.port,
            tls=self.settings.tls_enabled,
        )

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting; let in-flight requests finish. Safe to call twice."""
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

    def _otlp(self, signal: Signal) -> Handler:
        by_type = {PROTOBUF: formats.OTLP_PROTOBUF[signal], JSON: formats.OTLP_JSON[signal]}

        async def handle(request: web.Request) -> web.StreamResponse:
            content_type = media_type(request)
            fmt = by_type.get(content_type)
            if fmt is None:
                return web.json_response(
                    {
                        "code": 3,
                        "message": f"unsupported content type {content_type!r}; "
                        f"use {PROTOBUF} or {JSON}",
                    },
                    status=415,
                )
            try:
                outcome = await self._export(request, fmt)
            except ProcessorError as exc:
                return self._failure(exc, content_type)
            response = formats.response(signal, outcome.rejected, outcome.error_message)
            return encode(response, content_type)

        return handle

    def _json_api(self, fmt: WireFormat) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                outcome = await self._export(request, fmt)
            except FieldError as exc:
                return web.json_response(
                    {"success": False, "error": str(exc), "field": exc.field}, status=400
                )
            except ProcessorError as exc:
                return self._failure(exc, JSON)
            reply = dict(outcome.reply or {})
            if outcome.rejected:
                reply["rejected"] = outcome.rejected
                reply["error"] = outcome.error_message
            return web.json_response(reply, dumps=lambda o: orjson.dumps(o).decode())

        return handle

    async def _export(self, request: web.Request, fmt: WireFormat) -> Outcome:
        project_id = self.auth.project_for({k.lower(): v for k, v in request.headers.items()})
        body = await self.body(request)
        with self.pipeline.admit(len(body)):
            return await self.pipeline.export(fmt, body, project_id=project_id, receiver="http")

    def _failure(self, exc: ProcessorError, content_type: str) -> web.Response:
        _, http_status = status_codes(exc)
        status = error_status(exc)
        if content_type == PROTOBUF:
            body, media = status.SerializeToString(), PROTOBUF
        else:
            body, media = json_format.MessageToJson(status, indent=None).encode(), JSON
        return web.Response(
            status=http_status, body=body, content_type=media, headers=retry_after_header(exc)
        )


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert_file or not settings.tls_key_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_client_ca_file:
        context.load_verify_locations(settings.tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
