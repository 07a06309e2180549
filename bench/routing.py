"""Routing throughput, CPU only: ``python -m bench.routing [--rounds N]``.

Times decoding and routing from the request bytes (``WireFormat.process``: no server, no
database), once with the compiled fast path and once with the pure-Python reference
(``FAST_PATH=off``), interleaved in the same rounds, and reports the median items/s of N
rounds in process CPU time, so other load on the machine disturbs it less. Workloads:

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

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from bench.workload import ITEMS_PER_REQUEST, kv, logs_template, trace_template
from processor.ingest.decode import Signal
from processor.ingest.formats import OTLP_PROTOBUF
from processor.mapping import RouteContext, fast
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
    workloads: dict[str, tuple[Signal, list[bytes]]] = {
        "traces": (Signal.TRACES, traces),
        "logs": (Signal.LOGS, logs),
        "middleware": (
            Signal.TRACES,
            [middleware_request(i, server_identity=False).SerializeToString() for i in range(n)],
        ),
        "middleware-complete": (
            Signal.TRACES,
            [middleware_request(i, server_identity=True).SerializeToString() for i in range(n)],
        ),
    }
    modes = ("fast", "reference") if fast.available() else ("reference",)
    if not fast.available():
        print(f"fast path unavailable ({fast.UNAVAILABLE_REASON}): reference only")

    def run(mode: str, signal: Signal, requests: list[bytes]) -> float:
        fast.configure("auto" if mode == "fast" else "off")
        process: Callable[[bytes, RouteContext, int], Any] = OTLP_PROTOBUF[signal].process
        started = time.process_time()
        for data in requests:
            process(data, ctx, 1000)
        return time.process_time() - started

    rates: dict[tuple[str, str], list[float]] = {
        (name, mode): [] for name in workloads for mode in modes
    }
    for name, mode in rates:  # warm the hash and scrub caches
        run(mode, *workloads[name])
    for _ in range(args.rounds):
        for name, mode in rates:
            seconds = run(mode, *workloads[name])
            rates[name, mode].append(len(workloads[name][1]) * ITEMS_PER_REQUEST / seconds)
    for (name, mode), values in rates.items():
        rate = statistics.median(values)
        print(
            f"{name:20s} {mode:9s} {rate:9.0f} items/s {1e6 / rate:6.1f} µs/item "
            f"(median of {args.rounds})"
        )
    if len(modes) == 2:
        for name in workloads:
            ratios = [
                f / r for f, r in zip(rates[name, "fast"], rates[name, "reference"], strict=True)
            ]
            print(f"{name:20s} fast/reference {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
