"""Database engine and sessions for SQLite and PostgreSQL.

SQLite gets WAL mode and a busy timeout so the API and a worker process can write the same file.
Sessions never autocommit: the request or task that opened one commits it (one unit of work).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

CONNECT_TIMEOUT_SECONDS = 5
# libpq's TCP options for every PostgreSQL connection: a connection whose peer vanished (a partition, a failover)
# errors once its sent data goes unacknowledged this long, instead of a request, a worker's step or a probe
# waiting on it for ever; keepalives find an idle one dead.
POSTGRES_TCP = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
                "tcp_user_timeout": 30_000}


# An error's text leaves out the statement's values: logged, it carried customers' webhook URLs (their tokens),
# image_url signatures and signed result links.
HIDE_PARAMETERS = True


def make_engine(url: str, pooled: bool = True) -> Engine:
    """Create an engine; for a SQLite file, create its folder and enable WAL + busy timeout. ``pooled=False``
    opens a fresh connection each time (readiness: a pooled one may be a dead connection that blocks)."""
    parsed = make_url(url)
    fresh = {} if pooled else {"poolclass": NullPool}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=HIDE_PARAMETERS, **fresh)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if parsed.drivername in ("postgresql", "postgres"):  # postgres:// is what many hosted providers hand out
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    # libpq waits for ever on a server that accepts and never answers (a partition): a request, a worker's step
    # and /readyz each held their thread, and probes piling up starved /healthz (every API pod restarted).
    # What the URL says wins.
    options = {name: value for name, value in {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **POSTGRES_TCP}.items()
               if name not in parsed.query}
    pooling = {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10} if pooled else fresh
    return create_engine(url, connect_args=options, hide_parameters=HIDE_PARAMETERS, **pooling)


def shown_url(url: str) -> str:
    """``url`` for a line an operator reads: its password masked, and its query left out, since libpq takes the
    password from there too (``?password=``): ``upscaler migrate`` printed it in clear in the migration's logs."""
    return make_url(url).set(query={}).render_as_string(hide_password=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
