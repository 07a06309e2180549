"""`forget-user` reaches the rollups: the user's rows leave user_activity_daily and sessions,
their buckets are recomputed, and unique_users stays exact (SPEC §10, issue 10 item 8)."""

from __future__ import annotations

import threading

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from processor import cli
from processor.analytics.rollup import run_round
from processor.analytics.runner import ROLLUP_LOCK_KEY
from processor.analytics.sqlparts import as_hour
from processor.mapping.privacy import make_hasher
from processor.ops.scheduler import job_lock
from processor.storage import admin
from tests.helpers.lifecycle_rows import add_rows
from tests.helpers.rollups import (
    Event,
    at,
    batch_of,
    check_rollups,
    cli_url,
    session_reference,
    stored,
    stored_sessions,
    write,
)

HASH = make_hasher(None)  # the CLI's hasher without USER_ID_HASH_KEY
GONE, KEPT = HASH("forget-me"), HASH("keep-me")


def traffic() -> list[Event]:
    """Two users over two days; the forgotten one alone in some hours."""
    return [
        Event(n, at(n * 1.3 - 20), f"/e{n % 2}", (200, 503)[n % 2], 5.0 + n, (GONE, KEPT)[n % 3 == 0],
              f"s{n % 4}", ("ok", "error")[n % 2])
        for n in range(30)
    ]  # fmt: skip


def forget(engine: Engine, capsys) -> list[str]:
    assert cli.main(["forget-user", "forget-me", "--database-url", cli_url(engine)]) == 0
    return capsys.readouterr().out.splitlines()


def holders(engine: Engine, value: str) -> dict[str, int]:
    """Rows of every table whose text holds ``value`` anywhere (ids, JSON, metadata)."""
    found = {}
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():  # every table the database has
            rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
            hits = sum(value in repr(tuple(r)) for r in rows)
            if hits:
                found[table] = hits
    return found


def clean_user_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in ("sessions", "user_properties", "logs"):
            conn.execute(text(f"DELETE FROM {table}"))


def test_forget_user_recomputes_the_rollups_and_leaves_no_trace(engine, capsys):
    clean_user_tables(engine)
    write(engine, batch_of(traffic()))
    add_rows(engine, "user_properties", [at(0)], user_id=GONE)
    run_round(engine)  # the round also builds the sessions from the raw rows
    check_rollups(engine)
    before = [r["user_id"] for r in stored(engine, "user_activity_daily")]
    assert set(before) == {GONE, KEPT}
    sessions_before = [r["user_id"] for r in stored(engine, "sessions")]
    assert GONE in sessions_before and KEPT in sessions_before
    users_before = sum(r["unique_users"] for r in stored(engine, "endpoint_stats"))

    lines = forget(engine, capsys)
    assert f"user_activity_daily: {before.count(GONE)}" in lines
    assert f"sessions: {sessions_before.count(GONE)}" in lines
    assert holders(engine, GONE) == {}
    # The deleted rows' buckets are marked dirty in the same transaction.
    markers = {
        (r["kind"], as_hour(r["bucket_start"])) for r in stored(engine, "rollup_invalidations")
    }
    hours = {as_hour(e.when.replace(minute=0, second=0)) for e in traffic() if e.user == GONE}
    kinds = {"endpoint_usage", "feature_usage", "performance_metrics", "user_activity"}
    # ... and the hours the forgotten user's sessions spanned (so the round rebuilds what
    # remains of a session that held other users' events too): the sessions check below.
    assert hours <= {h for _, h in markers}
    assert {k for k, _ in markers} == kinds

    run_round(engine)
    check_rollups(engine)  # unique_users and every count equal a recomputation again
    assert sum(r["unique_users"] for r in stored(engine, "endpoint_stats")) < users_before
    assert {r["user_id"] for r in stored(engine, "user_activity_daily")} == {KEPT}
    assert stored_sessions(engine) == session_reference(engine)  # rebuilt from what is left
    assert {r["user_id"] for r in stored(engine, "sessions")} == {KEPT}
    assert holders(engine, GONE) == {}
    assert holders(engine, KEPT)


def test_forgetting_in_another_project_leaves_this_one_alone(engine, capsys):
    from processor.storage import admin

    clean_user_tables(engine)
    write(engine, batch_of(traffic()))
    run_round(engine)
    other = admin.project_id(engine, "elsewhere", create=True)
    removed = admin.forget_user(engine, GONE, other)
    assert sum(removed.values()) == 0
    assert stored(engine, "rollup_invalidations") == []
    assert GONE in {r["user_id"] for r in stored(engine, "user_activity_daily")}
    check_rollups(engine)


def test_forget_user_waits_for_a_rollup_round_in_progress(engine):
    """A round that read the raw rows before forget-user committed would write the user's
    hash back into a day set; so forget-user waits for the runner's lock."""
    write(engine, batch_of(traffic()))
    done = threading.Event()
    worker = threading.Thread(target=lambda: (admin.forget_user(engine, GONE), done.set()))
    with job_lock(engine, ROLLUP_LOCK_KEY, wait=True):  # a round holds it
        worker.start()
        assert not done.wait(1.0), "forget-user ran while a rollup round held the lock"
    worker.join(30)
    assert done.is_set()
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM endpoint_usage WHERE user_id = :u"), {"u": GONE}
        ).scalar()
    assert left == 0
