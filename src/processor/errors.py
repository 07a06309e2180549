"""Failure types. Receivers map them to protocol status codes by type, never by message."""

from __future__ import annotations


class ProcessorError(Exception):
    """Base of every failure the pipeline reports to a client."""


class InvalidRequest(ProcessorError):
    """The payload can never be accepted as sent (INVALID_ARGUMENT / HTTP 400)."""


class PayloadTooLarge(ProcessorError):
    """The payload exceeds a size limit (RESOURCE_EXHAUSTED without RetryInfo / HTTP 413)."""


class Unauthenticated(ProcessorError):
    """A missing or unknown API key (UNAUTHENTICATED / HTTP 401)."""


class PermissionDenied(ProcessorError):
    """A valid key whose scope does not allow this call (PERMISSION_DENIED / HTTP 403)."""


class NotFound(ProcessorError):
    """The thing asked for does not exist in the caller's project (NOT_FOUND / HTTP 404)."""


class Conflict(ProcessorError):
    """The thing to create already exists, e.g. a funnel name (ALREADY_EXISTS / HTTP 409)."""


class RetryableError(ProcessorError):
    """A transient failure; the client should send the same request again later."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageUnavailable(RetryableError):
    """The database could not be reached or the commit failed (UNAVAILABLE / HTTP 503)."""


class Overloaded(RetryableError):
    """Too much work in flight (UNAVAILABLE with RetryInfo / HTTP 503 + Retry-After)."""


class RateLimited(RetryableError):
    """The project's request rate is over its limit (RESOURCE_EXHAUSTED / HTTP 429)."""


class FieldError(InvalidRequest):
    """A field of a JSON API request is missing or wrong; HTTP 400 naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

    @property
    def parameter(self) -> str:
        """The query API names the same thing a parameter."""
        return self.field
