"""The Grafana provisioning files under grafana/, read as Grafana would, and Grafana's SQL
macros expanded as its PostgreSQL datasource expands them, so the panels' queries can run
against a real database."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARDS = ("analytics-overview", "server-metrics")


def dashboard(uid: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GRAFANA / "dashboards" / f"{uid}.json").read_text())
    return loaded


def datasources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yaml")):
        found += yaml.safe_load(path.read_text())["datasources"]
    return found


def providers() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yaml")):
        found += yaml.safe_load(path.read_text())["providers"]
    return found


def targets(kind: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard uid, panel, target) for every target whose datasource type is ``kind``."""
    for uid in DASHBOARDS:
        for panel in dashboard(uid)["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["type"] == kind:
                    yield uid, panel, target


SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(interval: str) -> int:
    match = re.fullmatch(r"'?(\d+)([smhd])'?", interval.strip())
    assert match, f"unknown interval {interval!r}"
    return int(match.group(1)) * SECONDS[match.group(2)]


def expand_sql(sql: str, start: datetime, end: datetime, interval: str = "1h") -> str:
    """Grafana's PostgreSQL macros, as its datasource writes them."""
    frm, to = f"'{start.isoformat()}'", f"'{end.isoformat()}'"
    sql = sql.replace("$__interval", interval)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {frm} AND {to}", sql)
    sql = sql.replace("$__timeFrom()", frm).replace("$__timeTo()", to)

    def group(match: re.Match[str], alias: bool) -> str:
        column, step = (p.strip() for p in match.group(1).rsplit(",", 1))
        s = _seconds(step)
        expr = f"floor(extract(epoch from {column})/{s})*{s}"
        return f'{expr} AS "time"' if alias else expr

    sql = re.sub(r"\$__timeGroupAlias\(([^)]+)\)", lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^)]+)\)", lambda m: group(m, False), sql)
    assert "$__" not in sql, f"a Grafana macro left unexpanded: {sql}"
    return sql


def promql_metrics(expr: str) -> set[str]:
    """The metric names an expression reads (ours all start with processor_)."""
    return set(re.findall(r"\b(processor_[a-z_]+)\b", expr))
