"""The Telling Logger's analytics queries, as the README shows them, run on both databases and
give the expected numbers on data sent through the Telling Logger API (issue 10 item 7).

The SQL is read from README.md, so the documented queries are the tested ones."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from processor.analytics.rollup import run_round
from processor.mapping.privacy import make_hasher
from tests.helpers.api_data import send_logs
from tests.helpers.rollups import assert_merged_percentile

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```sql\n-- query: (\S+) \((PostgreSQL|SQLite)\)\n(.*?)```", re.S)
NAMES = ("segmentation", "startup-trend", "startup-trend-rollup", "error-rate-by-tier")
HASH = make_hasher(None)
NOW = datetime.now(UTC)


def readme_queries() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for name, database, sql in BLOCK.findall(README.read_text()):
        assert (name, database) not in found, f"two README blocks for {name} ({database})"
        found[(name, database)] = sql
    return found


def run(db: Any, name: str) -> list[dict[str, Any]]:
    sql = readme_queries()[(name, "PostgreSQL" if db.is_postgres else "SQLite")]
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql))]


def noon(days: int) -> datetime:
    return (NOW - timedelta(days=days)).replace(hour=12, minute=0, second=0, microsecond=0)


def day_of(value: Any) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def log(n: int, user: str, days: int, level: str = "info", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"q-{n}",
        "type": extra.pop("type", "general"),
        "level": level,
        "message": extra.pop("message", f"message {n}"),
        "timestamp": (noon(days) + timedelta(minutes=n)).isoformat(),
        "userId": user,
        "sessionId": f"{user}-s",
        **extra,
    }


def tier(value: str) -> dict[str, Any]:
    return {"metadata": {"_user_properties": {"subscription_tier": value}}}


def startup(n: int, days: int, ms: float) -> dict[str, Any]:
    return log(n, "erin", days, type="performance", message="App Startup",
               metadata={"startup_time_ms": ms})  # fmt: skip


# Startup samples per days back; the 40-day one is outside the 30-day window.
STARTUPS = {1: [1200.0, 3000.0, 1000.0, 1500.0], 2: [900.0, 800.0], 40: [5000.0]}


def known_data() -> list[dict[str, Any]]:
    """alice and bob premium, carol free, dave premium but last seen 40 days ago; erin (no
    tier) sends the startup times."""
    logs = [
        log(1, "alice", 1, **tier("premium")),
        log(2, "alice", 1, "error"),
        log(3, "alice", 1),
        log(4, "bob", 2, "fatal", **tier("premium")),
        log(5, "carol", 1, "warning", **tier("free")),
        log(6, "carol", 2),
        log(7, "carol", 10, "error"),  # in the 30-day segment window, not the 7-day one
        log(8, "dave", 40, "error", **tier("premium")),
    ]
    n = 100
    for days, values in STARTUPS.items():
        for ms in values:
            logs.append(startup(n, days, ms))
            n += 1
    return logs


def percentile_cont(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (pos - low) * (ordered[high] - ordered[low])


def test_the_readme_has_every_query_for_both_databases():
    assert set(readme_queries()) == {(n, d) for n in NAMES for d in ("PostgreSQL", "SQLite")}


@pytest.fixture
def loaded(server, db):
    send_logs(server, None, known_data())
    return db


def test_segmentation_by_user_property(loaded):
    rows = run(loaded, "segmentation")
    assert [(r["user_id"], r["logs"]) for r in rows] == [(HASH("alice"), 3), (HASH("bob"), 1)]
    assert day_of(rows[0]["last_seen"]) == noon(1).date()


def test_daily_startup_time_trend_with_p90(loaded):
    rows = run(loaded, "startup-trend")
    assert [day_of(r["day"]) for r in rows] == [noon(1).date(), noon(2).date()]
    for r, days in zip(rows, (1, 2), strict=True):
        values = STARTUPS[days]
        assert r["samples"] == len(values)
        assert float(r["avg_startup_ms"]) == pytest.approx(sum(values) / len(values))
        assert float(r["p90_startup_ms"]) == pytest.approx(percentile_cont(values, 0.9))
    assert float(rows[0]["p90_startup_ms"]) == pytest.approx(2550.0)  # 1500 + 0.7 * 1500


def test_daily_startup_time_trend_from_the_rollups(loaded):
    run_round(loaded.engine)
    rows = run(loaded, "startup-trend-rollup")
    assert [day_of(r["day"]) for r in rows] == [noon(1).date(), noon(2).date()]
    for r, days in zip(rows, (1, 2), strict=True):
        values = sorted(STARTUPS[days])
        assert r["samples"] == len(values)
        assert r["avg_startup_ms"] == pytest.approx(sum(values) / len(values))
        assert_merged_percentile(r["p90_startup_ms"], values, 0.9)


def test_error_rate_by_subscription_tier(loaded):
    rows = run(loaded, "error-rate-by-tier")
    got = [(r["tier"], r["total_logs"], r["error_count"], float(r["error_rate"])) for r in rows]
    # premium: alice's 3 logs (1 error) and bob's fatal one; carol's error is 10 days old.
    assert got == [("free", 2, 0, 0.0), ("premium", 4, 2, 50.0)]
