"""Run the Alembic migrations programmatically (``upscaler migrate``, the dev launcher, tests)."""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@functools.cache
def revisions() -> tuple[str, tuple[str, ...]]:
    """This code's head revision and every revision it knows (read once: the scripts do not change at run time)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return script.get_current_head(), tuple(rev.revision for rev in script.walk_revisions())


def schema_behind(current: str | None) -> str | None:
    """Why a database at revision ``current`` is too old for this code, or None when it is at its head or newer.

    Newer counts as fine: migrations only add (a rollout migrates first, and pods of the previous release keep
    serving on the newer schema); a revision this code knows that is not its head is one it has not reached."""
    head, known = revisions()
    if current == head or (current is not None and current not in known):
        return None
    return f"schema at {current or 'nothing'}, this code needs {head}: run upscaler migrate"


def current_revision(connection: sa.Connection) -> str | None:
    """The database's revision, None when it was never migrated (no ``alembic_version`` table: a bare query
    failed there, and readiness said "OperationalError" instead of "run upscaler migrate")."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


class DowngradeRefused(RuntimeError):
    """A downgrade would have to drop or change what some rows hold; it stops before altering anything."""


def refuse_downgrade_while(connection: sa.Connection, count_sql: str, rows: str) -> None:
    """Stop a downgrade while ``count_sql`` counts rows the older schema cannot hold.

    Why: an older revision's NOT NULL column or integer type cannot take a job it never knew (an input URL not yet
    fetched, a target size, a fractional scale); the bare ``ALTER`` failed half-way with the database's own
    message, or, on PostgreSQL, rounded 1.5 to 2. Saying which rows and what to do is the operator's way out."""
    held = connection.execute(sa.text(count_sql)).scalar()
    if held:
        raise DowngradeRefused(f"cannot downgrade: {held} {rows}; delete those jobs first or stay on this revision")
