"""Routing throughput, CPU only: ``python -m bench.routing [--rounds N]``.

Times ``route_traces`` and ``route_logs`` (no server, no database) over requests parsed once
beforehand, and reports the median items/s of N rounds in process CPU time, so other load
on the machine disturbs it less. Workloads:

- traces, logs: the requests ``bench.workload`` sends (no parent links).
- middleware: traces whose SERVER span has no identity and a child INTERNAL span sets
  ``user.id``, ``session.id`` and ``organization.id`` (the identity-within-a-trace pass).
- middleware-complete: the same shape with the identity already on the SERVER span.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from bench.workload import ITEMS_PER_REQUEST, kv, logs_template, trace_template
from processor.mapping import RouteContext, route_logs, route_traces
from processor.mapping.privacy import make_hasher

T0 = 1_700_000_000_000_000_000


def middleware_request(seed: int, *, server_identity: bool) -> ExportTraceServiceRequest:
    """ITEMS_PER_REQUEST spans: a SERVER span and its middleware child, per trace."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend([kv("service.name", "api")])
    scope = resource_spans.scope_spans.add()
    for i in range(ITEMS_PER_REQUEST // 2):
        trace_id = rng.randbytes(16)
        who = [
            kv("user.id", f"user-{rng.randrange(5000)}"),
            kv("session.id", f"sess-{rng.randrange(9000)}"),
            kv("organization.id", f"org-{rng.randrange(50)}"),
        ]
        server = scope.spans.add(
            trace_id=trace_id,
            span_id=rng.randbytes(8),
            name="GET /api/items/{id}",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=T0 + i,
            end_time_unix_nano=T0 + i + 5_000_000,
        )
        server.attributes.extend(
            [
                kv("http.request.method", "GET"),
                kv("http.route", "/api/items/{id}"),
                kv("http.response.status_code", 200),
                *(who if server_identity else []),
            ]
        )
        child = scope.spans.add(
            trace_id=trace_id,
            span_id=rng.randbytes(8),
            parent_span_id=server.span_id,
            name="auth middleware",
            kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=T0 + i,
            end_time_unix_nano=T0 + i + 1_000_000,
        )
        child.attributes.extend(who)
    return request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=8, help="requests per workload")
    args = parser.parse_args()
    n = args.requests
    ctx = RouteContext(hasher=make_hasher(), project_id=1, now=datetime.now(UTC))
    traces = [trace_template(i).render(i + 1) for i in range(n)]
    logs = [logs_template(i).render(i + 1) for i in range(n)]
    workloads: dict[str, tuple[Callable[[Any, RouteContext], Any], list[Any]]] = {
        "traces": (route_traces, [ExportTraceServiceRequest.FromString(t) for t in traces]),
        "logs": (route_logs, [ExportLogsServiceRequest.FromString(b) for b in logs]),
        "middleware": (
            route_traces,
            [middleware_request(i, server_identity=False) for i in range(n)],
        ),
        "middleware-complete": (
            route_traces,
            [middleware_request(i, server_identity=True) for i in range(n)],
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in workloads}
    for route, requests in workloads.values():  # warm the hash and scrub caches
        for request in requests:
            route(request, ctx)
    for _ in range(args.rounds):
        for name, (route, requests) in workloads.items():
            started = time.process_time()
            for request in requests:
                route(request, ctx)
            rates[name].append(len(requests) * ITEMS_PER_REQUEST / (time.process_time() - started))
    for name, values in rates.items():
        print(f"{name:20s} {statistics.median(values):9.0f} items/s (median of {args.rounds})")


if __name__ == "__main__":
    main()
