"""API-key authentication: which project a request belongs to."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from processor.errors import PermissionDenied, StorageUnavailable, Unauthenticated
from processor.ingest.ratelimit import RateLimiter

DEFAULT_PROJECT = 1

# Key scopes (SPEC §11): ingest keys write, read keys query, admin keys do both.
INGEST, READ, ADMIN = "ingest", "read", "admin"
SCOPES = (INGEST, READ, ADMIN)
INGESTION = frozenset({INGEST, ADMIN})
READING = frozenset({READ, ADMIN})


@dataclass(frozen=True)
class Caller:
    project_id: int
    scope: str
    # True when no key is configured at all (local development): everything is open.
    open: bool = False


class Authenticator(Protocol):
    def project_for(self, headers: Mapping[str, str], allowed: frozenset[str] = INGESTION) -> int:
        """The project id for a request's headers (lower-case names).

        Raises Unauthenticated for a missing or unknown key, PermissionDenied when the key's
        scope is not in ``allowed``.
        """
        ...

    def caller(self, headers: Mapping[str, str], allowed: frozenset[str]) -> Caller:
        """Like ``project_for``, with the key's scope."""
        ...


def presented_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def static_key(entry: str) -> tuple[str, str]:
    """An ``API_KEYS`` entry: ``KEY`` (scope ingest) or ``KEY:read`` / ``KEY:admin``."""
    key, sep, scope = entry.rpartition(":")
    if sep and key and scope in SCOPES:
        return key, scope
    return entry, INGEST


class KeyGate:
    """Keys from ``API_KEYS`` (default project) plus the ``api_keys`` table, and rate limits.

    With no key configured anywhere every request is let in, for the default project, with
    every scope. Keys in the database are reloaded periodically, so rotation needs no restart.
    """

    def __init__(self, static_keys: Iterable[str], limiter: RateLimiter | None = None) -> None:
        self._static: dict[str, tuple[int, str]] = {}
        for entry in static_keys:
            key, scope = static_key(entry)
            self._static[key_digest(key)] = (DEFAULT_PROJECT, scope)
        self._stored: dict[str, tuple[int, str]] = {}
        self._digests = dict(self._static)
        self.limiter = limiter
        self.loaded = False
        self.used: dict[str, datetime] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def update(self, stored: Mapping[str, tuple[int, str]]) -> None:
        """Replace the keys loaded from the database (SHA-256 → (project id, scope))."""
        self._stored = dict(stored)
        self._digests = {**self._stored, **self._static}
        self.loaded = True

    def project_for(self, headers: Mapping[str, str], allowed: frozenset[str] = INGESTION) -> int:
        return self.caller(headers, allowed).project_id

    def caller(self, headers: Mapping[str, str], allowed: frozenset[str]) -> Caller:
        if not self.loaded and not self._static:
            # Until the key table has been read we cannot know whether auth is on: fail closed.
            raise StorageUnavailable("API keys are not loaded yet")
        if not self._digests:
            return Caller(DEFAULT_PROJECT, ADMIN, open=True)
        key = presented_key(headers)
        if key is None:
            raise Unauthenticated("an API key is required (x-api-key or authorization: Bearer)")
        digest = key_digest(key)
        found = self._digests.get(digest)
        if found is None:
            raise Unauthenticated("unknown API key")
        project, scope = found
        if digest in self._stored:
            self.used[digest] = datetime.now(UTC)
        if scope not in allowed:
            raise PermissionDenied(
                f"this key's scope is {scope!r}; this call needs {' or '.join(sorted(allowed))}"
            )
        if self.limiter is not None:
            self.limiter.check(project)
        return Caller(project, scope)

    def take_used(self) -> dict[str, datetime]:
        used, self.used = self.used, {}
        return used
