"""The compiled fast path against the reference, on the same bytes: views, rows, errors."""

from __future__ import annotations

from typing import Any

import pytest

from processor.errors import InvalidRequest
from processor.ingest.decode import Signal, decode
from processor.mapping import RouteContext, fast
from processor.mapping.logs import route_log_views
from processor.mapping.traces import route_trace_views
from processor.mapping.views import log_views, trace_views

REFERENCE = {Signal.TRACES: trace_views, Signal.LOGS: log_views}
ROUTERS = {Signal.TRACES: route_trace_views, Signal.LOGS: route_log_views}


def require_extension() -> Any:
    """The compiled walker; its absence fails the test (it is built by every install)."""
    wire = fast._WIRE
    if wire is None:
        pytest.fail(f"the fast path extension is not importable: {fast.UNAVAILABLE_REASON}")
    return wire


def strict(value: Any) -> Any:
    """``value`` with every leaf tagged by its type, so ``True`` never equals ``1`` nor ``1.0``
    equals ``1``; the reference's NamedTuples and the walker's tuples compare as tuples."""
    if isinstance(value, tuple | list):
        return (type(value) is list, [strict(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [(strict(k), strict(v)) for k, v in value.items()])  # order too
    return (type(value).__name__, value)


def compare(signal: Signal, data: bytes, ctx: RouteContext) -> str:
    """Assert the fast path gives exactly the reference's views and rows for ``data``, or
    declines it; return what happened: ``fast``, ``declined`` or ``invalid`` (both refuse)."""
    wire = require_extension()
    walk = wire.walk_traces if signal == Signal.TRACES else wire.walk_logs
    views = walk(data)
    try:
        expected = REFERENCE[signal](decode(signal, data))  # type: ignore[arg-type]
    except InvalidRequest:
        assert views is None, "the fast path accepted what the reference refuses"
        return "invalid"
    if views is None:
        return "declined"
    assert strict(views) == strict(expected)
    assert ROUTERS[signal](views, ctx) == ROUTERS[signal](expected, ctx)
    return "fast"
