"""Row shapes of the analytics tables, shared by the router (which builds them) and the writer.

Each row type's field order is its table's column order. Identifier fields hold hashes.
JSON fields hold already-serialised JSON text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple


class EndpointUsageRow(NamedTuple):
    id: str
    project_id: int
    timestamp: datetime
    trace_id: str | None
    span_id: str | None
    endpoint: str
    method: str
    user_id: str | None
    organization_id: str | None
    session_id: str | None
    status_code: int | None
    duration_ms: float | None
    service_name: str | None
    deployment_type: str | None
    event_metadata: str
    # 'unset' | 'ok' | 'error' from the span's status; None for rows not from spans.
    span_status: str | None = None


class FeatureUsageRow(NamedTuple):
    id: str
    project_id: int
    timestamp: datetime
    trace_id: str | None
    span_id: str | None
    feature_name: str
    action: str
    user_id: str | None
    organization_id: str | None
    session_id: str | None
    duration_ms: float | None
    service_name: str | None
    deployment_type: str | None
    event_metadata: str
    span_status: str | None = None


class UserActivityRow(NamedTuple):
    id: str
    project_id: int
    timestamp: datetime
    trace_id: str | None
    span_id: str | None
    event_type: str
    user_id: str | None
    organization_id: str | None
    session_id: str | None
    service_name: str | None
    deployment_type: str | None
    event_metadata: str


class LogRow(NamedTuple):
    id: str
    project_id: int
    timestamp: datetime
    trace_id: str | None
    span_id: str | None
    level: str
    severity_number: int | None
    type: str
    message: str
    stack_trace: str | None
    user_id: str | None
    session_id: str | None
    service_name: str | None
    device_platform: str | None
    device_os_version: str | None
    device_model: str | None
    app_version: str | None
    app_build_number: str | None
    metadata: str
    observed_timestamp: datetime | None


class PerformanceMetricRow(NamedTuple):
    id: str
    project_id: int
    timestamp: datetime
    trace_id: str | None
    span_id: str | None
    metric_type: str
    value: float | None
    unit: str | None
    user_id: str | None
    session_id: str | None
    service_name: str | None
    app_version: str | None
    metadata: str


class UserPropertyRow(NamedTuple):
    id: str
    project_id: int
    timestamp: datetime
    trace_id: str | None
    span_id: str | None
    user_id: str
    property_key: str
    property_value: str
    updated_at: datetime


ROW_TYPES: dict[str, type[tuple]] = {
    "endpoint_usage": EndpointUsageRow,
    "feature_usage": FeatureUsageRow,
    "user_activity": UserActivityRow,
    "logs": LogRow,
    "performance_metrics": PerformanceMetricRow,
    "user_properties": UserPropertyRow,
}
TABLES = tuple(ROW_TYPES)

# Column widths; the router truncates to them so an over-long value is never fatal.
LENGTHS: dict[str, int] = {
    "trace_id": 32,
    "span_id": 16,
    "endpoint": 512,
    "method": 16,
    "user_id": 32,
    "organization_id": 32,
    "session_id": 32,
    "service_name": 255,
    "deployment_type": 50,
    "feature_name": 255,
    "action": 100,
    "event_type": 50,
    "level": 16,
    "type": 32,
    "device_platform": 100,
    "device_os_version": 100,
    "device_model": 255,
    "app_version": 100,
    "app_build_number": 100,
    "metric_type": 255,
    "unit": 64,
    "property_key": 255,
    "span_status": 8,
}
JSON_COLUMNS = frozenset({"event_metadata", "metadata", "property_value"})


@dataclass
class Batch:
    """Rows routed from one request, plus what could not be stored and why."""

    rows: dict[str, list[tuple]] = field(default_factory=lambda: {t: [] for t in TABLES})
    received: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < 5 and reason not in self.errors:
            self.errors.append(reason)

    @property
    def row_count(self) -> int:
        return sum(len(r) for r in self.rows.values())

    @property
    def error_message(self) -> str:
        return "; ".join(self.errors)
