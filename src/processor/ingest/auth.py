"""API-key authentication: which project a request belongs to."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from processor.errors import StorageUnavailable, Unauthenticated
from processor.ingest.ratelimit import RateLimiter

DEFAULT_PROJECT = 1


class Authenticator(Protocol):
    def project_for(self, headers: Mapping[str, str]) -> int:
        """The project id for a request's headers (lower-case names); raises Unauthenticated."""
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


class KeyGate:
    """Keys from ``API_KEYS`` (default project) plus the ``api_keys`` table, and rate limits.

    With no key configured anywhere every request is let in, for the default project. Keys in
    the database are reloaded periodically, so rotation needs no restart.
    """

    def __init__(self, static_keys: Iterable[str], limiter: RateLimiter | None = None) -> None:
        self._static = {key_digest(k): DEFAULT_PROJECT for k in static_keys}
        self._stored: dict[str, int] = {}
        self._digests = dict(self._static)
        self.limiter = limiter
        self.loaded = False
        self.used: dict[str, datetime] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def update(self, stored: Mapping[str, int]) -> None:
        """Replace the keys loaded from the database."""
        self._stored = dict(stored)
        self._digests = {**self._stored, **self._static}
        self.loaded = True

    def project_for(self, headers: Mapping[str, str]) -> int:
        if not self.loaded and not self._static:
            # Until the key table has been read we cannot know whether auth is on: fail closed.
            raise StorageUnavailable("API keys are not loaded yet")
        if not self._digests:
            return DEFAULT_PROJECT
        key = presented_key(headers)
        if key is None:
            raise Unauthenticated("an API key is required (x-api-key or authorization: Bearer)")
        digest = key_digest(key)
        project = self._digests.get(digest)
        if project is None:
            raise Unauthenticated("unknown API key")
        if digest in self._stored:
            self.used[digest] = datetime.now(UTC)
        if self.limiter is not None:
            self.limiter.check(project)
        return project

    def take_used(self) -> dict[str, datetime]:
        used, self.used = self.used, {}
        return used
