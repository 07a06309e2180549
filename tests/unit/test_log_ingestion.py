"""The Log Ingestion API mapper (``/api/v1/ingest``, ``/api/v1/batch-ingest``): pure, no
network, no database."""

from __future__ import annotations

import copy

import orjson
import pytest

from processor.errors import FieldError
from processor.mapping import RouteContext
from processor.mapping.log_ingestion import route_batch, route_event
from processor.mapping.privacy import Hasher
from tests.helpers.examples import LOG_INGESTION_EVENT

EVENT = LOG_INGESTION_EVENT


def event(**changes: object) -> dict:
    return {**copy.deepcopy(EVENT), **changes}


def one(document: object, ctx: RouteContext):  # type: ignore[no-untyped-def]
    return route_event(document, ctx, max_batch_size=1000)


def batch_of(events: list, ctx: RouteContext, max_batch_size: int = 1000):  # type: ignore[no-untyped-def]
    return route_batch({"logs": events}, ctx, max_batch_size=max_batch_size)


def test_a_behavioral_event_without_feature_is_an_analytics_log(
    ctx: RouteContext, h: Hasher
) -> None:
    batch, reply = one(event(), ctx)
    assert reply == {"success": True, "received": 1, "event_id": "unique-event-id"}
    (log,) = batch.rows["logs"]
    assert (log.level, log.type, log.message, log.device_model) == (
        "info",
        "analytics",
        "habit_completed",
        "iPhone 14",
    )
    metadata = orjson.loads(log.metadata)
    assert metadata["event_name"] == "habit_completed"
    assert metadata["sequence_number"] == 1


@pytest.mark.parametrize(
    ("changes", "table", "column", "value"),
    [
        ({"properties": {"feature_name": "habits"}}, "feature_usage", "feature_name", "habits"),
        ({"event_name": "login"}, "user_activity", "event_type", "login"),
        ({"event_name": "session_started"}, "user_activity", "event_type", "session_start"),
        ({"event_type": "error"}, "logs", "type", "exception"),
        ({"event_type": "telemetry"}, "logs", "type", "event"),
        (
            {"event_type": "performance", "properties": {"value": 12.5, "unit": "ms"}},
            "performance_metrics",
            "value",
            12.5,
        ),
    ],
)
def test_each_event_kind_lands_in_its_table(
    ctx: RouteContext, changes: dict, table: str, column: str, value: object
) -> None:
    batch, _ = one(event(**changes), ctx)
    assert batch.row_count == 1
    (row,) = batch.rows[table]
    assert getattr(row, column) == value


def test_identity_is_hashed_and_no_raw_identifier_remains(ctx: RouteContext, h: Hasher) -> None:
    doc = event(properties={"feature_name": "habits", "email": "jane@example.com"})
    batch, _ = one(doc, ctx)
    (row,) = batch.rows["feature_usage"]
    assert (row.user_id, row.session_id) == (h("user-123"), h("session-456"))
    everything = repr(batch.rows)
    assert "user-123" not in everything
    assert "jane@example.com" not in everything


def test_row_ids_are_deterministic_and_scoped_by_user(ctx: RouteContext) -> None:
    first, _ = one(event(), ctx)
    again, _ = one(event(), ctx)
    other_user, _ = one(event(user_id="user-999"), ctx)
    assert first.rows["logs"][0].id == again.rows["logs"][0].id
    assert first.rows["logs"][0].id != other_user.rows["logs"][0].id


def test_without_event_id_the_id_derives_from_the_content(ctx: RouteContext) -> None:
    bare = {k: v for k, v in EVENT.items() if k != "event_id"}
    first, _ = one(copy.deepcopy(bare), ctx)
    again, _ = one(copy.deepcopy(bare), ctx)
    changed, _ = one({**copy.deepcopy(bare), "event_name": "other"}, ctx)
    assert first.rows["logs"][0].id == again.rows["logs"][0].id
    assert first.rows["logs"][0].id != changed.rows["logs"][0].id


def test_a_batch_maps_every_event(ctx: RouteContext) -> None:
    batch, reply = batch_of([event(event_id="a"), event(event_id="b", event_name="logout")], ctx)
    assert reply == {"success": True, "received": 2}
    assert (len(batch.rows["logs"]), len(batch.rows["user_activity"])) == (1, 1)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_type": "weird"}, "event_type"),
        ({"event_type": None}, "event_type"),
        ({"event_name": ""}, "event_name"),
        ({"timestamp": "15/01/2024"}, "timestamp"),
        ({"properties": [1, 2]}, "properties"),
        ({"device_info": "ios"}, "device_info"),
        ({"user_id": ["u"]}, "user_id"),
        ({"event_type": "performance", "properties": {"value": "fast"}}, "properties.value"),
    ],
)
def test_each_bad_field_is_named(ctx: RouteContext, changes: dict, field: str) -> None:
    with pytest.raises(FieldError) as err:
        one(event(**changes), ctx)
    assert err.value.field == field
    with pytest.raises(FieldError) as err:
        batch_of([event(), event(**changes)], ctx)
    assert err.value.field == f"logs[1].{field}"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ([EVENT], "body"),
    ],
)
def test_a_single_event_must_be_an_object(ctx: RouteContext, document: object, field: str) -> None:
    with pytest.raises(FieldError) as err:
        one(document, ctx)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"events": [EVENT]}, "logs"),
        ({"logs": []}, "logs"),
        ({"logs": [EVENT, "x"]}, "logs[1]"),
    ],
)
def test_a_bad_batch_is_named(ctx: RouteContext, document: object, field: str) -> None:
    with pytest.raises(FieldError) as err:
        route_batch(copy.deepcopy(document), ctx, max_batch_size=1000)
    assert err.value.field == field


def test_more_events_than_the_batch_size_are_refused(ctx: RouteContext) -> None:
    batch_of([event(event_id=str(i)) for i in range(3)], ctx, max_batch_size=3)
    with pytest.raises(FieldError) as err:
        batch_of([event(event_id=str(i)) for i in range(4)], ctx, max_batch_size=3)
    assert err.value.field == "logs"
