"""Every component shares start()/shutdown(grace); shutdown is safe to call twice."""

from __future__ import annotations

import grpc
import pytest

from processor.lifecycle import Component
from tests.helpers.otlp import grpc_export, request_with_span


def test_shutdown_twice_is_harmless_and_stops_serving(server, db):
    grpc_export(server.grpc_endpoint, request_with_span())
    assert server.app is not None
    server.call(server.app.shutdown(grace=1))
    server.call(server.app.shutdown(grace=1))
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(server.grpc_endpoint, request_with_span(span_byte=2))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert db.count("endpoint_usage") == 1


RUNNERS = {"process": {"BackgroundProcess"}, "thread": {"RollupRunner", "AlertRunner"}}


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_each_component_shuts_down_twice_after_the_app(make_server, db, mode):
    server = make_server(background_mode=mode)
    app = server.app
    assert app is not None
    components: list[Component] = [c for stage in app.stages for c in stage]
    assert {type(c).__name__ for c in components} == {
        "SqlWriter",
        "Pipeline",
        "QueryService",
        "Housekeeping",
        *RUNNERS[mode],
        "GrpcReceiver",
        "HttpReceiver",
    }
    server.call(app.shutdown(grace=1))
    for component in reversed(components):
        server.call(component.shutdown(1))
        server.call(component.shutdown(1))
    assert app.pipeline.draining


def test_components_shut_down_twice_without_starting(database_url):
    import asyncio

    from processor.server import App
    from processor.settings import Settings

    app = App(Settings(database_url=database_url, port=0, http_port=0, log_level="WARNING"))

    async def twice() -> None:
        for stage in reversed(app.stages):
            for component in stage:
                await component.shutdown(0)
                await component.shutdown(0)

    asyncio.run(twice())


def test_an_in_memory_sqlite_keeps_the_runners_in_a_thread():
    """Only the process that opened an in-memory database sees it: no child process."""
    from processor.server import App
    from processor.settings import Settings

    app = App(Settings(database_url="sqlite://", port=0, http_port=0, log_level="WARNING"))
    assert app.background is None
    assert app.rollups is not None and app.alerts is not None
