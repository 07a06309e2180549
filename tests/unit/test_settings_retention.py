"""RETENTION, RETENTION_INTERVAL_SECONDS and PARTITION_PREMAKE_DAYS (SPEC §13)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from processor.cli import main
from processor.settings import RETENTION_DEFAULTS, Settings, SettingsError

DAY = timedelta(days=1)


def test_defaults_are_the_telling_logger_periods() -> None:
    settings = Settings.from_env(env={})
    policy = settings.retention
    assert [policy[f"logs.{level}"] for level in ("trace", "debug", "info")] == [
        7 * DAY,
        7 * DAY,
        30 * DAY,
    ]
    assert {policy[f"logs.{lv}"] for lv in ("warning", "error", "fatal")} == {90 * DAY}
    assert policy["performance_metrics"] == 90 * DAY
    assert {policy[t] for t in ("endpoint_usage", "feature_usage", "user_activity")} == {365 * DAY}
    assert (policy["rollups.hour"], policy["rollups.day"]) == (90 * DAY, 5 * 365 * DAY)
    assert "user_properties" not in policy
    assert (settings.retention_interval_seconds, settings.partition_premake_days) == (3600, 7)


def test_retention_overrides_only_the_targets_it_names() -> None:
    settings = Settings.from_env(
        env={"RETENTION": " logs.debug=3d, endpoint_usage=12h ,rollups.day=forever,", "X": ""}
    )
    assert settings.retention["logs.debug"] == 3 * DAY
    assert settings.retention["endpoint_usage"] == timedelta(hours=12)
    assert settings.retention["rollups.day"] is None
    assert settings.retention["logs.trace"] == RETENTION_DEFAULTS["logs.trace"]


def test_logs_shorthand_sets_every_level_and_a_named_level_wins() -> None:
    settings = Settings.from_env(env={"RETENTION": "logs.error=1y,logs=14d"})
    assert settings.retention["logs.error"] == 365 * DAY
    assert settings.retention["logs.info"] == settings.retention["logs.trace"] == 14 * DAY


def test_interval_and_premake_are_read() -> None:
    settings = Settings.from_env(
        env={"RETENTION_INTERVAL_SECONDS": "60", "PARTITION_PREMAKE_DAYS": "3"}
    )
    assert (settings.retention_interval_seconds, settings.partition_premake_days) == (60, 3)


@pytest.mark.parametrize(
    ("env", "named", "quoted"),
    [
        ({"RETENTION": "logs.verbose=7d"}, "RETENTION", "logs.verbose"),
        ({"RETENTION": "user_properties=7d"}, "RETENTION", "user_properties"),
        ({"RETENTION": "logs.debug=7"}, "RETENTION", "'7'"),
        ({"RETENTION": "logs.debug=0d"}, "RETENTION", "0d"),
        ({"RETENTION": "logs.debug=-1d"}, "RETENTION", "-1d"),
        ({"RETENTION": "logs.debug"}, "RETENTION", "logs.debug"),
        ({"RETENTION": "=7d"}, "RETENTION", "=7d"),
        ({"RETENTION_INTERVAL_SECONDS": "0"}, "RETENTION_INTERVAL_SECONDS", "0"),
        ({"RETENTION_INTERVAL_SECONDS": "hourly"}, "RETENTION_INTERVAL_SECONDS", "hourly"),
        ({"PARTITION_PREMAKE_DAYS": "0"}, "PARTITION_PREMAKE_DAYS", "0"),
        ({"PARTITION_PREMAKE_DAYS": "1000"}, "PARTITION_PREMAKE_DAYS", "1000"),
    ],
)
def test_bad_lifecycle_value_names_the_variable(env: dict[str, str], named: str, quoted: str):
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env=env)
    message = str(err.value)
    assert message.startswith(named) and quoted in message
    assert "\n" not in message


def test_bad_retention_fails_start_with_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("RETENTION", "logs.debug=soon")
    assert main(["retention", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "RETENTION" in err and "soon" in err


@pytest.mark.parametrize(("raw", "expected"), [(None, True), ("false", False), ("TRUE", True)])
def test_logs_partition_by_level_is_read(raw: str | None, expected: bool) -> None:
    env = {} if raw is None else {"LOGS_PARTITION_BY_LEVEL": raw}
    assert Settings.from_env(env=env).logs_partition_by_level is expected


def test_bad_logs_partition_by_level_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^LOGS_PARTITION_BY_LEVEL must be true or false"):
        Settings.from_env(env={"LOGS_PARTITION_BY_LEVEL": "citus"})
