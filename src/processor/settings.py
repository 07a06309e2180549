"""The service's configuration: read from the environment here and nowhere else."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from urllib.parse import quote

DEFAULT_DATABASE_URL = "sqlite:///analytics.db"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLEANS.update({"0": False, "false": False, "no": False, "off": False})
BACKGROUND_MODES = ("process", "thread")


class SettingsError(ValueError):
    """A configuration value is unusable; the message names the variable."""


# SPEC §13: retention per target, the Telling Logger's defaults. None means keep forever.
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "fatal")
RETENTION_DEFAULTS: Mapping[str, timedelta | None] = MappingProxyType(
    {
        "logs.trace": timedelta(days=7),
        "logs.debug": timedelta(days=7),
        "logs.info": timedelta(days=30),
        "logs.warning": timedelta(days=90),
        "logs.error": timedelta(days=90),
        "logs.fatal": timedelta(days=90),
        "performance_metrics": timedelta(days=90),
        "endpoint_usage": timedelta(days=365),
        "feature_usage": timedelta(days=365),
        "user_activity": timedelta(days=365),
        "rollups.hour": timedelta(days=90),
        "rollups.day": timedelta(days=5 * 365),
    }
)
_DURATION = re.compile(r"(\d+)\s*([hdwy])")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_UNITS["y"] = timedelta(days=365)


def parse_duration(text: str) -> timedelta | None:
    """``7d``, ``12h``, ``2w``, ``1y`` or ``forever`` (None); ValueError otherwise."""
    value = text.strip().lower()
    if value == "forever":
        return None
    match = _DURATION.fullmatch(value)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(text)
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_retention(text: str) -> Mapping[str, timedelta | None]:
    """``RETENTION``: comma-separated ``target=duration`` over the defaults.

    ``logs=DURATION`` sets every log level; a level named explicitly wins over it.
    """
    policy = dict(RETENTION_DEFAULTS)
    explicit: dict[str, timedelta | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        target, sep, duration = (x.strip() for x in item.partition("="))
        if not sep or not target:
            raise SettingsError(f"RETENTION: {item!r} is not target=duration")
        if target != "logs" and target not in RETENTION_DEFAULTS:
            raise SettingsError(
                f"RETENTION: unknown target {target!r}; expected logs, "
                + ", ".join(RETENTION_DEFAULTS)
            )
        try:
            period = parse_duration(duration)
        except ValueError:
            raise SettingsError(
                f"RETENTION: bad duration {duration!r} for {target}; use e.g. 7d, 12h or forever"
            ) from None
        if target == "logs":
            policy.update({f"logs.{level}": period for level in LOG_LEVELS})
        else:
            explicit[target] = period
    policy.update(explicit)
    return MappingProxyType(policy)


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    bind_address: str = "127.0.0.1"
    port: int = 4317
    http_port: int = 4318
    log_level: str = "INFO"
    log_format: str = "json"
    user_id_hash_key: str | None = field(default=None, repr=False)
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    rate_limit_per_minute: int = 1000
    rate_limit_burst: int = 100
    max_batch_size: int = 1000
    max_recv_msg_mib: int = 4
    max_http_body_mib: int = 20
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    # Admission bounds: work admitted but not yet committed.
    max_inflight_requests: int = 16
    max_inflight_mib: int = 32
    # Group commit: most rows written in one transaction.
    writer_max_rows: int = 20000
    # PostgreSQL: COPY straight into the tables, staging + ON CONFLICT only when rows collide.
    writer_direct_copy: bool = True
    workers: int = 1
    # Where the workers' metrics meet (prometheus_client's multiprocess mode); `serve
    # --workers N` makes one when unset.
    metrics_dir: str | None = None
    # POST /api/v1/query (SPEC §11): per-statement time limit and most rows answered.
    query_timeout_seconds: int = 10
    query_max_rows: int = 10000
    # Data lifecycle (SPEC §13).
    retention: Mapping[str, timedelta | None] = field(default_factory=lambda: RETENTION_DEFAULTS)
    retention_interval_seconds: int = 3600
    partition_premake_days: int = 7
    # Each logs day LIST-partitioned by level (per-level retention drops leaves); false for
    # Citus, which cannot distribute a two-level partitioned table.
    logs_partition_by_level: bool = True
    # Rollup rounds (SPEC §10); 0 turns the in-process runner off.
    rollup_interval_seconds: float = 60.0
    # Alerts (SPEC §14): seconds between evaluation rounds (0 = no evaluator in this
    # process); re-notify a still-firing, unacknowledged alert every so many seconds (0 =
    # never); webhook hosts allowed (empty = any).
    alert_eval_interval_seconds: float = 30.0
    alert_repeat_interval_seconds: int = 3600
    alert_webhook_allowed_hosts: tuple[str, ...] = ()
    # Where `serve` runs the rollup and alert runners: `process` = one child process of the
    # top-level serve (never an in-memory SQLite, which only its own process sees), `thread`
    # = a thread of the serving worker(s).
    background_mode: str = "process"
    # Which of `serve --workers N`'s processes this is (0 starts the others).
    worker_index: int = 0
    # OTLP protobuf traces and logs: `auto` = the compiled fast path when it was built (a
    # warning at start when not), `off` = always the pure-Python reference mapper.
    fast_path: str = "auto"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build and validate settings; CLI flags arrive as ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}

        url = env.get("ANALYTICS_DATABASE_URL", "").strip()
        if not url and env.get("ANALYTICS_DB_HOST"):
            url = _url_from_parts(env)
        if url:
            values["database_url"] = url

        for var, name in (
            ("BIND_ADDRESS", "bind_address"),
            ("PROMETHEUS_MULTIPROC_DIR", "metrics_dir"),
        ):
            if env.get(var):
                values[name] = env[var].strip()
        ints = {
            "PORT": "port",
            "HTTP_PORT": "http_port",
            "RATE_LIMIT_REQUESTS_PER_MINUTE": "rate_limit_per_minute",
            "RATE_LIMIT_BURST": "rate_limit_burst",
            "MAX_BATCH_SIZE": "max_batch_size",
            "MAX_RECV_MSG_SIZE_MIB": "max_recv_msg_mib",
            "MAX_HTTP_BODY_MIB": "max_http_body_mib",
            "MAX_INFLIGHT_REQUESTS": "max_inflight_requests",
            "MAX_INFLIGHT_MIB": "max_inflight_mib",
            "WRITER_MAX_ROWS": "writer_max_rows",
            "WORKERS": "workers",
            "QUERY_TIMEOUT_SECONDS": "query_timeout_seconds",
            "QUERY_MAX_ROWS": "query_max_rows",
            "RETENTION_INTERVAL_SECONDS": "retention_interval_seconds",
            "PARTITION_PREMAKE_DAYS": "partition_premake_days",
            "ALERT_REPEAT_INTERVAL_SECONDS": "alert_repeat_interval_seconds",
        }
        for var, name in ints.items():
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise SettingsError(f"{var} must be an integer, got {raw!r}") from None
        for var, name in (
            ("ROLLUP_INTERVAL_SECONDS", "rollup_interval_seconds"),
            ("ALERT_EVAL_INTERVAL_SECONDS", "alert_eval_interval_seconds"),
        ):
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                try:
                    values[name] = float(raw)
                except ValueError:
                    raise SettingsError(f"{var} must be a number, got {raw!r}") from None
        for var, name in (
            ("WRITER_DIRECT_COPY", "writer_direct_copy"),
            ("LOGS_PARTITION_BY_LEVEL", "logs_partition_by_level"),
        ):
            flag = env.get(var, "").strip().lower()
            if flag:
                if flag not in _BOOLEANS:
                    raise SettingsError(
                        f"{var} must be true or false (1/0, yes/no, on/off), got {flag!r}"
                    )
                values[name] = _BOOLEANS[flag]
        if env.get("ALERT_WEBHOOK_ALLOWED_HOSTS", "").strip():
            values["alert_webhook_allowed_hosts"] = tuple(
                h.strip().lower()
                for h in env["ALERT_WEBHOOK_ALLOWED_HOSTS"].split(",")
                if h.strip()
            )
        if env.get("LOG_LEVEL"):
            values["log_level"] = env["LOG_LEVEL"].strip().upper()
        if env.get("BACKGROUND_MODE"):
            values["background_mode"] = env["BACKGROUND_MODE"].strip().lower()
        if env.get("FAST_PATH"):
            values["fast_path"] = env["FAST_PATH"].strip().lower()
        if env.get("LOG_FORMAT"):
            values["log_format"] = env["LOG_FORMAT"].strip().lower()
        if env.get("USER_ID_HASH_KEY"):
            values["user_id_hash_key"] = env["USER_ID_HASH_KEY"]
        if env.get("API_KEYS"):
            values["api_keys"] = tuple(k.strip() for k in env["API_KEYS"].split(",") if k.strip())
        if env.get("RETENTION", "").strip():
            values["retention"] = parse_retention(env["RETENTION"])
        for var, name in (
            ("TLS_CERT_FILE", "tls_cert_file"),
            ("TLS_KEY_FILE", "tls_key_file"),
            ("TLS_CLIENT_CA_FILE", "tls_client_ca_file"),
        ):
            if env.get(var):
                values[name] = env[var]

        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def replace(self, **changes: object) -> Settings:
        new = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        new.validate()
        return new

    def validate(self) -> None:
        if not self.database_url.startswith(("sqlite", "postgresql", "postgres://")):
            raise SettingsError("ANALYTICS_DATABASE_URL must start with sqlite:// or postgresql://")
        for var, port in (("PORT", self.port), ("HTTP_PORT", self.http_port)):
            if not 0 <= port <= 65535:
                raise SettingsError(f"{var} must be between 0 and 65535, got {port}")
        if self.log_level not in _LEVELS:
            raise SettingsError(f"LOG_LEVEL must be one of {', '.join(_LEVELS)}")
        if self.log_format not in ("json", "console"):
            raise SettingsError("LOG_FORMAT must be json or console")
        if self.background_mode not in BACKGROUND_MODES:
            raise SettingsError("BACKGROUND_MODE must be process or thread")
        if self.fast_path not in ("auto", "off"):
            raise SettingsError("FAST_PATH must be auto or off")
        if self.user_id_hash_key is not None and len(self.user_id_hash_key.encode()) < 32:
            raise SettingsError("USER_ID_HASH_KEY must be at least 32 bytes long")
        positive = {
            "RATE_LIMIT_REQUESTS_PER_MINUTE": (self.rate_limit_per_minute, 0),
            "RATE_LIMIT_BURST": (self.rate_limit_burst, 0),
            "MAX_BATCH_SIZE": (self.max_batch_size, 1),
            "MAX_RECV_MSG_SIZE_MIB": (self.max_recv_msg_mib, 1),
            "MAX_HTTP_BODY_MIB": (self.max_http_body_mib, 1),
            "MAX_INFLIGHT_REQUESTS": (self.max_inflight_requests, 1),
            "MAX_INFLIGHT_MIB": (self.max_inflight_mib, 1),
            "WRITER_MAX_ROWS": (self.writer_max_rows, 1),
            "WORKERS": (self.workers, 1),
            "QUERY_TIMEOUT_SECONDS": (self.query_timeout_seconds, 1),
            "QUERY_MAX_ROWS": (self.query_max_rows, 1),
            "RETENTION_INTERVAL_SECONDS": (self.retention_interval_seconds, 1),
            "PARTITION_PREMAKE_DAYS": (self.partition_premake_days, 1),
            "ALERT_REPEAT_INTERVAL_SECONDS": (self.alert_repeat_interval_seconds, 0),
        }
        for var, (value, least) in positive.items():
            if value < least:
                raise SettingsError(f"{var} must be at least {least}, got {value}")
        if self.partition_premake_days > 366:
            raise SettingsError(
                f"PARTITION_PREMAKE_DAYS must be at most 366, got {self.partition_premake_days}"
            )
        if set(self.retention) != set(RETENTION_DEFAULTS):
            raise SettingsError("RETENTION must name every target (build it with parse_retention)")
        if not 0 <= self.rollup_interval_seconds < float("inf"):
            raise SettingsError(
                f"ROLLUP_INTERVAL_SECONDS must be 0 (off) or more, got {self.rollup_interval_seconds}"
            )
        if not 0 <= self.alert_eval_interval_seconds < float("inf"):
            raise SettingsError(
                "ALERT_EVAL_INTERVAL_SECONDS must be 0 (off) or more, "
                f"got {self.alert_eval_interval_seconds}"
            )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise SettingsError("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE")
        for var, path in (
            ("TLS_CERT_FILE", self.tls_cert_file),
            ("TLS_KEY_FILE", self.tls_key_file),
            ("TLS_CLIENT_CA_FILE", self.tls_client_ca_file),
        ):
            if path and not Path(path).is_file():
                raise SettingsError(f"{var} points to a missing file: {path}")

    def to_json(self) -> str:
        """Every field as JSON, for a child process of this one (secrets included: it goes
        down a pipe, never into a log or an argument list)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["retention"] = {
            target: None if period is None else period.total_seconds()
            for target, period in self.retention.items()
        }
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The settings ``to_json`` wrote, validated again."""
        values = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(values, dict) or set(values) != names:
            raise SettingsError("settings from the parent process do not match this version")
        values["retention"] = MappingProxyType(
            {
                target: None if seconds is None else timedelta(seconds=seconds)
                for target, seconds in values["retention"].items()
            }
        )
        for name in ("api_keys", "alert_webhook_allowed_hosts"):
            values[name] = tuple(values[name])
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the psycopg 3 driver named, as SQLAlchemy wants it."""
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def alert_repeat(self) -> timedelta | None:
        seconds = self.alert_repeat_interval_seconds
        return timedelta(seconds=seconds) if seconds > 0 else None

    @property
    def is_postgres(self) -> bool:
        return self.sqlalchemy_url.startswith("postgresql")

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert_file)


def _url_from_parts(env: Mapping[str, str]) -> str:
    user = quote(env.get("ANALYTICS_DB_USER", ""), safe="")
    password = quote(env.get("ANALYTICS_DB_PASS", ""), safe="")
    host = env["ANALYTICS_DB_HOST"]
    port = env.get("ANALYTICS_DB_PORT", "5432")
    name = env.get("ANALYTICS_DB_NAME", "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    if host.startswith("/"):  # a Unix socket directory, e.g. Cloud SQL
        return f"postgresql://{auth}/{name}?host={quote(host, safe='/')}"
    if not port.isdigit():
        raise SettingsError(f"ANALYTICS_DB_PORT must be an integer, got {port!r}")
    return f"postgresql://{auth}{host}:{port}/{name}"


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs."""
    scheme, sep, rest = url.partition("://")
    # The user-info ends at the last "@": an unquoted password may hold "@", "/" or "?".
    auth, at, hostpart = rest.rpartition("@")
    user, has_password, _ = auth.partition(":")
    if not sep or not at or "/" in user:  # no user-info; the "@" is in a path or query
        return url
    return f"{scheme}://{user}:***@{hostpart}" if has_password else url


def child_environment(*, without: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment for a child process, less the names in ``without`` (the
    child's settings travel separately; this is for PATH, locale and the like)."""
    return {k: v for k, v in os.environ.items() if k not in without}
