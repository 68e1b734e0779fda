"""Run the Alembic migrations programmatically (``upscaler migrate``, the dev launcher, tests)."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
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


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
