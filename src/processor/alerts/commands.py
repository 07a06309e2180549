"""``telemetry-processor alerts add|rules|delete|list|ack`` (SPEC §14).

Every value is checked by rules.py; a bad one exits 2 with one line naming it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from processor.alerts import rules, store
from processor.errors import NotFound, ProcessorError
from processor.settings import Settings


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line naming the value, not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"telemetry-processor alerts: {message}\n")


def add_parser(sub: Any, database: argparse.ArgumentParser) -> None:
    alerts = sub.add_parser("alerts", help="alert rules and alerts (add, rules, delete, list, ack)")
    alerts_sub = alerts.add_subparsers(
        dest="alerts_command", required=True, parser_class=OneLineParser
    )
    add = alerts_sub.add_parser("add", help="add an alert rule", parents=[database])
    add.add_argument("--project", default="default", help="project name")
    add.add_argument("--name", required=True)
    add.add_argument(
        "--source",
        required=True,
        help="endpoint.error_rate|p95_ms|p99_ms|request_count, metric:NAME.STAT, logs.count[:LEVEL]",
    )
    add.add_argument("--op", required=True, help=">, >=, < or <=")
    add.add_argument("--threshold", required=True)
    add.add_argument("--window", required=True, help="a number and s, m, h or d")
    add.add_argument("--for", dest="for_duration", help="how long the condition must hold")
    add.add_argument("--severity", help="info, warning (default), error or critical")
    add.add_argument("--service")
    add.add_argument("--endpoint")
    add.add_argument("--webhook", action="append", default=[], help="repeatable")
    alerts_sub.add_parser("rules", help="list rules, one per line", parents=[database])
    delete = alerts_sub.add_parser("delete", help="delete a rule by id", parents=[database])
    delete.add_argument("id")
    alerts_sub.add_parser("list", help="list alerts, resolved ones too", parents=[database])
    ack = alerts_sub.add_parser("ack", help="acknowledge an alert by id", parents=[database])
    ack.add_argument("id")


def _fail(message: str, code: int = 2) -> int:
    print(f"telemetry-processor alerts: {message}", file=sys.stderr)
    return code


def run(settings: Settings, args: argparse.Namespace) -> int:
    from processor.storage import admin
    from processor.storage.writer import create_db_engine

    engine = create_db_engine(settings.sqlalchemy_url, pool_size=1)
    try:
        command = args.alerts_command
        if command == "add":
            spec = rules.build_rule(
                name=args.name,
                source=args.source,
                op=args.op,
                threshold=args.threshold,
                window=args.window,
                for_duration=args.for_duration,
                severity=args.severity,
                service=args.service,
                endpoint=args.endpoint,
                webhooks=args.webhook,
                allowed_hosts=settings.alert_webhook_allowed_hosts,
            )
            project = admin.project_id(engine, args.project)
            if project is None:
                return _fail(f"project: no project named {args.project!r}")
            print(rule_line(store.create_rule(engine, project, spec)))
        elif command == "rules":
            for rule in store.list_rules(engine):
                print(rule_line(rule))
        elif command == "delete":
            store.delete_rule(engine, None, store.parse_id("id", args.id))
            print(f"deleted rule {args.id}")
        elif command == "list":
            for alert in store.list_alerts(engine):
                print(alert_line(alert))
        elif command == "ack":
            print(alert_line(store.acknowledge(engine, None, store.parse_id("id", args.id))))
    except NotFound as exc:
        return _fail(str(exc), 1)
    except ProcessorError as exc:
        return _fail(str(exc))
    finally:
        engine.dispose()
    return 0


def rule_line(r: dict[str, Any]) -> str:
    where = "".join(f" {k}={r[k]}" for k in ("service", "endpoint") if r.get(k) is not None)
    hooks = ",".join(r["channels"]) or "-"
    return (
        f"{r['id']}  {r['name']}  {r['source']} {r['op']} {r['threshold']:g} "
        f"window={r['window']} for={r['for']} severity={r['severity']}{where} "
        f"state={r['state']} webhooks={hooks}"
    )


def alert_line(a: dict[str, Any]) -> str:
    value = "-" if a["value"] is None else f"{a['value']:.4g}"
    delivered = sum(1 for n in a["notifications"] if n.get("outcome") == "delivered")
    return (
        f"{a['id']}  {a['rule']}  {a['state']}  severity={a['severity']} value={value} "
        f"started={a['started_at']} resolved={a['resolved_at'] or '-'} "
        f"notifications={delivered}/{len(a['notifications'])} delivered"
    )
