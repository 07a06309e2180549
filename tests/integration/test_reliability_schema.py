"""Database errors that are not about the rows are retryable: nothing acknowledged is dropped."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import text

from tests.helpers.otlp import grpc_export, request_with_span


def test_missing_table_is_unavailable_then_the_retry_is_stored(server, db):
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE endpoint_usage RENAME TO endpoint_usage_away"))
    try:
        with pytest.raises(grpc.RpcError) as err:
            grpc_export(server.grpc_endpoint, request_with_span("schema-user"))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE endpoint_usage_away RENAME TO endpoint_usage"))
    response = grpc_export(server.grpc_endpoint, request_with_span("schema-user"))
    assert response.partial_success.rejected_spans == 0
    assert db.count("endpoint_usage") == 1
