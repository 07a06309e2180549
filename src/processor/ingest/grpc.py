"""OTLP/gRPC receiver: decode, hand the request to the pipeline, map failures to status codes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

from processor.errors import ProcessorError
from processor.ingest import formats
from processor.ingest.auth import Authenticator
from processor.ingest.decode import Signal
from processor.ingest.pipeline import Pipeline
from processor.ingest.status import error_status, retry_info_trailer
from processor.settings import Settings

log = structlog.get_logger(__name__)

SERVICES = {
    Signal.TRACES: trace_pb.DESCRIPTOR.services_by_name["TraceService"].full_name,
    Signal.LOGS: logs_pb.DESCRIPTOR.services_by_name["LogsService"].full_name,
    Signal.METRICS: metrics_pb.DESCRIPTOR.services_by_name["MetricsService"].full_name,
}


class Servicer:
    """The three OTLP Export methods, registered as generic handlers. Requests arrive as
    bytes so a bad one maps to INVALID_ARGUMENT."""

    def __init__(self, pipeline: Pipeline, auth: Authenticator) -> None:
        self.pipeline = pipeline
        self.auth = auth

    def handler(
        self, signal: Signal
    ) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
        fmt = formats.OTLP_PROTOBUF[signal]

        async def export(data: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                project_id = self.auth.project_for(dict(context.invocation_metadata() or ()))
                with self.pipeline.admit(len(data)):
                    outcome = await self.pipeline.export(
                        fmt, data, project_id=project_id, receiver="grpc"
                    )
            except ProcessorError as exc:
                status = rpc_status.to_status(error_status(exc))
                await context.abort(
                    status.code,
                    status.details,
                    (*status.trailing_metadata, *retry_info_trailer(exc)),
                )
            return formats.response(signal, outcome.rejected, outcome.error_message)

        return export

    def generic_handlers(self) -> list[grpc.GenericRpcHandler]:
        handlers = []
        for signal, service in SERVICES.items():
            method = grpc.unary_unary_rpc_method_handler(
                self.handler(signal),
                request_deserializer=None,
                response_serializer=lambda m: m.SerializeToString(),
            )
            handlers.append(grpc.method_handlers_generic_handler(service, {"Export": method}))
        return handlers


class GrpcReceiver:
    def __init__(self, settings: Settings, pipeline: Pipeline, auth: Authenticator) -> None:
        self.settings = settings
        self.servicer = Servicer(pipeline, auth)
        self.health = HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = settings.port
        # Other services on the same port (the query API): each adds itself to the server
        # and returns its full service name, for reflection and health.
        self.extensions: list[Callable[[grpc.aio.Server], str]] = []
        self._names: tuple[str, ...] = ()

    async def start(self) -> None:
        if self.server is not None:
            return
        limit = self.settings.max_recv_msg_mib << 20
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", 16 << 20),
                ("grpc.so_reuseport", 1),
                ("grpc.max_concurrent_streams", 256),
            ]
        )
        self.server.add_generic_rpc_handlers(tuple(self.servicer.generic_handlers()))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._names = tuple(register(self.server) for register in self.extensions)
        reflection.enable_server_reflection(
            (
                *SERVICES.values(),
                *self._names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        await self.set_serving(False)
        address = f"{_host(self.settings.bind_address)}:{self.settings.port}"
        credentials = server_credentials(self.settings)
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        await self.server.start()
        log.info(
            "grpc_listening",
            address=self.settings.bind_address,
            port=self.port,
            tls=credentials is not None,
        )

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICES.values(), *self._names):
            await self.health.set(name, status)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting; let in-flight exports finish. Safe to call twice."""
        server, self.server = self.server, None
        if server is not None:
            await self.health.enter_graceful_shutdown()
            await server.stop(grace)


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert_file or not settings.tls_key_file:
        return None
    with open(settings.tls_key_file, "rb") as f:
        key = f.read()
    with open(settings.tls_cert_file, "rb") as f:
        cert = f.read()
    client_ca = None
    if settings.tls_client_ca_file:
        with open(settings.tls_client_ca_file, "rb") as f:
            client_ca = f.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
