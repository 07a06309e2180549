"""The OpenAPI document describes the API: schemathesis drives every operation from it
against the real server; no answer is a 5xx and every answer matches its schema."""

from __future__ import annotations

import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from processor.api.openapi import document

schema = schemathesis.openapi.from_dict(document())


def test_the_document_is_served_publicly_and_names_every_endpoint(make_server):
    server = make_server(api_keys=("secret-key:read",))
    served = requests.get(f"{server.http_url}/api/v1/openapi.json", timeout=10)
    assert served.status_code == 200
    body = served.json()
    assert body["openapi"].startswith("3.")
    for path in (
        "/api/v1/users/{userId}/properties",
        "/api/v1/analytics/performance/overview",
        "/api/v1/logs/filter",
        "/api/v1/logs/recent",
        "/api/v1/status",
        "/api/v1/metrics",
        "/api/v1/analytics/endpoints",
        "/api/v1/analytics/timeseries",
        "/api/v1/analytics/features",
        "/api/v1/analytics/active-users",
        "/api/v1/analytics/sessions",
        "/api/v1/analytics/error-rate",
        "/api/v1/query",
        "/api/v1/funnels",
        "/api/v1/funnels/{id}/conversion",
        "/api/v1/alert-rules",
        "/api/v1/alert-rules/{id}",
        "/api/v1/alerts",
        "/api/v1/alerts/{id}/ack",
    ):
        assert path in body["paths"], path


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_answers_as_documented(case, server):
    case.call_and_validate(
        base_url=server.http_url,
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )
