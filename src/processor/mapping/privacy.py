"""Identifier hashing and PII scrubbing (SPEC §7)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

Hasher = Callable[[str], str]

# Attribute keys whose values identify a person, organisation, session or client address.
SENSITIVE_KEYS = frozenset(
    {
        "user.id",
        "enduser.id",
        "user.email",
        "user.name",
        "user.full_name",
        "user.hash",
        "enduser.pseudo.id",
        "organization.id",
        "tenant.id",
        "session.id",
        "session.previous_id",
        "client.address",
        "client.socket.address",
        "http.client_ip",
        "net.peer.ip",
        "net.sock.peer.addr",
        "network.peer.address",
        "source.address",
        "userId",
        "userName",
        "userEmail",
        "sessionId",
        "user_id",
        "user_name",
        "user_email",
        "session_id",
        "email",
        "ip",
        "ip_address",
    }
)

# The look-behind starts a match only at the start of a run of local-part characters, which
# keeps scrubbing linear: without it a long run with no "@" costs quadratic time.
_EMAIL = r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"
# An address may end a sentence ("from 10.0.0.1."), but is not part of a longer dotted number.
_IPV4 = r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\.?\d)"
# IPv6: all eight groups, or "::"-compressed with at least one group ("::1", "2001:db8::7334").
# Fewer than eight groups without "::" (times such as 12:30:45) are not addresses; in
# "::ffff:192.0.2.1" the IPv4 part is left to the IPv4 pattern.
_H16 = r"[0-9A-Fa-f]{1,4}"
_IPV6 = (
    rf"(?<![\w:])(?:(?:{_H16}:){{7}}{_H16}"
    rf"|{_H16}(?::{_H16}){{0,6}}::(?:{_H16}(?::{_H16}){{0,6}})?"
    rf"|::{_H16}(?::{_H16}){{0,6}})(?![\w:]|\.\d)"
)
_PII = re.compile(f"{_EMAIL}|{_IPV4}|{_IPV6}")


def make_hasher(key: str | None = None) -> Hasher:
    """``sha256(v)[:16]``, or HMAC-SHA256 keyed with ``key`` when one is given."""
    if key:
        secret = key.encode()

        @lru_cache(maxsize=65536)
        def keyed(value: str) -> str:
            return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:16]

        return keyed

    @lru_cache(maxsize=65536)
    def plain(value: str) -> str:
        return hashlib.sha256(value.encode()).hexdigest()[:16]

    return plain


def scrub_text(text: str, hasher: Hasher) -> str:
    """Replace e-mail addresses and IP addresses inside free text by their hashes."""
    if "@" not in text and "." not in text and ":" not in text:
        return text
    return _PII.sub(lambda m: hasher(m.group(0)), text)


def scrub_value(value: Any, hasher: Hasher) -> Any:
    """Scrub a JSON-ready value: strings lose e-mails and IPs, containers are walked."""
    if isinstance(value, str):
        return scrub_text(value, hasher)
    if isinstance(value, dict):
        return scrub_mapping(value, hasher)
    if isinstance(value, list):
        return [scrub_value(v, hasher) for v in value]
    return value


def scrub_mapping(values: dict[str, Any], hasher: Hasher) -> dict[str, Any]:
    """A copy whose identifying values are hashed, keys kept so analysts can still group."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in SENSITIVE_KEYS:
            out[key] = _hash_all(value, hasher)
        else:
            out[key] = scrub_value(value, hasher)
    return out


def _hash_all(value: Any, hasher: Hasher) -> Any:
    """A sensitive value with every leaf hashed (a list or map of ids is still ids)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _hash_all(v, hasher) for k, v in value.items()}
    if isinstance(value, list):
        return [_hash_all(v, hasher) for v in value]
    return hasher(str(value))


def scrub_candidates(
    attrs: Mapping[str, Any], sensitive: frozenset[str]
) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``attrs`` and the keys whose values ``scrub_mapping`` may change: the others
    (not sensitive, and None, a number, or text without '@', '.' and ':') it keeps."""
    todo = []
    for key, value in attrs.items():
        kind = type(value)
        if key in sensitive:
            todo.append(key)
        elif kind is str:
            if "@" in value or "." in value or ":" in value:
                todo.append(key)
        elif value is not None and kind is not int and kind is not bool and kind is not float:
            todo.append(key)
    return dict(attrs), todo
