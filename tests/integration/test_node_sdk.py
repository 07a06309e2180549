"""A second language: the OpenTelemetry JS SDK exports over OTLP/gRPC and OTLP/HTTP (JSON).

Never skipped: without Node.js or ``tests/node/node_modules`` the test fails and says how to
install them (``make test`` runs ``npm install`` first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from processor.mapping.privacy import make_hasher

pytestmark = pytest.mark.node

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "send_spans.js"
hash_id = make_hasher()


def node_command() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js (node 20+) is not on PATH; install it to run the Node SDK test")
    if not (NODE_DIR / "node_modules" / "@opentelemetry" / "exporter-trace-otlp-grpc").is_dir():
        pytest.fail(
            f"{NODE_DIR}/node_modules is missing: run `cd tests/node && npm install` "
            "(`make test` does this)"
        )
    return [node, str(SCRIPT)]


def test_node_sdk_spans_land_in_endpoint_usage(server, db):
    result = subprocess.run(
        [
            *node_command(),
            "--grpc",
            server.grpc_endpoint,
            "--http",
            server.http_url,
            "--user",
            "node-user-77",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=NODE_DIR,
        env={**os.environ, "OTEL_LOG_LEVEL": "error"},
    )
    assert result.returncode == 0, f"node failed:\n{result.stdout}\n{result.stderr}"

    rows = db.rows("endpoint_usage")
    got = sorted((r["service_name"], r["endpoint"], r["method"], r["status_code"]) for r in rows)
    assert got == [
        ("node-grpc", "/orders/{id}/items", "POST", 503),
        ("node-grpc", "/users/:id", "GET", 200),
        ("node-http", "/orders/{id}/items", "POST", 503),
        ("node-http", "/users/:id", "GET", 200),
    ]
    for row in rows:
        assert row["user_id"] == hash_id("node-user-77")
        assert row["deployment_type"] == "self-hosted"
        assert row["duration_ms"] >= 0
        assert len(row["trace_id"]) == 32 and len(row["span_id"]) == 16
        metadata = db.json(row["event_metadata"])
        assert metadata["transport"] == row["service_name"].removeprefix("node-")
    slow = [r for r in rows if r["method"] == "GET"]
    assert all(r["duration_ms"] >= 4 for r in slow)
    dump = db.dump()
    assert "node-user-77" not in dump and "203.0.113.9" not in dump
