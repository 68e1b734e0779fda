"""Alembic: one head, upgrade from empty on both databases, and models == migrations."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from shared.db import make_engine
from shared.migrate import alembic_config
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
