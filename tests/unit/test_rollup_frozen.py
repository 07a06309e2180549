"""Which buckets a round may recompute under a retention policy (processor.analytics.frozen)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processor.analytics.frozen import Floors, kept, with_whole_days
from processor.settings import RETENTION_DEFAULTS, parse_retention

NOW = datetime(2026, 6, 15, 13, 30, tzinfo=UTC)
MIDNIGHT = NOW.replace(hour=0, minute=0)


def test_no_policy_freezes_nothing():
    assert Floors.of(None, NOW) == Floors()
    old = datetime(1990, 1, 1, tzinfo=UTC)
    assert kept({old}, None) == {old}
    assert with_whole_days({old}, Floors()) == {old}


def test_floors_are_the_raw_tables_cutoffs_and_rollups_day():
    floors = Floors.of(RETENTION_DEFAULTS, NOW)
    assert floors.endpoints == MIDNIGHT - timedelta(days=365)
    assert floors.metrics == MIDNIGHT - timedelta(days=90)
    assert floors.hours == MIDNIGHT - timedelta(days=90)
    assert floors.longer == MIDNIGHT - timedelta(days=5 * 365)
    shorter = Floors.of(parse_retention("user_activity=30d,rollups.day=forever"), NOW)
    assert shorter.users == MIDNIGHT - timedelta(days=30)  # the latest of its three tables
    assert shorter.features == MIDNIGHT - timedelta(days=365)
    assert shorter.longer is None


def test_a_day_without_hour_rows_is_recomputed_whole():
    floors = Floors.of(RETENTION_DEFAULTS, NOW)
    old_hour = MIDNIGHT - timedelta(days=100) + timedelta(hours=5)
    young_hour = MIDNIGHT - timedelta(days=3) + timedelta(hours=5)
    hours = with_whole_days({old_hour, young_hour}, floors)
    assert young_hour in hours and len(hours) == 25
    assert min(hours) == MIDNIGHT - timedelta(days=100)
    assert kept(hours, floors.endpoints) == hours
    assert kept(hours, floors.metrics) == {young_hour}
