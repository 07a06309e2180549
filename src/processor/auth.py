"""API-key authentication: which project a request belongs to."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Protocol

from processor.errors import Unauthenticated

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


class StaticKeys:
    """Keys from ``API_KEYS``, all for the default project. No keys: every request is let in."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = {key_digest(k): DEFAULT_PROJECT for k in keys}

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def project_for(self, headers: Mapping[str, str]) -> int:
        if not self._digests:
            return DEFAULT_PROJECT
        key = presented_key(headers)
        if key is None:
            raise Unauthenticated("an API key is required (x-api-key or authorization: Bearer)")
        digest = key_digest(key)
        for known, project in self._digests.items():
            if hmac.compare_digest(known, digest):
                return project
        raise Unauthenticated("unknown API key")
