"""A Flask app instrumented by OpenTelemetry exports over real OTLP/gRPC to the server."""

from __future__ import annotations

import flask
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor

from processor.mapping.privacy import make_hasher
from tests.helpers.sdk import grpc_tracer_provider

hash_id = make_hasher()


def make_app(provider: trace.TracerProvider) -> flask.Flask:
    app = flask.Flask("shop")

    @app.get("/orders/<int:order_id>")
    def order(order_id: int) -> dict[str, int]:
        span = trace.get_current_span()
        span.set_attribute("user.id", "alice-42")
        span.set_attribute("organization.id", "acme-corp")
        span.set_attribute("session.id", "sess-9000")
        return {"id": order_id}

    @app.post("/orders")
    def create() -> tuple[str, int]:
        trace.get_current_span().set_attribute("enduser.id", "bob-7")
        return "", 201

    @app.get("/missing")
    def missing() -> tuple[str, int]:
        return "nope", 404

    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    return app


def test_flask_requests_land_in_endpoint_usage(server, db):
    provider = grpc_tracer_provider(server.grpc_endpoint)
    client = make_app(provider).test_client()
    assert client.get("/orders/17").status_code == 200
    assert client.get("/orders/18").status_code == 200
    assert client.post("/orders").status_code == 201
    assert client.get("/missing").status_code == 404
    provider.shutdown()

    rows = sorted(
        db.rows("endpoint_usage"), key=lambda r: (r["endpoint"], r["method"], r["status_code"])
    )
    assert [(r["endpoint"], r["method"], r["status_code"]) for r in rows] == [
        ("/missing", "GET", 404),
        ("/orders", "POST", 201),
        ("/orders/<int:order_id>", "GET", 200),
        ("/orders/<int:order_id>", "GET", 200),
    ]
    for row in rows:
        assert row["duration_ms"] > 0
        assert row["service_name"] == "shop"
        assert row["deployment_type"] == "cloud"
        assert len(row["trace_id"]) == 32 and len(row["span_id"]) == 16
    order = next(r for r in rows if r["endpoint"] == "/orders/<int:order_id>")
    assert order["user_id"] == hash_id("alice-42")
    assert order["organization_id"] == hash_id("acme-corp")
    assert order["session_id"] == hash_id("sess-9000")
    post = next(r for r in rows if r["method"] == "POST")
    assert post["user_id"] == hash_id("bob-7")
    dump = db.dump()
    assert hash_id("alice-42") in dump  # the dump holds the rows, hashed
    assert "alice-42" not in dump and "bob-7" not in dump
