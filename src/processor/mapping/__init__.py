"""Mapping stage: pure functions from decoded requests to analytics rows (SPEC §5-§7).

The stage's interface is one router per signal, each ``(request, RouteContext) -> Batch``.
Nothing here does I/O.
"""

from processor.mapping.identity import RouteContext
from processor.mapping.logs import route_logs
from processor.mapping.metrics import route_metrics
from processor.mapping.traces import route_traces

__all__ = ["RouteContext", "route_logs", "route_metrics", "route_traces"]
