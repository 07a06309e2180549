"""Migration 0010 (session_hours), run from revision 0009: a database whose sessions were
built before it gets every client-session hour marked dirty, so the first round builds the
partials; a database without sessions gets no marker."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from processor.storage.migrate import alembic_config

ROW = (
    "INSERT INTO endpoint_usage (id, project_id, timestamp, endpoint, method, session_id)"
    " VALUES ('00000000000000000000000000000001', 1, '2026-11-20 10:15:00.000000', '/a',"
    " 'GET', :session)"
)
SESSION = (
    "INSERT INTO sessions (project_id, session_id, started_at, ended_at, duration_ms,"
    " event_count, error_count) VALUES (1, 'abc', '2026-11-20 10:15:00.000000',"
    " '2026-11-20 10:15:00.000000', 0, 1, 0)"
)


def markers_after_upgrade(tmp_path, *statements: str) -> list[tuple]:
    from alembic import command

    url = f"sqlite:///{tmp_path}/before.db"
    config = alembic_config(url)
    command.upgrade(config, "0009")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement), {"session": "abc"})
        command.upgrade(config, "head")
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text("SELECT kind, project_id, bucket_start FROM rollup_invalidations")
                )
            ]
    finally:
        engine.dispose()


def test_stored_sessions_get_their_hours_marked_for_the_partials(tmp_path):
    assert markers_after_upgrade(tmp_path, ROW, SESSION) == [
        ("logs", 1, "2026-11-20 10:00:00.000000")
    ]


def test_a_database_without_sessions_gets_no_marker(tmp_path):
    assert markers_after_upgrade(tmp_path, ROW) == []
