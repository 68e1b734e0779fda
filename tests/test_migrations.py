"""Alembic: one head, upgrade from empty on both databases, and models == migrations."""

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from shared.db import make_engine
from shared.migrate import DowngradeRefused, alembic_config, upgrade
from shared.models import Base


def test_history_has_one_head():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


def test_upgrade_from_empty_creates_the_schema_and_matches_the_models(database_url):
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert "jobs" in inspect(conn).get_table_names()
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


TABLES = ("jobs", "idempotency_keys", "webhook_deliveries", "webhook_attempts")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'upgrade.db'}"
    return request.getfixturevalue("postgres").create_database()


def test_every_upgrade_keeps_the_rows_a_database_already_holds(empty_database):
    """On SQLite, batch mode rebuilds ``jobs`` by dropping it: with foreign keys on, that deleted every delivery,
    attempt and idempotency key (ON DELETE CASCADE) at 0006 and 0007. Rows seeded at 0005 (the first revision
    with all four tables) must survive each later revision, on both databases."""
    script = ScriptDirectory.from_config(alembic_config(empty_database))
    later = [rev.revision for rev in reversed(list(script.walk_revisions("0005", "head")))][1:]
    assert later  # there are revisions after the seed to run
    upgrade(empty_database, "0005")
    engine = make_engine(empty_database)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "insert into jobs (id, tenant, status, created_at, updated_at, scale, model, output_format, input_key,"
                " input_format, input_bytes, input_width, input_height, progress, attempts) values ('j1', 'acme',"
                " 'succeeded', '2026-01-01', '2026-01-01', 4, 'auto', 'png', 'k', 'png', 1, 1, 1, 1, 1)"))
            conn.execute(text("insert into idempotency_keys (key, request_hash, job_id, created_at)"
                              " values ('ik', 'h', 'j1', '2026-01-01')"))
            conn.execute(text(
                "insert into webhook_deliveries (id, job_id, event, url, payload, status, attempts, next_attempt_at,"
                " created_at, updated_at) values ('d1', 'j1', 'job.succeeded', 'http://127.0.0.1/', '{}', 'pending',"
                " 2, '2026-01-01', '2026-01-01', '2026-01-01')"))
            conn.execute(text("insert into webhook_attempts (delivery_id, attempted_at, status_code)"
                              " values ('d1', '2026-01-01', 500)"))
        for revision in later:
            upgrade(empty_database, revision)
            with engine.connect() as conn:
                counts = {t: conn.execute(text(f"select count(*) from {t}")).scalar() for t in TABLES}
            assert counts == dict.fromkeys(TABLES, 1), revision
        with engine.connect() as conn:
            assert conn.execute(text("select tenant, status from jobs")).one() == ("acme", "succeeded")
            if engine.dialect.name == "sqlite":  # the pragma is back on for the application's connections
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_a_schema_is_behind_only_when_it_is_an_older_revision_of_this_code():
    """Newer is fine (a rollout migrates first and the previous release keeps serving): only a known revision
    that is not the head, or none at all, holds a pod out of service."""
    from shared.migrate import revisions, schema_behind

    head, known = revisions()
    assert schema_behind(head) is None and schema_behind("9999_from_a_later_release") is None
    assert schema_behind(known[-1]) == f"schema at {known[-1]}, this code needs {head}: run upscaler migrate"
    assert schema_behind(None) == f"schema at nothing, this code needs {head}: run upscaler migrate"


JOB_AT_HEAD = (
    "insert into jobs (id, tenant, status, created_at, updated_at, scale, target_width, model, output_format,"
    " input_key, input_url, input_format, input_bytes, input_width, input_height, progress, attempts) values"
    " (:id, 'acme', 'queued', '2026-01-01', '2026-01-01', :scale, :width, 'auto', 'png', 'k', :url, :format, 1, 1,"
    " 1, 0, 0)")


@pytest.mark.parametrize(("job", "revision"), [
    ({"scale": 4, "width": None, "url": "http://127.0.0.1/a.png", "format": None}, "0005"),
    ({"scale": None, "width": 800, "url": None, "format": "png"}, "0006"),
    ({"scale": 1.5, "width": None, "url": None, "format": "png"}, "0006"),
])
def test_a_downgrade_that_cannot_hold_a_job_is_refused_before_it_changes_anything(empty_database, job, revision):
    """An unfetched URL job has no input facts for 0005's NOT NULL columns; a target size or 1.5x has no place
    in 0006's integer scale: the downgrade says so before any step runs and leaves the schema and the job as they
    were (on SQLite, where Alembic's DDL is not transactional, 0010..0007 were undone before 0006 refused). Without
    such jobs it goes through and keeps the others."""
    upgrade(empty_database)
    config = alembic_config(empty_database)
    engine = make_engine(empty_database)
    try:
        with engine.begin() as conn:
            conn.execute(text(JOB_AT_HEAD), {"id": "blocking", **job})
            conn.execute(text(JOB_AT_HEAD), {"id": "plain", "scale": 2, "width": None, "url": None, "format": "png"})
        head = ScriptDirectory.from_config(config).get_current_head()
        with pytest.raises(DowngradeRefused, match="cannot downgrade: 1 jobs"):
            command.downgrade(config, revision)
        with engine.connect() as conn:  # nothing undone: on SQLite the later revisions' downgrades once were
            assert conn.execute(text("select version_num from alembic_version")).scalar() == head
            assert "job_bands" in inspect(conn).get_table_names()
            assert conn.execute(text("select count(*) from jobs")).scalar() == 2
            assert "input_url" in {c["name"] for c in inspect(conn).get_columns("jobs")}
        with engine.begin() as conn:
            conn.execute(text("delete from jobs where id = 'blocking'"))
        command.downgrade(config, revision)
        with engine.connect() as conn:
            assert conn.execute(text("select version_num from alembic_version")).scalar() == revision
            assert conn.execute(text("select id, scale from jobs")).one() == ("plain", 2)
    finally:
        engine.dispose()


def test_migrating_a_database_a_later_release_migrated_leaves_it_and_succeeds(tmp_path, monkeypatch, capsys):
    """A rollback: compose and the Kubernetes job run the previous release's ``upscaler migrate`` first, which
    failed on a revision it does not know (ResolutionError), so the release the docs say serves on the newer
    schema never started."""
    from cli.__main__ import main
    from shared.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'later.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("update alembic_version set version_num = '9999_from_a_later_release'"))
    monkeypatch.setenv("UPSCALER_DATABASE_URL", url)
    assert main(["migrate"]) == 0
    assert "revision 9999_from_a_later_release, newer than this release knows" in capsys.readouterr().out
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == \
            "9999_from_a_later_release"
    engine.dispose()


def test_operator_commands_on_a_database_away_or_unmigrated_say_so_in_one_line(tmp_path, monkeypatch, capsys):
    from cli.__main__ import main

    for url, says in ((f"sqlite:///{tmp_path / 'never.db'}", "no such table: api_keys"),
                      ("postgresql://u:p@127.0.0.1:9/db", "Connection refused")):
        monkeypatch.setenv("UPSCALER_DATABASE_URL", url)
        assert main(["keys", "list"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err and "upscaler migrate" in err, err
