"""Rollup test helpers: synthetic traffic through the real writer, and references recomputed
from the raw rows that every rollup must equal."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import text
from sqlalchemy.engine import Engine

from processor.analytics.buckets import month_of, week_of
from processor.analytics.distinct import Union as UserUnion
from processor.analytics.sketch import percentile_cont
from processor.mapping.rows import (
    Batch,
    EndpointUsageRow,
    FeatureUsageRow,
    LogRow,
    PerformanceMetricRow,
    UserActivityRow,
)
from processor.storage.writer import SqlWriter, create_db_engine

ROLLUP_TABLES = (
    "rollup_invalidations",
    "endpoint_stats",
    "endpoint_day_users",
    "endpoint_hour_users",
    "metric_aggregates",
    "feature_usage_daily",
    "feature_hour_parts",
    "feature_day_users",
    "user_activity_daily",
    "user_hour_parts",
    "user_day_sessions",
    "dashboard_metrics",
    "sessions",
    "session_hours",
)


def database_examples(n: int) -> settings:
    """Hypothesis settings for a property over a real database: ``n`` examples, no deadline
    (each example writes and rolls up), and the function-scoped engine shared by the
    examples (each cleans it first)."""
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def play(engine: Engine, traffic: list, replay: int, roll_up: Callable[[Engine], object]) -> None:
    """Write each chunk of ``traffic`` ((events, run_after) pairs), rolling up after those
    that ask; then a retry of earlier rows and late rows for hours already rolled up, and a
    last round. Row ids come from Event.n: a repeated n is a retried (duplicate) row, which
    must not count twice, even with other values, as the writer ignores an existing id."""
    sent: list[Event] = []
    for chunk, run_after in traffic:
        write(engine, batch_of(chunk))
        sent.extend(chunk)
        if run_after:
            roll_up(engine)
    write(engine, batch_of(sent[: replay * 3]), batch_of(list(reversed(sent))[:replay]))
    roll_up(engine)


def clean(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (
            "endpoint_usage",
            "feature_usage",
            "user_activity",
            "performance_metrics",
            "logs",
            *ROLLUP_TABLES,
        ):
            conn.execute(text(f"DELETE FROM {table}"))


@dataclass(frozen=True)
class Event:
    """One request, with the feature use, activity and metric it brings."""

    n: int
    when: datetime
    endpoint: str
    status: int | None
    duration: float
    user: str | None
    session: str | None
    span_status: str | None
    service: str | None = "shop"

    @property
    def key(self) -> str:
        return str(uuid.UUID(int=self.n))


def batch_of(events: Sequence[Event], project: int = 1) -> Batch:
    b = Batch()
    for e in events:
        b.rows["endpoint_usage"].append(
            EndpointUsageRow(
                e.key, project, e.when, None, None, e.endpoint, "GET", e.user, None,
                e.session, e.status, e.duration, e.service, None, "{}", e.span_status,
            )
        )  # fmt: skip
        b.rows["feature_usage"].append(
            FeatureUsageRow(
                e.key, project, e.when, None, None, f"f{e.n % 3}", "used", e.user, None,
                e.session, e.duration / 2, e.service, None, "{}", e.span_status,
            )
        )  # fmt: skip
        if e.n % 4 == 0:
            b.rows["user_activity"].append(
                UserActivityRow(
                    e.key, project, e.when, None, None, "login", e.user, None, e.session,
                    e.service, None, "{}",
                )
            )  # fmt: skip
        b.rows["performance_metrics"].append(
            PerformanceMetricRow(
                e.key, project, e.when, None, None, "startup", e.duration * 3, "ms", e.user,
                e.session, e.service, None, "{}",
            )
        )  # fmt: skip
    return b


def write(engine: Engine, *batches: Batch) -> None:
    """Through the real writer (group commit, idempotent inserts, invalidation markers)."""

    async def go() -> None:
        writer = SqlWriter(create_db_engine(str(engine.url.render_as_string(False))))
        await writer.start()
        try:
            for b in batches:
                result = await writer.write(b)
                assert result.rejected == 0, result.error
        finally:
            await writer.shutdown()

    asyncio.run(go())


# --- the reference ------------------------------------------------------------------------------


def as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def raw(engine: Engine, table: str, columns: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT project_id, timestamp, {columns} FROM {table}"))
        out = [dict(r._mapping) for r in rows]
    for r in out:
        r["timestamp"] = as_utc(r["timestamp"])
    return out


def hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def day(t: datetime) -> datetime:
    return hour(t).replace(hour=0)


def endpoint_reference(engine: Engine) -> dict[tuple, dict[str, Any]]:
    """(period, bucket, service, endpoint, method) -> exact stats and the sorted durations."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in raw(engine, "endpoint_usage", "*"):
        for period, place in (("hour", hour), ("day", day)):
            key = (
                period,
                place(r["timestamp"]),
                r["service_name"] or "",
                r["endpoint"],
                r["method"],
            )
            groups[key].append(r)
    out = {}
    for key, rows in groups.items():
        durations = sorted(r["duration_ms"] for r in rows if r["duration_ms"] is not None)
        out[key] = {
            "request_count": len(rows),
            "error_count": sum(
                1
                for r in rows
                if (r["status_code"] is not None and 500 <= r["status_code"] <= 599)
                or r["span_status"] == "error"
            ),
            "client_error_count": sum(
                1 for r in rows if r["status_code"] is not None and 400 <= r["status_code"] <= 499
            ),
            "duration_sum_ms": math.fsum(durations) if durations else None,
            "duration_min_ms": durations[0] if durations else None,
            "duration_max_ms": durations[-1] if durations else None,
            "unique_users": len({r["user_id"] for r in rows if r["user_id"] is not None}),
            "values": durations,
        }
    return out


def metric_reference(engine: Engine) -> dict[tuple, dict[str, Any]]:
    groups: dict[tuple, list[float]] = defaultdict(list)
    places = (("hourly", hour), ("daily", day), ("weekly", lambda t: week_of(day(t))),
              ("monthly", lambda t: month_of(day(t))))  # fmt: skip
    for r in raw(engine, "performance_metrics", "metric_type, service_name, unit, value"):
        if r["value"] is None or not math.isfinite(r["value"]):
            continue
        for period, place in places:
            key = (
                r["metric_type"],
                period,
                place(r["timestamp"]),
                r["service_name"] or "",
                r["unit"] or "",
            )
            groups[key].append(r["value"])
    return {
        key: {
            "count": len(v),
            "sum": math.fsum(v),
            "min": min(v),
            "max": max(v),
            "values": sorted(v),
        }
        for key, v in groups.items()
    }


def feature_reference(engine: Engine) -> dict[tuple, dict[str, Any]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in raw(engine, "feature_usage", "feature_name, user_id, duration_ms, span_status"):
        groups[(day(r["timestamp"]).date(), r["feature_name"])].append(r)
    out = {}
    for key, rows in groups.items():
        durations = [r["duration_ms"] for r in rows if r["duration_ms"] is not None]
        out[key] = {
            "usage_count": len(rows),
            "unique_users": len({r["user_id"] for r in rows if r["user_id"] is not None}),
            "avg_duration_ms": math.fsum(durations) / len(durations) if durations else None,
            "success_rate": sum(r["span_status"] != "error" for r in rows) / len(rows),
        }
    return out


def user_events(engine: Engine) -> list[dict[str, Any]]:
    """Every raw row with a user that a user's day counts, with its kind as event_type."""
    events = []
    for table, kind in (("endpoint_usage", None), ("feature_usage", None), ("user_activity", "x")):
        duration = "duration_ms" if kind is None else "NULL AS duration_ms"
        label = (
            "event_type"
            if kind
            else f"'{'requests' if table == 'endpoint_usage' else 'features'}' AS event_type"
        )
        for r in raw(engine, table, f"user_id, session_id, {duration}, {label}"):
            if r["user_id"] is not None:
                events.append(r)
    return events


def user_reference(engine: Engine) -> dict[tuple, dict[str, Any]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in user_events(engine):
        groups[(day(r["timestamp"]).date(), r["user_id"])].append(r)
    out = {}
    for key, rows in groups.items():
        breakdown: dict[str, int] = defaultdict(int)
        for r in rows:
            breakdown[r["event_type"]] += 1
        out[key] = {
            "session_count": len({r["session_id"] for r in rows if r["session_id"] is not None}),
            "event_count": len(rows),
            "total_duration_ms": math.fsum(r["duration_ms"] or 0.0 for r in rows),
            "first_seen_at": min(r["timestamp"] for r in rows),
            "last_seen_at": max(r["timestamp"] for r in rows),
            "events_breakdown": dict(breakdown),
        }
    return out


def bracket(ordered: list[float], q: float) -> tuple[float, float]:
    position = q * (len(ordered) - 1)
    return ordered[math.floor(position)], ordered[math.ceil(position)]


def assert_merged_percentile(value: float | None, ordered: list[float], q: float) -> None:
    """Within 1 % of a value between the two raw samples around the exact rank (SPEC §10)."""
    assert value is not None
    low, high = bracket(ordered, q)
    lo = min(low * 0.99, low * 1.01)
    hi = max(high * 0.99, high * 1.01)
    assert lo - 1e-9 <= value <= hi + 1e-9, (value, low, high, q)


def assert_exact_percentile(value: float | None, ordered: list[float], q: float) -> None:
    expected = percentile_cont(ordered, q)
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-9)


# A Monday 10:00 UTC some five weeks back: recent enough that the default retention keeps its
# raw rows (the `rollup` command and the serving runner freeze buckets past it).
_TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
T0 = _TODAY - timedelta(days=35 + _TODAY.weekday(), hours=-10)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def stored(engine: Engine, table: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {table}"))]


def _json(value: Any) -> Any:
    import json

    return json.loads(value) if isinstance(value, str) else value


def _date(value: Any) -> Any:
    from datetime import date

    return date.fromisoformat(value) if isinstance(value, str) else value


QS = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99))


def check_rollups(engine: Engine, *, exact_hours: bool = True) -> None:
    """Every rollup row equals a recomputation from the raw rows, and no other rows exist:
    exact counts, sums, min, max and unique users; hour percentiles are percentile_cont of the
    bucket; day (and longer) percentiles come from merged sketches, within 1 % of the bracket.
    ``exact_hours`` off (a serving runner's open hours): hour rows may instead carry sketch
    percentiles, flagged by percentiles_exact."""
    pg = engine.dialect.name == "postgresql"
    want = endpoint_reference(engine)
    got = {
        (r["period"], as_utc(r["bucket_start"]), r["service_name"], r["endpoint"], r["method"]): r
        for r in stored(engine, "endpoint_stats")
        if r["project_id"] == 1
    }
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        for name in ("request_count", "error_count", "client_error_count", "unique_users"):
            assert g[name] == w[name], (key, name, g[name], w[name])
        assert g["duration_min_ms"] == w["duration_min_ms"]
        assert g["duration_max_ms"] == w["duration_max_ms"]
        assert g["duration_sum_ms"] == pytest.approx(w["duration_sum_ms"], rel=1e-12)
        # An open hour that added rows grew (the serving runner's) has sketch percentiles
        # until it closes, and says so.
        exact = bool(g["percentiles_exact"])
        if exact_hours or key[0] == "day":
            assert exact == (key[0] == "hour"), key  # final hours; day rows merge sketches
        for name, q in QS:
            check = assert_exact_percentile if exact else assert_merged_percentile
            check(g[f"{name}_ms"], w["values"], q)
        # The users sketch of a row estimates its users (a handful here: exactly).
        users = UserUnion()
        users.add(g["users_sketch"])
        assert users.estimate() == w["unique_users"], key
    # The day user sets that day rows count are exactly the raw rows' distinct users.
    want_sets = {
        (
            day(r["timestamp"]).date(),
            r["service_name"] or "",
            r["endpoint"],
            r["method"],
            r["user_id"],
        )
        for r in raw(engine, "endpoint_usage", "*")
        if r["user_id"] is not None and r["project_id"] == 1
    }
    got_sets = {
        (_date(r["day"]), r["service_name"], r["endpoint"], r["method"], r["user_id"])
        for r in stored(engine, "endpoint_day_users")
        if r["project_id"] == 1
    }
    assert got_sets == want_sets
    if pg:  # PostgreSQL's own percentile_cont lies in the bracket the merged answers are held to
        with engine.connect() as conn:
            for (period, bucket, svc, endpoint, method), w in list(want.items())[:20]:
                span = timedelta(hours=1) if period == "hour" else timedelta(days=1)
                exact = conn.execute(
                    text(
                        "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)"
                        " FROM endpoint_usage WHERE project_id = 1 AND endpoint = :e"
                        " AND method = :m AND coalesce(service_name, '') = :svc"
                        " AND timestamp >= :s AND timestamp < :t"
                    ),
                    {"e": endpoint, "m": method, "svc": svc, "s": bucket, "t": bucket + span},
                ).scalar()
                low, high = bracket(w["values"], 0.95)
                assert low - 1e-9 <= exact <= high + 1e-9

    want_m = metric_reference(engine)
    got_m = {
        (r["name"], r["period_type"], as_utc(r["period_start"]), r["service_name"], r["unit"]): r
        for r in stored(engine, "metric_aggregates")
    }
    assert set(got_m) == set(want_m)
    for key, w in want_m.items():
        g = got_m[key]
        assert g["count"] == w["count"]
        assert (g["min"], g["max"]) == (w["min"], w["max"])
        assert g["sum"] == pytest.approx(w["sum"], rel=1e-12)
        assert g["avg"] == pytest.approx(w["sum"] / w["count"], rel=1e-12)
        for name, q in QS:
            check = assert_exact_percentile if key[1] == "hourly" else assert_merged_percentile
            check(g[name], w["values"], q)

    check_daily(engine)


def _close(value: float | None) -> Any:
    """A float sum within 1e-12 of ``value`` (the same numbers added in another order);
    None (no values at all) only as None."""
    return None if value is None else pytest.approx(value, rel=1e-12)


def check_daily(engine: Engine) -> None:
    """feature_usage_daily and user_activity_daily equal the raw rows, and so do the hour
    parts and day sets they are built from."""
    want_f = feature_reference(engine)
    got_f = {
        (_date(r["date"]), r["feature_name"]): r for r in stored(engine, "feature_usage_daily")
    }
    assert set(got_f) == set(want_f)
    for key, w in want_f.items():
        g = got_f[key]
        assert (g["usage_count"], g["unique_users"]) == (w["usage_count"], w["unique_users"])
        assert g["avg_duration_ms"] == _close(w["avg_duration_ms"])
        assert g["success_rate"] == pytest.approx(w["success_rate"], rel=1e-12)

    want_u = user_reference(engine)
    got_u = {(_date(r["date"]), r["user_id"]): r for r in stored(engine, "user_activity_daily")}
    assert set(got_u) == set(want_u)
    for key, w in want_u.items():
        g = got_u[key]
        assert (g["session_count"], g["event_count"]) == (w["session_count"], w["event_count"])
        assert g["total_duration_ms"] == pytest.approx(w["total_duration_ms"], rel=1e-12)
        assert (as_utc(g["first_seen_at"]), as_utc(g["last_seen_at"])) == (
            w["first_seen_at"],
            w["last_seen_at"],
        )
        assert _json(g["events_breakdown"]) == w["events_breakdown"]
    check_day_parts(engine)


def check_day_parts(engine: Engine) -> None:
    """The hour parts and day sets the daily tables are built from equal the raw rows."""
    features: dict[tuple, list[dict]] = defaultdict(list)
    for r in raw(engine, "feature_usage", "feature_name, user_id, duration_ms, span_status"):
        features[(r["project_id"], hour(r["timestamp"]), r["feature_name"])].append(r)
    got_fp = {
        (r["project_id"], as_utc(r["bucket_start"]), r["feature_name"]): r
        for r in stored(engine, "feature_hour_parts")
    }
    assert set(got_fp) == set(features)
    for key, rows in features.items():
        g = got_fp[key]
        durations = [r["duration_ms"] for r in rows if r["duration_ms"] is not None]
        assert (g["usage_count"], g["duration_count"]) == (len(rows), len(durations))
        assert g["success_count"] == sum(r["span_status"] != "error" for r in rows)
        want_sum = math.fsum(durations) if durations else None
        assert g["duration_sum_ms"] == _close(want_sum)
    assert {
        (r["project_id"], _date(r["day"]), r["feature_name"], r["user_id"])
        for r in stored(engine, "feature_day_users")
    } == {
        (r["project_id"], day(r["timestamp"]).date(), r["feature_name"], r["user_id"])
        for r in raw(engine, "feature_usage", "feature_name, user_id")
        if r["user_id"] is not None
    }
    users: dict[tuple, list[dict]] = defaultdict(list)
    events = user_events(engine)
    for r in events:
        users[(r["project_id"], hour(r["timestamp"]), r["user_id"], r["event_type"])].append(r)
    got_up = {
        (r["project_id"], as_utc(r["bucket_start"]), r["user_id"], r["kind"]): r
        for r in stored(engine, "user_hour_parts")
    }
    assert set(got_up) == set(users)
    for key, rows in users.items():
        g = got_up[key]
        assert g["event_count"] == len(rows)
        total = math.fsum(r["duration_ms"] or 0.0 for r in rows)
        assert g["duration_sum_ms"] == pytest.approx(total, rel=1e-12)
        assert as_utc(g["first_seen_at"]) == min(r["timestamp"] for r in rows)
        assert as_utc(g["last_seen_at"]) == max(r["timestamp"] for r in rows)
    assert {
        (r["project_id"], _date(r["day"]), r["user_id"], r["session_id"])
        for r in stored(engine, "user_day_sessions")
    } == {
        (r["project_id"], day(r["timestamp"]).date(), r["user_id"], r["session_id"])
        for r in events
        if r["session_id"] is not None
    }


DAILY_TABLES = {  # table -> its key columns
    "feature_usage_daily": ("project_id", "date", "feature_name"),
    "feature_hour_parts": ("project_id", "bucket_start", "feature_name"),
    "feature_day_users": ("project_id", "day", "feature_name", "user_id"),
    "user_activity_daily": ("project_id", "date", "user_id"),
    "user_hour_parts": ("project_id", "bucket_start", "user_id", "kind"),
    "user_day_sessions": ("project_id", "day", "user_id", "session_id"),
}


def daily_snapshot(engine: Engine) -> dict[str, dict[tuple, dict[str, Any]]]:
    """The daily tables, their parts and sets: table -> key -> row (PostgreSQL: times in
    UTC, JSON parsed by the driver)."""

    out = {}
    for table, key in DAILY_TABLES.items():
        rows = [
            {k: as_utc(v) if isinstance(v, datetime) else v for k, v in r.items()}
            for r in stored(engine, table)
        ]
        out[table] = {tuple(r[k] for k in key): r for r in rows}
    return out


def assert_same_daily(got: dict, want: dict) -> None:
    """Two snapshots hold the same rows: counts, times and sets exactly, float sums within
    1e-12 (they add the same numbers grouped differently)."""
    for table in DAILY_TABLES:
        assert set(got[table]) == set(want[table]), table
        for key, w in want[table].items():
            g = got[table][key]
            for name, value in w.items():
                if isinstance(value, float):
                    assert g[name] == pytest.approx(value, rel=1e-12), (table, key, name)
                else:
                    assert g[name] == value, (table, key, name)


# --- sessions -----------------------------------------------------------------------------------


def log_of(
    n: int,
    when: datetime,
    user: str | None,
    session: str | None,
    platform: str | None,
    version: str | None,
    project: int = 1,
) -> LogRow:
    return LogRow(
        str(uuid.UUID(int=10**6 + n)), project, when, None, None, "info", 9, "general", f"m{n}",
        None, user, session, "app", platform, None, None, version, None, "{}", None,
    )  # fmt: skip


def session_reference(engine: Engine) -> dict[str, dict[str, Any]]:
    """Sessions recomputed by brute force from every raw row of project 1: client sessions by
    id; a user's session-less events chained while each gap is at most 30 minutes. Platform
    and app version: the latest non-empty value among a client session's logs (any time),
    or among the user's session-less logs inside an inferred session."""
    events = []
    for table, label in (
        ("endpoint_usage", "method || ' ' || endpoint"),
        ("feature_usage", "feature_name"),
        ("user_activity", "NULL"),
    ):
        error = {
            "endpoint_usage": "(status_code >= 500 AND status_code <= 599) OR span_status = 'error'",
            "feature_usage": "span_status = 'error'",
            "user_activity": "1 = 0",
        }[table]
        rank = ("endpoint_usage", "feature_usage", "user_activity").index(table)
        for r in raw(
            engine,
            table,
            f"id, user_id, session_id, {label} AS label, CASE WHEN {error} THEN 1 ELSE 0 END AS err",
        ):
            if r["project_id"] == 1 and (r["session_id"] or r["user_id"]):
                r["order"] = (r["timestamp"], rank, str(r["id"]).replace("-", ""))
                events.append(r)
    logs = [r for r in raw(engine, "logs", "id, user_id, session_id, device_platform, app_version")
            if r["project_id"] == 1]  # fmt: skip
    logs.sort(key=lambda g: (g["timestamp"], str(g["id"]).replace("-", "")))
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e["order"]):
        if e["session_id"]:
            groups[("client", e["session_id"])].append(e)
    chains: dict[str, list[list[dict]]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e["order"]):
        if not e["session_id"]:
            mine = chains[e["user_id"]]
            if mine and e["timestamp"] - mine[-1][-1]["timestamp"] <= timedelta(minutes=30):
                mine[-1].append(e)
            else:
                mine.append([e])
    for user, chain in chains.items():
        for group in chain:
            groups[("idle", user, group[0]["timestamp"])] = group
    out = {}
    for key, group in groups.items():
        first, last = group[0]["timestamp"], group[-1]["timestamp"]
        # entry and exit keep the first 512 characters (their column's width)
        labels = [e["label"][:512] for e in group if e["label"] is not None]
        if key[0] == "client":  # any of the session's logs, whenever
            mine = [g for g in logs if g["session_id"] == key[1]]
        else:  # the user's session-less logs inside the session
            mine = [g for g in logs if g["session_id"] is None and g["user_id"] == key[1]]
            mine = [g for g in mine if first <= g["timestamp"] <= last]
        platforms = [g["device_platform"] for g in mine if g["device_platform"]]
        versions = [g["app_version"] for g in mine if g["app_version"]]
        name = key[1] if key[0] == "client" else f"idle:{key[1]}:{first.isoformat()}"
        out[name] = {
            "user_id": next((e["user_id"] for e in group if e["user_id"]), None),
            "started_at": first,
            "ended_at": last,
            "duration_ms": (last - first).total_seconds() * 1000,
            "event_count": len(group),
            "error_count": sum(e["err"] for e in group),
            "entry": labels[0] if labels else None,
            "exit": labels[-1] if labels else None,
            "device_platform": platforms[-1] if platforms else None,
            "app_version": versions[-1] if versions else None,
        }
    return out


def stored_sessions(engine: Engine) -> dict[str, dict[str, Any]]:
    out = {}
    for r in stored(engine, "sessions"):
        assert r["project_id"] == 1
        r["started_at"], r["ended_at"] = as_utc(r["started_at"]), as_utc(r["ended_at"])
        sid = r.pop("session_id")
        name = sid if not sid.startswith("idle-") else (
            f"idle:{r['user_id']}:{r['started_at'].isoformat()}"
        )  # fmt: skip
        r.pop("project_id")
        out[name] = r
    return out


def cli_url(engine: Engine) -> str:
    """The engine's database URL as the CLI's --database-url takes it."""
    return engine.url.render_as_string(False).replace("postgresql+psycopg://", "postgresql://")


def add_session(engine: Engine, session: str, user: str | None, ended_at: datetime) -> None:
    """A one-minute session row, written directly (no raw events behind it)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sessions (project_id, session_id, user_id, started_at, ended_at,"
                " duration_ms, event_count, error_count) VALUES (1, :s, :u, :a, :b, 60000, 3, 0)"
            ),
            {"s": session, "u": user, "a": ended_at - timedelta(minutes=1), "b": ended_at},
        )
