"""Protocol status for each failure type (SPEC §8), looked up by type, never by message."""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from processor.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    ProcessorError,
    RateLimited,
    RetryableError,
    StorageUnavailable,
    Unauthenticated,
)

# Most specific types first: the first isinstance match wins.
STATUS: tuple[tuple[type[ProcessorError], grpc.StatusCode, int], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, 401),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, 403),
    (NotFound, grpc.StatusCode.NOT_FOUND, 404),
    (Conflict, grpc.StatusCode.ALREADY_EXISTS, 409),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (Overloaded, grpc.StatusCode.UNAVAILABLE, 503),
    (StorageUnavailable, grpc.StatusCode.UNAVAILABLE, 503),
    (RetryableError, grpc.StatusCode.UNAVAILABLE, 503),
)


def status_codes(exc: ProcessorError) -> tuple[grpc.StatusCode, int]:
    """The gRPC status code and the HTTP status for a failure."""
    for kind, code, http in STATUS:
        if isinstance(exc, kind):
            return code, http
    return grpc.StatusCode.INTERNAL, 500


def error_status(exc: ProcessorError) -> status_pb2.Status:
    """A google.rpc.Status for the failure, with RetryInfo when the client should retry."""
    code, _ = status_codes(exc)
    status = status_pb2.Status(code=code.value[0], message=str(exc))
    if isinstance(exc, RetryableError):
        detail = any_pb2.Any()
        detail.Pack(_retry_info(exc))
        status.details.append(detail)
    return status


def retry_info_trailer(exc: ProcessorError) -> tuple[tuple[str, bytes], ...]:
    """RetryInfo again as its own ``google.rpc.retryinfo-bin`` trailer: the OpenTelemetry
    Python exporter reads the delay from there, not from ``grpc-status-details-bin``."""
    if not isinstance(exc, RetryableError):
        return ()
    return (("google.rpc.retryinfo-bin", _retry_info(exc).SerializeToString()),)


def _retry_info(exc: RetryableError) -> error_details_pb2.RetryInfo:
    seconds = max(exc.retry_after, 0.0)
    delay = duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds - int(seconds)) * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def retry_after_header(exc: ProcessorError) -> dict[str, str]:
    if isinstance(exc, RetryableError):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return {}
