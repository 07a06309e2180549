"""Reader answers as JSON (pure functions). Times are RFC 3339 UTC; rates are fractions 0-1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from processor.api.readers import (
    ActiveUsers,
    EndpointStat,
    FeatureStat,
    MetricSummary,
    Percentiles,
    Period,
    PropertyErrorRate,
    SessionSummary,
    TimePoint,
)
from processor.api.sqlbits import iso

WEEK = timedelta(days=7)
DEFAULT_ACTIVE_SPAN = {
    "day": timedelta(days=30),
    "week": timedelta(weeks=12),
    "month": timedelta(days=365),
}
PERCENTILES = ("p50", "p90", "p95", "p99")


def period_json(period: Period) -> dict[str, str]:
    return {"start": iso(period.start), "end": iso(period.end)}


def stats_json(stats: Percentiles) -> dict[str, Any]:
    return {
        "avg": stats.avg,
        "min": stats.min,
        "max": stats.max,
        **{p: getattr(stats, p) for p in PERCENTILES},
        "samples": stats.samples,
    }


def performance(period: Period, metrics: list[MetricSummary]) -> dict[str, Any]:
    """SPEC §11's keys, plus the Telling Logger's ``avg_ms``… names for metrics in ms."""
    out: dict[str, Any] = {}
    for m in metrics:
        entry = {**stats_json(m.stats), "unit": m.unit}
        if m.unit == "ms":
            for name in ("avg", *PERCENTILES):
                entry[f"{name}_ms"] = entry[name]
        out[m.name] = entry
    return {"period": period_json(period), "metrics": out}


def endpoints(period: Period, stats: list[EndpointStat]) -> dict[str, Any]:
    return {
        "period": period_json(period),
        "endpoints": [
            {
                "service_name": s.service_name,
                "endpoint": s.endpoint,
                "method": s.method,
                "requests": s.requests,
                "errors": s.errors,
                "client_errors": s.client_errors,
                "error_rate": s.error_rate,
                "rpm": s.rpm,
                "unique_users": s.unique_users,
                "unique_users_estimated": s.unique_users_estimated,
                "avg_ms": s.latency.avg,
                **{p: getattr(s.latency, p) for p in PERCENTILES},
            }
            for s in stats
        ],
    }


def series(source: str, interval: str, period: Period, points: list[TimePoint]) -> dict[str, Any]:
    rendered = []
    for p in points:
        point: dict[str, Any] = {"start": iso(p.start), "count": p.count}
        if p.unique_users is not None:
            point["unique_users"] = p.unique_users
        if p.errors is not None:
            point["errors"] = p.errors
            point["error_rate"] = p.errors / p.count if p.count else 0.0
        if p.values is not None:
            point.update({k: v for k, v in stats_json(p.values).items() if k != "samples"})
        rendered.append(point)
    return {
        "source": source,
        "interval": interval,
        "period": period_json(period),
        "points": rendered,
    }


def features(period: Period, stats: list[FeatureStat]) -> dict[str, Any]:
    return {
        "period": period_json(period),
        "features": [
            {
                "feature_name": s.feature_name,
                "usage_count": s.usage_count,
                "unique_users": s.unique_users,
                "avg_duration_ms": s.avg_duration_ms,
                "success_rate": s.success_rate,
            }
            for s in stats
        ],
    }


def active(period: Period, answer: ActiveUsers) -> dict[str, Any]:
    return {
        "interval": answer.interval,
        "period": period_json(period),
        "points": [{"start": iso(start), "users": n} for start, n in answer.points],
        "total_users": answer.total_users,
    }


def sessions(period: Period, s: SessionSummary) -> dict[str, Any]:
    return {
        "period": period_json(period),
        "sessions": s.sessions,
        "sessions_with_errors": s.with_errors,
        "avg_duration_ms": s.avg_duration_ms,
        "p50_duration_ms": s.p50_duration_ms,
        "p95_duration_ms": s.p95_duration_ms,
        "avg_events": s.avg_events,
        "per_day": [{"start": iso(day), "sessions": n} for day, n in s.per_day],
    }


def error_rates(period: Period, key: str, rates: list[PropertyErrorRate]) -> dict[str, Any]:
    return {
        "period": period_json(period),
        "property": key,
        "values": [
            {"value": r.value, "total": r.total, "errors": r.errors, "error_rate": r.error_rate}
            for r in rates
        ],
    }
