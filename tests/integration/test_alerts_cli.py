"""`telemetry-processor alerts …` against SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from processor import cli
from processor.alerts.runner import evaluate_round
from processor.settings import Settings
from processor.storage.writer import create_db_engine
from tests.helpers.rollups import Event, batch_of, clean, write


@pytest.fixture
def url(database_url: str) -> str:
    engine = create_db_engine(Settings(database_url=database_url).sqlalchemy_url)
    clean(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alerts"))
        conn.execute(text("DELETE FROM alert_rules"))
    engine.dispose()
    return database_url


def run(capsys, url: str, *args: str) -> tuple[int, list[str], list[str]]:
    code = cli.main(["alerts", *args[:1], *args[1:], "--database-url", url])
    out, err = capsys.readouterr()
    return code, out.splitlines(), [line for line in err.splitlines() if line.strip()]


ADD = ("add", "--project", "default", "--name", "traffic", "--source", "endpoint.request_count",
       "--op", ">", "--threshold", "0", "--window", "5m", "--webhook", "https://h.example/t/secret")  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--source", "endpoint.p50_ms", "source"),
        ("--op", "!=", "op"),
        ("--threshold", "many", "threshold"),
        ("--window", "5 minutes", "window"),
        ("--severity", "loud", "severity"),
        ("--webhook", "file:///etc/passwd", "webhook"),
        ("--project", "nobody", "project"),
    ],
)
def test_a_bad_value_exits_non_zero_with_one_line_naming_it(capsys, url, flag, value, named):
    args = [*ADD, "--severity", "info"]
    args[args.index(flag) + 1] = value
    code, out, err = run(capsys, url, *args)
    assert code != 0 and out == []
    assert len(err) == 1 and f": {named}: " in err[0], err


def test_add_rules_list_ack_delete(capsys, url):
    code, out, _ = run(capsys, url, *ADD)
    assert code == 0
    rule_id = out[0].split()[0]
    code, out, _ = run(capsys, url, "rules")
    assert code == 0 and len(out) == 1 and out[0].startswith(rule_id)
    assert "traffic" in out[0] and "secret" not in out[0]

    engine = create_db_engine(Settings(database_url=url).sqlalchemy_url)
    now = datetime.now(UTC)
    write(engine, batch_of([Event(1, now, "/x", 200, 1.0, None, None, None)]))
    evaluate_round(engine, now, None)
    evaluate_round(engine, now.replace(year=now.year + 1), None)  # no rows then: resolved
    write(engine, batch_of([Event(2, now, "/x", 200, 1.0, None, None, None)]))
    evaluate_round(engine, now, None)  # fires again
    engine.dispose()

    code, out, _ = run(capsys, url, "list")
    assert code == 0 and len(out) == 2
    states = [line.split()[2] for line in out]
    assert sorted(states) == ["firing", "resolved"]
    firing = out[states.index("firing")].split()[0]
    code, out, _ = run(capsys, url, "ack", firing)
    assert code == 0 and out[0].split()[:3] == [firing, "traffic", "acknowledged"]
    assert run(capsys, url, "ack", "not-an-id")[0] != 0
    assert run(capsys, url, "delete", rule_id)[0] == 0
    assert run(capsys, url, "rules")[1] == []
    assert run(capsys, url, "delete", rule_id)[0] != 0
