"""The Telling Logger API mapper (``POST /api/v1/logs``): pure, no network, no database."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import orjson
import pytest

from processor.errors import FieldError
from processor.mapping import RouteContext
from processor.mapping.privacy import Hasher
from processor.mapping.telling_logger import route_logs

LOG = {
    "id": "1700000000000",
    "type": "analytics",
    "level": "info",
    "message": "User logged in as john@example.com",
    "timestamp": "2025-01-15T12:00:00.000Z",
    "userId": "user_123",
    "sessionId": "user_123_1700000000000",
    "metadata": {"login_method": "google", "_user_properties": {"tier": "premium"}},
    "device": {"platform": "iOS", "osVersion": "17.0", "appVersion": "1.2.0"},
}


def route(document: object, ctx: RouteContext, max_batch_size: int = 1000):  # type: ignore[no-untyped-def]
    return route_logs(copy.deepcopy(document), ctx, max_batch_size=max_batch_size)


def test_a_log_becomes_a_log_row_and_user_properties(ctx: RouteContext, h: Hasher) -> None:
    batch, reply = route([LOG], ctx)
    assert reply == {"success": True, "received": 1}
    assert batch.received == 1
    (log,) = batch.rows["logs"]
    assert (log.level, log.type, log.device_platform, log.app_version) == (
        "info",
        "analytics",
        "iOS",
        "1.2.0",
    )
    assert log.timestamp == datetime(2025, 1, 15, 12, tzinfo=UTC)
    (prop,) = batch.rows["user_properties"]
    assert (prop.property_key, orjson.loads(prop.property_value)) == ("tier", "premium")


def test_identity_is_hashed_and_no_raw_identifier_remains(ctx: RouteContext, h: Hasher) -> None:
    batch, _ = route([LOG], ctx)
    (log,) = batch.rows["logs"]
    assert log.user_id == h("user_123")
    assert log.session_id == h("user_123_1700000000000")
    assert batch.rows["user_properties"][0].user_id == h("user_123")
    everything = repr(batch.rows)
    assert "user_123" not in everything
    assert "john@example.com" not in everything


def test_a_single_object_is_one_log(ctx: RouteContext) -> None:
    batch, reply = route(LOG, ctx)
    assert reply["received"] == 1
    assert len(batch.rows["logs"]) == 1


def test_performance_metadata_becomes_metric_rows(ctx: RouteContext) -> None:
    log = {**LOG, "type": "performance", "metadata": {"startup_time_ms": 1250, "fps": "58"}}
    batch, _ = route([log], ctx)
    metrics = {(m.metric_type, m.value, m.unit) for m in batch.rows["performance_metrics"]}
    assert metrics == {("startup_time", 1250.0, "ms"), ("fps", 58.0, "fps")}


def test_row_ids_are_deterministic_and_scoped_by_user(ctx: RouteContext) -> None:
    first, _ = route([LOG], ctx)
    again, _ = route([LOG], ctx)
    other_user, _ = route([{**LOG, "userId": "user_456"}], ctx)
    assert first.rows["logs"][0].id == again.rows["logs"][0].id
    assert first.rows["logs"][0].id != other_user.rows["logs"][0].id


def test_row_ids_differ_between_projects(ctx: RouteContext, h: Hasher) -> None:
    other = RouteContext(hasher=h, project_id=2, now=ctx.now)
    assert route([LOG], ctx)[0].rows["logs"][0].id != route([LOG], other)[0].rows["logs"][0].id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"level": "loud"}, "[0].level"),
        ({"level": 7}, "[0].level"),
        ({"type": "weird"}, "[0].type"),
        ({"timestamp": "yesterday"}, "[0].timestamp"),
        ({"timestamp": 1e300}, "[0].timestamp"),
        ({"message": None}, "[0].message"),
        ({"metadata": "not an object"}, "[0].metadata"),
        ({"device": ["iOS"]}, "[0].device"),
        ({"userId": {"id": 1}}, "[0].userId"),
        ({"metadata": {"_user_properties": [1]}}, "[0].metadata._user_properties"),
    ],
)
def test_each_bad_field_is_named(ctx: RouteContext, change: dict, field: str) -> None:
    with pytest.raises(FieldError) as err:
        route([LOG, {**LOG, **change}], ctx)
    assert err.value.field == field.replace("[0]", "[1]")
    assert str(err.value).startswith(f"{err.value.field}: ")


def test_a_log_that_is_not_an_object_is_named(ctx: RouteContext) -> None:
    with pytest.raises(FieldError) as err:
        route([LOG, "text"], ctx)
    assert err.value.field == "[1]"


def test_more_logs_than_the_batch_size_are_refused(ctx: RouteContext) -> None:
    route([LOG] * 3, ctx, max_batch_size=3)
    with pytest.raises(FieldError) as err:
        route([LOG] * 4, ctx, max_batch_size=3)
    assert err.value.field == "body"
