"""API keys, projects, rate limits, TLS and the right to be forgotten (issue: security)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from pathlib import Path

import grpc
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from processor import cli
from processor.ingest.auth import key_digest
from processor.mapping.privacy import make_hasher
from processor.storage import admin
from processor.storage.writer import create_db_engine
from tests.integration.sdk import resource

hash_id = make_hasher()


# One start time for every span: the same span_byte is the same span (the same row key,
# which includes the timestamp), so sending it again is a retry.
SPAN_START = time.time_ns()


def request_with_span(
    user: str = "u-1", span_byte: int = 1
) -> trace_service_pb2.ExportTraceServiceRequest:
    now = SPAN_START
    span = trace_pb2.Span(
        trace_id=bytes([span_byte]) * 16,
        span_id=bytes([span_byte]) * 8,
        name="GET /items",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now,
        end_time_unix_nano=now + 5_000_000,
    )
    for key, value in (("http.request.method", "GET"), ("http.route", "/items"), ("user.id", user)):
        kv = span.attributes.add()
        kv.key = key
        kv.value.string_value = value
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span)
    return request


def grpc_export(endpoint: str, request, metadata=()):  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(endpoint) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        return stub.Export(request, metadata=metadata, timeout=10)


def span_via(provider: TracerProvider, user: str) -> None:
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("GET /things", kind=SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", "GET")
        span.set_attribute("http.route", "/things")
        span.set_attribute("user.id", user)
    provider.shutdown()


def provider_with(exporter) -> TracerProvider:  # type: ignore[no-untyped-def]
    provider = TracerProvider(resource=resource())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_missing_or_wrong_key_is_refused_and_nothing_stored(make_server, db):
    server = make_server(api_keys=("right-key",))
    for metadata in ((), (("x-api-key", "wrong"),), (("authorization", "Bearer wrong"),)):
        with pytest.raises(grpc.RpcError) as err:
            grpc_export(server.grpc_endpoint, request_with_span(), metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    body = request_with_span().SerializeToString()
    for headers in ({}, {"x-api-key": "wrong"}, {"Authorization": "Bearer nope"}):
        response = requests.post(
            f"{server.http_url}/v1/traces",
            data=body,
            headers={"Content-Type": "application/x-protobuf", **headers},
            timeout=10,
        )
        assert response.status_code == 401
    assert db.count("endpoint_usage") == 0


def test_header_and_bearer_keys_are_accepted_by_real_exporters(make_server, db):
    server = make_server(api_keys=("k-one", "k-two"))
    span_via(
        provider_with(
            GrpcSpans(endpoint=server.grpc_endpoint, insecure=True, headers={"x-api-key": "k-one"})
        ),
        "grpc-user",
    )
    span_via(
        provider_with(
            HttpSpans(
                endpoint=f"{server.http_url}/v1/traces", headers={"Authorization": "Bearer k-two"}
            )
        ),
        "http-user",
    )
    users = sorted(r["user_id"] for r in db.rows("endpoint_usage"))
    assert users == sorted([hash_id("grpc-user"), hash_id("http-user")])
    assert {r["project_id"] for r in db.rows("endpoint_usage")} == {1}


def test_projects_stay_apart_and_clients_cannot_choose_theirs(make_server, db, database_url):
    engine = create_db_engine(db.engine.url.render_as_string(hide_password=False))
    mobile_key, mobile_id = admin.create_key(engine, "mobile")
    web_key, web_id = admin.create_key(engine, "web")
    engine.dispose()
    server = make_server()
    assert mobile_id != web_id and 1 not in (mobile_id, web_id)
    # The same span from two projects: both stored, each stamped with its key's project.
    for key in (mobile_key, web_key):
        resp = grpc_export(
            server.grpc_endpoint,
            request_with_span("same-user"),
            (("x-api-key", key), ("project-id", "1"), ("x-project-id", "1")),
        )
        assert not resp.partial_success.rejected_spans
    rows = db.rows("endpoint_usage")
    assert sorted(r["project_id"] for r in rows) == sorted([mobile_id, web_id])
    assert len({r["id"] for r in rows}) == 2


def test_keys_rotate_without_restart(make_server, db):
    engine = create_db_engine(db.engine.url.render_as_string(hide_password=False))
    old_key, _ = admin.create_key(engine, "rotating")
    server = make_server()
    grpc_export(server.grpc_endpoint, request_with_span(span_byte=1), (("x-api-key", old_key),))
    new_key, _ = admin.create_key(engine, "rotating")

    def accepted(key: str, span_byte: int) -> bool:
        try:
            grpc_export(
                server.grpc_endpoint, request_with_span(span_byte=span_byte), (("x-api-key", key),)
            )
            return True
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            return False

    wait_for(lambda: accepted(new_key, 2))
    assert accepted(old_key, 3)  # both valid during the rotation
    prefix = next(k.prefix for k in admin.list_keys(engine) if old_key.startswith(k.prefix))
    assert admin.revoke_key(engine, prefix) == 1
    wait_for(lambda: not accepted(old_key, 3))  # span 3 is stored already: probing adds nothing
    assert accepted(new_key, 5)
    new_prefix = next(k.prefix for k in admin.list_keys(engine) if new_key.startswith(k.prefix))
    wait_for(
        lambda: (
            next(k for k in admin.list_keys(engine) if k.prefix == new_prefix).last_used_at
            is not None
        )
    )
    listed = {k.prefix: k for k in admin.list_keys(engine)}
    engine.dispose()
    assert listed[prefix].revoked_at is not None
    assert listed[new_prefix].revoked_at is None
    assert db.count("endpoint_usage") == 4


def test_rate_limit_answers_resource_exhausted_and_429(make_server, db):
    server = make_server(api_keys=("k",), rate_limit_per_minute=60, rate_limit_burst=2)
    meta = (("x-api-key", "k"),)
    grpc_export(server.grpc_endpoint, request_with_span(span_byte=1), meta)
    grpc_export(server.grpc_endpoint, request_with_span(span_byte=2), meta)
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(server.grpc_endpoint, request_with_span(span_byte=3), meta)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(err.value)
    assert status is not None
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.seconds + info.retry_delay.nanos / 1e9 > 0
    response = requests.post(
        f"{server.http_url}/v1/traces",
        data=request_with_span(span_byte=4).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "x-api-key": "k"},
        timeout=10,
    )
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert db.count("endpoint_usage") == 2


def test_rate_limit_does_not_apply_without_keys(make_server, db):
    server = make_server(rate_limit_per_minute=60, rate_limit_burst=1)
    for i in range(1, 4):
        grpc_export(server.grpc_endpoint, request_with_span(span_byte=i))
    assert db.count("endpoint_usage") == 3


# --- TLS ----------------------------------------------------------------------------------


def _cert(subject: str, issuer_key, issuer_name, key, *, ca: bool, sans=()):  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    # requests lets REQUESTS_CA_BUNDLE override a session's `verify`, which is how the HTTP
    # exporter passes certificate_file; without this the test CA would be ignored.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)

    def pem_key(key) -> bytes:  # type: ignore[no-untyped-def]
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = _cert("test-ca", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert(
        "localhost",
        ca_key,
        ca_name,
        server_key,
        ca=False,
        sans=(x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("client", ca_key, ca_name, client_key, ca=False)
    files = {
        "ca": (ca.public_bytes(serialization.Encoding.PEM)),
        "server_cert": server.public_bytes(serialization.Encoding.PEM),
        "server_key": pem_key(server_key),
        "client_cert": client.public_bytes(serialization.Encoding.PEM),
        "client_key": pem_key(client_key),
    }
    paths = {}
    for name, data in files.items():
        path = tmp_path / f"{name}.pem"
        path.write_bytes(data)
        paths[name] = path
    return paths


def test_tls_with_real_grpc_and_http_exporters(make_server, db, pki):
    server = make_server(tls_cert_file=str(pki["server_cert"]), tls_key_file=str(pki["server_key"]))
    port = server.app.grpc_port
    credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    span_via(
        provider_with(GrpcSpans(endpoint=f"localhost:{port}", credentials=credentials)), "tls-grpc"
    )
    span_via(
        provider_with(
            HttpSpans(
                endpoint=f"https://localhost:{server.app.http_port}/v1/traces",
                certificate_file=str(pki["ca"]),
            )
        ),
        "tls-http",
    )
    assert sorted(r["user_id"] for r in db.rows("endpoint_usage")) == sorted(
        [hash_id("tls-grpc"), hash_id("tls-http")]
    )
    # Plaintext is refused on a TLS listener.
    with pytest.raises(grpc.RpcError):
        grpc_export(f"127.0.0.1:{port}", request_with_span())


def test_mutual_tls_requires_a_client_certificate(make_server, db, pki):
    server = make_server(
        tls_cert_file=str(pki["server_cert"]),
        tls_key_file=str(pki["server_key"]),
        tls_client_ca_file=str(pki["ca"]),
    )
    port = server.app.grpc_port
    with_client = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].read_bytes(),
        private_key=pki["client_key"].read_bytes(),
        certificate_chain=pki["client_cert"].read_bytes(),
    )
    span_via(
        provider_with(GrpcSpans(endpoint=f"localhost:{port}", credentials=with_client)), "mtls"
    )
    span_via(
        provider_with(
            HttpSpans(
                endpoint=f"https://localhost:{server.app.http_port}/v1/traces",
                certificate_file=str(pki["ca"]),
                client_certificate_file=str(pki["client_cert"]),
                client_key_file=str(pki["client_key"]),
            )
        ),
        "mtls-http",
    )
    assert db.count("endpoint_usage") == 2

    without_client = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    with grpc.secure_channel(f"localhost:{port}", without_client) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(request_with_span(span_byte=9), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # TLS 1.3 reports the missing client certificate as an SSL error or a reset connection.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            f"https://localhost:{server.app.http_port}/v1/traces",
            data=request_with_span(span_byte=9).SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
            verify=str(pki["ca"]),
            timeout=5,
        )
    assert db.count("endpoint_usage") == 2


# --- privacy ------------------------------------------------------------------------------


def test_forget_user_removes_every_row_of_that_user(server, db, database_url, capsys):
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    from tests.integration.sdk import otel_logger

    provider = provider_with(GrpcSpans(endpoint=server.grpc_endpoint, insecure=True))
    tracer = provider.get_tracer("t")
    for user in ("forget-me", "keep-me"):
        with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER) as span:
            span.set_attributes(
                {
                    "http.request.method": "GET",
                    "http.route": "/x",
                    "user.id": user,
                    "feature.name": "search",
                    "user.properties.plan": "pro",
                }
            )
        with tracer.start_as_current_span("user.login", attributes={"user.id": user}):
            pass
    provider.shutdown()
    with otel_logger(OTLPLogExporter(endpoint=server.grpc_endpoint, insecure=True)) as logger:
        logger.info(
            "hello",
            extra={"user.id": "forget-me", "performance.metric": "fps", "performance.value": 60},
        )
        logger.info("hello", extra={"user.id": "keep-me"})

    gone = hash_id("forget-me")
    tables = (
        "endpoint_usage",
        "feature_usage",
        "user_activity",
        "logs",
        "performance_metrics",
        "user_properties",
    )
    assert all(db.rows(t, "user_id = :u", u=gone) for t in tables)
    assert cli.main(["forget-user", "forget-me", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    assert "endpoint_usage: 1" in out and "logs: 1" in out and "user_properties: 1" in out
    for table in tables:
        assert db.rows(table, "user_id = :u", u=gone) == []
    kept = hash_id("keep-me")
    assert db.rows("endpoint_usage", "user_id = :u", u=kept)
    assert db.rows("logs", "user_id = :u", u=kept)


def test_hmac_hashing_with_user_id_hash_key(make_server, db):
    key = "k" * 40
    server = make_server(user_id_hash_key=key)
    grpc_export(server.grpc_endpoint, request_with_span("hmac-user"))
    row = db.rows("endpoint_usage")[0]
    assert row["user_id"] == make_hasher(key)("hmac-user")
    assert row["user_id"] != hash_id("hmac-user")


def test_dump_after_pii_heavy_messages_holds_no_raw_values(server, db):
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    from tests.integration.sdk import otel_logger

    raw = [
        "zoe@example.org",
        "192.168.44.21",
        "2001:db8::1",
        "zoe-user-77",
        "org-secret-9",
        "sess-abc-123",
    ]
    with otel_logger(OTLPLogExporter(endpoint=server.grpc_endpoint, insecure=True)) as logger:
        logger.warning(
            "login by zoe@example.org from 192.168.44.21 and 2001:db8::1",
            extra={
                "user.id": "zoe-user-77",
                "organization.id": "org-secret-9",
                "session.id": "sess-abc-123",
                "client.address": "192.168.44.21",
                "contact": "reach zoe@example.org",
                "_user_properties": {"email": "zoe@example.org", "plan": "pro"},
            },
        )
    provider = provider_with(GrpcSpans(endpoint=server.grpc_endpoint, insecure=True))
    with provider.get_tracer("t").start_as_current_span(
        "POST /login", kind=SpanKind.SERVER
    ) as span:
        span.set_attributes(
            {
                "http.request.method": "POST",
                "url.path": "/login",
                "user.id": "zoe-user-77",
                "user.email": "zoe@example.org",
                "client.address": "192.168.44.21",
                "http.client_ip": "192.168.44.21",
                "session.id": "sess-abc-123",
            }
        )
    provider.shutdown()
    assert db.count("logs") == 1 and db.count("endpoint_usage") == 1
    dump = db.dump()
    for value in raw:
        assert value not in dump


def test_keys_cli_prints_the_key_once_and_stores_only_its_hash(db, database_url, capsys):
    assert (
        cli.main(["keys", "create", "--project", "cli-proj", "--database-url", database_url]) == 0
    )
    key = capsys.readouterr().out.strip()
    assert key.startswith(admin.KEY_PREFIX)
    assert key not in db.dump()
    stored = db.rows("api_keys")
    assert len(stored) == 1 and stored[0]["key_hash"] == key_digest(key)
    assert cli.main(["keys", "list", "--database-url", database_url]) == 0
    listing = capsys.readouterr().out
    assert "cli-proj" in listing and stored[0]["prefix"] in listing and key not in listing
    assert cli.main(["keys", "revoke", stored[0]["prefix"], "--database-url", database_url]) == 0
    assert db.rows("api_keys")[0]["revoked_at"] is not None
