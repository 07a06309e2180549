"""Helpers that drive the real OpenTelemetry SDK against a running server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor


def resource(**attrs: str) -> Resource:
    return Resource.create({"service.name": "shop", "deployment.type": "cloud", **attrs})


def grpc_tracer_provider(
    endpoint: str, *, batched: bool = False, **resource_attrs: str
) -> TracerProvider:
    """Spans exported one per request as they end, or (``batched``) together on flush."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=resource(**resource_attrs))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10)
    processor = BatchSpanProcessor(exporter) if batched else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider


def http_tracer_provider(base_url: str, **resource_attrs: str) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=resource(**resource_attrs))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{base_url}/v1/traces", timeout=10))
    )
    return provider


@contextmanager
def otel_logger(
    exporter: object, name: str = "app", **resource_attrs: str
) -> Iterator[logging.Logger]:
    """A stdlib logger whose records go through the SDK log handler to ``exporter``."""
    provider = LoggerProvider(resource=resource(**resource_attrs))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))  # type: ignore[arg-type]
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger = logging.getLogger(f"{name}-{id(provider)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
