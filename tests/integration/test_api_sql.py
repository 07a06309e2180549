"""POST /api/v1/query attacked: writes, DDL, stacked statements, settings, files, sleeps,
cross-project reads and huge results; afterwards every table holds what it held before."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from processor import cli
from processor.api import sql_runner
from processor.api.sql_guard import QueryRejected
from tests.helpers.api_data import (
    Request,
    at,
    make_key,
    post,
    project_id,
    roll_up,
    send_logs,
    send_requests,
    tl_log,
)

ATTACKS = [
    "DELETE FROM logs",
    "UPDATE logs SET level = 'x'",
    "INSERT INTO logs (id) VALUES ('00000000000000000000000000000000')",
    "DROP TABLE logs",
    "CREATE TABLE stolen AS SELECT * FROM logs",
    "ALTER TABLE logs ADD COLUMN x int",
    "TRUNCATE logs",
    "SELECT 1; DELETE FROM logs",
    "SELECT 1; DROP TABLE api_keys",
    "WITH gone AS (DELETE FROM logs RETURNING *) SELECT count(*) FROM gone",
    "SELECT * INTO stolen FROM logs",
    "SELECT * FROM logs FOR UPDATE",
    "SELECT set_config('processor.project', '2', true)",
    "SELECT pg_catalog.set_config('role', 'postgres', true)",
    "SET ROLE postgres",
    "SET processor.project = '2'",
    "RESET ROLE",
    "RESET ALL",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT * FROM pg_read_file('/etc/passwd')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT * FROM dblink('host=127.0.0.1', 'select 1') AS t(a int)",
    "SELECT query_to_xml('delete from logs', true, true, '')",
    "SELECT pg_sleep(30)",
    "COPY logs TO '/tmp/stolen.csv'",
    "COPY (SELECT 1) TO PROGRAM 'id'",
    "ATTACH DATABASE '/tmp/stolen.db' AS stolen",
    "PRAGMA query_only = 0",
    "SELECT * FROM api_keys",
    "SELECT * FROM logs WHERE project_id IN (SELECT project_id FROM api_keys)",
    "SELECT * FROM pg_roles",
    "SELECT * FROM sqlite_master",
    "EXPLAIN ANALYZE DELETE FROM logs",
    "SELECT current_setting('processor.project')",
    "SELECT load_extension('/tmp/evil.so')",
    "SELECT 'a\\', set_config('processor.project', '2', true) --'",
]
ON_POSTGRES = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
ALL_TABLES = ("logs", "endpoint_usage", "user_properties", "api_keys", "projects")


def counts(db) -> dict[str, int]:
    return {t: db.count(t) for t in ALL_TABLES}


def test_every_attack_is_refused_and_nothing_changes(server, db):
    send_logs(
        server,
        None,
        [tl_log(i, user="u", metadata={"_user_properties": {"t": 1}}) for i in range(3)],
    )
    before = counts(db)
    for sql in ATTACKS:
        resp = post(server, "/api/v1/query", {"sql": sql})
        assert resp.status_code == 400, (sql, resp.text)
        assert resp.json()["parameter"] == "sql"
    assert counts(db) == before
    ok = post(
        server, "/api/v1/query", {"sql": "SELECT level, count(*) AS n FROM logs GROUP BY level"}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json() == {
        "columns": ["level", "n"],
        "rows": [["info", 3]],
        "row_count": 1,
        "truncated": False,
    }


def test_huge_results_are_cut_at_the_row_cap(make_server):
    server = make_server(query_max_rows=50)
    huge = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000000) SELECT i FROM n"
    body = post(server, "/api/v1/query", {"sql": huge}).json()
    assert body["truncated"] is True and body["row_count"] == 50 and body["rows"][0] == [1]
    small = post(server, "/api/v1/query", {"sql": huge, "limit": 3}).json()
    assert small["rows"] == [[1], [2], [3]] and small["truncated"] is True
    assert post(server, "/api/v1/query", {"sql": huge, "limit": 0}).json()["parameter"] == "limit"


def test_a_query_past_the_time_limit_is_stopped(make_server):
    server = make_server(query_timeout_seconds=1)
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    )
    resp = post(server, "/api/v1/query", {"sql": endless})
    assert resp.status_code == 400 and "time limit" in resp.json()["error"]


@ON_POSTGRES
def test_postgres_isolates_projects_in_sql_by_row_level_security(make_server, postgres_url, db):
    keys = {
        p: (make_key(postgres_url, p, "ingest"), make_key(postgres_url, p, "read"))
        for p in ("a", "b")
    }
    server = make_server()
    for name, (ingest, _) in keys.items():
        send_logs(
            server, ingest, [tl_log(i, user=f"{name}-user") for i in range(2 if name == "a" else 5)]
        )
        send_requests(server, ingest, [Request(f"/{name}", 200, 1, at(1))])
    a = project_id(postgres_url, "a")
    b = project_id(postgres_url, "b")
    read_a = keys["a"][1]
    before = counts(db)

    def scalar(sql: str):
        resp = post(server, "/api/v1/query", {"sql": sql}, read_a)
        assert resp.status_code == 200, (sql, resp.text)
        return resp.json()["rows"]

    assert scalar("SELECT count(*) FROM logs") == [[2]]
    assert scalar("SELECT DISTINCT project_id FROM logs") == [[a]]
    assert scalar(f"SELECT count(*) FROM logs WHERE project_id = {b}") == [[0]]
    assert scalar(f"SELECT count(*) FROM (SELECT * FROM logs WHERE project_id = {b}) q") == [[0]]
    assert scalar(
        f"WITH x AS (SELECT * FROM logs WHERE project_id <> {a}) SELECT count(*) FROM x"
    ) == [[0]]
    assert scalar(
        f"SELECT project_id FROM logs UNION SELECT project_id FROM endpoint_usage WHERE project_id = {b}"
    ) == [[a]]
    assert scalar("SELECT endpoint FROM endpoint_usage") == [["/a"]]
    assert scalar(
        "SELECT count(*) FROM logs l JOIN endpoint_usage e ON e.project_id <> l.project_id"
    ) == [[0]]
    assert counts(db) == before


@ON_POSTGRES
def test_postgres_isolates_projects_in_the_rollup_tables(make_server, postgres_url, db):
    keys = {
        p: (make_key(postgres_url, p, "ingest"), make_key(postgres_url, p, "read"))
        for p in ("a", "b")
    }
    server = make_server()
    for name, (ingest, _) in keys.items():
        send_requests(
            server,
            ingest,
            [Request(f"/{name}", 200, 1, at(i), user=f"{name}-user") for i in range(3)],
        )
    roll_up(server)
    a = project_id(postgres_url, "a")
    b = project_id(postgres_url, "b")
    with db.engine.connect() as conn:  # both projects have rollup rows to steal
        owners = conn.execute(text("SELECT DISTINCT project_id FROM endpoint_stats")).scalars()
        assert set(owners) == {a, b}
    before = counts(db)

    def rows(sql: str):
        resp = post(server, "/api/v1/query", {"sql": sql}, keys["a"][1])
        assert resp.status_code == 200, (sql, resp.text)
        return resp.json()["rows"]

    assert rows(
        "SELECT endpoint, sum(request_count) FROM endpoint_stats WHERE period = 'hour'"
        " GROUP BY endpoint"
    ) == [["/a", 3]]
    for table in ("endpoint_stats", "user_activity_daily"):
        assert rows(f"SELECT DISTINCT project_id FROM {table}") == [[a]], table
        assert rows(f"SELECT count(*) FROM {table} WHERE project_id = {b}") == [[0]], table
    assert rows(
        f"SELECT count(*) FROM (SELECT * FROM endpoint_stats WHERE project_id = {b}) q"
    ) == [[0]]
    assert rows(
        f"WITH x AS (SELECT * FROM user_activity_daily WHERE project_id <> {a})"
        " SELECT count(*) FROM x"
    ) == [[0]]
    assert rows(
        "SELECT project_id FROM endpoint_stats UNION"
        f" SELECT project_id FROM metric_aggregates WHERE project_id = {b}"
        f" UNION SELECT project_id FROM feature_usage_daily WHERE project_id = {b}"
    ) == [[a]]
    assert rows(
        "SELECT count(*) FROM endpoint_stats s JOIN endpoint_usage e"
        " ON e.project_id <> s.project_id"
    ) == [[0]]
    # The runner's bookkeeping is no answer: not readable.
    resp = post(
        server, "/api/v1/query", {"sql": "SELECT * FROM rollup_invalidations"}, keys["a"][1]
    )
    assert resp.status_code == 400 and "not readable" in resp.json()["error"]
    assert counts(db) == before


@ON_POSTGRES
def test_the_reader_role_cannot_reset_its_project_or_escape(postgres_url, db):
    """Below the parser: the role itself, given the setting by hand, the way SQL could."""
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (name) VALUES ('other') ON CONFLICT DO NOTHING"))
        other = conn.execute(text("SELECT id FROM projects WHERE name = 'other'")).scalar_one()
        for project in (1, other):
            conn.execute(
                text(
                    "INSERT INTO logs (id, project_id, timestamp, level, type, message)"
                    " VALUES (:id, :p, now(), 'info', 'general', 'm')"
                ),
                {"id": f"{project:032x}", "p": project},
            )
        secret = conn.execute(text("SELECT secret FROM query_secret")).scalar_one()
    with psycopg.connect(postgres_url, autocommit=False) as conn:

        def visible(*setup: str) -> int:
            conn.execute("BEGIN READ ONLY")
            try:
                conn.execute("SET LOCAL ROLE processor_reader")
                for statement in setup:
                    conn.execute(statement)
                return int(conn.execute("SELECT count(*) FROM logs").fetchone()[0])
            finally:
                conn.rollback()

        token = sql_runner.project_token(secret, other)
        assert visible() == 0  # no project set: nothing
        assert visible(f"SELECT set_config('processor.project', '{token}', true)") == 1
        assert visible(f"SELECT set_config('processor.project', '{other}', true)") == 0
        forged = f"{other}:{'0' * 64}"
        assert visible(f"SET LOCAL processor.project = '{forged}'") == 0
        swapped = sql_runner.project_token("guessed-secret", other)
        assert visible(f"SET LOCAL processor.project = '{swapped}'") == 0
        assert visible(f"SET LOCAL processor.project = '{token}'", "RESET processor.project") == 0
        for refused in (
            "SELECT secret FROM query_secret",
            "SELECT * FROM api_keys",
            "SELECT * FROM analyst_roles",
            "CREATE TEMP TABLE t (a int)",
        ):
            conn.execute("BEGIN")
            conn.execute("SET LOCAL ROLE processor_reader")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(refused)
            conn.rollback()


@ON_POSTGRES
def test_analysts_grant_a_login_role_that_sees_one_project(postgres_url, db, capsys):
    with db.engine.begin() as conn:
        for name in ("p-one", "p-two"):
            conn.execute(
                text("INSERT INTO projects (name) VALUES (:n) ON CONFLICT DO NOTHING"), {"n": name}
            )
        ids = dict(conn.execute(text("SELECT name, id FROM projects")).all())
        for name in ("p-one", "p-two"):
            for n in range(3 if name == "p-one" else 4):
                conn.execute(
                    text(
                        "INSERT INTO logs (id, project_id, timestamp, level, type, message)"
                        " VALUES (:id, :p, now(), 'info', 'general', 'm')"
                    ),
                    {"id": f"{ids[name]:016x}{n:016x}", "p": ids[name]},
                )
    assert (
        cli.main(["analysts", "grant", "--project", "p-one", "--database-url", postgres_url]) == 0
    )
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    role, url = printed["role"], printed["url"]
    try:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT DISTINCT project_id, count(*) FROM logs GROUP BY 1"
            ).fetchall()
            assert rows == [(ids["p-one"], 3)]
            conn.execute(f"SET processor.project = '{ids['p-two']}'")
            assert conn.execute("SELECT count(*) FROM logs").fetchone() == (3,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM logs")
            conn.rollback()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM api_keys")
    finally:
        assert cli.main(["analysts", "revoke", role, "--database-url", postgres_url]) == 0
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url).close()
    assert cli.main(["analysts", "revoke", "postgres", "--database-url", postgres_url]) == 1


@ON_SQLITE
def test_sqlite_sql_needs_an_admin_key_once_projects_share_the_file(make_server, db):
    read_key = make_key(db.url, "second", "read")
    admin_key = make_key(db.url, "second", "admin")
    server = make_server()
    assert post(server, "/api/v1/query", {"sql": "SELECT 1 AS one"}, read_key).status_code == 403
    assert post(server, "/api/v1/query", {"sql": "SELECT 1 AS one"}, admin_key).json()["rows"] == [
        [1]
    ]


@ON_SQLITE
def test_sqlite_authorizer_stops_what_the_parser_would(db):
    """The second wall on SQLite, tried with SQL that never passed the parser."""
    path = db.engine.url.database
    before = counts(db)
    for sql in (
        "ATTACH DATABASE ':memory:' AS x",
        "PRAGMA query_only = 0",
        "DELETE FROM logs",
        "CREATE TABLE t (a)",
        "SELECT * FROM api_keys",
        "SELECT load_extension('x')",
    ):
        with pytest.raises(QueryRejected):
            sql_runner.run_sqlite(path, sql, 5, 10)
    assert counts(db) == before
