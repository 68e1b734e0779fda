"""Run the Alembic migrations programmatically (``upscaler migrate``, the dev launcher, tests)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError

from shared.db import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    """This code's revisions (read once: the scripts do not change at run time)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


@functools.cache
def revisions() -> tuple[str, tuple[str, ...]]:
    """This code's head revision and every revision it knows."""
    return _scripts().get_current_head(), tuple(rev.revision for rev in _scripts().walk_revisions())


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


def wait_for_schema(database_url: str, interval: float, say: Callable[[str], None]) -> None:
    """Return once the database is at this code's head or newer (``schema_behind``), saying why each time it is
    not (not migrated yet, or unreachable). Why: on Kubernetes the migration Job and the Deployments are applied
    together, and only the API has a gate (its readiness, the same check); a worker or beat started first ran the
    new code on the old schema. Their init container runs this (``upscaler wait-for-schema``)."""
    engine = make_engine(database_url, pooled=False)
    try:
        while True:
            try:
                with engine.connect() as connection:
                    behind = schema_behind(current_revision(connection))
            except sa.exc.SQLAlchemyError as exc:
                behind = f"database unreachable ({type(exc).__name__})"
            if not behind:
                return
            say(f"waiting for the migration: {behind}")
            time.sleep(interval)
    finally:
        engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> str | None:
    """Migrate to ``revision``; a database at a revision this code does not know (a later release's: a rollback) is
    left as it is and its revision returned (None otherwise). Alembic failed there, and compose's and Kubernetes'
    migrate step with it, so the previous release never started on the schema ``schema_behind`` accepts."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            current = current_revision(connection)
    finally:
        engine.dispose()
    if current is not None and current not in revisions()[1]:
        return current
    command.upgrade(alembic_config(database_url), revision)
    return None


class DowngradeRefused(RuntimeError):
    """A downgrade would have to drop or change what some rows hold; it stops before altering anything."""


# Revisions whose downgrade cannot hold some rows: (a count of those rows, what they are). An older revision's NOT
# NULL column or integer type cannot take a job it never knew (an input URL not fetched yet, a target size, a
# fractional scale): the bare ALTER failed half-way with the database's own message, or, on PostgreSQL, rounded
# 1.5 to 2.
DOWNGRADE_GUARDS = {
    "0005": ("select count(*) from api_keys",
             "customers' API keys exist (revision 0004 has no tenants: its downgrade deletes every key for good, "
             "and a key's secret cannot be made again)"),
    "0006": ("select count(*) from jobs where input_format is null or input_bytes is null or input_width is null"
             " or input_height is null",
             "jobs wait for an input URL to be fetched (revision 0005 needs every input's format, size and bytes)"),
    "0007": ("select count(*) from jobs where scale is null or scale <> cast(scale as integer)",
             "jobs ask for a target size or a fractional scale (revision 0006 holds whole scales only)"),
    "0017": ("select count(*) from jobs where input_bytes > 2147483647 or output_bytes > 2147483647",
             "jobs record files past 2 GiB (revision 0016 holds 32-bit byte counts)"),
}


def refuse_impossible_downgrade(connection: sa.Connection, current: str | None,
                                destination: str | tuple[str, ...] | None) -> None:
    """Before a migration from ``current`` to ``destination`` runs any step: if it is a downgrade through a
    revision of ``DOWNGRADE_GUARDS`` while rows it cannot hold exist, raise ``DowngradeRefused`` naming them.

    Why before any step, here and not in each revision: SQLite's DDL is not transactional under Alembic, so a
    refusal at 0006 came after 0010..0007 had been undone and committed (bands, DPI, sizes gone)."""
    if current is None or not isinstance(destination, str):  # none, or several ("heads"): no downgrade
        return
    try:  # resolved as Alembic's downgrade resolves it (relative "-1", "head-1", "0017-2" included)
        undone = [revision.revision for revision in
                  _scripts().iterate_revisions(current, destination, select_for_downgrade=True)]
    except RevisionError:  # no downgrade: an upgrade (the relative "+1" too), which undoes nothing, or a
        return             # destination Alembic's downgrade cannot resolve either (it says so next)
    for revision in undone:
        if revision in DOWNGRADE_GUARDS:
            count_sql, rows = DOWNGRADE_GUARDS[revision]
            held = connection.execute(sa.text(count_sql)).scalar()
            if held:
                raise DowngradeRefused(f"cannot downgrade: {held} {rows}; delete those jobs first or stay on this "
                                       "revision")
