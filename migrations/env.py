"""Alembic environment: the URL comes from the caller's config or from the platform settings."""

from __future__ import annotations

from alembic import context
from alembic.migration import MigrationContext

from shared.db import make_engine
from shared.migrate import refuse_impossible_downgrade
from shared.models import Base
from shared.settings import Settings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _migrate(connection) -> None:
    """Run the migrations on ``connection``; on SQLite with its foreign keys off for the while.

    Why: batch mode alters a SQLite table by copying it and dropping the original, and with foreign keys on (as
    ``make_engine`` sets them) dropping ``jobs`` deletes every row that references it, ``ON DELETE CASCADE``: an
    upgrade emptied the webhook deliveries, their attempts and the idempotency keys. The pragma only takes
    effect outside a transaction, so it is set before the migration's transaction begins and restored after;
    ``foreign_key_check`` then proves no reference was left dangling.
    """
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        try:
            destination = context.get_revision_argument()
        except KeyError:  # a command with no destination (``alembic check``, ``revision --autogenerate``)
            destination = None
        if destination is not None:
            refuse_impossible_downgrade(connection, MigrationContext.configure(connection).get_current_revision(),
                                        destination)
        connection.commit()  # the reads end their transaction: the migration's own begins next
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if dangling:
                raise RuntimeError(f"the migration left rows referencing missing ones: {dangling[:5]}")
    finally:
        if sqlite:
            connection.commit()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    with engine.connect() as conn:
        _migrate(conn)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
