"""Parsing and checking alert rules: every bad value is named; webhook URLs are redacted."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from processor.alerts.rules import (
    Source,
    build_rule,
    check_webhook,
    format_duration,
    parse_duration,
    parse_source,
    redact,
)
from processor.alerts.webhook import body
from processor.errors import FieldError


@pytest.mark.parametrize(
    ("text", "source"),
    [
        ("endpoint.error_rate", Source("endpoint", "error_rate")),
        ("endpoint.p95_ms", Source("endpoint", "p95_ms")),
        ("endpoint.p99_ms", Source("endpoint", "p99_ms")),
        ("endpoint.request_count", Source("endpoint", "request_count")),
        ("metric:startup.p95", Source("metric", "p95", metric="startup")),
        ("metric:http.server.duration.avg", Source("metric", "avg", metric="http.server.duration")),
        ("logs.count", Source("logs", "count")),
        ("logs.count:error", Source("logs", "count", level="error")),
    ],
)
def test_sources_parse(text, source):
    assert parse_source(text) == source


@pytest.mark.parametrize(
    "text",
    [
        "endpoint.p50_ms",
        "metric:startup",
        "metric:.p95",
        "metric:x.median",
        "logs.count:loud",
        "cpu",
    ],
)
def test_bad_sources_are_named(text):
    with pytest.raises(FieldError, match=r"^source: "):
        parse_source(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800)]
)
def test_durations(text, seconds):
    assert parse_duration("window", text) == timedelta(seconds=seconds)
    assert (
        parse_duration("window", format_duration(timedelta(seconds=seconds))).total_seconds()
        == seconds
    )


@pytest.mark.parametrize("text", ["5", "5x", "m", "-5m", "1.5h", "0s", "91d"])
def test_bad_durations_are_named(text):
    with pytest.raises(FieldError, match=r"^window: "):
        parse_duration("window", text)


def test_a_for_duration_may_be_zero():
    assert parse_duration("for", "0s", zero=True) == timedelta(0)


GOOD = {
    "name": "errors",
    "source": "endpoint.error_rate",
    "op": ">",
    "threshold": "0.05",
    "window": "5m",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"source": "nope"}, "source"),
        ({"op": "=="}, "op"),
        ({"threshold": "lots"}, "threshold"),
        ({"threshold": "nan"}, "threshold"),
        ({"threshold": "1.5"}, "threshold"),  # an error rate is a fraction
        ({"window": "soon"}, "window"),
        ({"for_duration": "1y"}, "for"),
        ({"severity": "panic"}, "severity"),
        ({"webhooks": ["ftp://example.com/x"]}, "webhook"),
        ({"webhooks": ["not a url"]}, "webhook"),
        ({"source": "logs.count", "endpoint": "/x"}, "endpoint"),
    ],
)
def test_bad_rule_values_are_named(change, field):
    with pytest.raises(FieldError) as caught:
        build_rule(**{**GOOD, **change})
    assert caught.value.field == field


def test_a_good_rule_has_defaults():
    rule = build_rule(**GOOD, webhooks=["https://hooks.example.com/x"])
    assert (rule.threshold, rule.window, rule.for_duration, rule.severity) == (
        0.05,
        timedelta(minutes=5),
        timedelta(0),
        "warning",
    )
    assert rule.channels == ("https://hooks.example.com/x",)


def test_the_allowlist_holds_webhook_hosts():
    assert check_webhook("https://hooks.slack.com/a", ["hooks.slack.com"])
    with pytest.raises(FieldError, match="ALERT_WEBHOOK_ALLOWED_HOSTS"):
        check_webhook("https://evil.example/a", ["hooks.slack.com"])


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/s3cr3t", "https://hooks.slack.com/…"),
        ("https://user:pw@example.com:8443/", "https://example.com:8443/…"),
        ("http://example.com/hook?token=s3cr3t", "http://example.com/…"),
        ("http://example.com", "http://example.com"),
    ],
)
def test_redact_hides_paths_queries_and_userinfo(url, shown):
    assert redact(url) == shown
    assert "s3cr3t" not in redact(url) and "pw" not in redact(url)


def test_the_webhook_body_has_every_field_and_one_line_of_text():
    sent = body(
        rule="checkout errors",
        state="firing",
        severity="critical",
        value=0.25,
        threshold=0.05,
        op=">",
        source="endpoint.error_rate",
        window="5m",
        started_at="2026-01-01T00:00:00Z",
        resolved_at=None,
        alert_id=uuid.uuid4(),
        scope="endpoint /checkout",
    )
    for key in (
        "rule",
        "state",
        "severity",
        "value",
        "threshold",
        "started_at",
        "resolved_at",
        "message",
        "text",
    ):
        assert key in sent
    assert "\n" not in sent["text"]
    assert sent["text"].startswith("[CRITICAL] checkout errors is firing")


def test_alert_settings_are_read_and_checked():
    from processor.settings import Settings, SettingsError

    s = Settings.from_env(
        {
            "ALERT_EVAL_INTERVAL_SECONDS": "5",
            "ALERT_REPEAT_INTERVAL_SECONDS": "0",
            "ALERT_WEBHOOK_ALLOWED_HOSTS": "hooks.slack.com, Example.COM",
        }
    )
    assert s.alert_eval_interval_seconds == 5.0 and s.alert_repeat is None
    assert s.alert_webhook_allowed_hosts == ("hooks.slack.com", "example.com")
    assert Settings.from_env({}).alert_repeat == timedelta(hours=1)
    for env in ({"ALERT_EVAL_INTERVAL_SECONDS": "soon"}, {"ALERT_EVAL_INTERVAL_SECONDS": "-1"},
                {"ALERT_REPEAT_INTERVAL_SECONDS": "-5"}):  # fmt: skip
        with pytest.raises(SettingsError, match=next(iter(env))):
            Settings.from_env(env)
