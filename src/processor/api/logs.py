"""Log filtering and recent logs from the raw ``logs`` table, with a keyset cursor.

Sorting is by a whitelist of columns, ties broken by id. Sorted by timestamp, a page can be
continued with a cursor on (timestamp, id), so a deep page costs an index range scan, not an
OFFSET over every row before it.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.engine import Engine

from processor.api.params import BadParameter
from processor.api.sqlbits import as_utc, iso
from processor.mapping.log_ingestion import LOG_TYPES as INGEST_LOG_TYPES
from processor.storage.schema import Log

LOGS: Table = Log.__table__  # type: ignore[assignment]
SORTABLE = (
    "timestamp",
    "level",
    "type",
    "severity_number",
    "service_name",
    "app_version",
    "device_platform",
)
# The Log Ingestion API's event_type, as stored in logs.type (telemetry and observability
# events are both stored as ``event``; behavioral events with a feature go to feature_usage,
# performance events to performance_metrics, beside the Telling Logger's performance logs).
EVENT_TYPES = {**INGEST_LOG_TYPES, "performance": "performance"}


@dataclass(frozen=True)
class LogFilter:
    project_id: int
    start: datetime | None = None
    end: datetime | None = None
    level: str | None = None
    type: str | None = None
    event_type: str | None = None
    event_name: str | None = None
    user_hash: str | None = None
    session_hash: str | None = None
    app_version: str | None = None


@dataclass(frozen=True)
class Cursor:
    timestamp: datetime
    id: uuid.UUID
    # The filter's total when the chain's first page was read: pages reached by cursor
    # answer it instead of counting again (the count grows with the matching logs; it was
    # 146 of 226 ms at page 1,000 of 200,000 logs). None in cursors issued before it.
    total: int | None = None


@dataclass
class LogPage:
    logs: list[dict[str, Any]]
    total: int
    next_cursor: str | None


def encode_cursor(
    project: int, order: str, timestamp: datetime, row_id: uuid.UUID, total: int | None = None
) -> str:
    fields = {"p": project, "o": order, "t": timestamp.isoformat(), "i": row_id.hex}
    body = orjson.dumps(fields if total is None else {**fields, "n": total})
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode_cursor(token: str, project: int, order: str, name: str = "cursor") -> Cursor:
    """A cursor this project's query issued; another project's or a mangled one is a 400."""
    try:
        body = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        total = body.get("n")
        if total is not None and (type(total) is not int or total < 0):
            raise ValueError("total")
        cursor = Cursor(as_utc(body["t"]), uuid.UUID(hex=body["i"]), total)
        issued_for, issued_order = int(body["p"]), body["o"]
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise BadParameter(name, "is not a cursor this API issued") from None
    if issued_for != project:
        raise BadParameter(name, "was issued for another project")
    if issued_order != order:
        raise BadParameter(name, f"was issued for sort_order={issued_order}")
    return cursor


def conditions(f: LogFilter) -> list[Any]:
    c = LOGS.c
    where: list[Any] = [c.project_id == f.project_id]
    if f.start is not None:
        where.append(c.timestamp >= f.start)
    if f.end is not None:
        where.append(c.timestamp < f.end)
    for column, value in (
        (c.level, f.level),
        (c.type, f.type),
        (c.user_id, f.user_hash),
        (c.session_id, f.session_hash),
        (c.app_version, f.app_version),
    ):
        if value is not None:
            where.append(column == value)
    if f.event_type is not None:
        where.append(c.type == EVENT_TYPES[f.event_type])
    if f.event_name is not None:
        where.append(c["metadata"]["event_name"].as_string() == f.event_name)
    return where


def fetch_page(
    engine: Engine,
    f: LogFilter,
    *,
    page: int,
    page_size: int,
    sort_by: str,
    sort_order: str,
    cursor: Cursor | None,
) -> LogPage:
    c = LOGS.c
    where = conditions(f)
    column = c[sort_by]
    descending = sort_order == "desc"
    order = [column.desc(), c.id.desc()] if descending else [column.asc(), c.id.asc()]
    query = select(LOGS).where(*where).order_by(*order).limit(page_size + 1)
    if cursor is not None:
        earlier = (
            (c.timestamp < cursor.timestamp) if descending else (c.timestamp > cursor.timestamp)
        )
        tie = (c.id < cursor.id) if descending else (c.id > cursor.id)
        query = query.where(or_(earlier, and_(c.timestamp == cursor.timestamp, tie)))
    else:
        query = query.offset((page - 1) * page_size)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        if cursor is not None and cursor.total is not None:
            total = cursor.total
        else:
            total = int(
                conn.execute(select(func.count()).select_from(LOGS).where(*where)).scalar_one()
            )
    more = len(rows) > page_size
    rows = rows[:page_size]
    next_cursor = None
    if more and sort_by == "timestamp" and rows:
        last = rows[-1]
        next_cursor = encode_cursor(
            f.project_id, sort_order, as_utc(last.timestamp), last.id, total
        )
    return LogPage([log_json(r._mapping) for r in rows], total, next_cursor)


def recent(engine: Engine, project: int, limit: int) -> list[dict[str, Any]]:
    c = LOGS.c
    query = (
        select(LOGS)
        .where(c.project_id == project)
        .order_by(c.timestamp.desc(), c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [log_json(r._mapping) for r in conn.execute(query)]


def log_json(row: Any) -> dict[str, Any]:
    """One log as JSON. Identifier fields are the stored hashes."""
    metadata = row["metadata"]
    event_name = metadata.get("event_name") if isinstance(metadata, dict) else None
    return {
        "id": str(row["id"]),
        "timestamp": iso(as_utc(row["timestamp"])),
        "level": row["level"],
        "type": row["type"],
        "event_name": event_name,
        "message": row["message"],
        "stack_trace": row["stack_trace"],
        "user_id": row["user_id"],
        "session_id": row["session_id"],
        "service_name": row["service_name"],
        "app_version": row["app_version"],
        "app_build_number": row["app_build_number"],
        "device": {
            "platform": row["device_platform"],
            "os_version": row["device_os_version"],
            "model": row["device_model"],
        },
        "trace_id": row["trace_id"],
        "span_id": row["span_id"],
        "metadata": metadata,
    }
