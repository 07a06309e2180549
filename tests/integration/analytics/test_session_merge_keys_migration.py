"""Migration 0012 (session merge keys), run from revision 0010: stored partials have no sort
keys, so they go and every client-session hour is marked dirty for the first round to
rebuild them; a database without partials gets no marker."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from processor.storage.migrate import alembic_config

ROW = (
    "INSERT INTO endpoint_usage (id, project_id, timestamp, endpoint, method, session_id)"
    " VALUES ('00000000000000000000000000000001', 1, '2026-11-20 10:15:00.000000', '/a',"
    " 'GET', 'abc')"
)
PART = (
    "INSERT INTO session_hours (project_id, session_id, hour, event_count, error_count,"
    " first_at, last_at, platform, platform_at) VALUES (1, 'abc', '2026-11-20 10:00:00.000000',"
    " 1, 0, '2026-11-20 10:15:00.000000', '2026-11-20 10:15:00.000000', 'ios',"
    " '2026-11-20 10:15:00.000000')"
)


def upgraded(tmp_path, *statements: str) -> tuple[list[tuple], list[tuple], set[str]]:
    from alembic import command

    url = f"sqlite:///{tmp_path}/before.db"
    config = alembic_config(url)
    command.upgrade(config, "0010")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
        command.upgrade(config, "head")
        with engine.connect() as conn:
            markers = [
                tuple(r)
                for r in conn.execute(
                    text("SELECT kind, project_id, bucket_start FROM rollup_invalidations")
                )
            ]
            parts = [tuple(r) for r in conn.execute(text("SELECT * FROM session_hours"))]
            columns = {r[1] for r in conn.execute(text("PRAGMA table_info(session_hours)"))}
        return markers, parts, columns
    finally:
        engine.dispose()


def test_stored_partials_go_and_their_hours_are_marked(tmp_path):
    markers, parts, columns = upgraded(tmp_path, ROW, PART)
    assert markers == [("logs", 1, "2026-11-20 10:00:00.000000")]
    assert parts == []
    assert {"user_key", "entry_key", "exit_key", "platform_key", "version_key"} <= columns
    assert not {c for c in columns if c.endswith("_at") and c not in ("first_at", "last_at")}


def test_a_database_without_partials_gets_no_marker(tmp_path):
    assert upgraded(tmp_path, ROW)[0] == []
