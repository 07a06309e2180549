"""Identity: who a record is about (hashed, SPEC §7), and the user properties it sets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from processor.mapping import fast
from processor.mapping.privacy import SENSITIVE_KEYS, Hasher, scrub_mapping, scrub_value
from processor.mapping.rows import LENGTHS, UserPropertyRow
from processor.mapping.values import clean, dumps, lookup, row_id, text

USER_KEYS = ("user.id", "enduser.id")


ORG_KEYS = ("organization.id", "tenant.id")


SESSION_KEYS = ("session.id",)


USER_PROPERTY_PREFIX = "user.properties."


USER_PROPERTY_MAP = "_user_properties"


@dataclass(frozen=True)
class RouteContext:
    """What the router needs besides the message: who sent it, and how to hash."""

    hasher: Hasher
    project_id: int = 1
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


class Identity(NamedTuple):  # a tuple: built per record, 3x cheaper than a frozen dataclass
    user_id: str | None
    organization_id: str | None
    session_id: str | None
    service_name: str | None
    deployment_type: str | None


def identity(hasher: Hasher, *sources: Mapping[str, Any]) -> Identity:
    user = lookup(USER_KEYS, *sources)
    org = lookup(ORG_KEYS, *sources)
    session = lookup(SESSION_KEYS, *sources)
    return Identity(
        user_id=hasher(str(user)) if user is not None else None,
        organization_id=hasher(str(org)) if org is not None else None,
        session_id=hasher(str(session)) if session is not None else None,
        service_name=text(lookup(("service.name",), *sources), "service_name"),
        deployment_type=text(lookup(("deployment.type",), *sources), "deployment_type"),
    )


def _pick(keys: tuple[str, ...], attrs: Mapping[str, Any]) -> Any:
    """``lookup(keys, attrs)`` for one source."""
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


# scrub_mapping() treats every entry on its own, so the result for a short scalar entry (the
# same key and value) can be remembered: most attribute values repeat across spans.
_MEMO_LENGTH = 200  # longer strings are scrubbed every time


@lru_cache(maxsize=32768)
def _scrub_entry(hasher: Hasher, key: str, is_bool: bool, value: Any) -> Any:
    # ``is_bool`` is part of the cache key: True == 1, yet they dump differently.
    return scrub_mapping({key: value}, hasher)[key]


def scrubbed_attributes(attrs: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    """Exactly ``scrub_mapping(attrs, hasher)``, remembering the result of common entries.

    Its first pass (which values scrubbing keeps as they are) is ``fast.scrub_candidates``:
    compiled with the fast path, else ``privacy.scrub_candidates``."""
    out, todo = fast.scrub_candidates(attrs, SENSITIVE_KEYS)
    for key in todo:
        value = attrs[key]
        kind = type(value)
        if (kind is str and len(value) <= _MEMO_LENGTH) or kind is int or kind is bool:
            out[key] = _scrub_entry(hasher, key, kind is bool, value)
        else:
            out[key] = scrub_mapping({key: value}, hasher)[key]
    return out


def identity_over(hasher: Hasher, attrs: Mapping[str, Any], base: Identity) -> Identity:
    """``identity(hasher, attrs, resource)`` given ``base = identity(hasher, resource)``."""
    user = _pick(USER_KEYS, attrs)
    org = _pick(ORG_KEYS, attrs)
    session = _pick(SESSION_KEYS, attrs)
    service = attrs.get("service.name")
    deployment = attrs.get("deployment.type")
    return Identity(
        hasher(str(user)) if user is not None else base.user_id,
        hasher(str(org)) if org is not None else base.organization_id,
        hasher(str(session)) if session is not None else base.session_id,
        base.service_name if service is None or service == "" else text(service, "service_name"),
        base.deployment_type
        if deployment is None or deployment == ""
        else text(deployment, "deployment_type"),
    )


def has_user_properties(attrs: Mapping[str, Any]) -> bool:
    """False when ``user_property_rows`` would find nothing (a cheap over-approximation)."""
    return USER_PROPERTY_MAP in attrs or USER_PROPERTY_PREFIX in "\n".join(attrs)


def user_property_rows(
    attrs: Mapping[str, Any],
    user_id: str | None,
    when: datetime,
    ids: tuple[str | None, str | None],
    ctx: RouteContext,
) -> list[UserPropertyRow]:
    if user_id is None:
        return []
    props: dict[str, Any] = {}
    nested = attrs.get(USER_PROPERTY_MAP)
    if isinstance(nested, dict):
        props.update(nested)
    for key, value in attrs.items():
        if key.startswith(USER_PROPERTY_PREFIX) and len(key) > len(USER_PROPERTY_PREFIX):
            props[key[len(USER_PROPERTY_PREFIX) :]] = value
    rows = []
    for key, value in props.items():
        key = clean(str(key), LENGTHS["property_key"])
        rows.append(
            UserPropertyRow(
                id=row_id(ctx.project_id, "user_properties", user_id, key),
                project_id=ctx.project_id,
                timestamp=when,
                trace_id=ids[0],
                span_id=ids[1],
                user_id=user_id,
                property_key=key,
                property_value=dumps(scrub_value(value, ctx.hasher)),
                updated_at=ctx.now,
            )
        )
    return rows
