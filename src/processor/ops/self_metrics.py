"""The service's own Prometheus metrics, served at ``/metrics`` on the HTTP port.

With several workers, prometheus_client's multiprocess mode keeps each worker's values in
``Settings.metrics_dir`` and any worker's ``/metrics`` answers the sum over all of them.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

ITEMS_RECEIVED = Counter(
    "processor_items_received",
    "Spans, log records and data points received",
    ["signal", "receiver"],
)
ITEMS_ACCEPTED = Counter(
    "processor_items_accepted", "Items stored (or already stored)", ["signal", "receiver"]
)
ITEMS_REJECTED = Counter(
    "processor_items_rejected",
    "Items refused as unstorable (partial success)",
    ["signal", "receiver"],
)
REQUESTS = Counter(
    "processor_requests", "Export requests by outcome", ["signal", "receiver", "outcome"]
)
EXPORT_SECONDS = Histogram(
    "processor_export_seconds",
    "Time from receiving an export to answering it",
    ["signal", "receiver"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMMIT_SECONDS = Histogram(
    "processor_db_commit_seconds",
    "Time to commit one group of batches",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ROWS_WRITTEN = Counter("processor_rows_written", "Rows sent to the database per table", ["table"])
DIRECT_COPY_FALLBACKS = Counter(
    "processor_direct_copy_fallbacks",
    "PostgreSQL direct COPYs rolled back to take the staging table + ON CONFLICT path, per"
    " table and reason (conflict: a retried or repeated row; data: a value the database"
    " refused; unsupported: COPY not allowed, e.g. row security)",
    ["table", "reason"],
)
# Across workers: in-flight work adds up; the database is up when every running worker says so.
INFLIGHT_REQUESTS = Gauge(
    "processor_inflight_requests",
    "Export requests admitted and not answered",
    multiprocess_mode="livesum",
)
INFLIGHT_BYTES = Gauge(
    "processor_inflight_bytes",
    "Bytes of admitted export requests not answered",
    multiprocess_mode="livesum",
)
DATABASE_UP = Gauge(
    "processor_database_up",
    "1 when the last database check succeeded",
    multiprocess_mode="livemin",
)
DEFAULT_PARTITION_ROWS = Gauge(
    "processor_default_partition_rows",
    "Rows in a raw table's DEFAULT partition (days without a partition), PostgreSQL",
    ["table"],
    multiprocess_mode="livemax",
)


def exposition(metrics_dir: str | None = None) -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type; with ``metrics_dir``,
    summed over every worker."""
    if metrics_dir is None:
        return generate_latest(), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=metrics_dir)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def worker_stopped(pid: int, metrics_dir: str | None) -> None:
    """Drop a stopped worker's live gauges from the sums."""
    if metrics_dir is not None:
        multiprocess.mark_process_dead(pid, metrics_dir)
