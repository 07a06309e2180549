"""A rule's value: raw rows for windows under an hour, rollups (merged sketches) beyond."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from processor.alerts.rules import parse_source
from processor.alerts.sources import Target, value_of
from processor.analytics.rollup import run_round
from processor.analytics.sketch import percentile_cont
from processor.mapping.rows import Batch, LogRow
from tests.helpers.rollups import Event, batch_of, write

NOW = datetime.now(UTC).replace(microsecond=0)
M = timedelta(minutes=1)


def value(engine: Engine, source: str, window: timedelta, **kw: str) -> float | None:
    with engine.connect() as conn:
        return value_of(conn, Target(1, parse_source(source), window, **kw), NOW)


def traffic(engine: Engine) -> list[Event]:
    """80 requests over the last 80 minutes, on two endpoints; every 8th a 500."""
    events = [
        Event(i + 1, NOW - (i + 0.5) * M, "/checkout" if i % 2 else "/cart",
              500 if i % 8 == 0 else 200, 5.0 + (i * 37) % 400, None, None, None)
        for i in range(80)
    ]  # fmt: skip
    write(engine, batch_of(events))
    return events


def test_short_windows_read_the_raw_rows(engine):
    events = traffic(engine)
    recent = [e for e in events if e.when > NOW - 10 * M]
    checkout = [e for e in recent if e.endpoint == "/checkout"]
    assert value(engine, "endpoint.request_count", 10 * M) == len(recent)
    assert value(engine, "endpoint.request_count", 10 * M, endpoint="/checkout") == len(checkout)
    assert value(engine, "endpoint.error_rate", 10 * M) == pytest.approx(
        sum(e.status == 500 for e in recent) / len(recent)
    )
    assert value(engine, "endpoint.p95_ms", 10 * M) == pytest.approx(
        percentile_cont(sorted(e.duration for e in recent), 0.95)
    )
    assert value(engine, "metric:startup.max", 10 * M) == max(e.duration * 3 for e in recent)
    assert value(engine, "endpoint.request_count", 10 * M, service="other") == 0
    assert value(engine, "endpoint.error_rate", 10 * M, service="other") is None


def test_long_windows_read_the_rollups_and_merge_sketches(engine):
    events = traffic(engine)
    run_round(engine)
    window = 2 * timedelta(hours=1)  # covers every hour holding a row
    durations = sorted(e.duration for e in events)
    assert value(engine, "endpoint.request_count", window) == len(events)
    assert value(engine, "endpoint.error_rate", window) == pytest.approx(10 / 80)
    for source, q in (("endpoint.p95_ms", 0.95), ("endpoint.p99_ms", 0.99)):
        got = value(engine, source, window)
        assert got is not None
        # Within 1 % of a value between the raw samples around the exact percentile.
        position = q * (len(durations) - 1)
        low, high = durations[int(position)], durations[min(int(position) + 1, len(durations) - 1)]
        assert low * 0.99 <= got <= high * 1.01
    startup = sorted(e.duration * 3 for e in events)
    assert value(engine, "metric:startup.max", window) == max(startup)
    assert value(engine, "metric:startup.avg", window) == pytest.approx(sum(startup) / 80)


def test_log_counts_by_level(engine):
    batch = Batch()
    for i, level in enumerate(["error", "error", "info", "fatal", "error"]):
        when = NOW - (i + 1) * M if i < 4 else NOW - 30 * M
        batch.rows["logs"].append(
            LogRow(str(uuid.UUID(int=i + 1)), 1, when, None, None, level, None, "general",
                   "m", None, None, None, "svc", None, None, None, None, None, "{}", None)
        )  # fmt: skip
    write(engine, batch)
    assert value(engine, "logs.count", 10 * M) == 4
    assert value(engine, "logs.count:error", 10 * M) == 2
    assert value(engine, "logs.count:error", 2 * timedelta(hours=1)) == 3
    assert value(engine, "logs.count:warning", 10 * M) == 0
