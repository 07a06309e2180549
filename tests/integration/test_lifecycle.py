"""Every component shares start()/shutdown(); shutdown is safe to call twice."""

from __future__ import annotations

import grpc
import pytest

from tests.helpers.otlp import grpc_export, request_with_span


def test_shutdown_twice_is_harmless_and_stops_serving(server, db):
    grpc_export(server.grpc_endpoint, request_with_span())
    assert server.app is not None
    server.call(server.app.shutdown(grace=1))
    server.call(server.app.shutdown(grace=1))
    server.call(server.app.writer.shutdown())
    server.app.pipeline.shutdown()
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(server.grpc_endpoint, request_with_span(span_byte=2))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert db.count("endpoint_usage") == 1
