"""The service's own Prometheus metrics, served at ``/metrics`` on the HTTP port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
INFLIGHT_REQUESTS = Gauge(
    "processor_inflight_requests", "Export requests admitted and not answered"
)
INFLIGHT_BYTES = Gauge("processor_inflight_bytes", "Bytes of admitted export requests not answered")
DATABASE_UP = Gauge("processor_database_up", "1 when the last database check succeeded")
DEFAULT_PARTITION_ROWS = Gauge(
    "processor_default_partition_rows",
    "Rows in a raw table's DEFAULT partition (days without a partition), PostgreSQL",
    ["table"],
)
