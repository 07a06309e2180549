"""The compiled fast path (issue #15): OTLP protobuf bytes straight to record views.

``_wire`` (``_wire.c``, compiled by the build hook) walks the protobuf wire format of an
``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` and builds the same views as
``views.trace_views`` / ``views.log_views`` (values converted as ``values.attributes`` does),
without upb message objects. Whatever it is not sure of (malformed input, invalid UTF-8, deep
nesting, non-canonical log records) it declines with None, and the reference decodes, so
errors and repairs stay the reference's. Without the extension, or with ``FAST_PATH=off``,
every request takes the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import structlog

from processor.mapping import privacy, values

log = structlog.get_logger(__name__)


def _load() -> tuple[ModuleType | None, str]:
    try:
        from processor.mapping import _wire  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, str(exc)
    bounds = ("MAX_DEPTH", "MAX_ATTRIBUTES", "MAX_ITEMS", "MAX_STRING", "MAX_TEXT")
    if any(getattr(_wire, b) != getattr(values, b) for b in bounds):
        return None, "its bounds differ from processor.mapping.values (stale build)"
    return _wire, ""


_WIRE, UNAVAILABLE_REASON = _load()
# On unless configure("off"); the server calls configure() once at start.
_enabled = _WIRE is not None
# identity.scrubbed_attributes' first pass: compiled, or the reference in privacy.py.
scrub_candidates: Callable[[Mapping[str, Any], frozenset[str]], tuple[dict[str, Any], list[str]]]
scrub_candidates = _WIRE.scrub_candidates if _WIRE is not None else privacy.scrub_candidates


def available() -> bool:
    return _WIRE is not None


def enabled() -> bool:
    return _enabled


def configure(mode: str) -> None:
    """``auto``: the fast path when it was built (a warning at start when not); ``off``:
    always the pure-Python reference."""
    global _enabled, scrub_candidates
    _enabled = mode == "auto" and _WIRE is not None
    scrub_candidates = _WIRE.scrub_candidates if _enabled and _WIRE else privacy.scrub_candidates
    if mode == "auto" and _WIRE is None:
        log.warning("fast_path_unavailable", reason=UNAVAILABLE_REASON, using="python")
    else:
        log.info("fast_path", enabled=_enabled)


def walk_traces(data: Any) -> list[Any] | None:
    """Trace views of an ExportTraceServiceRequest, or None: the reference decides."""
    if not _enabled or _WIRE is None:
        return None
    result: list[Any] | None = _WIRE.walk_traces(data)
    return result


def walk_logs(data: Any) -> list[Any] | None:
    """Log views of an ExportLogsServiceRequest, or None: the reference decides."""
    if not _enabled or _WIRE is None:
        return None
    result: list[Any] | None = _WIRE.walk_logs(data)
    return result
