"""Settings.from_env: defaults, database URL from parts, validation, redaction (SPEC §4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from processor.settings import DEFAULT_DATABASE_URL, Settings, SettingsError, redact_url

HASH_KEY = "0123456789abcdef0123456789abcdef"  # 32 bytes


def test_defaults() -> None:
    settings = Settings.from_env(env={})
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///analytics.db"
    assert (settings.bind_address, settings.port, settings.http_port) == ("127.0.0.1", 4317, 4318)
    assert (settings.log_level, settings.log_format) == ("INFO", "json")
    assert settings.user_id_hash_key is None
    assert settings.api_keys == ()
    assert (settings.rate_limit_per_minute, settings.rate_limit_burst) == (1000, 100)
    assert settings.max_batch_size == 1000
    assert (settings.max_recv_msg_mib, settings.max_http_body_mib) == (4, 20)
    assert not settings.tls_enabled
    assert not settings.is_postgres
    assert settings.sqlalchemy_url == "sqlite:///analytics.db"


def test_environment_values_are_read() -> None:
    settings = Settings.from_env(
        env={
            "BIND_ADDRESS": " 0.0.0.0 ",
            "PORT": "14317",
            "HTTP_PORT": "14318",
            "LOG_LEVEL": "debug",
            "LOG_FORMAT": "Console",
            "USER_ID_HASH_KEY": HASH_KEY,
            "API_KEYS": "k1, k2,,",
            "RATE_LIMIT_REQUESTS_PER_MINUTE": "0",
            "MAX_BATCH_SIZE": "50",
        }
    )
    assert (settings.bind_address, settings.port, settings.http_port) == ("0.0.0.0", 14317, 14318)
    assert (settings.log_level, settings.log_format) == ("DEBUG", "console")
    assert settings.user_id_hash_key == HASH_KEY
    assert settings.api_keys == ("k1", "k2")
    assert (settings.rate_limit_per_minute, settings.max_batch_size) == (0, 50)


@pytest.mark.parametrize(
    ("value", "direct"), [(None, True), ("off", False), ("0", False), ("TRUE", True)]
)
def test_writer_direct_copy_is_on_unless_turned_off(value: str | None, direct: bool) -> None:
    env = {} if value is None else {"WRITER_DIRECT_COPY": value}
    assert Settings.from_env(env=env).writer_direct_copy is direct


def test_overrides_from_cli_flags_win_over_environment() -> None:
    settings = Settings.from_env(env={"PORT": "1000", "BIND_ADDRESS": "10.0.0.1"}, port=2000)
    assert (settings.port, settings.bind_address) == (2000, "10.0.0.1")


def test_empty_variables_mean_default() -> None:
    settings = Settings.from_env(env={"PORT": "", "ANALYTICS_DATABASE_URL": "  ", "LOG_LEVEL": ""})
    assert (settings.port, settings.database_url, settings.log_level) == (
        4317,
        DEFAULT_DATABASE_URL,
        "INFO",
    )


# --- database URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "url"),
    [
        (
            {
                "ANALYTICS_DB_HOST": "db.internal",
                "ANALYTICS_DB_USER": "analytics",
                "ANALYTICS_DB_PASS": "p@ss:w/rd?#%",
                "ANALYTICS_DB_PORT": "6543",
                "ANALYTICS_DB_NAME": "events",
            },
            "postgresql://analytics:p%40ss%3Aw%2Frd%3F%23%25@db.internal:6543/events",
        ),
        (
            {"ANALYTICS_DB_HOST": "db", "ANALYTICS_DB_USER": "u", "ANALYTICS_DB_NAME": "a"},
            "postgresql://u@db:5432/a",
        ),
        ({"ANALYTICS_DB_HOST": "db", "ANALYTICS_DB_NAME": "a"}, "postgresql://db:5432/a"),
        (
            {
                "ANALYTICS_DB_HOST": "/cloudsql/proj:region:inst",
                "ANALYTICS_DB_USER": "u",
                "ANALYTICS_DB_PASS": "pw",
                "ANALYTICS_DB_NAME": "a",
            },
            "postgresql://u:pw@/a?host=/cloudsql/proj%3Aregion%3Ainst",
        ),
    ],
)
def test_database_url_from_parts(env: dict[str, str], url: str) -> None:
    settings = Settings.from_env(env=env)
    assert settings.database_url == url
    assert settings.is_postgres
    assert settings.sqlalchemy_url == url.replace("postgresql://", "postgresql+psycopg://")


def test_database_url_wins_over_parts() -> None:
    settings = Settings.from_env(
        env={"ANALYTICS_DATABASE_URL": "sqlite:///x.db", "ANALYTICS_DB_HOST": "db"}
    )
    assert settings.database_url == "sqlite:///x.db"


def test_parts_without_host_are_ignored() -> None:
    settings = Settings.from_env(env={"ANALYTICS_DB_USER": "u", "ANALYTICS_DB_NAME": "a"})
    assert settings.database_url == DEFAULT_DATABASE_URL


@pytest.mark.parametrize(
    ("url", "sqlalchemy_url"),
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
    ],
)
def test_sqlalchemy_url_names_the_psycopg_driver(url: str, sqlalchemy_url: str) -> None:
    assert Settings.from_env(env={"ANALYTICS_DATABASE_URL": url}).sqlalchemy_url == sqlalchemy_url


# --- invalid configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PORT": "abc"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"HTTP_PORT": "-1"}, "HTTP_PORT"),
        ({"HTTP_PORT": "4318.5"}, "HTTP_PORT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"USER_ID_HASH_KEY": "too-short-secret"}, "USER_ID_HASH_KEY"),
        ({"USER_ID_HASH_KEY": "k" * 31}, "USER_ID_HASH_KEY"),
        ({"MAX_BATCH_SIZE": "0"}, "MAX_BATCH_SIZE"),
        ({"RATE_LIMIT_BURST": "-5"}, "RATE_LIMIT_BURST"),
        ({"MAX_RECV_MSG_SIZE_MIB": "lots"}, "MAX_RECV_MSG_SIZE_MIB"),
        ({"ANALYTICS_DATABASE_URL": "mysql://u:p@h/db"}, "ANALYTICS_DATABASE_URL"),
        ({"ANALYTICS_DB_HOST": "db", "ANALYTICS_DB_PORT": "five"}, "ANALYTICS_DB_PORT"),
        ({"TLS_KEY_FILE": "key.pem"}, "TLS_CERT_FILE"),
        ({"TLS_CLIENT_CA_FILE": "ca.pem"}, "TLS_CLIENT_CA_FILE"),
        ({"WRITER_DIRECT_COPY": "maybe"}, "WRITER_DIRECT_COPY"),
    ],
)
def test_invalid_value_raises_settings_error_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env=env)
    assert re.match(rf"{variable}\b", str(raised.value)), str(raised.value)
    assert "\n" not in str(raised.value)


def test_tls_cert_without_key_names_the_missing_key(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(SettingsError, match="TLS_KEY_FILE"):
        Settings.from_env(env={"TLS_CERT_FILE": str(cert)})


def test_tls_file_that_does_not_exist_is_named(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    missing = tmp_path / "nope.pem"
    with pytest.raises(SettingsError, match=r"^TLS_KEY_FILE .*nope\.pem"):
        Settings.from_env(env={"TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(missing)})


def test_tls_with_cert_and_key_is_enabled(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    settings = Settings.from_env(
        env={"TLS_CERT_FILE": str(tmp_path / "cert.pem"), "TLS_KEY_FILE": str(tmp_path / "key.pem")}
    )
    assert settings.tls_enabled


def test_hash_key_of_exactly_32_bytes_is_accepted() -> None:
    assert Settings.from_env(env={"USER_ID_HASH_KEY": HASH_KEY}).user_id_hash_key == HASH_KEY


@pytest.mark.parametrize(
    "env",
    [
        {"USER_ID_HASH_KEY": "short-but-secret"},
        {"ANALYTICS_DATABASE_URL": "mysql://u:hunter2-secret@h/db"},
        {"ANALYTICS_DB_HOST": "h", "ANALYTICS_DB_PASS": "hunter2-secret", "PORT": "x"},
    ],
)
def test_error_messages_do_not_contain_secrets(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env=env)
    assert "secret" not in str(raised.value)


def test_replace_validates() -> None:
    settings = Settings.from_env(env={})
    assert settings.replace(port=0).port == 0
    with pytest.raises(SettingsError, match=r"^PORT"):
        settings.replace(port=65536)


def test_repr_hides_hash_key_and_api_keys() -> None:
    settings = Settings.from_env(env={"USER_ID_HASH_KEY": HASH_KEY, "API_KEYS": "secret-api-key"})
    assert HASH_KEY not in repr(settings)
    assert "secret-api-key" not in repr(settings)


# --- redact_url -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://u:hunter2@db:5432/a", "postgresql://u:***@db:5432/a"),
        ("postgresql://u:p%40ss@db/a?sslmode=require", "postgresql://u:***@db/a?sslmode=require"),
        ("postgresql://u:p@ss@db/a", "postgresql://u:***@db/a"),
        ("postgresql://u:pa/ss@db/a", "postgresql://u:***@db/a"),
        ("postgresql://u:pa?ss@db/a", "postgresql://u:***@db/a"),
        ("postgresql://u@db/a", "postgresql://u@db/a"),
        ("postgresql://db/a", "postgresql://db/a"),
        ("sqlite:///analytics.db", "sqlite:///analytics.db"),
        ("sqlite:////tmp/a@b/x.db", "sqlite:////tmp/a@b/x.db"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url_hides_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
